//go:build cgo && pkcs11

package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"strings"

	"github.com/wsc-project/wsc/devices/pkcs11"
	"github.com/wsc-project/wsc/devices/proto"
)

// PKCS11Backend is the Backend of a device whose key store is a PKCS#11
// token (OP-TEE's PKCS#11 TA through libckteec, an SGX token, an HSM;
// SoftHSM2 in tests). The key pair is generated on the token, sensitive and
// not extractable; the chain is stored as certificate objects. A token has
// no endorsement key: the proof is the CSR signed on the token. Built only
// with cgo and the `pkcs11` tag.
type PKCS11Backend struct {
	tok    *pkcs11.Token
	serial string
	model  string
}

// OpenPKCS11Backend opens the token named by a PKCS#11 URI (see
// pkcs11.ParseURI), e.g.
// pkcs11:module-path=/usr/lib/libckteec.so.0;token=wsc?pin-source=file:/etc/wsc/pin.
// The device serial is "P11-" and the token's serial number.
func OpenPKCS11Backend(uri string) (*PKCS11Backend, error) {
	tok, err := pkcs11.Open(uri)
	if err != nil {
		return nil, err
	}
	info := tok.Info()
	model := strings.TrimSpace(info.Manufacturer + " " + info.Model)
	return &PKCS11Backend{tok: tok, serial: "P11-" + info.Serial, model: model}, nil
}

// Close closes the token session.
func (b *PKCS11Backend) Close() error { return b.tok.Close() }

// Token returns the open token.
func (b *PKCS11Backend) Token() *pkcs11.Token { return b.tok }

// Identity implements Backend.
func (b *PKCS11Backend) Identity() Identity {
	return Identity{Backend: "pkcs11", Serial: b.serial, Model: b.model, Firmware: Version, Capabilities: []string{"token-objects", "sign-digest"}}
}

func (b *PKCS11Backend) key() (*pkcs11.Key, bool, error) {
	k, err := b.tok.FindKey()
	if err == nil {
		return k, false, nil
	}
	if !errors.Is(err, pkcs11.ErrNoKey) {
		return nil, false, err
	}
	k, err = b.tok.GenerateKey()
	return k, true, err
}

// CreateKeys implements Backend: the key pair is found or generated on the
// token, its protection attributes are checked (sensitive, never
// extractable) and the CSR is signed on the token. IAK and Certify fields
// are empty; IDevIDPublic is the key as PKIX DER.
func (b *PKCS11Backend) CreateKeys(_ context.Context, _ []byte, _ string) (*KeyEvidence, error) {
	k, created, err := b.key()
	if err != nil {
		return nil, err
	}
	a, err := k.Attributes()
	if err != nil {
		return nil, err
	}
	if !a.Sensitive || a.Extractable || !a.NeverExtractable || !a.Token {
		return nil, fmt.Errorf("device key on the token is not protected (sensitive %v, extractable %v, never extractable %v): refusing to certify it", a.Sensitive, a.Extractable, a.NeverExtractable)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{SerialNumber: b.serial}}, k)
	if err != nil {
		return nil, fmt.Errorf("sign CSR on the token: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return nil, err
	}
	return &KeyEvidence{IDevIDPublic: pub, CSR: csr, Created: created}, nil
}

// InstallChain implements Backend: the leaf must carry the token's key;
// the chain is stored as certificate objects (read-only with lock).
func (b *PKCS11Backend) InstallChain(_ context.Context, chain [][]byte, lock bool) ([]uint32, error) {
	k, err := b.tok.FindKey()
	if err != nil {
		return nil, &proto.Error{Code: proto.ErrNotProvisioned, Message: "no device key on the token: " + err.Error()}
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, &proto.Error{Code: proto.ErrBadRequest, Message: "device certificate: " + err.Error()}
	}
	if lp, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !lp.Equal(k.Public()) {
		return nil, &proto.Error{Code: proto.ErrBadRequest, Message: "the device certificate does not carry the token's device key"}
	}
	if err := b.tok.WriteChain(chain, lock); err != nil {
		if errors.Is(err, pkcs11.ErrLocked) {
			return nil, &proto.Error{Code: proto.ErrLocked, Message: err.Error()}
		}
		return nil, err
	}
	locs := make([]uint32, len(chain))
	for i := range locs {
		locs[i] = uint32(i)
	}
	return locs, nil
}

// ReadChain implements Backend.
func (b *PKCS11Backend) ReadChain(context.Context) ([][]byte, error) {
	chain, err := b.tok.ReadChain()
	if errors.Is(err, pkcs11.ErrNoChain) {
		return nil, &proto.Error{Code: proto.ErrNotProvisioned, Message: err.Error()}
	}
	return chain, err
}

// SignDigest implements Backend.
func (b *PKCS11Backend) SignDigest(_ context.Context, digest []byte) ([]byte, error) {
	k, err := b.tok.FindKey()
	if err != nil {
		return nil, err
	}
	return k.Sign(rand.Reader, digest, nil)
}

// Lock implements Backend: the certificate objects become read-only. The
// key is already sensitive and non-extractable; PKCS#11 offers nothing
// irreversible beyond that.
func (b *PKCS11Backend) Lock(context.Context) error { return b.tok.LockChain() }
