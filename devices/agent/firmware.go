package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/wsc-project/wsc/devices/anchors"
	"github.com/wsc-project/wsc/wasmsign"
)

// Firmware acceptance on the device.
//
// Trust comes from the chip, never from files: the device's trust anchors
// (devices/anchors: root fingerprints, minimum CRL numbers, device class,
// counter base) are read from the chip for every check. The trust bundle
// on disk only supplies certificates and CRLs; a root certificate in it
// counts only when its SHA-256 fingerprint is in the chip, so a bundle
// swapped on the device's filesystem cannot add a root.
//
// Time rule: the device never reads its own clock. Certificates, CRLs and
// the manifest's expiry are evaluated at the trusted time T = the newest
// thisUpdate among the CRLs in the bundle whose signature verifies with an
// anchored root or with an intermediate that an anchored root signed. A CRL
// is signed by the CA, so T cannot be moved forward without the CA's key,
// and it cannot be moved back below the chip's floor: every CRL must carry
// a CRL number of at least the chip's minimum for its issuer. Freshness is
// therefore bounded by the CRL numbers held in the chip, not by a clock;
// a device that must refuse stale revocation data earlier needs a newer
// floor (a new policy version) or a fresher CRL pushed with the update.

// Refusal reasons. Each wraps into a FirmwareError so callers branch with
// errors.Is; wasmsign's sentinel errors (ErrHashMismatch, ErrUntrusted,
// ErrRevoked, ...) are kept in the chain too.
var (
	// ErrAnchorsUnlocked: the chip's anchors are not write-locked; end of
	// line did not finish, and unlocked anchors protect nothing.
	ErrAnchorsUnlocked = errors.New("trust anchors in the chip are not locked")
	// ErrRootNotAnchored: no root of the bundle is anchored in the chip
	// (or the module's chain leads to a root that is not).
	ErrRootNotAnchored = errors.New("signing root is not anchored in the chip")
	// ErrCRLRollback: a CRL is older (lower CRL number) than the chip's
	// minimum for its issuer, or carries no CRL number.
	ErrCRLRollback = errors.New("revocation list older than the chip's minimum")
	// ErrNoTrustedTime: no CRL of an anchored CA, so there is no signed time.
	ErrNoTrustedTime = errors.New("no revocation list from an anchored CA")
	// ErrNoManifest: the module carries no manifest.
	ErrNoManifest = errors.New("module has no manifest")
	// ErrWrongClass: the manifest names another device class.
	ErrWrongClass = errors.New("module is for another device class")
	// ErrNotForSerial: the manifest's allowlist does not name this device.
	ErrNotForSerial = errors.New("module is not allowed on this device")
	// ErrManifestExpired: the manifest expired before the trusted time.
	ErrManifestExpired = errors.New("module manifest expired")
	// ErrRollback: the module's version is below the chip's counter.
	ErrRollback = errors.New("module version below the anti-rollback counter")
)

// ErrRefused is wrapped by every verdict that refuses a module (as
// opposed to an error reading the chip or a file).
var ErrRefused = errors.New("firmware refused")

func refuse(err error) error { return fmt.Errorf("%w: %w", ErrRefused, err) }

// FirmwareResult is the verdict on one module.
type FirmwareResult struct {
	// Accepted is true when every check passed.
	Accepted bool `json:"accepted"`
	// Reason says why the module was refused.
	Reason string `json:"reason,omitempty"`
	// Signer is the leaf subject and DeviceSerial its serialNumber.
	Signer       string `json:"signer,omitempty"`
	SignerSerial string `json:"signer_serial,omitempty"`
	// Manifest is the module's manifest (trusted only when Accepted).
	Manifest *wasmsign.Manifest `json:"manifest,omitempty"`
	// TrustedTime is the time rule's T.
	TrustedTime time.Time `json:"trusted_time"`
	// PolicyVersion is the chip's policy version.
	PolicyVersion uint32 `json:"policy_version"`
	// DeviceClass and Serial are the device's, as checked.
	DeviceClass string `json:"device_class"`
	Serial      string `json:"serial"`
	// MinVersion is the chip's rollback floor (counter minus base).
	MinVersion uint64 `json:"min_version"`
	// IgnoredRoots are fingerprints (hex) of bundle roots not in the chip.
	IgnoredRoots []string `json:"ignored_roots,omitempty"`
	// Err is the error behind Reason.
	Err error `json:"-"`
}

// Firmware checks modules against the chip of one device.
type Firmware struct {
	// Store is the chip.
	Store TrustStore
	// Serial is the device's serial (the manifest allowlist is checked
	// against it).
	Serial string
}

// chipState is what one check reads from the chip.
type chipState struct {
	policy *anchors.Policy
	floor  uint64 // counter - base
	raw    uint64 // counter
}

func (f *Firmware) readChip(ctx context.Context) (*chipState, error) {
	enc, locked, err := f.Store.ReadAnchors(ctx)
	if err != nil {
		return nil, fmt.Errorf("read trust anchors from the chip: %w", err)
	}
	p, err := anchors.Parse(enc)
	if err != nil {
		return nil, fmt.Errorf("trust anchors in the chip: %w", err)
	}
	if !locked {
		return nil, refuse(fmt.Errorf("%w: finish end of line at the station (it locks them)", ErrAnchorsUnlocked))
	}
	c, err := f.Store.Counter(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the anti-rollback counter: %w", err)
	}
	if c < p.CounterBase {
		return nil, fmt.Errorf("anti-rollback counter %d below its recorded base %d: the chip was reset; the device needs rework", c, p.CounterBase)
	}
	return &chipState{policy: p, floor: c - p.CounterBase, raw: c}, nil
}

