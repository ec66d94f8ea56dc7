package agent

import (
	"context"
	"crypto/x509/pkix"
	"fmt"

	"github.com/wsc-project/wsc/devices/proto"
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
	CreateSigningKey(ctx context.Context, nonce []byte) (*SigningKeyEvidence, error)
	InstallSigningChain(ctx context.Context, chain [][]byte, lock bool) ([]uint32, error)
	ReadSigningChain(ctx context.Context) ([][]byte, error)
	SignDigestWithSigningKey(ctx context.Context, digest []byte) ([]byte, error)
}

func (h *Handler) handleSigning(ctx context.Context, t proto.MsgType, payload []byte) (resp any, ok bool, err error) {
	if t != proto.MsgCreateSigningKey && t != proto.MsgInstallSigningChain {
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
		ev, err := s.CreateSigningKey(ctx, req.Nonce)
		if err != nil {
			return nil, true, deviceErr("create signing key", err)
		}
		h.log.Info("signing key ready", "created", ev.Created)
		return &proto.CreateSigningKeyResponse{IAKPublic: ev.IAKPublic, LDevIDPublic: ev.LDevIDPublic, CertifyInfo: ev.CertifyInfo,
			CertifySignature: ev.CertifySignature, CSR: ev.CSR, Created: ev.Created}, true, nil
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

// CreateSigningKey implements SigningKeyStore.
func (b *TPMBackend) CreateSigningKey(_ context.Context, nonce []byte) (*SigningKeyEvidence, error) {
	ev, err := b.dev.CreateSigningKey(nonce)
	if err != nil {
		return nil, err
	}
	csr, err := b.dev.SigningCSR(pkix.Name{SerialNumber: b.serial})
	if err != nil {
		return nil, err
	}
	return &SigningKeyEvidence{IAKPublic: ev.IAKPublic, LDevIDPublic: ev.LDevIDPublic, CertifyInfo: ev.CertifyInfo,
		CertifySignature: ev.CertifySignature, CSR: csr, Created: ev.Created}, nil
}

// InstallSigningChain implements SigningKeyStore.
func (b *TPMBackend) InstallSigningChain(_ context.Context, chain [][]byte, lock bool) ([]uint32, error) {
	return b.dev.WriteSigningChain(chain, lock)
}

// ReadSigningChain implements SigningKeyStore.
func (b *TPMBackend) ReadSigningChain(context.Context) ([][]byte, error) {
	return b.dev.ReadSigningChain()
}

// SignDigestWithSigningKey implements SigningKeyStore.
func (b *TPMBackend) SignDigestWithSigningKey(_ context.Context, digest []byte) ([]byte, error) {
	return b.dev.SignDigestLDevID(digest)
}
