package station

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/wsc-project/wsc/devices/anchors"
	"github.com/wsc-project/wsc/devices/proto"
)

// ErrAnchors reports that the device's firmware trust anchors could not be
// written, read back equal, or locked.
var ErrAnchors = errors.New("firmware trust anchors not installed")

// FirmwareTrust is what the work order says a device accepts as firmware:
// which roots sign releases, its class, and the policy version. The
// current CRL of each CA sets the device's minimum CRL number for that CA.
type FirmwareTrust struct {
	// PolicyVersion numbers this trust configuration.
	PolicyVersion uint32
	// DeviceClass is the class firmware manifests must name.
	DeviceClass string
	// Roots are the firmware-signing roots (1..8).
	Roots []*x509.Certificate
	// CRLs are the current CRLs of the CAs under those roots; each one's
	// number becomes the device's floor for its issuer (at most 8).
	CRLs []*x509.RevocationList
}

// Policy builds the anchors for a device whose counter is at counterBase.
// It fails closed on a CRL without a number (a floor cannot be set) or
// with a number that does not fit 64 bits.
func (f *FirmwareTrust) Policy(counterBase uint64) (*anchors.Policy, error) {
	p := &anchors.Policy{Version: f.PolicyVersion, CounterBase: counterBase, DeviceClass: f.DeviceClass}
	for _, r := range f.Roots {
		p.Roots = append(p.Roots, anchors.RootFingerprint(r))
	}
	for _, c := range f.CRLs {
		if c.Number == nil || c.Number.Sign() < 0 || !c.Number.IsUint64() {
			return nil, fmt.Errorf("%w: CRL of %s has no usable CRL number; publish a CRL with 'wsc ca crl'", ErrAnchors, Untrusted(c.Issuer.String()))
		}
		p.CRLFloors = append(p.CRLFloors, anchors.CRLFloor{Issuer: anchors.IssuerID(c.RawIssuer), MinNumber: c.Number.Uint64()})
	}
	if _, err := p.Marshal(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAnchors, err)
	}
	return p, nil
}

// AnchorsResult is what InstallFirmwareTrust did on one device.
type AnchorsResult struct {
	// OwnerAuth is the TPM owner authorization the station set (nil for a
	// secure element). It is a secret: the caller seals it and records
	// it; it never goes to a log, and String does not print it.
	OwnerAuth []byte
	// Anchors is the encoding written and read back.
	Anchors []byte
	// CounterBase is the anti-rollback counter's value at end of line.
	CounterBase uint64
}

// String describes the result without the owner authorization.
func (r *AnchorsResult) String() string {
	if r == nil {
		return "<nil>"
	}
	return fmt.Sprintf("anchors %d bytes, counter base %d, owner auth set %v", len(r.Anchors), r.CounterBase, r.OwnerAuth != nil)
}

// GoString is String for %#v.
func (r *AnchorsResult) GoString() string { return r.String() }

// NewOwnerAuth returns a random TPM owner authorization (32 bytes). The
// caller records it sealed (and in the ledger as "set", never its value)
// before passing it to InstallFirmwareTrust, so that a crash after the
// device took it never leaves a TPM whose owner no one knows.
func NewOwnerAuth() ([]byte, error) {
	auth := make([]byte, 32)
	if _, err := rand.Read(auth); err != nil {
		return nil, fmt.Errorf("owner authorization: %w", err)
	}
	return auth, nil
}

// InstallFirmwareTrust runs the firmware-trust part of end of line on a
// device that announced the "trust-anchors" capability: for a TPM
// (ownerAuth not nil, from NewOwnerAuth) it sets the owner authorization,
// so that the lock actually protects; it sets up the anti-rollback
// counter, writes the anchors, locks them, and compares the read-back
// bytes with what was sent. Call it after the end-of-line signing check
// succeeded; a secure element passes a nil ownerAuth.
func InstallFirmwareTrust(ctx context.Context, c *proto.Client, trust *FirmwareTrust, ownerAuth []byte) (*AnchorsResult, error) {
	res := &AnchorsResult{}
	if ownerAuth != nil {
		if err := c.Call(ctx, proto.MsgSetOwnerAuth, proto.SetOwnerAuthRequest{NewAuth: ownerAuth}, &proto.SetOwnerAuthResponse{}); err != nil {
			return nil, fmt.Errorf("%w: set owner authorization: %w", ErrAnchors, err)
		}
		res.OwnerAuth = ownerAuth
	}
	var sc proto.SetupCounterResponse
	if err := c.Call(ctx, proto.MsgSetupCounter, proto.SetupCounterRequest{}, &sc); err != nil {
		return res, fmt.Errorf("%w: anti-rollback counter: %w", ErrAnchors, err)
	}
	res.CounterBase = sc.Value
	p, err := trust.Policy(sc.Value)
	if err != nil {
		return res, err
	}
	enc, err := p.Marshal()
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrAnchors, err)
	}
	var wr proto.WriteAnchorsResponse
	if err := c.Call(ctx, proto.MsgWriteAnchors, proto.WriteAnchorsRequest{Anchors: enc, Lock: true}, &wr); err != nil {
		return res, fmt.Errorf("%w: write: %w", ErrAnchors, err)
	}
	if !bytes.Equal(wr.Anchors, enc) {
		return res, fmt.Errorf("%w: the device read back other anchors than the station wrote; quarantine the device", ErrAnchors)
	}
	if !wr.Locked {
		return res, fmt.Errorf("%w: the device did not lock its anchors; quarantine the device", ErrAnchors)
	}
	res.Anchors = enc
	return res, nil
}
