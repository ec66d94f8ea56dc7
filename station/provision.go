// Package station is the line workflow: for each device on the bench it runs
// the provisioning sequence of ARCHITECTURE.md §4 over the device's serial
// line — identify, attest, issue, install, read back, end-of-line check,
// record — and reports every step as an Event.
package station

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/wasmsign"
	"go.bug.st/serial"
)

// Issuer is what the station needs from the CA.
type Issuer interface {
	Issue(ctx context.Context, csrDER []byte, req ca.IssueRequest) ([]*x509.Certificate, error)
}

// Store is what the station needs from the database.
type Store interface {
	EnsureDevice(ctx context.Context, d db.Device) error
	StartRun(ctx context.Context, r db.RunStart) (int64, error)
	StepRun(ctx context.Context, runID int64, step string) error
	FinishRun(ctx context.Context, runID int64, result, errMsg string, steps map[string]time.Duration) error
	BeginIssue(ctx context.Context, in db.IssueIntent) (int64, *db.Certificate, error)
	CompleteIssue(ctx context.Context, intentID int64, c db.Certificate) error
	MarkDelivered(ctx context.Context, certSerialHex string) error
	ConfirmAndFinish(ctx context.Context, certSerialHex string, runID int64, steps map[string]time.Duration) error
	MarkConfirmed(ctx context.Context, certSerialHex string) error

	// Identity, red bin and revocation of unconfirmed certificates.
	ActiveRedBin(ctx context.Context, chipID []byte) (*db.RedBinEntry, error)
	RedBin(ctx context.Context, e db.RedBinEntry) error
	ChipOf(ctx context.Context, serial string) (chipID []byte, proof string, err error)
	SerialsOfChip(ctx context.Context, chipID []byte) ([]string, error)
	Rebind(ctx context.Context, serial string, chipID []byte, proof, supervisor, label string) error
	RevokeUnconfirmed(ctx context.Context, certSerialHex, why string) (bool, error)
	RevokeRecorded(ctx context.Context, certSerialHex string, reason int, why, actor string) (bool, error)
	Audit(ctx context.Context, kind, actor string, detail any) error
}

// Config is what a Provisioner needs. Issuer and Store are required.
type Config struct {
	Issuer Issuer
	Store  Store
	// Proofs is the work order's proof policy, in order of preference
	// (NewProofs). Nil means the default policy, [tpm], with VendorRoots.
	Proofs []Proof
	// VendorRoots verifies endorsement-key certificates; VendorIntermediates
	// may hold the vendors' issuing CAs. Used when Proofs is nil.
	VendorRoots, VendorIntermediates *x509.CertPool
	// Station and Operator are recorded with every run.
	Station, Operator string
	// WorkOrder is the work order the certificates count against.
	WorkOrder string
	// NamesFor, when set, returns the DNS names for a device's certificate
	// (otherwise the profile's name templates apply). Names come from
	// station data only, never from the CSR.
	NamesFor func(serial string) []string
	// Profile is the certificate profile of the work order (nil: the CA's
	// default profile).
	Profile *ca.Profile
	// Validity of device certificates; zero means the CA's default.
	Validity time.Duration
	// Lock write-locks the chain in the device after read-back.
	Lock bool
	// Baud is the serial line speed (115200 when zero).
	Baud int
	// Retries is how often the protocol client resends a request that timed out.
	Retries int
	// EOLTrust is the trust policy of the end-of-line signature check;
	// nil builds one from the issuer's roots and intermediates.
	EOLTrust *wasmsign.TrustPolicy
	// EOLModuleDir, when set, keeps each device's signed test module there
	// as <serial>.wasm (the demo hands them to QA verification).
	EOLModuleDir string
	// Logger receives the protocol's logs; nil discards them.
	Logger *slog.Logger
	// FaultPoint, when set, is called at each named point of the sequence
	// where a crash leaves a distinct state: FaultIntent, FaultSigned,
	// FaultInstalled, FaultReadBack, FaultEOL. Fault-injection tests kill
	// the station there; production leaves it nil.
	FaultPoint func(point string)
	// FaultInject, when set, may fail the run at the issue-15 points
	// (TrustFaultPoints) with the error it returns; tests only.
	FaultInject func(point string) error
	// Trust is the work order's signing-key and firmware-trust policy
	// (issue 15; the zero value is the IEEE 802.1AR default).
	Trust TrustConfig
}

