package station

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/proto"
	"go.step.sm/crypto/pemutil"
)

// The TPM owner authorisation the station sets at end of line is a secret
// no one on the line may know, and that the RMA desk must be able to
// recover: the station seals it (HPKE, RFC 9180) to an escrow public key
// whose private key security staff hold offline, records the sealed blob
// in the station database (and through the ledger's outbox in the plant
// registry), and only then sets it on the chip. docs/owner-auth.md.

// ErrOwnerAuth reports that the owner authorisation could not be sealed,
// recorded, set, or that a device's sealed authorisation blocks a rework.
var ErrOwnerAuth = errors.New("owner authorisation")

// ErrOwnerAuthSealed: the device's TPM holds an owner authorisation the
// station sealed earlier; only the RMA desk (escrow key) can open it.
var ErrOwnerAuthSealed = errors.New("the device's owner authorisation is sealed")

// ErrUnseal: the sealed blob does not open with this key and binding.
var ErrUnseal = errors.New("owner authorisation does not unseal")

// OwnerAuthSuite names the HPKE suite: DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256, AES-256-GCM.
const OwnerAuthSuite = "DHKEM(X25519)-HKDF-SHA256-AES-256-GCM"

// ownerAuthInfo is the HPKE info: it fixes the purpose and format version.
var ownerAuthInfo = []byte("wsc owner-auth v1")

func ownerAuthSuite() (hpke.KDF, hpke.AEAD) { return hpke.HKDFSHA256(), hpke.AES256GCM() }

// OwnerAuth is a TPM owner authorisation value. It never prints: String,
// GoString and every fmt verb show "[redacted]".
type OwnerAuth []byte

// String implements fmt.Stringer without the value.
func (OwnerAuth) String() string { return "[redacted]" }

// GoString implements fmt.GoStringer without the value.
func (OwnerAuth) GoString() string { return "[redacted]" }

// Format implements fmt.Formatter so that no verb (%x, %d, %v) prints it.
func (OwnerAuth) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[redacted]")) }

// Hex is the value as tpm2-tools takes it ("hex:…"): only for the audited
// unseal command's output.
func (a OwnerAuth) Hex() string { return fmt.Sprintf("hex:%x", []byte(a)) }

// OwnerAuthBinding is what a sealed owner authorisation is bound to (the
// HPKE additional data): a blob copied to another device's record does
// not open.
type OwnerAuthBinding struct {
	Serial    string
	ChipID    []byte
	WorkOrder string
}

func (b OwnerAuthBinding) aad() []byte {
	var out []byte
	for _, f := range [][]byte{[]byte(b.Serial), b.ChipID, []byte(b.WorkOrder)} {
		out = binary.BigEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}

// EscrowKey is the escrow public key (X25519) owner authorisations are
// sealed to.
type EscrowKey struct {
	pub *ecdh.PublicKey
	// ID is the SHA-256 of the key's PKIX DER.
	ID []byte
}

func newEscrowKey(pub *ecdh.PublicKey) (*EscrowKey, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	id := sha256.Sum256(der)
	return &EscrowKey{pub: pub, ID: id[:]}, nil
}

// LoadEscrowPublicKey reads an X25519 public key (PEM "PUBLIC KEY", from
// `wsc owner-auth keygen`).
func LoadEscrowPublicKey(path string) (*EscrowKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: escrow public key: %w", ErrOwnerAuth, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: escrow public key %s: not a PEM PUBLIC KEY; use the file 'wsc owner-auth keygen' wrote", ErrOwnerAuth, path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: escrow public key %s: %w", ErrOwnerAuth, path, err)
	}
	pub, ok := k.(*ecdh.PublicKey)
	if !ok || pub.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("%w: escrow public key %s: not an X25519 key", ErrOwnerAuth, path)
	}
	return newEscrowKey(pub)
}

// EscrowPrivateKey opens sealed owner authorisations. String never
// prints the key.
type EscrowPrivateKey struct {
	priv *ecdh.PrivateKey
	// Public is the matching public key.
	Public *EscrowKey
}

// String implements fmt.Stringer without the key.
func (k *EscrowPrivateKey) String() string { return "escrow private key [redacted]" }

// GoString implements fmt.GoStringer without the key.
func (k *EscrowPrivateKey) GoString() string { return k.String() }

// Escrow key file names in the directory `wsc owner-auth keygen` writes.
const (
	EscrowPublicFile  = "owner-auth-escrow.pub.pem"
	EscrowPrivateFile = "owner-auth-escrow.key.pem"
)

