package station

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
)

// Identity and binding errors; match them with errors.Is.
var (
	// ErrSerialInvalid: the serial the device reports is not one the
	// station accepts (see ValidSerial). Nothing was recorded.
	ErrSerialInvalid = errors.New("device serial refused")
	// ErrRedBin: the chip is in the red bin (or a certificate of it was
	// revoked): a supervisor must release it first.
	ErrRedBin = errors.New("device is in the red bin")
	// ErrChipMismatch: the serial is bound to another chip, or the chip to
	// another serial.
	ErrChipMismatch = errors.New("device serial and chip do not match")
	// ErrDelivery: the certificate could not be delivered as issued (the
	// issued certificate or the stored chain differs from what the station
	// expects); the certificate is revoked.
	ErrDelivery = errors.New("delivery check failed")
)

// MaxSerialLen is the longest device serial the station accepts.
const MaxSerialLen = 64

// ValidSerial checks a device serial: 1 to MaxSerialLen characters from
// A–Z, a–z, 0–9, '-', '_' and '.', starting with a letter or digit. The
// serial becomes a database key, a certificate subject, a file name and a
// line on the operator's screen, so anything else (control characters,
// path separators, spaces, non-ASCII look-alikes) is refused before any
// record is written.
func ValidSerial(s string) error {
	if s == "" {
		return fmt.Errorf("%w: the device reported no serial", ErrSerialInvalid)
	}
	if len(s) > MaxSerialLen {
		return fmt.Errorf("%w: %d characters (at most %d)", ErrSerialInvalid, len(s), MaxSerialLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || (i > 0 && (c == '-' || c == '_' || c == '.'))
		if !ok {
			return fmt.Errorf("%w: character %q at position %d (allowed: A-Z a-z 0-9, and - _ . after the first)", ErrSerialInvalid, rune(c), i+1)
		}
	}
	return nil
}

// validModel checks the model string a device reports: it may feed name
// templates and is shown on screen, so it is printable ASCII, at most 64
// characters.
func validModel(s string) error {
	if len(s) > 64 {
		return fmt.Errorf("%w: model of %d characters (at most 64)", ErrSerialInvalid, len(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return fmt.Errorf("%w: model has a non-printable character at position %d", ErrSerialInvalid, i+1)
		}
	}
	return nil
}

// chipRef is a short printable form of a chip identity for messages.
func chipRef(id []byte) string {
	if len(id) > 6 {
		id = id[:6]
	}
	return hex.EncodeToString(id)
}

// identify refuses a chip that is in the red bin, a serial bound to
// another chip (unless a supervisor's rework allows it), and a chip bound
// to another serial. It only refuses: a claimed identity is recorded
// nowhere until the proof has passed.
func (r *run) identify(ctx context.Context, chipID []byte) error {
	st := r.p.cfg.Store
	held, err := st.ActiveRedBin(ctx, chipID)
	if err != nil {
		return fmt.Errorf("check the red bin: %w", err)
	}
	if held != nil {
		return fmt.Errorf("%w (chip %s): %s", ErrRedBin, chipRef(chipID), held.Reason)
	}
	bound, _, err := st.ChipOf(ctx, r.serial)
	if err != nil {
		return fmt.Errorf("check the device binding: %w", err)
	}
	if len(bound) > 0 && !bytes.Equal(bound, chipID) && r.job.Rework == nil {
		return fmt.Errorf("%w: serial %s belongs to chip %s, this device is chip %s", ErrChipMismatch, r.serial, chipRef(bound), chipRef(chipID))
	}
	serials, err := st.SerialsOfChip(ctx, chipID)
	if err != nil {
		return fmt.Errorf("check the device binding: %w", err)
	}
	for _, s := range serials {
		if s != r.serial {
			return fmt.Errorf("%w: chip %s is device %s, it now claims serial %s", ErrChipMismatch, chipRef(chipID), s, r.serial)
		}
	}
	if r.proof == ca.ProofTPM {
		// The owner-authorisation records are read here too, off the
		// device's path; ownerAuthGate decides on them before issuance.
		rec, err := r.sealedOwnerAuth(ctx, chipID)
		if err != nil {
			return err
		}
		r.ownerAuthHit, r.ownerAuthRead = rec, true
	}
	return nil
}

// rework re-binds the serial to the proven chip under a supervisor's
// rework (the old chip's certificate is superseded). Without a rework the
// binding is recorded with the issuance intent (db.IssueIntent.ChipID), in
// the same transaction.
func (r *run) rework(ctx context.Context, proof string, chipID []byte) error {
	if r.job.Rework == nil {
		return nil
	}
	st := r.p.cfg.Store
	bound, _, err := st.ChipOf(ctx, r.serial)
	if err != nil {
		return fmt.Errorf("check the device binding: %w", err)
	}
	if len(bound) > 0 && !bytes.Equal(bound, chipID) {
		if err := st.Rebind(ctx, r.serial, chipID, proof, r.job.Rework.Supervisor, r.job.Label); err != nil {
			return fmt.Errorf("rework: %w", err)
		}
	}
	return nil
}

// recordAttestFailure writes a failed proof to the ledger: which proof,
// which device, why. The claimed chip identity is not red-binned (a
// device could claim another chip's public identity to get it red-binned);
// a device that cannot prove itself is refused every time anyway.
func (r *run) recordAttestFailure(ctx context.Context, err error) {
	if !errors.Is(err, ErrAttestation) && !errors.Is(err, ErrChipMismatch) && !errors.Is(err, ErrRedBin) &&
		!errors.Is(err, ErrKeyPolicy) && !errors.Is(err, ErrNoProof) {
		return
	}
	detail := map[string]any{"device": r.serial, "proof": r.proof, "slot": r.job.Slot, "error": err.Error()}
	if aerr := r.p.cfg.Store.Audit(context.WithoutCancel(ctx), "attest.fail", r.p.currentOperator(), detail); aerr != nil {
		r.p.cfg.Logger.Error("record attestation failure", "err", aerr)
	}
}

// definitive reports whether a failure after issuance means the device
// will never hold this certificate as issued: the chain it stored or read
// back differs, or its end-of-line signature failed.
func definitive(err error) bool {
	return errors.Is(err, ErrReadBack) || errors.Is(err, ErrEndOfLine) || errors.Is(err, ErrDelivery) || trustDefinitive(err)
}

// afterFailure deals with a certificate a failed run signed or delivered
// but never confirmed. After a definitive failure it is revoked at once
// (cessationOfOperation) and the proven chip goes to the red bin. After a
// transient one (timeout, pulled cable, cancelled run) it stays live so that
// a retry delivers it again, and is remembered: SweepUnconfirmed revokes it
// when the session ends without the device coming back. The returned text
// says which, for the run's error.
func (r *run) afterFailure(ctx context.Context, runErr error) string {
	if r.issued == "" {
		return ""
	}
	ctx = context.WithoutCancel(ctx)
	st := r.p.cfg.Store
	if !definitive(runErr) {
		r.p.pending.add(r.issued)
		return fmt.Sprintf("certificate %s is issued but not confirmed: retry this device to deliver it again; if it does not come back before the bench stops, the certificate is revoked", r.issued)
	}
	revoked, err := st.RevokeUnconfirmed(ctx, r.issued, runErr.Error())
	if err != nil {
		return fmt.Sprintf("certificate %s could not be revoked (%v): call the shift lead", r.issued, err)
	}
	msg := fmt.Sprintf("certificate %s revoked (cessationOfOperation)", r.issued)
	if !revoked {
		msg = fmt.Sprintf("certificate %s was already confirmed or revoked", r.issued)
	}
	if len(r.chipID) > 0 {
		if err := st.RedBin(ctx, db.RedBinEntry{ChipID: r.chipID, Serial: r.serial, Reason: runErr.Error(),
			CertSerial: r.issued, Operator: r.p.currentOperator()}); err != nil {
			msg += fmt.Sprintf("; recording the red bin failed (%v)", err)
		}
	}
	return msg
}

// pendingCerts is the set of certificates signed in this session whose runs
// failed before confirmation.
type pendingCerts struct {
	mu  sync.Mutex
	set map[string]bool
}

func (p *pendingCerts) add(serial string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.set == nil {
		p.set = map[string]bool{}
	}
	p.set[serial] = true
}

func (p *pendingCerts) remove(serial string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.set, serial)
}

func (p *pendingCerts) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.set))
	for s := range p.set {
		out = append(out, s)
	}
	p.set = nil
	return out
}

// SweepUnconfirmed revokes (cessationOfOperation) the certificates this
// provisioner signed whose devices failed and did not come back to confirm
// them. The bench calls it when it stops; a command that provisions once
// calls it before it exits. It returns the serials it revoked.
func (p *Provisioner) SweepUnconfirmed(ctx context.Context) ([]string, error) {
	var revoked []string
	var errs []error
	for _, sn := range p.pending.take() {
		ok, err := p.cfg.Store.RevokeUnconfirmed(ctx, sn, "never confirmed: the device did not come back before the session ended")
		if err != nil {
			errs = append(errs, fmt.Errorf("revoke unconfirmed certificate %s: %w", sn, err))
			continue
		}
		if ok {
			revoked = append(revoked, sn)
		}
	}
	return revoked, errors.Join(errs...)
}