// Verify checks a module (read as a stream) against the chip and the
// bundle (PEM certificates and CRLs from the device's disk, untrusted).
// A refusal returns a result with Accepted false and an error wrapping
// ErrRefused; any other error means the check could not be made.
func (f *Firmware) Verify(ctx context.Context, module io.Reader, bundle []byte) (*FirmwareResult, error) {
	chip, err := f.readChip(ctx)
	res := &FirmwareResult{Serial: f.Serial}
	if err != nil {
		return res.fail(err)
	}
	return f.verify(chip, module, bundle, res)
}

func (res *FirmwareResult) fail(err error) (*FirmwareResult, error) {
	res.Accepted = false
	res.Err = err
	res.Reason = err.Error()
	return res, err
}

func (f *Firmware) verify(chip *chipState, module io.Reader, bundle []byte, res *FirmwareResult) (*FirmwareResult, error) {
	p := chip.policy
	res.PolicyVersion, res.DeviceClass, res.MinVersion = p.Version, p.DeviceClass, chip.floor
	tp, err := wasmsign.LoadTrustBundle(bundle)
	if err != nil {
		return res.fail(refuse(fmt.Errorf("trust bundle: %w", err)))
	}
	var roots []*x509.Certificate
	for _, r := range tp.Roots {
		if p.HasRoot(anchors.RootFingerprint(r)) {
			roots = append(roots, r)
			continue
		}
		fp := anchors.RootFingerprint(r)
		res.IgnoredRoots = append(res.IgnoredRoots, hex.EncodeToString(fp[:]))
	}
	if len(roots) == 0 {
		return res.fail(refuse(fmt.Errorf("%w: none of the bundle's %d roots is in the chip", ErrRootNotAnchored, len(tp.Roots))))
	}
	// Every CRL given must be at least the chip's floor for its issuer;
	// the trusted time comes from the CRLs of anchored CAs only.
	var t time.Time
	for _, crl := range tp.CRLs {
		floor := p.MinCRLNumber(anchors.IssuerID(crl.RawIssuer))
		if crl.Number == nil || crl.Number.Sign() < 0 || !crl.Number.IsUint64() || crl.Number.Uint64() < floor {
			return res.fail(refuse(fmt.Errorf("%w: CRL of %s has number %v, the chip requires at least %d; give the device the current CRL",
				ErrCRLRollback, crl.Issuer, crl.Number, floor)))
		}
		if anchoredIssuer(crl, roots, tp.Intermediates) && crl.ThisUpdate.After(t) {
			t = crl.ThisUpdate
		}
	}
	if t.IsZero() {
		return res.fail(refuse(fmt.Errorf("%w: the bundle must carry the CRLs of the signing CAs", ErrNoTrustedTime)))
	}
	res.TrustedTime = t.UTC()
	tp.Roots = roots
	tp.At, tp.AtExplicit = t, true
	tp.AllowMissingCRL = false
	wr, err := wasmsign.VerifyReader(module, tp)
	if wr != nil {
		res.Signer, res.SignerSerial, res.Manifest = wr.Signer, wr.SignerSerial, wr.Manifest
	}
	if err != nil {
		if errors.Is(err, wasmsign.ErrUntrusted) {
			err = fmt.Errorf("%w: %w", ErrRootNotAnchored, err)
		}
		if wr != nil && wr.Status == wasmsign.StatusError {
			return res.fail(fmt.Errorf("read module: %w", err))
		}
		return res.fail(refuse(err))
	}
	m := wr.Manifest
	switch {
	case m == nil:
		return res.fail(refuse(fmt.Errorf("%w: sign it with wsc sign --manifest", ErrNoManifest)))
	case m.DeviceClass != p.DeviceClass:
		return res.fail(refuse(fmt.Errorf("%w: module for %q, device is %q", ErrWrongClass, m.DeviceClass, p.DeviceClass)))
	case !m.AllowsSerial(f.Serial):
		return res.fail(refuse(fmt.Errorf("%w: %s is not in the module's allowlist", ErrNotForSerial, f.Serial)))
	}
	if exp, ok := m.ExpiresAt(); ok && t.After(exp) {
		return res.fail(refuse(fmt.Errorf("%w: expired %s, trusted time %s", ErrManifestExpired, exp.Format(time.RFC3339), t.Format(time.RFC3339))))
	}
	if m.Version < chip.floor {
		return res.fail(refuse(fmt.Errorf("%w: version %d, the chip requires at least %d", ErrRollback, m.Version, chip.floor)))
	}
	res.Accepted = true
	return res, nil
}

// anchoredIssuer reports whether crl is signed by an anchored root or by
// an intermediate that an anchored root signed.
func anchoredIssuer(crl *x509.RevocationList, roots, inters []*x509.Certificate) bool {
	for _, r := range roots {
		if bytes.Equal(r.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(r) == nil {
			return true
		}
	}
	for _, in := range inters {
		if !bytes.Equal(in.RawSubject, crl.RawIssuer) || crl.CheckSignatureFrom(in) != nil {
			continue
		}
		for _, r := range roots {
			if bytes.Equal(in.RawIssuer, r.RawSubject) && in.CheckSignatureFrom(r) == nil {
				return true
			}
		}
	}
	return false
}