// GenerateEscrowKey writes a new X25519 escrow key pair into dir: the
// public key (for station.yaml owner_auth.escrow_public_key) and the
// private key as encrypted PKCS#8 (PBES2, as the CA's keys: a legacy PEM
// encryption costs an attacker one MD5 per guess). Existing files are
// never overwritten.
func GenerateEscrowKey(dir string, passphrase []byte) (pubPath, privPath string, err error) {
	if len(passphrase) == 0 {
		return "", "", fmt.Errorf("%w: escrow key: empty passphrase", ErrOwnerAuth)
	}
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("%w: escrow key: %w", ErrOwnerAuth, err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", "", fmt.Errorf("%w: escrow key: %w", ErrOwnerAuth, err)
	}
	blk, err := pemutil.EncryptPKCS8PrivateKey(rand.Reader, pkcs8, passphrase, x509.PEMCipherAES256)
	if err != nil {
		return "", "", fmt.Errorf("%w: escrow key: %w", ErrOwnerAuth, err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.PublicKey())
	if err != nil {
		return "", "", fmt.Errorf("%w: escrow key: %w", ErrOwnerAuth, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("%w: escrow key: %w", ErrOwnerAuth, err)
	}
	privPath, pubPath = filepath.Join(dir, EscrowPrivateFile), filepath.Join(dir, EscrowPublicFile)
	if err := writeNew(privPath, pem.EncodeToMemory(blk), 0o600); err != nil {
		return "", "", err
	}
	if err := writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return "", "", err
	}
	return pubPath, privPath, nil
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("%w: %w (keygen never overwrites a key)", ErrOwnerAuth, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("%w: write %s: %w", ErrOwnerAuth, path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("%w: write %s: %w", ErrOwnerAuth, path, err)
	}
	return f.Close()
}

// LoadEscrowPrivateKey reads and decrypts the escrow private key.
func LoadEscrowPrivateKey(path string, passphrase []byte) (*EscrowPrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: escrow private key: %w", ErrOwnerAuth, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "ENCRYPTED PRIVATE KEY" {
		return nil, fmt.Errorf("%w: escrow private key %s: not an encrypted PKCS#8 PEM; use the file 'wsc owner-auth keygen' wrote", ErrOwnerAuth, path)
	}
	der, err := pemutil.DecryptPKCS8PrivateKey(blk.Bytes, passphrase)
	if err != nil {
		// The library's error may say why; it never holds the passphrase.
		return nil, fmt.Errorf("%w: escrow private key %s: wrong passphrase or damaged file", ErrOwnerAuth, path)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: escrow private key %s: %w", ErrOwnerAuth, path, err)
	}
	priv, ok := k.(*ecdh.PrivateKey)
	if !ok || priv.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("%w: escrow private key %s: not an X25519 key", ErrOwnerAuth, path)
	}
	pub, err := newEscrowKey(priv.PublicKey())
	if err != nil {
		return nil, fmt.Errorf("%w: escrow private key: %w", ErrOwnerAuth, err)
	}
	return &EscrowPrivateKey{priv: priv, Public: pub}, nil
}

// SealedOwnerAuth is an owner authorisation sealed to an escrow key.
type SealedOwnerAuth struct {
	Suite       string
	EscrowKeyID []byte
	Enc, Sealed []byte
}

// SealOwnerAuth seals auth to the escrow key, bound to b.
func SealOwnerAuth(k *EscrowKey, auth OwnerAuth, b OwnerAuthBinding) (*SealedOwnerAuth, error) {
	pk, err := hpke.NewDHKEMPublicKey(k.pub)
	if err != nil {
		return nil, fmt.Errorf("%w: seal: %w", ErrOwnerAuth, err)
	}
	kdf, aead := ownerAuthSuite()
	enc, s, err := hpke.NewSender(pk, kdf, aead, ownerAuthInfo)
	if err != nil {
		return nil, fmt.Errorf("%w: seal: %w", ErrOwnerAuth, err)
	}
	ct, err := s.Seal(b.aad(), auth)
	if err != nil {
		return nil, fmt.Errorf("%w: seal: %w", ErrOwnerAuth, err)
	}
	return &SealedOwnerAuth{Suite: OwnerAuthSuite, EscrowKeyID: bytes.Clone(k.ID), Enc: enc, Sealed: ct}, nil
}

