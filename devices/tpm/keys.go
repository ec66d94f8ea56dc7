package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Evidence is what CreateKeys proves to the station.
type Evidence struct {
	// IAKPublic and IDevIDPublic are marshalled TPM2B_PUBLIC structures.
	IAKPublic, IDevIDPublic []byte
	// CertifyInfo is the marshalled TPM2B_ATTEST (2-byte size, then the
	// TPMS_ATTEST the signature covers) of TPM2_Certify(IDevID by IAK,
	// qualifyingData = nonce).
	CertifyInfo []byte
	// CertifySignature is the marshalled TPMT_SIGNATURE (ECDSA-SHA256 by the
	// IAK) over the TPMS_ATTEST.
	CertifySignature []byte
	// Created is false when both keys already existed and were reused.
	Created bool
}

// eccSigningTemplate is an ECC P-256 ECDSA-SHA256 signing key, never
// decrypting, that cannot leave this TPM (fixedTPM|fixedParent) and whose
// private part the TPM generated (sensitiveDataOrigin).
func eccSigningTemplate(restricted bool) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			Restricted:          restricted,
			SignEncrypt:         true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

// IAKTemplate returns the IAK template: restricted ECC P-256 ECDSA-SHA256
// signing key, fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth.
func IAKTemplate() tpm2.TPMTPublic { return eccSigningTemplate(true) }

// IDevIDTemplate returns the IDevID template: unrestricted sign-only ECC
// P-256 ECDSA-SHA256 key, fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth.
func IDevIDTemplate() tpm2.TPMTPublic { return eccSigningTemplate(false) }

var ecdsaSHA256 = tpm2.TPMTSigScheme{
	Scheme:  tpm2.TPMAlgECDSA,
	Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
}

// isOurKey reports whether pub has exactly the security-relevant shape of
// the template (so a foreign key at our handle is never used or evicted).
func isOurKey(pub *tpm2.TPMTPublic, restricted bool) bool {
	a := pub.ObjectAttributes
	if pub.Type != tpm2.TPMAlgECC || pub.NameAlg != tpm2.TPMAlgSHA256 ||
		!a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || !a.SignEncrypt || a.Decrypt ||
		a.Restricted != restricted {
		return false
	}
	p, err := pub.Parameters.ECCDetail()
	if err != nil || p.CurveID != tpm2.TPMECCNistP256 || p.Scheme.Scheme != tpm2.TPMAlgECDSA {
		return false
	}
	return true
}

// key is a persistent key with its Name (needed for authorization).
type key struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	public tpm2.TPM2BPublic
}

func (k key) auth() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: tpm2.PasswordAuth(nil)}
}

// persistedKey reads the key at h; ok is false when h is empty.
func (d *Device) persistedKey(h uint32, restricted bool) (key, bool, error) {
	rp, found, err := d.readPublic(tpm2.TPMHandle(h))
	if err != nil || !found {
		return key{}, false, err
	}
	pub, err := rp.OutPublic.Contents()
	if err != nil {
		return key{}, false, fmt.Errorf("persistent %#x: %w", h, err)
	}
	if !isOurKey(pub, restricted) {
		return key{}, false, fmt.Errorf("persistent %#x: %w", h, ErrHandleInUse)
	}
	return key{handle: tpm2.TPMHandle(h), name: rp.Name, public: rp.OutPublic}, true, nil
}

