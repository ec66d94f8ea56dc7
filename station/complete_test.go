package station

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
)

// TestBenchWorkOrderComplete: a work order of 2 on a bench of 3 devices.
// Two pass; the bench then stops by itself (work order complete) and
// refuses to start again; a third device that reached issuance first is
// refused by the quota, which is reported as "work order complete" (the
// slot idle with the instruction to pull the device), never as FAILED.
// Progress counts 2 of 2 devices done, as the database does. A supervisor
// then switches the bench to the next work order.
func TestBenchWorkOrderComplete(t *testing.T) {
	l := newTestLine(t, 3, "")
	ctx := context.Background()
	if err := EnsureWorkOrder(ctx, l.store, WorkOrder{ID: "WO-Q", Product: "p", Quantity: 2, Lock: "none"}); err != nil {
		t.Fatal(err)
	}
	pc := l.prov.cfg
	pc.WorkOrder = "WO-Q"
	p, err := NewProvisioner(pc)
	if err != nil {
		t.Fatal(err)
	}
	log := newEventLog()
	bench, err := NewBench(BenchConfig{Provisioner: p, Slots: slotsOf(l.bench), Running: true, Events: log.add, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- bench.Run(rctx) }()
	defer func() { cancel(); <-done }()

	passed := map[int]bool{}
	log.waitFor(t, "two devices passed", 120*time.Second, func(ev Event) bool {
		if ev.State == StatePassed {
			passed[ev.Slot] = true
		}
		return len(passed) == 2
	})
	// The third device, if it reached issuance before the second pass, was
	// refused by the quota: that is reported as the work order complete,
	// the slot idle with its instruction.
	log.mu.Lock()
	for _, ev := range log.evs {
		if errors.Is(ev.Err, ErrWorkOrderComplete) && (ev.State != StateIdle || ev.Detail == "") {
			t.Errorf("complete event: %+v", ev)
		}
	}
	log.mu.Unlock()
	log.mu.Lock()
	for _, ev := range log.evs {
		if ev.State == StateFailed || ev.State == StateQuarantined {
			t.Errorf("a slot failed: %v", ev)
		}
	}
	log.mu.Unlock()
	if !bench.Complete() || bench.Running() {
		t.Fatalf("complete %v running %v", bench.Complete(), bench.Running())
	}
	bench.SetRunning(true)
	if bench.Running() {
		t.Fatal("a complete work order started again")
	}
	pr, err := bench.Progress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A run refused by the reached quantity is recorded as refused, not as a
	// failed attempt; the devices are what counts against the quantity.
	if pr.Quantity != 2 || pr.Done != 2 || pr.Remaining() != 0 || !pr.Complete || pr.RunsOK != 2 || pr.RunsFailed != 0 {
		t.Fatalf("progress %+v", pr)
	}
	// A supervisor switches the bench to the next work order: it is
	// neither complete nor running until started.
	if err := EnsureWorkOrder(ctx, l.store, WorkOrder{ID: "WO-R", Product: "p", Quantity: 5, Lock: "none"}); err != nil {
		t.Fatal(err)
	}
	// The third device may still be on its way to the refusal: the switch
	// waits for every slot to finish, as the supervisor is told to.
	log.waitFor(t, "no slot running", 120*time.Second, func(Event) bool {
		for _, st := range bench.Snapshot() {
			if st.State == StateRunning {
				return false
			}
		}
		return true
	})
	pc.WorkOrder = "WO-R"
	p2, err := NewProvisioner(pc)
	if err != nil {
		t.Fatal(err)
	}
	if err := bench.SwitchWorkOrder(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if bench.Complete() || bench.Running() {
		t.Fatalf("after the switch: complete %v running %v", bench.Complete(), bench.Running())
	}
	bench.SetRunning(true)
	if !bench.Running() {
		t.Fatal("the next work order does not start")
	}
	if pr2, err := bench.Progress(ctx); err != nil || pr2.WorkOrder != "WO-R" || pr2.Quantity != 5 {
		t.Fatalf("progress after the switch: %+v, %v", pr2, err)
	}
	st, err := l.store.Stats(ctx, "WO-Q")
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Done != pr.Done || st[0].Failed != pr.RunsFailed {
		t.Fatalf("progress %+v differs from db stats %+v", pr, st[0])
	}
}

// TestQuotaRefusalIsNotAFailure: with a work order of 1, the second device is
// turned away at issuance. Its run is recorded as refused (not failed), the
// device is not marked failed, the order counts no failure and nothing was
// issued to it.
func TestQuotaRefusalIsNotAFailure(t *testing.T) {
	l := newTestLine(t, 2, "")
	ctx := context.Background()
	if err := EnsureWorkOrder(ctx, l.store, WorkOrder{ID: "WO-1PC", Product: "p", Quantity: 1, Lock: "none"}); err != nil {
		t.Fatal(err)
	}
	pc := l.prov.cfg
	pc.WorkOrder = "WO-1PC"
	p, err := NewProvisioner(pc)
	if err != nil {
		t.Fatal(err)
	}
	first, err := p.Provision(ctx, Job{Slot: 1, Port: l.bench.Devices[0].Port})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Provision(ctx, Job{Slot: 2, Port: l.bench.Devices[1].Port})
	if !errors.Is(err, db.ErrQuotaExceeded) && !errors.Is(err, ca.ErrQuotaExceeded) {
		t.Fatalf("second device of a work order of 1: %v, want the quota exceeded", err)
	}
	if code := ReasonCode(err); code != ReasonQuotaExceeded {
		t.Fatalf("reason code %q", code)
	}
	var refused *db.Run
	for id := int64(1); id <= 2; id++ {
		r, err := l.store.GetRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.DeviceSerial != first.Serial {
			refused = r
		}
	}
	if refused == nil || refused.Result != db.RunRefused {
		t.Fatalf("the turned-away run: %+v", refused)
	}
	if d, err := l.store.GetDevice(ctx, refused.DeviceSerial); err != nil || d.Status == db.DeviceFailed {
		t.Fatalf("turned-away device: %+v %v", d, err)
	}
	st, err := l.store.Stats(ctx, "WO-1PC")
	if err != nil || len(st) != 1 || st[0].Failed != 0 || st[0].RunsOK != 1 || st[0].Done != 1 {
		t.Fatalf("work order stats %+v %v", st, err)
	}
	if certs, err := l.store.Certificates(ctx, refused.DeviceSerial); err != nil || len(certs) != 0 {
		t.Fatalf("certificates of the turned-away device: %d %v", len(certs), err)
	}
}
