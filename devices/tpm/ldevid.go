package tpm

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// The code-signing key (an LDevID, IEEE 802.1AR): a second unrestricted
// ECC P-256 signing key under the SRK, at Config.LDevIDHandle, certified by
// the IAK exactly like the IDevID, with its own certificate chain at
// Config.LDevIDNVBase. The IDevID authenticates the device; the LDevID
// signs firmware, so the two certificates carry different EKUs.

// SigningEvidence is what CreateSigningKey proves to the station.
type SigningEvidence struct {
	// IAKPublic and LDevIDPublic are marshalled TPM2B_PUBLIC structures.
	IAKPublic, LDevIDPublic []byte
	// CertifyInfo and CertifySignature are TPM2_Certify(LDevID by IAK,
	// qualifyingData = nonce), marshalled as in Evidence.
	CertifyInfo, CertifySignature []byte
	// Created is false when the key already existed.
	Created bool
}

// CreateSigningKey creates the LDevID if absent (the IAK must exist:
// ErrNoKeys before CreateKeys) and certifies it with the IAK over nonce.
func (d *Device) CreateSigningKey(nonce []byte) (*SigningEvidence, error) {
	return d.CreateSigningKeyWithPolicy(nonce, nil)
}

// CreateSigningKeyWithPolicy is CreateSigningKey for a key bound to
// measured boot: authPolicy (SigningKeyAuthPolicy) becomes the key's
// authPolicy and userWithAuth is cleared, so only a policy session signs.
// An existing key is reused only if its authPolicy is authPolicy.
func (d *Device) CreateSigningKeyWithPolicy(nonce, authPolicy []byte) (*SigningEvidence, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, err
	}
	if len(nonce) > 64 {
		return nil, fmt.Errorf("create signing key: nonce of %d bytes, at most 64", len(nonce))
	}
	iak, ok, err := d.persistedKey(d.cfg.IAKHandle, true)
	if err != nil {
		return nil, fmt.Errorf("create signing key: iak: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("create signing key: %w", ErrNoKeys)
	}
	ld, created, err := d.ensureSigningKey(authPolicy)
	if err != nil {
		return nil, err
	}
	cert, err := tpm2.Certify{
		ObjectHandle:   ld.auth(),
		SignHandle:     iak.auth(),
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme:       ecdsaSHA256,
	}.Execute(d.tpm)
	if err != nil {
		return nil, fmt.Errorf("create signing key: certify ldevid: %w", err)
	}
	return &SigningEvidence{IAKPublic: tpm2.Marshal(iak.public), LDevIDPublic: tpm2.Marshal(ld.public),
		CertifyInfo: tpm2.Marshal(cert.CertifyInfo), CertifySignature: tpm2.Marshal(cert.Signature), Created: created}, nil
}

// EnsureSigningKey creates the LDevID with authPolicy (nil: password use)
// if absent, without certifying it, and reports whether it created it. It
// is CreateSigningKeyWithPolicy's key generation on its own: an agent makes
// the key (the chip's longest operation) while the line is busy, and
// certifies it in a second call, so that a request arriving in between
// waits for one operation, not for both.
func (d *Device) EnsureSigningKey(authPolicy []byte) (created bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return false, err
	}
	_, created, err = d.ensureSigningKey(authPolicy)
	return created, err
}

