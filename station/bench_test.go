package station

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/sim"
	"github.com/wsc-project/wsc/devices/sim/testenv"
)

var agentBin string

func TestMain(m *testing.M) {
	if os.Getenv(killChildEnv) != "" {
		os.Exit(killChild())
	}
	dir, err := os.MkdirTemp("", "wsc-station-test-")
	if err != nil {
		panic(err)
	}
	agentBin = filepath.Join(dir, "wsc-agent")
	cmd := exec.Command("go", "build", "-o", agentBin, "../cmd/wsc-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		panic("build agent: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testLine is a real CA, a real SQLite database and real simulated devices.
type testLine struct {
	dir   string
	ca    *ca.CA
	store *db.Store
	bench *sim.Bench
	prov  *Provisioner
}

func newTestLine(t testing.TB, n int, profile string) *testLine {
	return newTestLineRelay(t, n, profile, nil)
}

func newTestLineRelay(t testing.TB, n int, profile string, relay sim.RelayFunc) *testLine {
	return newTestLineOpts(t, sim.BenchConfig{N: n, LatencyProfile: profile, Relay: relay})
}

// newTestLineOpts builds a line from a sim.BenchConfig (Dir, AgentBinary,
// SerialPrefix and AgentLogDir are filled in).
func newTestLineOpts(t testing.TB, bc sim.BenchConfig) *testLine {
	t.Helper()
	if len(bc.Mix) == 0 || slices.Contains(bc.Mix, sim.KindTPM) {
		testenv.NeedTools(t, "swtpm", "swtpm_setup", "swtpm_localca")
	}
	ctx := context.Background()
	dir := t.TempDir()
	pass := []byte("test passphrase")
	if err := ca.Init(filepath.Join(dir, "ca"), pass, ca.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	store, err := db.Open(filepath.Join(dir, "station.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	c, err := ca.Open(filepath.Join(dir, "ca"), pass, ca.WithStore(CAStore(store)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := EnsureWorkOrder(ctx, store, WorkOrder{ID: "WO-1", Product: "p", Quantity: 100, Lock: "none"}); err != nil {
		t.Fatal(err)
	}
	bc.Dir, bc.SerialPrefix, bc.AgentBinary, bc.AgentLogDir = dir, "T", agentBin, filepath.Join(dir, "logs")
	b, err := sim.StartBench(ctx, bc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	pc := Config{Issuer: c, Store: store, Station: "test", Operator: "op", WorkOrder: "WO-1"}
	if b.VendorRoot != "" { // the bench has TPM devices
		if pc.VendorRoots, err = LoadCertPool(b.VendorRoot); err != nil {
			t.Fatal(err)
		}
		if pc.VendorIntermediates, err = LoadCertPool(b.VendorIssuer); err != nil {
			t.Fatal(err)
		}
		pc.Proofs = append(pc.Proofs, &TPMProof{Roots: pc.VendorRoots, Intermediates: pc.VendorIntermediates})
	}
	if b.SEVendorRoot != "" { // the bench has secure elements
		roots, err := LoadCertPool(b.SEVendorRoot)
		if err != nil {
			t.Fatal(err)
		}
		inter, err := LoadCertPool(b.SEVendorIssuer)
		if err != nil {
			t.Fatal(err)
		}
		pc.Proofs = append(pc.Proofs, &ATECC608Proof{Roots: roots, Intermediates: inter})
	}
	p, err := NewProvisioner(pc)
	if err != nil {
		t.Fatal(err)
	}
	return &testLine{dir: dir, ca: c, store: store, bench: b, prov: p}
}

// eventLog collects events and lets a test wait for one.
type eventLog struct {
	mu  sync.Mutex
	evs []Event
	ch  chan struct{}
}

func newEventLog() *eventLog { return &eventLog{ch: make(chan struct{}, 1)} }

func (l *eventLog) add(e Event) {
	if os.Getenv("WSC_DEBUG_EVENTS") != "" {
		println(e.String())
	}
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
	default:
	}
}

func (l *eventLog) waitFor(t *testing.T, what string, timeout time.Duration, f func(Event) bool) Event {
	t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		l.mu.Lock()
		for ; seen < len(l.evs); seen++ {
			if f(l.evs[seen]) {
				e := l.evs[seen]
				l.mu.Unlock()
				return e
			}
		}
		l.mu.Unlock()
		select {
		case <-l.ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func slotsOf(b *sim.Bench) []SlotSpec {
	var s []SlotSpec
	for i, d := range b.Devices {
		s = append(s, SlotSpec{Slot: i + 1, Port: d.Port})
	}
	return s
}

// TestBenchLifecycle: plugged devices start by themselves and pass; a pulled
// device frees its slot; a device pulled during a run fails with the
// reseat instruction; plugged back and retried, it passes without a second
// certificate.
func TestBenchLifecycle(t *testing.T) {
	l := newTestLine(t, 3, "slb9670")
	log := newEventLog()
	bench, err := NewBench(BenchConfig{Provisioner: l.prov, Slots: slotsOf(l.bench), Running: true, Events: log.add, Poll: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- bench.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Slot 2's cable is pulled while the device creates its keys.
	dev2 := l.bench.Devices[1]
	log.waitFor(t, "slot 2 creating keys", 60*time.Second, func(e Event) bool { return e.Slot == 2 && e.Step == StepKeys })
	dev2.Link.SetConnected(false)

	for _, slot := range []int{1, 3} {
		log.waitFor(t, "pass", 60*time.Second, func(e Event) bool { return e.Slot == slot && e.State == StatePassed })
	}
	fail := log.waitFor(t, "slot 2 failure", 60*time.Second, func(e Event) bool { return e.Slot == 2 && e.State == StateFailed })
	var st SlotStatus
	for _, s := range bench.Snapshot() {
		if s.Slot == 2 {
			st = s
		}
	}
	if st.State != StateFailed || !strings.Contains(st.Instruction, "Reseat the cable on slot 2") {
		t.Fatalf("slot 2 after pull: state %s, instruction %q (event %v)", st.State, st.Instruction, fail)
	}

	// Plug it back and press r, as the instruction says: the device passes.
	dev2.Link.SetConnected(true)
	if err := bench.Retry(2); err != nil {
		// The slot may already have seen the device go and come back.
		t.Logf("retry: %v", err)
	}
	pass := log.waitFor(t, "slot 2 passes after reseat", 60*time.Second, func(e Event) bool { return e.Slot == 2 && e.State == StatePassed })
	if pass.Result == nil || pass.Result.Serial != "T-0002" {
		t.Fatalf("slot 2 result %+v", pass.Result)
	}

	// Pull slot 1 after its pass: the slot goes idle.
	l.bench.Devices[0].Link.SetConnected(false)
	log.waitFor(t, "slot 1 idle", 30*time.Second, func(e Event) bool { return e.Slot == 1 && e.State == StateIdle })

	for _, d := range l.bench.Devices {
		certs, err := l.store.Certificates(context.Background(), d.Serial)
		if err != nil {
			t.Fatal(err)
		}
		if len(certs) != 1 {
			t.Errorf("%s has %d certificates, want exactly 1", d.Serial, len(certs))
		}
	}
}

// TestLabelMismatch: a scanned label that does not match the device stops
// that slot with a clear instruction.
func TestLabelMismatch(t *testing.T) {
	l := newTestLine(t, 1, "")
	_, err := l.prov.Provision(context.Background(), Job{Slot: 1, Port: l.bench.Devices[0].Port, Label: "T-9999"})
	if !errors.Is(err, ErrLabelMismatch) {
		t.Fatalf("err = %v, want ErrLabelMismatch", err)
	}
	var se *StepError
	if !errors.As(err, &se) || !strings.Contains(se.Instruction, "label") {
		t.Fatalf("instruction: %v", err)
	}
	certs, _ := l.store.Certificates(context.Background(), "T-0001")
	if len(certs) != 0 {
		t.Fatalf("a certificate was issued despite the label mismatch")
	}
}

// TestQuarantineAfterFailures: a device failing MaxFailures times is quarantined.
func TestQuarantineAfterFailures(t *testing.T) {
	l := newTestLine(t, 1, "")
	log := newEventLog()
	bench, err := NewBench(BenchConfig{Provisioner: l.prov, Slots: slotsOf(l.bench), Running: true, Events: log.add, MaxFailures: 2, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bench.BindLabel(1, "WRONG-LABEL"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- bench.Run(ctx) }()
	defer func() { cancel(); <-done }()
	log.waitFor(t, "first failure", 30*time.Second, func(e Event) bool { return e.State == StateFailed })
	if err := bench.Retry(1); err != nil {
		t.Fatal(err)
	}
	q := log.waitFor(t, "quarantine", 30*time.Second, func(e Event) bool { return e.State == StateQuarantined })
	if !strings.Contains(q.Detail, "red bin") {
		t.Fatalf("quarantine detail %q", q.Detail)
	}
}

// TestQuotaReached: a work order of quantity 1 provisions one device; the
// second is refused before anything is signed, with an instruction that
// names the work order's end, and no certificate is recorded for it.
func TestQuotaReached(t *testing.T) {
	l := newTestLine(t, 2, "")
	ctx := context.Background()
	if err := EnsureWorkOrder(ctx, l.store, WorkOrder{ID: "WO-SMALL", Product: "p", Quantity: 1, Lock: "none"}); err != nil {
		t.Fatal(err)
	}
	l.prov.cfg.WorkOrder = "WO-SMALL"
	if _, err := l.prov.Provision(ctx, Job{Slot: 1, Port: l.bench.Devices[0].Port}); err != nil {
		t.Fatal(err)
	}
	_, err := l.prov.Provision(ctx, Job{Slot: 2, Port: l.bench.Devices[1].Port})
	var se *StepError
	if !errors.As(err, &se) || !strings.Contains(se.Instruction, "quantity is reached") {
		t.Fatalf("second device on a full work order: %v", err)
	}
	if certs, _ := l.store.Certificates(ctx, l.bench.Devices[1].Serial); len(certs) != 0 {
		t.Fatalf("a certificate was recorded beyond the quota")
	}
}
