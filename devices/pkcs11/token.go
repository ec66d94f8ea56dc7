//go:build cgo && pkcs11

package pkcs11

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"
	"sync"

	p11 "github.com/miekg/pkcs11"
)

// Errors callers branch on.
var (
	// ErrNoKey: the token holds no device key under the URI's object label.
	ErrNoKey = errors.New("pkcs11: no device key on the token")
	// ErrNoChain: the token holds no certificate chain for the device key.
	ErrNoChain = errors.New("pkcs11: no certificate chain on the token")
	// ErrLocked: the stored chain was made read-only (CKA_MODIFIABLE false).
	ErrLocked = errors.New("pkcs11: certificate chain is locked")
)

// oidP256 is the DER of the named curve P-256, CKA_EC_PARAMS.
var oidP256 = []byte{0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07}

// Token is an open, logged-in session on one token. A module is
// initialised and finalised by Open and Close, so keep one Token per module
// per process. Methods are safe for concurrent use (serialised).
type Token struct {
	mu      sync.Mutex
	ctx     *p11.Ctx
	session p11.SessionHandle
	uri     *URI
	info    p11.TokenInfo
}

// TokenInfo describes the token.
type TokenInfo struct {
	Label, Manufacturer, Model, Serial string
}

// Open loads the module, finds the token the URI names, opens a read-write
// session and logs in as user with the URI's PIN.
func Open(uri string) (*Token, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	ctx := p11.New(u.ModulePath)
	if ctx == nil {
		return nil, fmt.Errorf("pkcs11: cannot load module %s", u.ModulePath)
	}
	if err := ctx.Initialize(); err != nil && !isCKR(err, p11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		ctx.Destroy()
		return nil, fmt.Errorf("pkcs11: initialize %s: %w", u.ModulePath, err)
	}
	t := &Token{ctx: ctx, uri: u}
	fail := func(err error) (*Token, error) {
		_ = ctx.Finalize()
		ctx.Destroy()
		return nil, err
	}
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return fail(fmt.Errorf("pkcs11: list slots: %w", err))
	}
	found := false
	var slot uint
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if (u.Token == "" || strings.TrimSpace(ti.Label) == u.Token) &&
			(u.Serial == "" || strings.TrimSpace(ti.SerialNumber) == u.Serial) &&
			(u.SlotID == "" || u.SlotID == strconv.FormatUint(uint64(s), 10)) {
			found, slot, t.info = true, s, ti
			break
		}
	}
	if !found {
		return fail(fmt.Errorf("pkcs11: no token matches %s", u))
	}
	if t.session, err = ctx.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION); err != nil {
		return fail(fmt.Errorf("pkcs11: open session on %s: %w", u, err))
	}
	pin, err := u.PIN()
	if err != nil {
		return fail(err)
	}
	if err := ctx.Login(t.session, p11.CKU_USER, pin); err != nil && !isCKR(err, p11.CKR_USER_ALREADY_LOGGED_IN) {
		// The PIN is not part of the error.
		return fail(fmt.Errorf("pkcs11: login to token %q: %w", u.Token, err))
	}
	return t, nil
}

func isCKR(err error, code uint) bool {
	var e p11.Error
	return errors.As(err, &e) && uint(e) == code
}

// Close logs out, closes the session and finalises the module.
func (t *Token) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	_ = t.ctx.Logout(t.session)
	_ = t.ctx.CloseSession(t.session)
	err := t.ctx.Finalize()
	t.ctx.Destroy()
	if err != nil {
		return fmt.Errorf("pkcs11: finalize: %w", err)
	}
	return nil
}

// Info returns the token's label, manufacturer, model and serial.
func (t *Token) Info() TokenInfo {
	return TokenInfo{Label: strings.TrimSpace(t.info.Label), Manufacturer: strings.TrimSpace(t.info.ManufacturerID),
		Model: strings.TrimSpace(t.info.Model), Serial: strings.TrimSpace(t.info.SerialNumber)}
}