// ensureSigningKey returns the LDevID, created with authPolicy if absent
// (d.mu held).
func (d *Device) ensureSigningKey(authPolicy []byte) (key, bool, error) {
	ld, ok, err := d.persistedKey(d.cfg.LDevIDHandle, false)
	if err != nil {
		return key{}, false, fmt.Errorf("create signing key: ldevid: %w", err)
	}
	if ok {
		pub, err := ld.public.Contents()
		if err != nil {
			return key{}, false, fmt.Errorf("create signing key: ldevid: %w", err)
		}
		if !bytes.Equal(pub.AuthPolicy.Buffer, authPolicy) || bool(pub.ObjectAttributes.UserWithAuth) != (len(authPolicy) == 0) {
			return key{}, false, fmt.Errorf("create signing key: the existing key at %#x has another authorization policy: %w", d.cfg.LDevIDHandle, ErrHandleInUse)
		}
		return ld, false, nil
	}
	srk, err := d.srk()
	if err != nil {
		return key{}, false, fmt.Errorf("create signing key: %w", err)
	}
	tmpl := eccSigningTemplate(false)
	if len(authPolicy) > 0 {
		if len(authPolicy) != 32 {
			return key{}, false, fmt.Errorf("create signing key: %w: auth policy of %d bytes, want a SHA-256 digest", ErrPolicy, len(authPolicy))
		}
		tmpl.AuthPolicy = tpm2.TPM2BDigest{Buffer: authPolicy}
		tmpl.ObjectAttributes.UserWithAuth = false
	}
	if err := d.createPersisted(srk, tmpl, d.cfg.LDevIDHandle); err != nil {
		return key{}, false, fmt.Errorf("create signing key: %w", err)
	}
	if ld, _, err = d.persistedKey(d.cfg.LDevIDHandle, false); err != nil {
		return key{}, false, fmt.Errorf("create signing key: ldevid: %w", err)
	}
	return ld, true, nil
}

// SignDigestLDevID signs a SHA-256 digest with the code-signing key.
func (d *Device) SignDigestLDevID(digest []byte) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, err
	}
	return d.signDigestWith(d.cfg.LDevIDHandle, digest)
}

// SigningSigner returns the code-signing key as a crypto.Signer.
func (d *Device) SigningSigner() (crypto.Signer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, err
	}
	ld, ok, err := d.persistedKey(d.cfg.LDevIDHandle, false)
	if err != nil {
		return nil, fmt.Errorf("ldevid: %w", err)
	}
	if !ok {
		return nil, ErrNoKeys
	}
	pub, err := ecdsaPublic(ld.public)
	if err != nil {
		return nil, fmt.Errorf("ldevid public: %w", err)
	}
	return &tpmSigner{d: d, pub: pub, handle: d.cfg.LDevIDHandle}, nil
}

// SigningCSR returns a PKCS#10 request signed by the code-signing key.
func (d *Device) SigningCSR(subject pkix.Name) ([]byte, error) {
	s, err := d.SigningSigner()
	if err != nil {
		return nil, fmt.Errorf("signing csr: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject, SignatureAlgorithm: x509.ECDSAWithSHA256}, s)
	if err != nil {
		return nil, fmt.Errorf("signing csr: %w", err)
	}
	return der, nil
}

// WriteSigningChain stores the code-signing key's chain (as WriteChain,
// at Config.LDevIDNVBase) and, with lock, write-locks it.
func (d *Device) WriteSigningChain(chain [][]byte, lock bool) ([]uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, err
	}
	d.chainBase = d.cfg.LDevIDNVBase
	defer func() { d.chainBase = 0 }()
	idx, err := d.writeChain(chain)
	if errors.Is(err, tpm2.TPMRCNVLocked) {
		// A locked chain is kept if it is the same one (a resumed end of
		// line re-delivers the certificate the key already has).
		if cur, cidx, rerr := d.readChain(); rerr == nil && chainsEqual(cur, chain) {
			return cidx, nil
		}
		return nil, err
	}
	if err != nil || !lock {
		return idx, err
	}
	// The chain was just written from these bytes and the station compares
	// their SHA-256; locking needs only the indices (no read-back: three
	// NV reads less on a real chip).
	return idx, d.lockIndices(idx)
}

func chainsEqual(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// ReadSigningChain reads the code-signing key's chain (ErrNoChain when
// none is stored).
func (d *Device) ReadSigningChain() ([][]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, err
	}
	d.chainBase = d.cfg.LDevIDNVBase
	defer func() { d.chainBase = 0 }()
	chain, _, err := d.readChain()
	return chain, err
}
