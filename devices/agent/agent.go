// Package agent is the device side of wsc: it answers the station's requests
// (devices/proto) by calling the device's key store — a TPM 2.0, a secure
// element or a PKCS#11 token — through the Backend interface. It is the only
// code that touches the chip, and it never sees the CA or the database.
package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"

	"github.com/wsc-project/wsc/devices/proto"
)

// Identity is what a device says about itself in Hello.
type Identity struct {
	Backend      string // "tpm", "se" or "pkcs11"
	Serial       string
	Model        string
	Firmware     string
	Capabilities []string
}

// KeyEvidence is the result of CreateKeys: the public parts of the device
// keys, the proof that the signing key lives in the chip, and a CSR signed by
// that key. Private keys never appear here.
type KeyEvidence struct {
	IAKPublic        []byte
	IDevIDPublic     []byte
	CertifyInfo      []byte
	CertifySignature []byte
	CSR              []byte
	Created          bool
	// SEAttestation is a secure element's in-chip key attestation (nil
	// for other backends).
	SEAttestation *proto.SEAttestation
}

// Backend is a device's key store. Implementations keep private keys inside
// the chip; every method is called from one goroutine at a time.
type Backend interface {
	// Identity reports the device's identity.
	Identity() Identity
	// CreateKeys creates (or finds, if they already exist) the device keys,
	// proves them with nonce, and returns a CSR signed by the device key.
	CreateKeys(ctx context.Context, nonce []byte, subject string) (*KeyEvidence, error)
	// InstallChain stores the certificate chain (DER, leaf first) and
	// optionally write-locks it; it returns where it was stored.
	InstallChain(ctx context.Context, chain [][]byte, lock bool) (locations []uint32, err error)
	// ReadChain reads the stored chain back.
	ReadChain(ctx context.Context) ([][]byte, error)
	// SignDigest signs a SHA-256 digest with the device key (ASN.1 ECDSA).
	SignDigest(ctx context.Context, digest []byte) ([]byte, error)
	// Lock makes the stored chain and keys permanent as the backend allows.
	Lock(ctx context.Context) error
}

// Attester is the optional capability of backends with an endorsement key
// (TPMs): the station checks the EK certificate and has the device activate
// a credential bound to its attestation key.
type Attester interface {
	EK(ctx context.Context) (public, cert []byte, kind string, err error)
	ActivateCredential(ctx context.Context, credentialBlob, encryptedSecret []byte) ([]byte, error)
}

// Resetter is the optional capability of backends that can remove their
// keys and chain for re-work (TPM: evict the keys, undefine the chain NV).
type Resetter interface {
	Reset(ctx context.Context) error
}

// Handler answers protocol requests with a Backend. It implements
// proto.Handler.
type Handler struct {
	b   Backend
	log *slog.Logger
}

// NewHandler returns a handler over b. A nil logger discards logs.
func NewHandler(b Backend, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{b: b, log: log}
}