// find returns the objects matching attrs.
func (t *Token) find(attrs []*p11.Attribute) ([]p11.ObjectHandle, error) {
	if err := t.ctx.FindObjectsInit(t.session, attrs); err != nil {
		return nil, err
	}
	var all []p11.ObjectHandle
	for {
		objs, _, err := t.ctx.FindObjects(t.session, 16)
		if err != nil {
			_ = t.ctx.FindObjectsFinal(t.session)
			return nil, err
		}
		if len(objs) == 0 {
			break
		}
		all = append(all, objs...)
	}
	return all, t.ctx.FindObjectsFinal(t.session)
}

// Key is a P-256 key pair on the token. It implements crypto.Signer.
type Key struct {
	t          *Token
	priv, pubH p11.ObjectHandle
	pub        *ecdsa.PublicKey
}

func (t *Token) keyID() []byte {
	if len(t.uri.ID) > 0 {
		return t.uri.ID
	}
	return []byte(t.uri.Object)
}

// FindKey returns the device key named by the URI's object label, or
// ErrNoKey.
func (t *Token) FindKey() (*Key, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	label := t.uri.Object
	privs, err := t.find([]*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY), p11.NewAttribute(p11.CKA_LABEL, label)})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: find key %q: %w", label, err)
	}
	pubs, err := t.find([]*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY), p11.NewAttribute(p11.CKA_LABEL, label)})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: find key %q: %w", label, err)
	}
	if len(privs) == 0 || len(pubs) == 0 {
		return nil, ErrNoKey
	}
	if len(privs) > 1 || len(pubs) > 1 {
		return nil, fmt.Errorf("pkcs11: %d private and %d public keys labelled %q: ambiguous", len(privs), len(pubs), label)
	}
	return t.loadKey(privs[0], pubs[0])
}

func (t *Token) loadKey(priv, pubH p11.ObjectHandle) (*Key, error) {
	attrs, err := t.ctx.GetAttributeValue(t.session, pubH, []*p11.Attribute{p11.NewAttribute(p11.CKA_EC_PARAMS, nil), p11.NewAttribute(p11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: read public key: %w", err)
	}
	if !bytes.Equal(attrs[0].Value, oidP256) {
		return nil, errors.New("pkcs11: device key is not on P-256")
	}
	pt := attrs[1].Value
	var inner []byte
	if rest, err := asn1.Unmarshal(pt, &inner); err == nil && len(rest) == 0 && len(inner) == 65 {
		pt = inner // DER OCTET STRING, as the specification says
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: public key point: %w", err)
	}
	return &Key{t: t, priv: priv, pubH: pubH, pub: pub}, nil
}

// GenerateKey generates the device key pair on the token: P-256,
// CKA_TOKEN, private key CKA_SENSITIVE true, CKA_EXTRACTABLE false,
// CKA_PRIVATE true, sign only. The private key value never leaves the
// token, and the token records CKA_ALWAYS_SENSITIVE / CKA_NEVER_EXTRACTABLE.
func (t *Token) GenerateKey() (*Key, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	label, id := t.uri.Object, t.keyID()
	pubTmpl := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, false),
		p11.NewAttribute(p11.CKA_VERIFY, true),
		p11.NewAttribute(p11.CKA_EC_PARAMS, oidP256),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_ID, id),
	}
	privTmpl := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_SIGN, true),
		p11.NewAttribute(p11.CKA_DERIVE, false),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_ID, id),
	}
	pubH, priv, err := t.ctx.GenerateKeyPair(t.session, []*p11.Mechanism{p11.NewMechanism(p11.CKM_EC_KEY_PAIR_GEN, nil)}, pubTmpl, privTmpl)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: generate P-256 key on token %q: %w", t.Info().Label, err)
	}
	return t.loadKey(priv, pubH)
}