// srk returns the persistent storage primary, creating it from the TCG ECC
// P-256 SRK template (deterministic for the owner seed) if absent.
func (d *Device) srk() (key, error) {
	h := tpm2.TPMHandle(d.cfg.SRKHandle)
	rp, found, err := d.readPublic(h)
	if err != nil {
		return key{}, err
	}
	if found {
		pub, err := rp.OutPublic.Contents()
		if err != nil {
			return key{}, fmt.Errorf("srk %#x: %w", d.cfg.SRKHandle, err)
		}
		a := pub.ObjectAttributes
		if !a.Restricted || !a.Decrypt || a.SignEncrypt || !a.FixedTPM {
			return key{}, fmt.Errorf("srk %#x is not a storage key: %w", d.cfg.SRKHandle, ErrHandleInUse)
		}
		return key{handle: h, name: rp.Name, public: rp.OutPublic}, nil
	}
	cp, err := tpm2.CreatePrimary{
		PrimaryHandle: d.ownerAuth(),
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(d.tpm)
	if err != nil {
		return key{}, fmt.Errorf("create srk: %w", err)
	}
	defer d.flush(cp.ObjectHandle)
	if err := d.persist(cp.ObjectHandle, cp.Name, h); err != nil {
		return key{}, fmt.Errorf("persist srk: %w", err)
	}
	rp, found, err = d.readPublic(h)
	if err != nil {
		return key{}, fmt.Errorf("read persisted srk: %w", err)
	}
	if !found {
		return key{}, fmt.Errorf("srk %#x missing right after evict control", d.cfg.SRKHandle)
	}
	return key{handle: h, name: rp.Name, public: rp.OutPublic}, nil
}

func (d *Device) persist(obj tpm2.TPMHandle, name tpm2.TPM2BName, at tpm2.TPMHandle) error {
	_, err := tpm2.EvictControl{
		Auth:             d.ownerAuth(),
		ObjectHandle:     tpm2.NamedHandle{Handle: obj, Name: name},
		PersistentHandle: at,
	}.Execute(d.tpm)
	if err != nil {
		return fmt.Errorf("evict control to %#x: %w", uint32(at), err)
	}
	return nil
}

// createPersisted creates a key under the SRK and persists it at h.
func (d *Device) createPersisted(srk key, tmpl tpm2.TPMTPublic, h uint32) error {
	cr, err := tpm2.Create{
		ParentHandle: srk.auth(),
		InPublic:     tpm2.New2B(tmpl),
	}.Execute(d.tpm)
	if err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	ld, err := tpm2.Load{
		ParentHandle: srk.auth(),
		InPrivate:    cr.OutPrivate,
		InPublic:     cr.OutPublic,
	}.Execute(d.tpm)
	if err != nil {
		return fmt.Errorf("load key: %w", err)
	}
	defer d.flush(ld.ObjectHandle)
	return d.persist(ld.ObjectHandle, ld.Name, tpm2.TPMHandle(h))
}

// CreateKeys makes sure the IAK and the IDevID exist at their persistent
// handles and certifies the IDevID with the IAK (TPM2_Certify, qualifying
// data = nonce, at most 64 bytes). Keys already present are reused
// (Created=false when both were), so a retried CreateKeys never makes a
// second key; a handle holding a key of another shape gives ErrHandleInUse.
func (d *Device) CreateKeys(nonce []byte) (*Evidence, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, err
	}
	if len(nonce) > 64 {
		return nil, fmt.Errorf("create keys: nonce of %d bytes, at most 64", len(nonce))
	}
	created := false
	var srk *key
	for _, k := range []struct {
		name       string
		h          uint32
		restricted bool
	}{{"iak", d.cfg.IAKHandle, true}, {"idevid", d.cfg.IDevIDHandle, false}} {
		_, found, err := d.persistedKey(k.h, k.restricted)
		if err != nil {
			return nil, fmt.Errorf("create keys: %s: %w", k.name, err)
		}
		if found {
			continue
		}
		if srk == nil {
			s, err := d.srk()
			if err != nil {
				return nil, fmt.Errorf("create keys: %w", err)
			}
			srk = &s
		}
		if err := d.createPersisted(*srk, eccSigningTemplate(k.restricted), k.h); err != nil {
			return nil, fmt.Errorf("create keys: %s: %w", k.name, err)
		}
		created = true
	}
	iak, idev, err := d.keys()
	if err != nil {
		return nil, fmt.Errorf("create keys: %w", err)
	}
	cert, err := tpm2.Certify{
		ObjectHandle:   idev.auth(),
		SignHandle:     iak.auth(),
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme:       ecdsaSHA256,
	}.Execute(d.tpm)
	if err != nil {
		return nil, fmt.Errorf("create keys: certify idevid: %w", err)
	}
	return &Evidence{
		IAKPublic:        tpm2.Marshal(iak.public),
		IDevIDPublic:     tpm2.Marshal(idev.public),
		CertifyInfo:      tpm2.Marshal(cert.CertifyInfo),
		CertifySignature: tpm2.Marshal(cert.Signature),
		Created:          created,
	}, nil
}

// keys returns IAK and IDevID, ErrNoKeys if either is missing.
func (d *Device) keys() (iak, idev key, err error) {
	iak, ok1, err := d.persistedKey(d.cfg.IAKHandle, true)
	if err != nil {
		return key{}, key{}, fmt.Errorf("iak: %w", err)
	}
	idev, ok2, err := d.persistedKey(d.cfg.IDevIDHandle, false)
	if err != nil {
		return key{}, key{}, fmt.Errorf("idevid: %w", err)
	}
	if !ok1 || !ok2 {
		return key{}, key{}, ErrNoKeys
	}
	return iak, idev, nil
}

