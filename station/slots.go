package station

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/proto"
	"go.bug.st/serial"
)

// ErrWorkOrderComplete marks the event of a slot whose device was refused
// because the work order's quantity is reached: the work order is
// complete; the device did not fail.
var ErrWorkOrderComplete = errors.New("work order complete")

// SlotSpec is one place on the bench: a serial port given by path, or a USB
// serial adapter found by its USB identity (go.bug.st/serial/enumerator).
type SlotSpec struct {
	Slot int
	// Port is a device path (/dev/ttyUSB0, a pseudo-terminal, or a symlink
	// to one).
	Port string
	// USB matches "VID:PID" or "VID:PID:SERIAL" (hex, case-insensitive).
	USB string
}

// BenchConfig configures a Bench.
type BenchConfig struct {
	Provisioner *Provisioner
	Slots       []SlotSpec
	// MaxFailures is how many failed attempts quarantine a device (default 3).
	MaxFailures int
	// Poll is how often an idle slot looks for a device (default 250 ms).
	Poll time.Duration
	// ProbeTimeout bounds the Hello that detects a device (default 400 ms).
	ProbeTimeout time.Duration
	// Events receives every event (safe for concurrent use).
	Events func(Event)
	// Running starts the bench with the work order running.
	Running bool
	// AfterPass, when set, runs after each device passed, before the pass
	// is announced (e.g. LabelPrinter). Its error never fails the device:
	// it is shown with the pass (Event.LabelErr, SlotStatus.LabelErr).
	AfterPass func(ctx context.Context, r *Result) error
}

// SlotStatus is a snapshot of one slot.
type SlotStatus struct {
	Slot        int
	Port        string
	State       State
	Step        Step
	Serial      string
	Label       string
	Attempts    int
	Err         error
	Instruction string
	Started     time.Time
	Finished    time.Time
	CertSerial  string
	// ChipID is the device's proven chip identity (nil before the proof).
	ChipID []byte
	// LabelErr says why the label of the device that passed was not
	// printed ("" when it was, or when the bench prints none).
	LabelErr string
}

type slot struct {
	spec   SlotSpec
	status SlotStatus
	wake   chan struct{}
	retry  bool
	// rework is a supervisor's rework for the slot's next run (Bench.Rework).
	rework *Rework
	// absent is set when a failed slot's device stopped answering; it is
	// only touched by the slot's own goroutine.
	absent bool
}

// Bench runs N slots concurrently: each slot notices a device that is
// plugged in, provisions it, shows the result until the device is pulled,
// and waits for the operator on failure. A device that fails MaxFailures
// times is quarantined.
type Bench struct {
	cfg      BenchConfig
	mu       sync.Mutex
	slots    []*slot
	running  bool
	complete bool           // the work order's quantity is reached
	failures map[string]int // per device serial, this session
}

// WorkOrderProgress is the work order's production so far, as the station
// database counts it (the figures `wsc db stats` prints).
type WorkOrderProgress struct {
	WorkOrder string
	Quantity  int
	// Done counts devices (each once) that passed under the work order.
	Done int
	// Assigned counts devices holding a unit of the quantity.
	Assigned int
	// RunsOK and RunsFailed count attempts.
	RunsOK, RunsFailed int
	// Complete is set when the quantity is reached.
	Complete bool
}

// Remaining is the number of devices still to make.
func (p WorkOrderProgress) Remaining() int { return max(p.Quantity-p.Done, 0) }

// statsStore is the optional capability of a Store that counts a work
// order's production (db.Store has it).
type statsStore interface {
	Stats(ctx context.Context, workOrder string) ([]db.WorkOrderStats, error)
}

// Progress returns the work order's production counters from the
// database. It fails when the store cannot count.
func (b *Bench) Progress(ctx context.Context) (WorkOrderProgress, error) {
	p := b.provisioner()
	wo := p.cfg.WorkOrder
	ss, ok := p.cfg.Store.(statsStore)
	if !ok || wo == "" {
		return WorkOrderProgress{}, errors.New("station: this bench has no work order counters")
	}
	st, err := ss.Stats(ctx, wo)
	if err != nil {
		return WorkOrderProgress{}, fmt.Errorf("work order %s counters: %w", wo, err)
	}
	if len(st) != 1 {
		return WorkOrderProgress{}, fmt.Errorf("work order %s counters: %d rows", wo, len(st))
	}
	w := st[0]
	b.mu.Lock()
	complete := b.complete
	b.mu.Unlock()
	return WorkOrderProgress{WorkOrder: w.WorkOrder, Quantity: w.Quantity, Done: w.Done, Assigned: w.Assigned,
		RunsOK: w.RunsOK, RunsFailed: w.Failed, Complete: complete || (w.Quantity > 0 && w.Done >= w.Quantity)}, nil
}