// The named points of the sequence (Config.FaultPoint), in order.
const (
	FaultIntent    = "after-intent"    // issuance intent recorded, nothing signed
	FaultSigned    = "after-signing"   // certificate signed and recorded, not delivered
	FaultInstalled = "after-install"   // chain written into the device, not read back
	FaultReadBack  = "after-read-back" // chain read back and compared, end of line not run
	FaultEOL       = "after-eol"       // end of line passed, not yet confirmed
)

// FaultPoints lists the named points in order.
var FaultPoints = []string{FaultIntent, FaultSigned, FaultInstalled, FaultReadBack, FaultEOL}

func (r *run) fault(point string) {
	if f := r.p.cfg.FaultPoint; f != nil {
		f(point)
	}
}

// Provisioner runs the provisioning sequence for one device at a time; it is
// safe to use from several slots at once.
type Provisioner struct {
	cfg Config

	// proofs is the proof policy (cfg.Proofs, or the default [tpm]).
	proofs []Proof
	// pending holds certificates of failed runs not yet confirmed.
	pending pendingCerts

	mu       sync.Mutex
	operator string
}

// IssuanceRecorder is an Issuer that records each certificate it signs in
// the station database itself — a ca.CA opened with
// ca.WithStore(station.CAStore(store)), whose embedded authority stores
// through smallstep's AuthDB. Given the station's issue intent
// (IssueRequest.IntentID) it completes that intent before Issue returns,
// so the station does not record the certificate a second time (one
// durable commit per certificate, not two).
type IssuanceRecorder interface {
	RecordsIssuance() bool
}

// SetOperator sets the operator recorded with the runs that start from now
// on (after a login at the station).
func (p *Provisioner) SetOperator(op string) {
	p.mu.Lock()
	p.operator = op
	p.mu.Unlock()
}

func (p *Provisioner) currentOperator() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.operator
}