// Public implements crypto.Signer.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Sign implements crypto.Signer: the token signs the SHA-256 digest with
// CKM_ECDSA; the result is ASN.1 DER.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != crypto.SHA256 {
		return nil, fmt.Errorf("pkcs11: sign: hash %v not supported, want SHA-256", opts.HashFunc())
	}
	if len(digest) != 32 {
		return nil, fmt.Errorf("pkcs11: sign: digest is %d bytes, want 32", len(digest))
	}
	k.t.mu.Lock()
	defer k.t.mu.Unlock()
	if err := k.t.ctx.SignInit(k.t.session, []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDSA, nil)}, k.priv); err != nil {
		return nil, fmt.Errorf("pkcs11: sign: %w", err)
	}
	rs, err := k.t.ctx.Sign(k.t.session, digest)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: sign: %w", err)
	}
	if len(rs) != 64 {
		return nil, fmt.Errorf("pkcs11: sign: %d-byte signature, want 64", len(rs))
	}
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(rs[:32]), new(big.Int).SetBytes(rs[32:])})
}

// KeyAttributes are the private key's protection attributes as the token
// reports them.
type KeyAttributes struct {
	Token, Private, Sensitive, Extractable, AlwaysSensitive, NeverExtractable bool
}

// Attributes reads the private key's protection attributes through
// C_GetAttributeValue.
func (k *Key) Attributes() (KeyAttributes, error) {
	k.t.mu.Lock()
	defer k.t.mu.Unlock()
	types := []uint{p11.CKA_TOKEN, p11.CKA_PRIVATE, p11.CKA_SENSITIVE, p11.CKA_EXTRACTABLE, p11.CKA_ALWAYS_SENSITIVE, p11.CKA_NEVER_EXTRACTABLE}
	var tmpl []*p11.Attribute
	for _, ty := range types {
		tmpl = append(tmpl, p11.NewAttribute(ty, nil))
	}
	attrs, err := k.t.ctx.GetAttributeValue(k.t.session, k.priv, tmpl)
	if err != nil {
		return KeyAttributes{}, fmt.Errorf("pkcs11: key attributes: %w", err)
	}
	b := func(i int) bool { return len(attrs[i].Value) == 1 && attrs[i].Value[0] != 0 }
	return KeyAttributes{Token: b(0), Private: b(1), Sensitive: b(2), Extractable: b(3), AlwaysSensitive: b(4), NeverExtractable: b(5)}, nil
}

// PrivateValue asks the token for the private key's CKA_VALUE. A token
// honouring CKA_SENSITIVE refuses (CKR_ATTRIBUTE_SENSITIVE); it exists so
// that tests can prove it.
func (k *Key) PrivateValue() ([]byte, error) {
	k.t.mu.Lock()
	defer k.t.mu.Unlock()
	attrs, err := k.t.ctx.GetAttributeValue(k.t.session, k.priv, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: read private value: %w", err)
	}
	return attrs[0].Value, nil
}

// IsSensitiveRefusal reports whether err is the token's refusal to reveal a
// sensitive attribute (CKR_ATTRIBUTE_SENSITIVE).
func IsSensitiveRefusal(err error) bool { return isCKR(err, p11.CKR_ATTRIBUTE_SENSITIVE) }

func (t *Token) chainLabel(i int) string { return fmt.Sprintf("%s-chain-%d", t.uri.Object, i) }

// chainObjects returns the chain's certificate objects in order.
func (t *Token) chainObjects() ([]p11.ObjectHandle, error) {
	var out []p11.ObjectHandle
	for i := 0; ; i++ {
		objs, err := t.find([]*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_CERTIFICATE), p11.NewAttribute(p11.CKA_LABEL, t.chainLabel(i))})
		if err != nil {
			return nil, fmt.Errorf("pkcs11: find certificate %d: %w", i, err)
		}
		if len(objs) == 0 {
			return out, nil
		}
		if len(objs) > 1 {
			return nil, fmt.Errorf("pkcs11: %d certificates labelled %q", len(objs), t.chainLabel(i))
		}
		out = append(out, objs[0])
	}
}

func (t *Token) modifiable(o p11.ObjectHandle) (bool, error) {
	attrs, err := t.ctx.GetAttributeValue(t.session, o, []*p11.Attribute{p11.NewAttribute(p11.CKA_MODIFIABLE, nil)})
	if err != nil {
		return false, err
	}
	return len(attrs[0].Value) == 1 && attrs[0].Value[0] != 0, nil
}