// provisioner is the provisioner of the current work order.
func (b *Bench) provisioner() *Provisioner {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg.Provisioner
}

// SwitchWorkOrder makes p (a provisioner of another work order) the
// bench's, when no slot is running: the work order is then stopped (the
// operator starts it with s) and not complete. Certificates the previous
// work order signed whose device never confirmed them are revoked first,
// as at the end of a session.
func (b *Bench) SwitchWorkOrder(ctx context.Context, p *Provisioner) error {
	if p == nil {
		return errors.New("station: switch work order: no provisioner")
	}
	b.mu.Lock()
	for _, s := range b.slots {
		if s.status.State == StateRunning {
			b.mu.Unlock()
			return fmt.Errorf("slot %d is running: wait for it to finish, then switch the work order", s.spec.Slot)
		}
	}
	old := b.cfg.Provisioner
	b.cfg.Provisioner, b.complete, b.running = p, false, false
	b.mu.Unlock()
	p.SetOperator(old.currentOperator())
	if _, err := old.SweepUnconfirmed(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("revoke unconfirmed certificates of work order %s: %w", old.cfg.WorkOrder, err)
	}
	b.wakeAll()
	return nil
}

// Complete reports whether the work order's quantity was reached on this
// bench (it then starts no new device).
func (b *Bench) Complete() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.complete
}

// NewBench checks cfg and returns a Bench.
func NewBench(cfg BenchConfig) (*Bench, error) {
	if cfg.Provisioner == nil {
		return nil, errors.New("station: bench needs a provisioner")
	}
	if len(cfg.Slots) == 0 {
		return nil, errors.New("station: bench needs at least one slot")
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = 3
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 400 * time.Millisecond
	}
	b := &Bench{cfg: cfg, running: cfg.Running, failures: map[string]int{}}
	seen := map[int]bool{}
	for _, s := range cfg.Slots {
		if s.Slot <= 0 || seen[s.Slot] {
			return nil, fmt.Errorf("station: slot numbers must be positive and unique (slot %d)", s.Slot)
		}
		if (s.Port == "") == (s.USB == "") {
			return nil, fmt.Errorf("station: slot %d needs exactly one of port or usb", s.Slot)
		}
		seen[s.Slot] = true
		b.slots = append(b.slots, &slot{spec: s, wake: make(chan struct{}, 1), status: SlotStatus{Slot: s.Slot, Port: s.Port, State: StateIdle}})
	}
	return b, nil
}

// Run runs every slot until ctx ends. A certificate signed in this session
// whose device failed and never came back to confirm it is revoked when Run
// ends (Provisioner.SweepUnconfirmed).
func (b *Bench) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range b.slots {
		wg.Add(1)
		go func() { defer wg.Done(); b.runSlot(ctx, s) }()
	}
	wg.Wait()
	revoked, err := b.provisioner().SweepUnconfirmed(context.WithoutCancel(ctx))
	for _, sn := range revoked {
		b.emit(Event{Time: time.Now(), State: StateIdle, Detail: fmt.Sprintf("certificate %s revoked (cessationOfOperation): its device never confirmed it", sn)})
	}
	if err != nil {
		return err
	}
	return ctx.Err()
}

// SetRunning starts (true) or stops (false) the work order: a stopped bench
// finishes the devices it is provisioning but starts no new ones.
func (b *Bench) SetRunning(on bool) {
	b.mu.Lock()
	b.running = on && !b.complete
	b.mu.Unlock()
	b.wakeAll()
}

// Running reports whether the work order is running.
func (b *Bench) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.running
}

// SetOperator records who runs the bench from now on (after a login).
func (b *Bench) SetOperator(op string) { b.provisioner().SetOperator(op) }

// Retry asks a failed slot to run its device again.
func (b *Bench) Retry(n int) error {
	s, err := b.slot(n)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.status.State != StateFailed {
		return fmt.Errorf("slot %d is %s, not failed: nothing to retry", n, s.status.State)
	}
	s.retry = true
	poke(s.wake)
	return nil
}