// NewProvisioner checks cfg and returns a Provisioner.
func NewProvisioner(cfg Config) (*Provisioner, error) {
	if cfg.Issuer == nil || cfg.Store == nil {
		return nil, errors.New("station: provisioner needs an issuer and a store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Baud == 0 {
		cfg.Baud = 115200
	}
	if err := checkIssuerStore(cfg.Issuer, cfg.Store); err != nil {
		return nil, err
	}
	proofs := cfg.Proofs
	if proofs == nil {
		// The default policy: TPM attestation only. Without vendor roots
		// nothing can be proven, and nothing is issued.
		if cfg.VendorRoots == nil {
			return nil, errors.New("station: no proof policy: configure the TPM vendor roots (tpm_vendor_roots) or the work order's proofs")
		}
		proofs = []Proof{&TPMProof{Roots: cfg.VendorRoots, Intermediates: cfg.VendorIntermediates}}
	}
	if len(proofs) == 0 {
		return nil, errors.New("station: the proof policy accepts no proof")
	}
	// One issuance path: intent (station) → signature and record (the CA,
	// inside ca.Issue) → delivery. An issuer that does not record what it
	// signs in the station database would leave certificates the ledger
	// never saw: refused.
	if rec, ok := cfg.Issuer.(IssuanceRecorder); !ok || !rec.RecordsIssuance() {
		return nil, errors.New("station: the CA does not record what it issues in the station database: open it with ca.WithStore(station.CAStore(store))")
	}
	return &Provisioner{cfg: cfg, operator: cfg.Operator, proofs: proofs}, nil
}

// Result is what a successful provisioning produced.
type Result struct {
	Serial     string
	Backend    string
	CertSerial string
	Chain      []*x509.Certificate
	// Redelivered is true when the device's key already had a certificate
	// (a resumed run): it was delivered again, not issued again.
	Redelivered bool
	// Proof is the proof the certificate rests on; ChipID the chip's
	// identity (Proven.ChipID).
	Proof    string
	ChipID   []byte
	Duration time.Duration
	Steps    map[Step]time.Duration
	Wire     proto.Stats
	// SigningChain is the code-signing key's chain (nil: the device signs with its IDevID).
	SigningChain []*x509.Certificate
}

// StepError is a failed step with an instruction for the operator.
type StepError struct {
	Step Step
	// Instruction tells the operator what to do next.
	Instruction string
	Err         error
}

func (e *StepError) Error() string { return fmt.Sprintf("%s: %v", e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// Job is one device to provision.
type Job struct {
	Slot int
	Port string
	// Label is the serial scanned from the device's label; when set, the
	// device must report the same serial.
	Label string
	// Events, when set, receives an event per step.
	Events func(Event)
	// Rework, when set, lets this run bind the serial to a chip other than
	// the one it is bound to (a supervisor's decision against the scanned
	// Label): the device's live certificate is superseded.
	Rework *Rework
}

// Rework is a supervisor's authorisation to re-bind a device serial to
// another chip (a board whose chip was replaced).
type Rework struct {
	// Supervisor is the signed-in supervisor's id (recorded in the ledger).
	Supervisor string
	// ChipReset: the RMA desk cleared the TPM, so the owner authorisation
	// sealed for it earlier no longer holds (recorded in the ledger).
	ChipReset bool
}

// async is work the station does while the device works.
type async struct {
	done chan struct{}
	err  error
}

func goAsync(f func() error) *async {
	a := &async{done: make(chan struct{})}
	go func() { defer close(a.done); a.err = f() }()
	return a
}

// wait returns f's error once f has returned.
func (a *async) wait() error {
	<-a.done
	return a.err
}

type run struct {
	p *Provisioner
	// proof is the name of the proof demanded, chipID the proven chip
	// identity, issued the serial of the certificate this run signed or
	// re-delivered (empty before issuance).
	proof, issued string
	chipID        []byte
	recording     *async // device and run records, started after Hello
	job           Job
	client        *proto.Client
	serial        string
	runID         int64
	steps         map[Step]time.Duration
	step          Step
	start         time.Time
	trust         trustRun // issue 15: signing key (eoltrust.go)
	// ownerAuthHit is the owner-authorisation record that may be set on
	// this chip (nil: none), read by identify (ownerAuthRead) while the
	// device makes its keys; ownerAuthGate decides on it.
	ownerAuthHit  *db.OwnerAuthRecord
	ownerAuthRead bool
}

func (r *run) emit(state State, detail string, err error) {
	if r.job.Events != nil {
		r.job.Events(Event{Time: time.Now(), Slot: r.job.Slot, Port: r.job.Port, Serial: r.serial, Step: r.step, State: state, Detail: detail, Err: err, ChipID: r.chipID})
	}
}

// do runs one step, times it, records it and wraps its error.
func (r *run) do(ctx context.Context, s Step, f func() error) error {
	r.step = s
	r.emit(StateRunning, "", nil)
	// Steps are not each recorded durably as they start: the issuance
	// records (intent, certificate, delivery, confirmation) already tell
	// how far a crashed run got, and the run's final record holds every
	// step's duration. A durable commit costs about 0.5 ms, which would
	// otherwise dominate the station's own time. Locking, irreversible and
	// not covered by those records, is recorded as it starts.
	if s == StepLock && r.runID != 0 { // runID is settled: the issue step waited for it
		if err := r.p.cfg.Store.StepRun(ctx, r.runID, string(s)); err != nil {
			return &StepError{Step: s, Instruction: instruction(s, err, r.job.Slot), Err: fmt.Errorf("record step: %w", err)}
		}
	}
	t0 := time.Now()
	err := f()
	r.steps[s] += time.Since(t0)
	if err != nil {
		return &StepError{Step: s, Instruction: instruction(s, err, r.job.Slot), Err: err}
	}
	return nil
}

// Provision runs the whole sequence on the device at job.Port.
func (p *Provisioner) Provision(ctx context.Context, job Job) (res *Result, err error) {
	r := &run{p: p, job: job, steps: map[Step]time.Duration{}, start: time.Now()}
	defer func() {
		if err != nil {
			r.emit(StateFailed, "", err)
		}
	}()
	var port serial.Port
	err = r.do(ctx, StepConnect, func() error {
		var err error
		port, err = serial.Open(job.Port, &serial.Mode{BaudRate: p.cfg.Baud})
		if err != nil {
			return fmt.Errorf("open %s: %w", job.Port, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	defer port.Close()
	opts := []proto.ClientOption{proto.WithLogger(p.cfg.Logger)}
	if p.cfg.Retries > 0 {
		opts = append(opts, proto.WithRetries(p.cfg.Retries))
	}
	r.client = proto.NewClient(port, opts...)
	defer r.client.Close()

	res, err = r.sequence(ctx)
	if err != nil {
		// A certificate signed for this run but never confirmed is not left
		// live unnoticed (afterFailure); the run's error says what became
		// of it.
		if note := r.afterFailures(ctx, err); note != "" {
			err = withNote(err, note)
		}
	} else {
		r.p.pending.remove(res.CertSerial)
	}
	if r.recording != nil {
		// The run record may still be being written: wait for it, then
		// close the run with its result.
		if rerr := r.recording.wait(); rerr != nil && err == nil {
			err = &StepError{Step: StepDone, Instruction: instruction(StepDone, rerr, job.Slot), Err: rerr}
		}
	}
	if r.runID != 0 {
		steps := make(map[string]time.Duration, len(r.steps))
		for k, v := range r.steps {
			steps[string(k)] = v
		}
		bg := context.WithoutCancel(ctx)
		var ferr error
		if err == nil {
			// Read-back and end-of-line passed: the certificate is
			// confirmed and the run closed in one durable commit.
			ferr = r.confirmAndFinish(bg, res.CertSerial, steps)
		} else {
			result := db.RunFailed
			if errors.Is(err, db.ErrQuotaExceeded) || errors.Is(err, ca.ErrQuotaExceeded) {
				// Work order complete: turned away before anything was
				// issued, not a failure of the device.
				result = db.RunRefused
			}
			ferr = p.cfg.Store.FinishRun(bg, r.runID, result, err.Error(), steps)
		}
		if ferr != nil && err == nil {
			err = &StepError{Step: StepDone, Instruction: instruction(StepDone, ferr, job.Slot), Err: fmt.Errorf("record result: %w", ferr)}
		}
	}
	if err != nil {
		return nil, err
	}
	res.Wire = r.client.Stats()
	res.Steps = r.steps
	res.Duration = time.Since(r.start)
	r.step = StepDone
	if job.Events != nil {
		job.Events(Event{Time: time.Now(), Slot: job.Slot, Port: job.Port, Serial: res.Serial, Step: StepDone, State: StatePassed,
			Detail: fmt.Sprintf("certificate %s", res.CertSerial), Result: res, ChipID: res.ChipID})
	}
	return res, nil
}

func (r *run) sequence(ctx context.Context) (*Result, error) {
	cfg := r.p.cfg
	c := r.client
	var hello *proto.HelloResponse
	var proof Proof
	err := r.do(ctx, StepHello, func() error {
		var err error
		hello, err = c.Hello(ctx)
		if err != nil {
			return err
		}
		// The serial is checked before anything is recorded: it becomes a
		// database key, a certificate subject, a file name and a line on
		// the operator's screen.
		if err := ValidSerial(hello.Serial); err != nil {
			return err
		}
		if err := validModel(hello.Model); err != nil {
			return err
		}
		r.serial = hello.Serial
		if r.job.Label != "" && r.job.Label != hello.Serial {
			return fmt.Errorf("%w: label %q, device reports %q", ErrLabelMismatch, r.job.Label, hello.Serial)
		}
		// The proof comes from the work order's policy; the Hello only
		// selects among the proofs the policy accepts.
		if proof, err = chooseProof(r.p.proofs, hello); err != nil {
			return err
		}
		// The device and run records are written while the device works
		// on the next requests; the run id is awaited before issuance.
		dev := db.Device{Serial: hello.Serial, Backend: hello.Backend, Model: hello.Model}
		rs := db.RunStart{DeviceSerial: hello.Serial, Slot: r.job.Slot, Station: cfg.Station, Operator: r.p.currentOperator(), WorkOrder: cfg.WorkOrder}
		r.recording = goAsync(func() error {
			if err := cfg.Store.EnsureDevice(ctx, dev); err != nil {
				return fmt.Errorf("record device: %w", err)
			}
			id, err := cfg.Store.StartRun(ctx, rs)
			if err != nil {
				return fmt.Errorf("record run: %w", err)
			}
			r.runID = id
			return nil
		})
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNoProof) {
			r.recordAttestFailure(ctx, err)
		}
		return nil, err
	}
	r.proof = proof.Name()
	r.trust.signing = r.wantsSigningKey(hello, r.proof)
	if err := r.measuredBootGate(ctx, hello); err != nil {
		return nil, err
	}
	// A secure element gets a compressible certificate: whole-year
	// validity. A profile that cannot give one is refused here, before the
	// chip makes a key.
	isSE := proof.Name() == ca.ProofATECC608
	var seYears int
	if isSE {
		if seYears, err = r.p.seYears(); err != nil {
			return nil, profileStepError(err)
		}
	}
	res, err := r.proveAndDeliver(ctx, hello, proof, isSE, seYears)
	if errors.Is(err, db.ErrKeyRevoked) && hasCap(hello.Capabilities, capReset) {
		// The device's key was revoked while its certificate was never
		// confirmed (a past session ended without it; a revocation that
		// holds the chip was refused before, by the red bin). The device
		// discards its keys and proves a new one; the old key stays revoked.
		err = r.do(ctx, StepKeys, func() error { return c.Reset(ctx) })
		if err != nil {
			return nil, err
		}
		r.issued = ""
		res, err = r.proveAndDeliver(ctx, hello, proof, isSE, seYears)
	}
	return res, err
}

// capReset is the Hello capability of an agent that can discard its keys
// and chain (MsgReset).
const capReset = "reset"

// proveAndDeliver runs the proof, issues (or re-delivers), installs, reads
// back, checks end of line and locks.
func (r *run) proveAndDeliver(ctx context.Context, hello *proto.HelloResponse, proof Proof, isSE bool, seYears int) (*Result, error) {
	cfg := r.p.cfg
	c := r.client
	nonce, err := newNonce()
	if err != nil {
		return nil, err
	}
	pr := &ProofRun{Client: c, Hello: hello, Serial: r.serial, Nonce: nonce,
		Step:     func(s Step, f func() error) error { return r.do(ctx, s, f) },
		Identify: func(chipID []byte) error { return r.identify(ctx, chipID) },
		Prepare:  r.signingKeyAhead(hello, nonce),
	}
	proven, err := proof.Prove(ctx, pr)
	if err != nil {
		r.recordAttestFailure(ctx, err)
		return nil, err
	}
	r.chipID = proven.ChipID
	csr := proven.CSR

	res := &Result{Serial: r.serial, Backend: hello.Backend, Proof: proof.Name(), ChipID: proven.ChipID}
	// chainDER is the issued chain (leaf first); installDER what the device
	// stores and reads back (the same, but for a secure element).
	var chainDER, installDER [][]byte
	err = r.do(ctx, StepIssue, func() error {
		if err := r.recording.wait(); err != nil {
			return err
		}
		if err := r.rework(ctx, proof.Name(), proven.ChipID); err != nil {
			return err
		}
		if err := r.ownerAuthGate(ctx); err != nil {
			return err
		}
		keyDER := csr.RawSubjectPublicKeyInfo
		intent, existing, err := cfg.Store.BeginIssue(ctx, db.IssueIntent{DeviceSerial: r.serial, KeyPublicDER: keyDER, WorkOrder: cfg.WorkOrder,
			RunID: r.runID, Proof: proof.Name(), ChipID: proven.ChipID})
		if errors.Is(err, db.ErrDeviceMismatch) {
			return fmt.Errorf("%w: serial %s is bound to another chip", ErrChipMismatch, r.serial)
		}
		if err != nil {
			return fmt.Errorf("record issuance intent: %w", err)
		}
		r.fault(FaultIntent)
		if existing != nil {
			// Same key, certificate already issued: deliver it again rather
			// than issuing a second live certificate for this device.
			chainDER = existing.Chain
			res.CertSerial = existing.SerialHex
			res.Redelivered = true
		} else {
			// The intent recorded above is handed to the CA: a CA on the
			// station database completes it inside its signature, before
			// the certificate leaves the authority (exactly once, and one
			// durable commit rather than two).
			req := ca.IssueRequest{DeviceSerial: r.serial, Validity: cfg.Validity, Profile: cfg.Profile, Proof: proof.Name(),
				Model: hello.Model, Backend: hello.Backend, WorkOrder: cfg.WorkOrder, IntentID: intent, RunID: r.runID, ExtKeyUsages: r.idevidEKUs()}
			if cfg.NamesFor != nil {
				req.Names = cfg.NamesFor(r.serial)
			}
			if isSE {
				if err := compressibleRequest(&req, csr, seYears, time.Now(), currentIssuer(cfg.Issuer)); err != nil {
					return err
				}
			}
			chain, err := cfg.Issuer.Issue(ctx, proven.CSRDER, req)
			if err != nil {
				return fmt.Errorf("issue: %w", err)
			}
			for _, cert := range chain {
				chainDER = append(chainDER, cert.Raw)
			}
			leaf := chain[0]
			res.CertSerial = SerialHex(leaf)
			r.issued = res.CertSerial
			r.fault(FaultSigned)
		}
		installDER = chainDER
		for _, der := range chainDER {
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return fmt.Errorf("parse issued chain: %w", err)
			}
			res.Chain = append(res.Chain, cert)
		}
		// One spelling of the serial whether issued or re-delivered (the
		// database keeps its own normalised form).
		res.CertSerial = SerialHex(res.Chain[0])
		r.issued = res.CertSerial
		leafKey, ok := res.Chain[0].PublicKey.(*ecdsa.PublicKey)
		csrKey, ok2 := csr.PublicKey.(*ecdsa.PublicKey)
		if !ok || !ok2 || !leafKey.Equal(csrKey) {
			return fmt.Errorf("%w: issued certificate does not carry the device key", ErrDelivery)
		}
		if isSE {
			// The chip stores the device certificate and its signer only.
			if err := checkSEChain(res.Chain); err != nil {
				return err
			}
			installDER = chainDER[:2]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = r.do(ctx, StepInstall, func() error {
		got, err := c.InstallChain(ctx, proto.InstallChainRequest{Chain: installDER})
		if err != nil {
			return err
		}
		if !bytes.Equal(got.SHA256, chainSum(installDER)) {
			return fmt.Errorf("%w: device stored a different chain than sent", ErrReadBack)
		}
		r.fault(FaultInstalled)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The signing key is collected now, so that the station checks it and
	// the CA certifies it while the device reads its identity chain back
	// and signs the end-of-line module (on a slow chip the order costs
	// nothing: the key's certification made ahead runs meanwhile either
	// way).
	if err := r.signingKeyStep(ctx, hello, proven); err != nil {
		return nil, err
	}
	// Delivery is recorded while the device reads its chain back; the
	// read-back is judged once it is recorded.
	delivered := goAsync(func() error { return cfg.Store.MarkDelivered(ctx, res.CertSerial) })
	err = r.do(ctx, StepReadBack, func() error {
		got, err := c.ReadChain(ctx)
		if derr := delivered.wait(); derr != nil {
			return fmt.Errorf("record delivery: %w", derr)
		}
		if err != nil {
			return err
		}
		if len(got.Chain) != len(installDER) {
			return fmt.Errorf("%w: read %d certificates, wrote %d", ErrReadBack, len(got.Chain), len(installDER))
		}
		for i := range got.Chain {
			if !bytes.Equal(got.Chain[i], installDER[i]) {
				return fmt.Errorf("%w: certificate %d differs", ErrReadBack, i)
			}
		}
		r.fault(FaultReadBack)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = r.do(ctx, StepEOL, func() error {
		// End-of-line check: the device signs a WebAssembly module with its
		// hardware key (its signing key when it has one) and the station
		// verifies it as QA will.
		if err := r.eolCheck(ctx, c, nonce, res.Chain); err != nil {
			return err
		}
		r.fault(FaultEOL)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := r.anchorsStep(ctx, hello); err != nil {
		return nil, err
	}
	res.SigningChain = r.trust.chain
	if cfg.Lock {
		err = r.do(ctx, StepLock, func() error {
			return c.Lock(ctx)
		})
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

// withNote appends a sentence to a run's error, keeping its step,
// instruction and sentinel.
func withNote(err error, note string) error {
	var se *StepError
	if errors.As(err, &se) {
		return &StepError{Step: se.Step, Instruction: se.Instruction, Err: fmt.Errorf("%w; %s", se.Err, note)}
	}
	return fmt.Errorf("%w; %s", err, note)
}

func chainSum(chain [][]byte) []byte {
	h := sha256.New()
	for _, c := range chain {
		h.Write(c)
	}
	return h.Sum(nil)
}

func hasCap(caps []string, c string) bool {
	for _, x := range caps {
		if x == c {
			return true
		}
	}
	return false
}

// SerialHex is the upper-case hex of a certificate's serial number bytes, as
// openssl prints it; the database and the operator screen use this form.
func SerialHex(c *x509.Certificate) string {
	return strings.ToUpper(hex.EncodeToString(c.SerialNumber.Bytes()))
}