// Handle implements proto.Handler. Errors from the backend become protocol
// errors with a sentence the station can show; no key material is logged.
func (h *Handler) Handle(ctx context.Context, t proto.MsgType, payload []byte) (any, error) {
	h.log.Debug("request", "type", t.String(), "bytes", len(payload))
	if f, ok := h.b.(interface{ foreground() func() }); ok {
		defer f.foreground()()
	}
	if resp, ok, err := h.handleTrust(ctx, t, payload); ok {
		return resp, err
	}
	if resp, ok, err := h.handleSigning(ctx, t, payload); ok {
		return resp, err
	}
	switch t {
	case proto.MsgHello:
		var req proto.HelloRequest
		if err := proto.Unmarshal(payload, &req); err != nil {
			return nil, badRequest(err)
		}
		id := h.b.Identity()
		v, err := negotiate(req.Versions)
		if err != nil {
			return nil, err
		}
		caps := append([]string(nil), id.Capabilities...)
		if _, ok := h.b.(Attester); ok {
			caps = append(caps, "attest")
		}
		if _, ok := h.b.(Resetter); ok {
			caps = append(caps, "reset")
		}
		if _, ok := h.b.(TrustStore); ok {
			caps = append(caps, "trust-anchors")
		}
		if _, ok := h.b.(SigningKeyStore); ok {
			caps = append(caps, "signing-key")
			if _, ok := h.b.(Preparer); ok {
				caps = append(caps, "signing-key-ahead")
			}
		}
		if _, ok := h.b.(TrustStore); ok {
			if _, ok := h.b.(Preparer); ok {
				caps = append(caps, "counter-ahead")
			}
		}
		if _, ok := h.b.(OwnerPolicySigner); ok {
			caps = append(caps, proto.CapSigningKeyPolicy)
		}
		return &proto.HelloResponse{Version: v, Backend: id.Backend, Serial: id.Serial, Model: id.Model, Firmware: id.Firmware, Capabilities: caps}, nil
	case proto.MsgGetEK:
		a, ok := h.b.(Attester)
		if !ok {
			return nil, &proto.Error{Code: proto.ErrUnsupported, Message: "this device has no endorsement key"}
		}
		pub, cert, kind, err := a.EK(ctx)
		if err != nil {
			return nil, deviceErr("read endorsement key", err)
		}
		return &proto.GetEKResponse{EKPublic: pub, EKCert: cert, EKKind: kind}, nil
	case proto.MsgCreateKeys:
		var req proto.CreateKeysRequest
		if err := proto.Unmarshal(payload, &req); err != nil {
			return nil, badRequest(err)
		}
		if len(req.Nonce) < 16 || len(req.Nonce) > 64 {
			return nil, &proto.Error{Code: proto.ErrBadRequest, Message: fmt.Sprintf("nonce must be 16 to 64 bytes, got %d", len(req.Nonce))}
		}
		var prep Preparer
		ahead := Ahead{SigningKey: req.SigningKeyAhead, Nonce: req.Nonce, PolicyRef: req.PolicyRef, Counter: req.CounterAhead}
		if ahead.SigningKey || ahead.Counter {
			p, ok := h.b.(Preparer)
			_, signs := h.b.(SigningKeyStore)
			_, trusts := h.b.(TrustStore)
			if !ok || (ahead.SigningKey && !signs) || (ahead.Counter && !trusts) {
				return nil, &proto.Error{Code: proto.ErrUnsupported, Message: "this device cannot make that work ahead"}
			}
			var err error
			if ahead.Fleet, err = parseFleetKey(req.FleetKey, req.PolicyRef); err != nil {
				return nil, &proto.Error{Code: proto.ErrBadRequest, Message: err.Error()}
			}
			prep = p
		}
		ev, err := h.b.CreateKeys(ctx, req.Nonce, req.Subject)
		if err != nil {
			return nil, deviceErr("create keys", err)
		}
		h.log.Info("keys ready", "created", ev.Created)
		if prep != nil {
			// The chip works while the answer travels and the station
			// checks it (CreateSigningKey and SetupCounter collect it).
			prep.PrepareAhead(ahead)
		}
		return &proto.CreateKeysResponse{IAKPublic: ev.IAKPublic, IDevIDPublic: ev.IDevIDPublic, CertifyInfo: ev.CertifyInfo,
			CertifySignature: ev.CertifySignature, CSR: ev.CSR, Created: ev.Created, SEAttestation: ev.SEAttestation}, nil
	case proto.MsgActivateCredential:
		a, ok := h.b.(Attester)
		if !ok {
			return nil, &proto.Error{Code: proto.ErrUnsupported, Message: "this device cannot activate credentials"}
		}
		var req proto.ActivateCredentialRequest
		if err := proto.Unmarshal(payload, &req); err != nil {
			return nil, badRequest(err)
		}
		secret, err := a.ActivateCredential(ctx, req.CredentialBlob, req.EncryptedSecret)
		if err != nil {
			return nil, deviceErr("activate credential", err)
		}
		return &proto.ActivateCredentialResponse{Secret: secret}, nil
	case proto.MsgInstallChain:
		var req proto.InstallChainRequest
		if err := proto.Unmarshal(payload, &req); err != nil {
			return nil, badRequest(err)
		}
		if len(req.Chain) == 0 {
			return nil, &proto.Error{Code: proto.ErrBadRequest, Message: "empty certificate chain"}
		}
		idx, err := h.b.InstallChain(ctx, req.Chain, req.Lock)
		if err != nil {
			return nil, deviceErr("install chain", err)
		}
		h.log.Info("chain installed", "certificates", len(req.Chain), "locations", len(idx), "locked", req.Lock)
		return &proto.InstallChainResponse{SHA256: chainDigest(req.Chain), NVIndices: idx}, nil
	case proto.MsgReadChain:
		chain, err := h.b.ReadChain(ctx)
		if err != nil {
			return nil, deviceErr("read chain", err)
		}
		return &proto.ReadChainResponse{Chain: chain, SHA256: chainDigest(chain)}, nil
	case proto.MsgSignDigest:
		var req proto.SignDigestRequest
		if err := proto.Unmarshal(payload, &req); err != nil {
			return nil, badRequest(err)
		}
		if len(req.Digest) != sha256.Size {
			return nil, &proto.Error{Code: proto.ErrBadRequest, Message: fmt.Sprintf("digest must be %d bytes, got %d", sha256.Size, len(req.Digest))}
		}
		sig, err := h.b.SignDigest(ctx, req.Digest)
		if err != nil {
			return nil, deviceErr("sign digest", err)
		}
		return &proto.SignDigestResponse{Signature: sig}, nil
	case proto.MsgReset:
		r, ok := h.b.(Resetter)
		if !ok {
			return nil, &proto.Error{Code: proto.ErrUnsupported, Message: "this device cannot be reset"}
		}
		if err := r.Reset(ctx); err != nil {
			return nil, deviceErr("reset", err)
		}
		h.log.Warn("device reset: keys and chain removed")
		return &proto.ResetResponse{}, nil
	case proto.MsgLock:
		if err := h.b.Lock(ctx); err != nil {
			return nil, deviceErr("lock", err)
		}
		return &proto.LockResponse{}, nil
	default:
		return nil, &proto.Error{Code: proto.ErrUnsupported, Message: fmt.Sprintf("message type %s is not supported by this agent", t)}
	}
}

// ChainDigest is the SHA-256 over the concatenated DER certificates of a
// chain, leaf first: what the station compares after read-back.
func chainDigest(chain [][]byte) []byte {
	h := sha256.New()
	for _, c := range chain {
		h.Write(c)
	}
	return h.Sum(nil)
}

func badRequest(err error) error {
	return &proto.Error{Code: proto.ErrBadRequest, Message: "malformed request: " + err.Error()}
}

func deviceErr(op string, err error) error {
	var pe *proto.Error
	if errors.As(err, &pe) {
		return pe
	}
	return &proto.Error{Code: proto.ErrDevice, Message: op + ": " + err.Error()}
}

// negotiate picks the newest protocol version both sides speak.
func negotiate(offered []uint8) (uint8, error) {
	best := uint8(0)
	for _, v := range offered {
		if v >= proto.BaseVersion && v <= proto.CurrentVersion && v > best {
			best = v
		}
	}
	if best == 0 {
		return 0, &proto.Error{Code: proto.ErrUnsupported, Message: fmt.Sprintf("no common protocol version: station offers %v, agent speaks %d to %d", offered, proto.BaseVersion, proto.CurrentVersion)}
	}
	return best, nil
}