// UnsealOwnerAuth opens a recorded owner authorisation with the escrow
// private key. The record's device serial, chip and work order must be
// the ones it was sealed for (ErrUnseal otherwise).
func UnsealOwnerAuth(k *EscrowPrivateKey, rec db.OwnerAuthRecord) (OwnerAuth, error) {
	if rec.Policy != db.OwnerAuthSealed {
		return nil, fmt.Errorf("%w: record %d of %s holds no sealed value (policy %s: the owner hierarchy was left as it was)", ErrUnseal, rec.ID, rec.DeviceSerial, rec.Policy)
	}
	if rec.Suite != OwnerAuthSuite {
		return nil, fmt.Errorf("%w: record %d: unknown suite %q", ErrUnseal, rec.ID, rec.Suite)
	}
	if !bytes.Equal(rec.EscrowKeyID, k.Public.ID) {
		return nil, fmt.Errorf("%w: record %d was sealed to escrow key %x, not this one (%x)", ErrUnseal, rec.ID, rec.EscrowKeyID[:8], k.Public.ID[:8])
	}
	priv, err := hpke.NewDHKEMPrivateKey(k.priv)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnseal, err)
	}
	kdf, aead := ownerAuthSuite()
	r, err := hpke.NewRecipient(rec.Enc, priv, kdf, aead, ownerAuthInfo)
	if err != nil {
		return nil, fmt.Errorf("%w: record %d: %w", ErrUnseal, rec.ID, err)
	}
	pt, err := r.Open(OwnerAuthBinding{Serial: rec.DeviceSerial, ChipID: rec.ChipID, WorkOrder: rec.WorkOrder}.aad(), rec.Sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: record %d of %s: the blob or its binding was altered", ErrUnseal, rec.ID, rec.DeviceSerial)
	}
	return OwnerAuth(pt), nil
}

// OwnerAuthPolicy is station.yaml's owner_auth: seal to an escrow key, or
// the explicit, recorded policy none (the owner hierarchy stays as it is).
// The zero value is neither: a work order that installs firmware trust on
// a TPM is refused until one is configured.
type OwnerAuthPolicy struct {
	// Escrow is the escrow public key (escrow_public_key).
	Escrow *EscrowKey
	// None is policy: none.
	None bool
}

// FaultOwnerAuthSet is the kill point right after the chip took the new
// owner authorisation, before the station records it set: the record is
// still pending, and the next run must treat the chip as set.
const FaultOwnerAuthSet = "after-owner-auth-set"

// refusedBeforeChip reports whether an agent's error reply to
// SetOwnerAuth proves that no TPM command ran: the request was refused as
// malformed, unsupported, too large or of an unknown version.
func refusedBeforeChip(c proto.ErrorCode) bool {
	switch c {
	case proto.ErrBadRequest, proto.ErrUnsupported, proto.ErrTooLarge, proto.ErrVersion:
		return true
	}
	return false
}

// ownerAuthStateText says what a record's state means for the chip.
func ownerAuthStateText(state string) string {
	switch state {
	case db.OwnerAuthPending:
		return "sealed, maybe set: the run stopped after recording it"
	case db.OwnerAuthSet:
		return "set on the chip"
	case db.OwnerAuthAbandoned:
		return "abandoned: never reached the chip"
	case db.OwnerAuthStateNone:
		return "policy none: owner hierarchy left as it was"
	}
	return state
}

// OwnerAuthStateText is ownerAuthStateText for the command line.
func OwnerAuthStateText(state string) string { return ownerAuthStateText(state) }

// ownerAuthStore is what the owner-auth step needs from the database
// beyond Store (db.Store has it).
type ownerAuthStore interface {
	RecordOwnerAuth(ctx context.Context, r db.OwnerAuthRecord) (int64, error)
	MarkOwnerAuthSet(ctx context.Context, id int64) error
	MarkOwnerAuthAbandoned(ctx context.Context, id int64, reason string) error
	OwnerAuths(ctx context.Context, deviceSerial string) ([]db.OwnerAuthRecord, error)
}

// UnsealRecorded is `wsc owner-auth unseal`: it opens the latest sealed
// owner authorisation of serial with the escrow key and writes an audit
// row (who, which record — never the value) before returning it.
func UnsealRecorded(ctx context.Context, st *db.Store, serial, actor string, k *EscrowPrivateKey) (OwnerAuth, *db.OwnerAuthRecord, error) {
	recs, err := st.OwnerAuths(ctx, serial)
	if err != nil {
		return nil, nil, err
	}
	// The value the chip may hold is the newest set or pending one; an
	// abandoned record never reached the chip (opened only when there is
	// nothing else, e.g. to check a record).
	var rec *db.OwnerAuthRecord
	for i := len(recs) - 1; i >= 0 && rec == nil; i-- {
		if recs[i].MaybeSet() {
			rec = &recs[i]
		}
	}
	for i := len(recs) - 1; i >= 0 && rec == nil; i-- {
		if recs[i].Policy == db.OwnerAuthSealed {
			rec = &recs[i]
		}
	}
	if rec == nil {
		return nil, nil, fmt.Errorf("%w: %s has no sealed owner authorisation recorded in this database", ErrUnseal, serial)
	}
	auth, err := UnsealOwnerAuth(k, *rec)
	if err != nil {
		_ = st.Audit(ctx, "owner_auth.unseal-refused", actor, map[string]any{"device": serial, "record": rec.ID, "error": err.Error()})
		return nil, nil, err
	}
	if err := st.Audit(ctx, "owner_auth.unseal", actor, map[string]any{"device": serial, "record": rec.ID, "state": rec.State}); err != nil {
		return nil, nil, fmt.Errorf("record the unseal in the ledger: %w", err)
	}
	return auth, rec, nil
}