// Rework runs the failed device on slot n again under a supervisor's
// rework, against its scanned label (the operator screen's rework; the
// caller has checked the supervisor's PIN and role). rw.ChipReset is the
// supervisor's statement that the RMA desk cleared the chip's TPM; the run
// records it. The rework applies to the slot's next run only, and is
// dropped when the device is pulled.
func (b *Bench) Rework(n int, label string, rw Rework) error {
	if label == "" || rw.Supervisor == "" {
		return errors.New("a rework needs the device's scanned label and the supervisor")
	}
	s, err := b.slot(n)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.status.State != StateFailed {
		return fmt.Errorf("slot %d is %s, not failed: nothing to rework", n, s.status.State)
	}
	s.status.Label, s.rework, s.retry = label, &rw, true
	poke(s.wake)
	return nil
}

// Quarantine sends the device on slot n to the red bin at the operator's
// request. When the station knows the device's chip, the red bin is
// recorded against the chip (it sticks: the chip is refused until a
// supervisor releases it); a device that had passed also has its
// certificate revoked (cessationOfOperation), so that a board set aside
// does not keep a live identity. The operator screen asks for confirmation
// before it calls this on a passed device.
func (b *Bench) Quarantine(n int) error {
	s, err := b.slot(n)
	if err != nil {
		return err
	}
	b.mu.Lock()
	if s.status.State == StateRunning {
		b.mu.Unlock()
		return fmt.Errorf("slot %d is running: wait for it to finish", n)
	}
	st := s.status
	b.mu.Unlock()
	p := b.provisioner()
	ctx := context.Background()
	detail := fmt.Sprintf("Put the device on slot %d in the red bin.", n)
	if len(st.ChipID) > 0 {
		if st.State == StatePassed && st.CertSerial != "" {
			if _, err := p.cfg.Store.RevokeRecorded(ctx, st.CertSerial, db.ReasonCessationOfOperation, "red-binned by the operator after it passed", p.currentOperator()); err != nil {
				return fmt.Errorf("revoke the certificate of slot %d: %w", n, err)
			}
			detail += fmt.Sprintf(" Its certificate %s is revoked.", st.CertSerial)
		}
		if err := p.cfg.Store.RedBin(ctx, db.RedBinEntry{ChipID: st.ChipID, Serial: st.Serial, Reason: "red-binned by the operator",
			CertSerial: st.CertSerial, Operator: p.currentOperator()}); err != nil {
			return fmt.Errorf("record the red bin of slot %d: %w", n, err)
		}
	}
	b.mu.Lock()
	s.status.State = StateQuarantined
	s.status.Instruction = detail
	st = s.status
	b.mu.Unlock()
	b.emit(Event{Time: time.Now(), Slot: n, Port: st.Port, Serial: st.Serial, Step: st.Step, State: StateQuarantined, Detail: st.Instruction})
	poke(s.wake)
	return nil
}

// BindLabel binds a scanned device label to slot n, or with n == 0 to the
// first slot that is idle and has no label yet. It returns the slot used.
func (b *Bench) BindLabel(n int, label string) (int, error) {
	if label == "" {
		return 0, errors.New("empty label")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.slots {
		if (n == 0 && s.status.Label == "" && s.status.State == StateIdle) || s.spec.Slot == n {
			s.status.Label = label
			return s.spec.Slot, nil
		}
	}
	if n == 0 {
		return 0, errors.New("no idle slot without a label")
	}
	return 0, fmt.Errorf("no slot %d", n)
}

// Snapshot returns the state of every slot.
func (b *Bench) Snapshot() []SlotStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]SlotStatus, len(b.slots))
	for i, s := range b.slots {
		out[i] = s.status
	}
	return out
}

func (b *Bench) slot(n int) (*slot, error) {
	for _, s := range b.slots {
		if s.spec.Slot == n {
			return s, nil
		}
	}
	return nil, fmt.Errorf("no slot %d", n)
}

func (b *Bench) wakeAll() {
	for _, s := range b.slots {
		poke(s.wake)
	}
}

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (b *Bench) emit(e Event) {
	if b.cfg.Events != nil {
		b.cfg.Events(e)
	}
}

