package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"

	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/tpm"
)

// SigningKeyEvidence is CreateSigningKey's result: the code-signing key
// (LDevID), its certification by the attestation key, and a CSR it signed.
type SigningKeyEvidence struct {
	IAKPublic, LDevIDPublic       []byte
	CertifyInfo, CertifySignature []byte
	CSR                           []byte
	Created                       bool
}

// SigningKeyStore is the optional capability of backends with a separate
// code-signing key (IEEE 802.1AR LDevID): the IDevID authenticates the
// device, the signing key signs firmware.
type SigningKeyStore interface {
	// CreateSigningKey creates or reuses the key; a non-nil fleet key
	// binds it to measured boot (tpm.SigningKeyAuthPolicy(fleet, policyRef)).
	CreateSigningKey(ctx context.Context, nonce []byte, fleet *ecdsa.PublicKey, policyRef []byte) (*SigningKeyEvidence, error)
	InstallSigningChain(ctx context.Context, chain [][]byte, lock bool) ([]uint32, error)
	ReadSigningChain(ctx context.Context) ([][]byte, error)
	SignDigestWithSigningKey(ctx context.Context, digest []byte) ([]byte, error)
}

func (h *Handler) handleSigning(ctx context.Context, t proto.MsgType, payload []byte) (resp any, ok bool, err error) {
	if t == proto.MsgSignWithOwnerPolicy {
		resp, err := h.signWithOwnerPolicy(ctx, payload)
		return resp, true, err
	}
	if t != proto.MsgCreateSigningKey && t != proto.MsgInstallSigningChain && t != proto.MsgSignWithSigningKey {
		return nil, false, nil
	}
	s, isS := h.b.(SigningKeyStore)
	if !isS {
		return nil, true, &proto.Error{Code: proto.ErrUnsupported, Message: "this device has no separate code-signing key"}
	}
	if t == proto.MsgCreateSigningKey {
		var req proto.CreateSigningKeyRequest
		if err := proto.Unmarshal(payload, &req); err != nil {
			return nil, true, badRequest(err)
		}
		if len(req.Nonce) < 16 || len(req.Nonce) > 64 {
			return nil, true, &proto.Error{Code: proto.ErrBadRequest, Message: fmt.Sprintf("nonce must be 16 to 64 bytes, got %d", len(req.Nonce))}
		}
		fleet, err := parseFleetKey(req.FleetKey, req.PolicyRef)
		if err != nil {
			return nil, true, &proto.Error{Code: proto.ErrBadRequest, Message: err.Error()}
		}
		ev, err := s.CreateSigningKey(ctx, req.Nonce, fleet, req.PolicyRef)
		if err != nil {
			return nil, true, deviceErr("create signing key", err)
		}
		h.log.Info("signing key ready", "created", ev.Created)
		return &proto.CreateSigningKeyResponse{IAKPublic: ev.IAKPublic, LDevIDPublic: ev.LDevIDPublic, CertifyInfo: ev.CertifyInfo,
			CertifySignature: ev.CertifySignature, CSR: ev.CSR, Created: ev.Created}, true, nil
	}
	if t == proto.MsgSignWithSigningKey {
		var req proto.SignDigestRequest
		if err := proto.Unmarshal(payload, &req); err != nil {
			return nil, true, badRequest(err)
		}
		if len(req.Digest) != sha256.Size {
			return nil, true, &proto.Error{Code: proto.ErrBadRequest, Message: fmt.Sprintf("digest must be %d bytes, got %d", sha256.Size, len(req.Digest))}
		}
		sig, err := s.SignDigestWithSigningKey(ctx, req.Digest)
		if err != nil {
			return nil, true, deviceErr("sign with the signing key", err)
		}
		return &proto.SignDigestResponse{Signature: sig}, true, nil
	}
	var req proto.InstallChainRequest
	if err := proto.Unmarshal(payload, &req); err != nil {
		return nil, true, badRequest(err)
	}
	if len(req.Chain) == 0 {
		return nil, true, &proto.Error{Code: proto.ErrBadRequest, Message: "empty certificate chain"}
	}
	idx, err := s.InstallSigningChain(ctx, req.Chain, req.Lock)
	if err != nil {
		return nil, true, deviceErr("install signing chain", err)
	}
	return &proto.InstallChainResponse{SHA256: chainDigest(req.Chain), NVIndices: idx}, true, nil
}

// OwnerPolicySigner is the optional capability of backends whose
// code-signing key may be bound to measured boot and that sign with it
// through the PolicySecret(owner) branch, with the owner authorisation the
// backend holds for its chip (never one sent by the station). An agent
// whose backend has it announces proto.CapSigningKeyPolicy.
type OwnerPolicySigner interface {
	SignDigestWithOwnerPolicy(ctx context.Context, digest []byte, fleet *ecdsa.PublicKey, policyRef []byte) ([]byte, error)
}