// WriteChain stores chain (DER, leaf first) as CKO_CERTIFICATE objects
// labelled OBJECT-chain-0, -1, ... (the leaf with the key's CKA_ID),
// replacing a previous chain. With lock the objects are created with
// CKA_MODIFIABLE false and later WriteChain calls are refused with
// ErrLocked.
func (t *Token) WriteChain(chain [][]byte, lock bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, err := t.chainObjects()
	if err != nil {
		return err
	}
	for _, o := range old {
		if m, err := t.modifiable(o); err != nil {
			return fmt.Errorf("pkcs11: certificate attributes: %w", err)
		} else if !m {
			return ErrLocked
		}
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return fmt.Errorf("pkcs11: certificate %d: %w", i, err)
		}
	}
	for _, o := range old {
		if err := t.ctx.DestroyObject(t.session, o); err != nil {
			return fmt.Errorf("pkcs11: remove old certificate: %w", err)
		}
	}
	for i, c := range certs {
		serial, err := asn1.Marshal(c.SerialNumber)
		if err != nil {
			return fmt.Errorf("pkcs11: certificate %d serial: %w", i, err)
		}
		id := t.keyID()
		if i > 0 {
			id = append(append([]byte(nil), id...), byte(i))
		}
		tmpl := []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_CERTIFICATE),
			p11.NewAttribute(p11.CKA_CERTIFICATE_TYPE, p11.CKC_X_509),
			p11.NewAttribute(p11.CKA_TOKEN, true),
			p11.NewAttribute(p11.CKA_PRIVATE, false),
			p11.NewAttribute(p11.CKA_MODIFIABLE, !lock),
			p11.NewAttribute(p11.CKA_LABEL, t.chainLabel(i)),
			p11.NewAttribute(p11.CKA_ID, id),
			p11.NewAttribute(p11.CKA_SUBJECT, c.RawSubject),
			p11.NewAttribute(p11.CKA_ISSUER, c.RawIssuer),
			p11.NewAttribute(p11.CKA_SERIAL_NUMBER, serial),
			p11.NewAttribute(p11.CKA_VALUE, c.Raw),
		}
		if _, err := t.ctx.CreateObject(t.session, tmpl); err != nil {
			return fmt.Errorf("pkcs11: store certificate %d: %w", i, err)
		}
	}
	return nil
}

// ReadChain returns the stored chain (DER, leaf first), or ErrNoChain.
func (t *Token) ReadChain() ([][]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	objs, err := t.chainObjects()
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, ErrNoChain
	}
	var chain [][]byte
	for i, o := range objs {
		attrs, err := t.ctx.GetAttributeValue(t.session, o, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
		if err != nil {
			return nil, fmt.Errorf("pkcs11: read certificate %d: %w", i, err)
		}
		chain = append(chain, attrs[0].Value)
	}
	return chain, nil
}

// LockChain makes the stored certificates read-only (CKA_MODIFIABLE false)
// by copying each one with the attribute cleared and removing the original.
// A token owner can still delete objects: PKCS#11 has no irreversible lock.
func (t *Token) LockChain() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	objs, err := t.chainObjects()
	if err != nil {
		return err
	}
	if len(objs) == 0 {
		return ErrNoChain
	}
	for i, o := range objs {
		m, err := t.modifiable(o)
		if err != nil {
			return fmt.Errorf("pkcs11: certificate %d attributes: %w", i, err)
		}
		if !m {
			continue
		}
		if _, err := t.ctx.CopyObject(t.session, o, []*p11.Attribute{p11.NewAttribute(p11.CKA_MODIFIABLE, false)}); err != nil {
			return fmt.Errorf("pkcs11: lock certificate %d: %w", i, err)
		}
		if err := t.ctx.DestroyObject(t.session, o); err != nil {
			return fmt.Errorf("pkcs11: lock certificate %d: %w", i, err)
		}
	}
	return nil
}
