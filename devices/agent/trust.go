package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/wsc-project/wsc/devices/anchors"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/tpm"
)

// TrustStore is the optional capability of backends that keep the
// device's firmware trust anchors and an anti-rollback counter in the
// chip (TPM NV; the ATECC608's data zone and monotonic counter).
type TrustStore interface {
	// WriteAnchors stores the encoded anchors (devices/anchors).
	WriteAnchors(ctx context.Context, enc []byte) error
	// ReadAnchors returns the stored anchors and whether they are locked.
	ReadAnchors(ctx context.Context) (enc []byte, locked bool, err error)
	// LockAnchors write-locks the anchors for good.
	LockAnchors(ctx context.Context) error
	// SetupCounter creates the counter if absent and returns its value.
	SetupCounter(ctx context.Context) (uint64, error)
	// Counter returns the counter's value.
	Counter(ctx context.Context) (uint64, error)
	// IncrementCounter adds one and returns the new value.
	IncrementCounter(ctx context.Context) (uint64, error)
}

// OwnerAuthSetter is the optional capability of TPM backends whose owner
// authorization the station sets before locking anything with it.
type OwnerAuthSetter interface {
	SetOwnerAuth(ctx context.Context, newAuth []byte) error
}

// handleTrust answers the trust-anchor and counter messages; ok is false
// for other message types.
func (h *Handler) handleTrust(ctx context.Context, t proto.MsgType, payload []byte) (resp any, ok bool, err error) {
	switch t {
	case proto.MsgSetOwnerAuth, proto.MsgWriteAnchors, proto.MsgReadAnchors, proto.MsgSetupCounter:
	default:
		return nil, false, nil
	}
	if t == proto.MsgSetOwnerAuth {
		o, isO := h.b.(OwnerAuthSetter)
		if !isO {
			return nil, true, &proto.Error{Code: proto.ErrUnsupported, Message: "this device has no owner authorization to set"}
		}
		var req proto.SetOwnerAuthRequest
		if err := proto.Unmarshal(payload, &req); err != nil {
			return nil, true, badRequest(err)
		}
		if len(req.NewAuth) < 16 || len(req.NewAuth) > 32 {
			return nil, true, &proto.Error{Code: proto.ErrBadRequest, Message: fmt.Sprintf("owner authorization must be 16 to 32 bytes, got %d", len(req.NewAuth))}
		}
		if err := o.SetOwnerAuth(ctx, req.NewAuth); err != nil {
			return nil, true, deviceErr("set owner authorization", err)
		}
		h.log.Info("owner authorization changed")
		return &proto.SetOwnerAuthResponse{}, true, nil
	}
	ts, isTS := h.b.(TrustStore)
	if !isTS {
		return nil, true, &proto.Error{Code: proto.ErrUnsupported, Message: "this device cannot hold firmware trust anchors"}
	}
	switch t {
	case proto.MsgWriteAnchors:
		var req proto.WriteAnchorsRequest
		if err := proto.Unmarshal(payload, &req); err != nil {
			return nil, true, badRequest(err)
		}
		// Never write what the agent itself could not read back as a policy.
		if _, err := anchors.Parse(req.Anchors); err != nil {
			return nil, true, &proto.Error{Code: proto.ErrBadRequest, Message: "trust anchors: " + err.Error()}
		}
		if err := ts.WriteAnchors(ctx, req.Anchors); err != nil {
			return nil, true, trustErr("write trust anchors", err)
		}
		if req.Lock {
			if err := ts.LockAnchors(ctx); err != nil {
				return nil, true, trustErr("lock trust anchors", err)
			}
		}
		back, locked, err := ts.ReadAnchors(ctx)
		if err != nil {
			return nil, true, trustErr("read back trust anchors", err)
		}
		h.log.Info("trust anchors written", "bytes", len(back), "locked", locked)
		return &proto.WriteAnchorsResponse{Anchors: back, Locked: locked}, true, nil
	case proto.MsgReadAnchors:
		back, locked, err := ts.ReadAnchors(ctx)
		if err != nil {
			return nil, true, trustErr("read trust anchors", err)
		}
		return &proto.ReadAnchorsResponse{Anchors: back, Locked: locked}, true, nil
	default: // MsgSetupCounter
		v, err := ts.SetupCounter(ctx)
		if err != nil {
			return nil, true, trustErr("set up the anti-rollback counter", err)
		}
		return &proto.SetupCounterResponse{Value: v}, true, nil
	}
}

// trustErr maps chip errors to codes the station branches on: a locked
// index is ErrLocked (not a cable problem), absent anchors ErrNotProvisioned.
func trustErr(op string, err error) error {
	switch {
	case isLocked(err):
		return &proto.Error{Code: proto.ErrLocked, Message: op + ": the trust anchors are locked with other content; this device needs rework by the owner"}
	case errors.Is(err, tpm.ErrNoAnchors), errors.Is(err, tpm.ErrNoCounter), errors.Is(err, ErrNoAnchors):
		return &proto.Error{Code: proto.ErrNotProvisioned, Message: op + ": " + err.Error()}
	}
	return deviceErr(op, err)
}

// ErrNoAnchors means the chip holds no firmware trust anchors.
var ErrNoAnchors = errors.New("no firmware trust anchors in the chip")