// signWithOwnerPolicy answers MsgSignWithOwnerPolicy.
func (h *Handler) signWithOwnerPolicy(ctx context.Context, payload []byte) (any, error) {
	s, ok := h.b.(OwnerPolicySigner)
	if !ok {
		return nil, &proto.Error{Code: proto.ErrUnsupported, Message: "this device cannot sign with a signing key bound to measured boot"}
	}
	var req proto.SignWithOwnerPolicyRequest
	if err := proto.Unmarshal(payload, &req); err != nil {
		return nil, badRequest(err)
	}
	if len(req.Digest) != sha256.Size {
		return nil, &proto.Error{Code: proto.ErrBadRequest, Message: fmt.Sprintf("digest must be %d bytes, got %d", sha256.Size, len(req.Digest))}
	}
	fleet, err := parseFleetKey(req.FleetKey, req.PolicyRef)
	if err != nil || fleet == nil {
		return nil, &proto.Error{Code: proto.ErrBadRequest, Message: "fleet key must be an ECDSA P-256 public key (PKIX DER) and the policy reference at most 32 bytes"}
	}
	sig, err := s.SignDigestWithOwnerPolicy(ctx, req.Digest, fleet, req.PolicyRef)
	if err != nil {
		return nil, deviceErr("sign with the owner policy", err)
	}
	return &proto.SignDigestResponse{Signature: sig}, nil
}

// parseFleetKey parses a fleet policy key (PKIX DER, ECDSA P-256) and
// checks the policy reference's length; nil for an empty key.
func parseFleetKey(der, policyRef []byte) (*ecdsa.PublicKey, error) {
	if len(der) == 0 {
		if len(policyRef) != 0 {
			return nil, errors.New("a policy reference without a fleet key")
		}
		return nil, nil
	}
	k, err := x509.ParsePKIXPublicKey(der)
	fk, ok := k.(*ecdsa.PublicKey)
	if err != nil || !ok || fk.Curve != elliptic.P256() || len(policyRef) > 32 {
		return nil, errors.New("fleet key must be an ECDSA P-256 public key (PKIX DER) and the policy reference at most 32 bytes")
	}
	return fk, nil
}

// SignDigestWithOwnerPolicy implements OwnerPolicySigner.
func (b *TPMBackend) SignDigestWithOwnerPolicy(_ context.Context, digest []byte, fleet *ecdsa.PublicKey, policyRef []byte) ([]byte, error) {
	b.waitAheadKey()
	return b.dev.SignDigestLDevIDOwnerPolicy(digest, fleet, policyRef)
}

// CreateSigningKey implements SigningKeyStore. A key made ahead for the
// same nonce and binding is handed over; otherwise the key is created (or
// reused) and certified now.
func (b *TPMBackend) CreateSigningKey(_ context.Context, nonce []byte, fleet *ecdsa.PublicKey, policyRef []byte) (*SigningKeyEvidence, error) {
	if ev := b.takeAheadKey(nonce, fleet, policyRef); ev != nil {
		return ev, nil
	}
	return b.createSigningKey(nonce, fleet, policyRef, func() {})
}

// createSigningKey makes the key (one TPM operation: the key generation),
// then certifies it and has it sign its CSR (two more), calling between
// before the second and the third (where a key made ahead lets requests go
// first).
func (b *TPMBackend) createSigningKey(nonce []byte, fleet *ecdsa.PublicKey, policyRef []byte, between func()) (*SigningKeyEvidence, error) {
	var authPolicy []byte
	if fleet != nil {
		var err error
		if authPolicy, err = tpm.SigningKeyAuthPolicy(fleet, policyRef); err != nil {
			return nil, err
		}
	}
	created, err := b.dev.EnsureSigningKey(authPolicy)
	if err != nil {
		return nil, err
	}
	between()
	ev, err := b.dev.CreateSigningKeyWithPolicy(nonce, authPolicy)
	if err != nil {
		return nil, err
	}
	ev.Created = ev.Created || created
	between()
	subject := pkix.Name{SerialNumber: b.serial}
	var csr []byte
	if fleet == nil {
		csr, err = b.dev.SigningCSR(subject)
	} else {
		csr, err = b.dev.SigningCSRWithOwnerPolicy(subject, fleet, policyRef)
	}
	if err != nil {
		return nil, err
	}
	return &SigningKeyEvidence{IAKPublic: ev.IAKPublic, LDevIDPublic: ev.LDevIDPublic, CertifyInfo: ev.CertifyInfo,
		CertifySignature: ev.CertifySignature, CSR: csr, Created: ev.Created}, nil
}

// InstallSigningChain implements SigningKeyStore.
func (b *TPMBackend) InstallSigningChain(_ context.Context, chain [][]byte, lock bool) ([]uint32, error) {
	b.waitAheadKey()
	return b.dev.WriteSigningChain(chain, lock)
}

// ReadSigningChain implements SigningKeyStore.
func (b *TPMBackend) ReadSigningChain(context.Context) ([][]byte, error) {
	b.waitAheadKey()
	return b.dev.ReadSigningChain()
}

// SignDigestWithSigningKey implements SigningKeyStore.
func (b *TPMBackend) SignDigestWithSigningKey(_ context.Context, digest []byte) ([]byte, error) {
	b.waitAheadKey()
	return b.dev.SignDigestLDevID(digest)
}

// PolicySigner is the optional capability of backends whose signing key
// may be bound to measured boot: they sign with a fleet-signed PCR policy.
type PolicySigner interface {
	SignDigestWithPolicy(ctx context.Context, digest []byte, p *tpm.SignedPCRPolicy) ([]byte, error)
}

// SignDigestWithPolicy implements PolicySigner.
func (b *TPMBackend) SignDigestWithPolicy(_ context.Context, digest []byte, p *tpm.SignedPCRPolicy) ([]byte, error) {
	b.waitAheadKey()
	return b.dev.SignDigestLDevIDWithPolicy(digest, p)
}