// runSlot is one slot's state machine:
//
//	idle --device answers--> running --ok--> passed --device gone--> idle
//	                                 --err--> failed --r or reseat--> running
//	failed MaxFailures times --> quarantined --device gone--> idle
func (b *Bench) runSlot(ctx context.Context, s *slot) {
	for ctx.Err() == nil {
		b.mu.Lock()
		status, retry, running := s.status, s.retry, b.running
		st := status.State
		s.retry = false
		b.mu.Unlock()

		switch {
		case st == StateIdle && running:
			port, err := b.resolve(s)
			if err == nil && b.probe(ctx, port) {
				b.provision(ctx, s, port)
				continue
			}
		case st == StateFailed && retry:
			if port, err := b.resolve(s); err == nil {
				b.provision(ctx, s, port)
				continue
			}
		case st == StateFailed:
			// The failure and its instruction stay on screen. A device that
			// goes away and answers again was reseated (or replaced): run it.
			port, err := b.resolve(s)
			var serial string
			present := err == nil
			if present {
				serial, present = b.probeSerial(ctx, port)
			}
			if !present {
				// A pulled device takes its rework with it: the next device
				// on the slot needs its own (unless the rework came in while
				// this probe ran: it asked for the retry too).
				s.absent = true
				b.mu.Lock()
				if !s.retry {
					s.rework = nil
				}
				b.mu.Unlock()
			} else if (s.absent || replaced(status, serial)) && running {
				b.provision(ctx, s, port)
				continue
			}
		case st == StatePassed || st == StateQuarantined:
			// The result stays on screen until the device is pulled (or
			// another device answers on the slot).
			port, err := b.resolve(s)
			if err != nil {
				b.setIdle(s)
				continue
			}
			if serial, ok := b.probeSerial(ctx, port); !ok || replaced(status, serial) {
				b.setIdle(s)
				continue
			}
		}
		select {
		case <-ctx.Done():
		case <-s.wake:
		case <-time.After(b.cfg.Poll):
		}
	}
}

func (b *Bench) setIdle(s *slot) {
	b.mu.Lock()
	prev := s.status
	s.status = SlotStatus{Slot: prev.Slot, Port: prev.Port, State: StateIdle}
	s.rework = nil
	b.mu.Unlock()
	b.emit(Event{Time: time.Now(), Slot: prev.Slot, Port: prev.Port, State: StateIdle, Detail: "device removed"})
}

// resolve finds the slot's port path now (USB adapters may re-enumerate).
func (b *Bench) resolve(s *slot) (string, error) {
	if s.spec.Port != "" {
		if _, err := os.Stat(s.spec.Port); err != nil {
			return "", err
		}
		return s.spec.Port, nil
	}
	return FindUSBPort(s.spec.USB)
}

// probe reports whether a device answers Hello on port.
func (b *Bench) probe(ctx context.Context, port string) bool {
	_, ok := b.probeSerial(ctx, port)
	return ok
}

// probeSerial is probe, with the serial the device reports. The serial
// only tells one device from another on a slot (a board replaced without
// the slot seeing the port go away); it is checked again, as hostile
// input, by the run that provisions the device.
func (b *Bench) probeSerial(ctx context.Context, port string) (string, bool) {
	p, err := serial.Open(port, &serial.Mode{BaudRate: b.provisioner().cfg.Baud})
	if err != nil {
		return "", false
	}
	defer p.Close()
	c := proto.NewClient(p, proto.WithLogger(b.provisioner().cfg.Logger), proto.WithRetries(0),
		proto.WithTimeouts(map[proto.MsgType]time.Duration{proto.MsgHello: b.cfg.ProbeTimeout}))
	defer c.Close()
	h, err := c.Hello(ctx)
	if err != nil {
		return "", false
	}
	return h.Serial, true
}

// replaced reports whether the device answering on a slot is another one
// than the slot's last (both serials known and different).
func replaced(st SlotStatus, serial string) bool {
	return serial != "" && st.Serial != "" && serial != st.Serial
}