func ecdsaPublic(p tpm2.TPM2BPublic) (*ecdsa.PublicKey, error) {
	pub, err := p.Contents()
	if err != nil {
		return nil, err
	}
	k, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("not an ecdsa key")
	}
	return ek, nil
}

// SignDigest signs a SHA-256 digest (32 bytes) with the IDevID (TPM2_Sign,
// NULL hash-check ticket: the key is unrestricted) and returns an ASN.1
// ECDSA signature as ecdsa.VerifyASN1 accepts.
func (d *Device) SignDigest(digest []byte) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, err
	}
	return d.signDigest(digest)
}

func (d *Device) signDigest(digest []byte) ([]byte, error) {
	return d.signDigestWith(d.cfg.IDevIDHandle, digest)
}

// signDigestWith signs with the unrestricted key persisted at h.
func (d *Device) signDigestWith(h uint32, digest []byte) ([]byte, error) {
	if len(digest) != 32 {
		return nil, fmt.Errorf("sign digest: %d bytes, want a 32-byte SHA-256 digest", len(digest))
	}
	idev, ok, err := d.persistedKey(h, false)
	if err != nil {
		return nil, fmt.Errorf("sign digest: key %#x: %w", h, err)
	}
	if !ok {
		return nil, fmt.Errorf("sign digest: %w", ErrNoKeys)
	}
	rsp, err := tpm2.Sign{
		KeyHandle:  idev.auth(),
		Digest:     tpm2.TPM2BDigest{Buffer: digest},
		InScheme:   ecdsaSHA256,
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(d.tpm)
	if err != nil {
		return nil, fmt.Errorf("sign digest: %w", err)
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("sign digest: %w", err)
	}
	return asn1ECDSA(sig.SignatureR.Buffer, sig.SignatureS.Buffer)
}

// asn1ECDSA encodes an ECDSA signature as ASN.1 DER.
func asn1ECDSA(r, s []byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(new(big.Int).SetBytes(r))
		b.AddASN1BigInt(new(big.Int).SetBytes(s))
	})
	return b.Bytes()
}

// tpmSigner is the IDevID as a crypto.Signer.
type tpmSigner struct {
	d   *Device
	pub *ecdsa.PublicKey
	// handle is the key's persistent handle (0: the IDevID).
	handle uint32
}

// Signer returns the IDevID as a crypto.Signer (ECDSA P-256; digests must
// be SHA-256). ErrNoKeys before CreateKeys.
func (d *Device) Signer() (crypto.Signer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, err
	}
	return d.signer()
}

func (d *Device) signer() (*tpmSigner, error) {
	idev, ok, err := d.persistedKey(d.cfg.IDevIDHandle, false)
	if err != nil {
		return nil, fmt.Errorf("idevid: %w", err)
	}
	if !ok {
		return nil, ErrNoKeys
	}
	pub, err := ecdsaPublic(idev.public)
	if err != nil {
		return nil, fmt.Errorf("idevid public: %w", err)
	}
	return &tpmSigner{d: d, pub: pub}, nil
}

// Public returns the IDevID public key (*ecdsa.PublicKey).
func (s *tpmSigner) Public() crypto.PublicKey { return s.pub }

// Sign signs a SHA-256 digest inside the TPM; rand is not used.
func (s *tpmSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != crypto.SHA256 {
		return nil, fmt.Errorf("tpm signer: hash %v not supported, use SHA-256", opts.HashFunc())
	}
	if s.handle != 0 {
		return s.d.SignDigestLDevID(digest)
	}
	return s.d.SignDigest(digest)
}

// CSR returns a PKCS#10 certificate request (DER) for the IDevID, signed
// inside the TPM (ECDSA-SHA256). The station takes only the key from it:
// names come from station data, never from the CSR.
func (d *Device) CSR(subject pkix.Name) ([]byte, error) {
	d.mu.Lock()
	_, err := d.transport()
	var s *tpmSigner
	if err == nil {
		s, err = d.signer()
	}
	d.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:            subject,
		SignatureAlgorithm: x509.ECDSAWithSHA256,
	}, s)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	return der, nil
}
