package station

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/proto"
)

// TestKillAroundOwnerAuth kills a station process (SIGKILL) between
// "sealed recorded" and the set command (FaultOwnerAuthSealed) and right
// after the chip took the value (FaultOwnerAuthSet), twice per point, on
// seeded, shuffled devices (one fresh TPM per cycle). After every kill the
// database passes integrity_check, the ledger verifies, the record is
// pending (maybe set: the station cannot know which), and the next run of
// that device is refused before anything is issued with the RMA desk's
// instruction — the chip is treated as set (fail closed). The kills per
// point are counted.
func TestKillAroundOwnerAuth(t *testing.T) {
	seed := uint64(20261130)
	t.Logf("seed %d", seed)
	ctx := context.Background()
	points := []string{FaultOwnerAuthSealed, FaultOwnerAuthSet}
	var plan []string
	for range 2 {
		plan = append(plan, points...)
	}
	rand.New(rand.NewPCG(seed, 2)).Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	l := newTestLine(t, len(plan), "")
	p, _ := trustProvisioner(t, l, nil)
	pubPath, _, err := GenerateEscrowKey(t.TempDir(), []byte("escrow test passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	hits := map[string]int{}
	for i, point := range plan {
		d := l.bench.Devices[i]
		marker := filepath.Join(t.TempDir(), "marker")
		job, _ := json.Marshal(killJob{CADir: filepath.Join(l.dir, "ca"), DB: filepath.Join(l.dir, "station.db"),
			VendorRoot: l.bench.VendorRoot, VendorIssuer: l.bench.VendorIssuer, Port: d.Port, Point: point, Marker: marker,
			EscrowPub: pubPath, EOLDir: t.TempDir()})
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), killChildEnv+"="+string(job))
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("seed %d cycle %d (%s on %s): child was not killed: %v\n%s", seed, i, point, d.Serial, err, out)
		}
		if got, err := os.ReadFile(marker); err != nil || string(got) != point {
			t.Fatalf("seed %d cycle %d: killed at %q, planned %q (%v)", seed, i, got, point, err)
		}
		hits[point]++

		if err := l.store.IntegrityCheck(ctx); err != nil {
			t.Fatalf("seed %d cycle %d (%s): %v", seed, i, point, err)
		}
		if _, err := l.store.VerifyAudit(ctx, db.AuditVerifyOptions{}); err != nil {
			t.Fatalf("seed %d cycle %d (%s): ledger: %v", seed, i, point, err)
		}
		recs, err := l.store.OwnerAuths(ctx, d.Serial)
		if err != nil || len(recs) != 1 || recs[0].State != db.OwnerAuthPending || !recs[0].MaybeSet() || recs[0].RunID == 0 || recs[0].RunResult != "" {
			t.Fatalf("seed %d cycle %d (%s): records after the kill %+v, %v", seed, i, point, recs, err)
		}
		before, _ := l.store.Certificates(ctx, d.Serial)
		_, err = p.Provision(ctx, Job{Slot: 1, Port: d.Port})
		if !errors.Is(err, ErrOwnerAuthSealed) || ReasonCode(err) != ReasonOwnerAuthSealed {
			t.Fatalf("seed %d cycle %d (%s): the run after the kill: %v (%s), want the RMA refusal", seed, i, point, err, ReasonCode(err))
		}
		var se *StepError
		if !errors.As(err, &se) || !strings.Contains(se.Instruction, "RMA desk") || !strings.Contains(err.Error(), "maybe set") {
			t.Fatalf("seed %d cycle %d (%s): no RMA instruction: %v", seed, i, point, err)
		}
		after, _ := l.store.Certificates(ctx, d.Serial)
		if len(after) != len(before) {
			t.Errorf("seed %d cycle %d (%s): the refused run issued a certificate (%d → %d)", seed, i, point, len(before), len(after))
		}
		if recs, _ := l.store.OwnerAuths(ctx, d.Serial); len(recs) != 1 || recs[0].State != db.OwnerAuthPending {
			t.Errorf("seed %d cycle %d (%s): records after the refused run %+v", seed, i, point, recs)
		}
	}
	t.Logf("seed %d: kills per point: %v", seed, hits)
	for _, pt := range points {
		if hits[pt] != 2 {
			t.Errorf("seed %d: %d kills at %s, want 2", seed, hits[pt], pt)
		}
	}
}