func (b *Bench) provision(ctx context.Context, s *slot, port string) {
	b.mu.Lock()
	label, rework := s.status.Label, s.rework
	s.rework = nil
	s.status.State, s.status.Started, s.status.Err, s.status.Instruction = StateRunning, time.Now(), nil, ""
	s.status.Attempts++
	s.absent = false
	b.mu.Unlock()
	var final *Event
	events := func(e Event) {
		if e.State != StateRunning {
			// The end of the run is announced below, once the slot's
			// status says so too.
			final = &e
			if e.Serial != "" {
				b.mu.Lock()
				s.status.Serial = e.Serial
				b.mu.Unlock()
			}
			return
		}
		b.mu.Lock()
		if e.Serial != "" {
			s.status.Serial = e.Serial
		}
		if e.ChipID != nil {
			s.status.ChipID = e.ChipID
		}
		s.status.Step = e.Step
		b.mu.Unlock()
		b.emit(e)
	}
	res, err := b.provisioner().Provision(ctx, Job{Slot: s.spec.Slot, Port: port, Label: label, Events: events, Rework: rework})
	var labelErr error
	if err == nil && b.cfg.AfterPass != nil {
		labelErr = b.cfg.AfterPass(context.WithoutCancel(ctx), res)
	}
	b.mu.Lock()
	s.status.Finished = time.Now()
	if err == nil {
		s.status.State, s.status.CertSerial, s.status.Serial, s.status.Step = StatePassed, res.CertSerial, res.Serial, StepDone
		s.status.LabelErr = ""
		if labelErr != nil {
			s.status.LabelErr = labelErr.Error()
		}
		b.mu.Unlock()
		// The pass that reaches the quantity completes the work order:
		// the bench starts no new device. Decided before the pass is
		// announced, so whoever sees the pass sees the bench complete.
		if pr, perr := b.Progress(context.WithoutCancel(ctx)); perr == nil && pr.Complete {
			b.mu.Lock()
			b.complete, b.running = true, false
			b.mu.Unlock()
		}
		if final != nil {
			final.LabelErr = labelErr
			b.emit(*final)
		}
		return
	}
	if errors.Is(err, db.ErrQuotaExceeded) || errors.Is(err, ca.ErrQuotaExceeded) {
		// The quantity is reached: the work order is complete, which is
		// not the device's failure. The bench starts no new device; the
		// device refused is safe to provision under the next work order.
		b.complete, b.running = true, false
		prev := s.status
		s.status = SlotStatus{Slot: prev.Slot, Port: prev.Port, State: StateIdle,
			Instruction: "Work order complete: pull the device; it was not provisioned and is safe to provision under the next work order."}
		st := s.status
		b.mu.Unlock()
		b.emit(Event{Time: time.Now(), Slot: st.Slot, Port: st.Port, Serial: prev.Serial, State: StateIdle, Detail: st.Instruction, Err: ErrWorkOrderComplete})
		return
	}
	s.status.Err = err
	s.status.State = StateFailed
	var se *StepError
	if errors.As(err, &se) {
		s.status.Instruction = se.Instruction
	}
	serial := s.status.Serial
	quarantine := false
	if serial != "" {
		b.failures[serial]++
		quarantine = b.failures[serial] >= b.cfg.MaxFailures
	}
	// Refusals that retrying cannot change stay on screen as RED BIN with
	// their own instruction.
	hard := errors.Is(err, ErrAttestation) || errors.Is(err, ErrRedBin) || errors.Is(err, ErrChipMismatch) ||
		errors.Is(err, ErrSerialInvalid) || errors.Is(err, ErrKeyPolicy) || definitive(err)
	switch {
	case hard:
		s.status.State = StateQuarantined
	case quarantine:
		s.status.State = StateQuarantined
		s.status.Instruction = fmt.Sprintf("Device %s failed %d times: put it in the red bin.", serial, b.failures[serial])
	}
	st := s.status
	b.mu.Unlock()
	if quarantine && !hard && len(st.ChipID) > 0 {
		// Repeated failures of a proven chip: the red bin sticks.
		p := b.provisioner()
		if rerr := p.cfg.Store.RedBin(context.WithoutCancel(ctx), db.RedBinEntry{ChipID: st.ChipID, Serial: serial,
			Reason: fmt.Sprintf("failed %d times; last: %v", b.failures[serial], err), Operator: p.currentOperator()}); rerr != nil {
			st.Instruction += fmt.Sprintf(" (recording the red bin failed: %v)", rerr)
		}
	}
	e := Event{Time: time.Now(), Slot: st.Slot, Port: st.Port, Serial: st.Serial, Step: st.Step, State: st.State, Detail: st.Instruction, Err: err}
	if final != nil {
		e.Time = final.Time
	}
	b.emit(e)
}