// TestBenchReworkChipReset: on the bench, a device whose owner
// authorisation the station sealed and set fails (RMA instruction); the
// RMA desk unseals the value, resets the owner authorisation with it and
// clears the TPM (tpm2-tools); Bench.Rework with ChipReset (the operator
// screen's ctrl+e) runs the failed slot again and it passes, with
// owner_auth.chip-reset by the supervisor in the ledger. A rework of a slot
// that did not fail, or without a label, is refused.
func TestBenchReworkChipReset(t *testing.T) {
	testenvTools(t, "tpm2_changeauth", "tpm2_clear")
	ctx := context.Background()
	l := newTestLine(t, 1, "")
	p, escrow := trustProvisioner(t, l, nil)
	d := l.bench.Devices[0]
	if _, err := p.Provision(ctx, Job{Slot: 1, Port: d.Port}); err != nil {
		t.Fatal(err)
	}
	log := newEventLog()
	bench, err := NewBench(BenchConfig{Provisioner: p, Slots: slotsOf(l.bench), Running: true, Events: log.add, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := bench.Rework(1, d.Serial, Rework{Supervisor: "sam", ChipReset: true}); err == nil {
		t.Fatal("rework of a slot that did not fail")
	}
	bctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- bench.Run(bctx) }()
	defer func() { cancel(); <-done }()
	fail := log.waitFor(t, "refused: owner authorisation sealed", 60*time.Second, func(e Event) bool { return e.Slot == 1 && e.State == StateFailed })
	if !errors.Is(fail.Err, ErrOwnerAuthSealed) {
		t.Fatalf("slot 1 failed with %v", fail.Err)
	}
	if err := bench.Rework(1, "", Rework{Supervisor: "sam"}); err == nil {
		t.Fatal("rework without a label")
	}
	// The RMA desk, with the bench stopped so that the device coming back
	// does not start a run by itself.
	bench.SetRunning(false)
	auth, _, err := UnsealRecorded(ctx, l.store, d.Serial, "rma", escrow)
	if err != nil {
		t.Fatal(err)
	}
	tcti := swtpmTCTI(t, d)
	if b, err := tpm2Run(t, tcti, "tpm2_changeauth", "-c", "o", "-p", auth.Hex()); err != nil {
		t.Fatalf("tpm2_changeauth with the unsealed owner authorisation: %v\n%s", err, b)
	}
	if b, err := tpm2Run(t, tcti, "tpm2_clear", auth.Hex()); err != nil { // the lockout value is the owner value
		t.Fatalf("tpm2_clear: %v\n%s", err, b)
	}
	if err := d.StartAgent(); err != nil {
		t.Fatal(err)
	}
	if err := bench.Rework(1, d.Serial, Rework{Supervisor: "sam", ChipReset: true}); err != nil {
		t.Fatal(err)
	}
	pass := log.waitFor(t, "slot 1 passes after the rework", 60*time.Second, func(e Event) bool { return e.Slot == 1 && e.State == StatePassed })
	if pass.Result == nil || pass.Result.Serial != d.Serial {
		t.Fatalf("result %+v", pass.Result)
	}
	es, err := l.store.AuditEntries(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	resets := 0
	for _, e := range es {
		if e.Kind == "owner_auth.chip-reset" && e.Actor == "sam" {
			resets++
		}
	}
	recs, _ := l.store.OwnerAuths(ctx, d.Serial)
	if resets != 1 || len(recs) != 2 || recs[1].State != db.OwnerAuthSet {
		t.Fatalf("chip resets %d, records %+v", resets, recs)
	}
}

// TestAbandonedOwnerAuthNotRMA: a run that stops after the sealed record
// but before the set command is sent (a failure injected at
// FaultOwnerAuthSealed) marks the record abandoned — the chip provably
// kept its empty owner authorisation — and its run's end names it; once a
// supervisor released the chip from the red bin (the failure was
// definitive), the next run is not sent to the RMA desk: it passes and
// sets a new value.
func TestAbandonedOwnerAuthNotRMA(t *testing.T) {
	ctx := context.Background()
	l := newTestLine(t, 1, "")
	armed := true
	p, _ := trustProvisioner(t, l, func(c *Config) {
		c.FaultInject = func(point string) error {
			if point == FaultOwnerAuthSealed && armed {
				armed = false
				return fmt.Errorf("%w: injected at %s", ErrOwnerAuth, point)
			}
			return nil
		}
	})
	d := l.bench.Devices[0]
	if _, err := p.Provision(ctx, Job{Slot: 1, Port: d.Port}); !errors.Is(err, ErrOwnerAuth) || errors.Is(err, ErrOwnerAuthSealed) {
		t.Fatalf("first run: %v", err)
	}
	recs, _ := l.store.OwnerAuths(ctx, d.Serial)
	if len(recs) != 1 || recs[0].State != db.OwnerAuthAbandoned || recs[0].MaybeSet() || recs[0].RunResult != db.RunFailed ||
		!strings.Contains(recs[0].AbandonReason, "before the set command was sent") {
		t.Fatalf("records after the first run %+v", recs)
	}
	es, _ := l.store.AuditEntries(ctx, 0, 0)
	runEnd := 0
	for _, e := range es {
		if e.Kind == "owner_auth.run-end" && strings.Contains(string(e.Detail), `"state":"abandoned"`) && strings.Contains(string(e.Detail), fmt.Sprintf(`"run":%d`, recs[0].RunID)) {
			runEnd++
		}
	}
	if runEnd != 1 {
		t.Fatalf("%d run-end rows naming the abandoned record", runEnd)
	}
	// The failure was definitive: the chip went to the red bin. A
	// supervisor releases it; the owner authorisation gate does not stop it.
	if err := l.store.ReleaseRedBin(ctx, recs[0].ChipID, "sam", "owner authorisation never reached the chip"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Provision(ctx, Job{Slot: 1, Port: d.Port}); err != nil {
		t.Fatalf("the run after an abandoned record: %v", err)
	}
	recs, _ = l.store.OwnerAuths(ctx, d.Serial)
	if len(recs) != 2 || recs[1].State != db.OwnerAuthSet || recs[1].RunResult != db.RunOK {
		t.Fatalf("records %+v", recs)
	}
	if _, err := l.store.VerifyAudit(ctx, db.AuditVerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestRefusedBeforeChip: only an agent's refusal of the request itself
// proves the chip kept its value; a device error, busy, locked or internal
// error leaves the record pending (maybe set).
func TestRefusedBeforeChip(t *testing.T) {
	for code, want := range map[proto.ErrorCode]bool{
		proto.ErrBadRequest: true, proto.ErrUnsupported: true, proto.ErrTooLarge: true, proto.ErrVersion: true,
		proto.ErrDevice: false, proto.ErrBusy: false, proto.ErrInternal: false, proto.ErrLocked: false, proto.ErrNotProvisioned: false,
	} {
		if got := refusedBeforeChip(code); got != want {
			t.Errorf("%v: refused before the chip %v, want %v", code, got, want)
		}
	}
}
