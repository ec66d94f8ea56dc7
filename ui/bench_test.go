package ui

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"
	"github.com/wsc-project/wsc/station"
)

// newTestBench returns a signed-in bench view over n fake slots, seeded
// with the fake's snapshot, on an 80×24 screen at t0.
func newTestBench(t *testing.T, n int) (BenchModel, *fakeBench) {
	t.Helper()
	f := newFakeBench(n)
	m := NewBenchModel(BenchOptions{Control: f, WorkOrder: "WO-2611-07", Station: "ST-01", Operator: "alice", Now: fixedClock(t0)})
	m = settle(t, m, tea.WindowSizeMsg{Width: 80, Height: 24}, SnapshotMsg{Slots: f.Snapshot(), Running: f.Running(), At: t0})
	return m, f
}

func TestBenchKeysCallControl(t *testing.T) {
	tests := []struct {
		name  string
		setup []tea.Msg
		keys  []tea.Msg
		want  []string
	}{
		{name: "start work order", keys: []tea.Msg{keyRunes("s")}, want: []string{"SetRunning(true)"}},
		{name: "stop work order", setup: []tea.Msg{RunningMsg{On: true, At: t0}}, keys: []tea.Msg{keyRunes("s")}, want: []string{"SetRunning(false)"}},
		{name: "retry selected", keys: []tea.Msg{keyRunes("3"), keyRunes("r")}, want: []string{"Retry(3)"}},
		{name: "red bin selected", keys: []tea.Msg{keyRunes("2"), keyRunes("b")}, want: []string{"Quarantine(2)"}},
		{name: "red bin of a passed device asks first, n keeps it", setup: []tea.Msg{passEv(2, 1, "TPM-B", "0A1B")},
			keys: []tea.Msg{keyRunes("2"), keyRunes("b"), keyRunes("n")}, want: nil},
		{name: "red bin of a passed device asks first, y sends it", setup: []tea.Msg{passEv(2, 1, "TPM-B", "0A1B")},
			keys: []tea.Msg{keyRunes("2"), keyRunes("b"), keyRunes("y")}, want: []string{"Quarantine(2)"}},
		{name: "arrows select", keys: []tea.Msg{keyType(tea.KeyRight), keyType(tea.KeyRight), keyType(tea.KeyLeft), keyRunes("r")}, want: []string{"Retry(2)"}},
		{name: "down moves a row of cards", keys: []tea.Msg{keyType(tea.KeyDown), keyRunes("r")}, want: []string{"Retry(3)"}}, // 2×2 cards at 80×24
		{name: "digit without slot", keys: []tea.Msg{keyRunes("9"), keyRunes("r")}, want: []string{"Retry(1)"}},
		{name: "help and esc call nothing", keys: []tea.Msg{keyRunes("?"), keyType(tea.KeyEsc)}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, f := newTestBench(t, 4)
			m = settle(t, m, tt.setup...)
			settle(t, m, tt.keys...)
			if got := f.Calls(); !slices.Equal(got, tt.want) {
				t.Fatalf("calls = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBenchCommandResultsShown(t *testing.T) {
	m, f := newTestBench(t, 2)
	f.retryErr = errors.New("slot 1 is idle, not failed: nothing to retry")
	m = settle(t, m, keyRunes("r"))
	mustContain(t, m.View(), "Slot 1 not retried: slot 1 is idle, not failed")

	m = settle(t, m, keyRunes("s"))
	if !m.running {
		t.Fatal("work order not running after s")
	}
	mustContain(t, m.View(), "● RUNNING", "Work order started.")
}

func TestScanBurstBindsLabel(t *testing.T) {
	tests := []struct {
		name   string
		events []tea.Msg
		keys   []tea.Msg
		want   []string
		bound  int // slot that shows the label afterwards
	}{
		{
			name: "burst then enter binds to selected idle slot",
			keys: []tea.Msg{keyRunes("2"), keyRunes("SN-0001"), keyType(tea.KeyEnter)},
			want: []string{`BindLabel(2, "SN-0001")`}, bound: 2,
		},
		{
			name:   "selected slot running: next idle slot without label",
			events: []tea.Msg{ev(1, 1, station.StateRunning, station.StepKeys, "TPM-A")},
			keys:   []tea.Msg{keyRunes("SN-0002"), keyType(tea.KeyEnter)},
			want:   []string{`BindLabel(0, "SN-0002")`}, bound: 2,
		},
		{
			name:   "selected slot failed: rescan replaces its label",
			events: []tea.Msg{ev(3, 1, station.StateRunning, station.StepHello, "TPM-C"), failEv(3, 2, station.StepHello, "TPM-C", station.ErrLabelMismatch, "rescan")},
			keys:   []tea.Msg{keyRunes("3"), keyRunes("SN-0003"), keyType(tea.KeyEnter)},
			want:   []string{`BindLabel(3, "SN-0003")`}, bound: 3,
		},
		{
			name: "scanner burst split over messages, keys after the first go into the field",
			keys: []tea.Msg{keyRunes("SN"), keyRunes("r"), keyRunes("s"), keyRunes("42"), keyType(tea.KeyEnter)},
			want: []string{`BindLabel(1, "SNrs42")`}, bound: 1,
		},
		{
			name: "terminator inside the burst",
			keys: []tea.Msg{tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("SN-0009\r")}},
			want: []string{`BindLabel(1, "SN-0009")`}, bound: 1,
		},
		{
			name: "slash then typed label starting with a command key",
			keys: append(append([]tea.Msg{keyRunes("/")}, typeKeys("3s1")...), keyType(tea.KeyEnter)),
			want: []string{`BindLabel(1, "3s1")`}, bound: 1,
		},
		{
			name: "upper-case letter is not a command: starts the field",
			keys: append(typeKeys("AB7"), keyType(tea.KeyEnter)),
			want: []string{`BindLabel(1, "AB7")`}, bound: 1,
		},
		{
			name: "backspace edits, arrows choose the target",
			keys: []tea.Msg{keyRunes("SN-1x"), keyType(tea.KeyBackspace), keyType(tea.KeyRight), keyType(tea.KeyEnter)},
			want: []string{`BindLabel(2, "SN-1")`}, bound: 2,
		},
		{
			name: "esc clears: nothing bound, later command works",
			keys: []tea.Msg{keyRunes("SN-0001"), keyType(tea.KeyEsc), keyRunes("r")},
			want: []string{"Retry(1)"},
		},
		{
			name: "paste counts as a scan",
			keys: []tea.Msg{tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("Z"), Paste: true}, keyType(tea.KeyEnter)},
			want: []string{`BindLabel(1, "Z")`}, bound: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, f := newTestBench(t, 4)
			m = settle(t, m, tt.events...)
			// The fake bench learns slot states from the same events.
			for _, e := range tt.events {
				e := e.(EventMsg)
				f.slots[e.Slot-1].State = e.State
			}
			m = settle(t, m, tt.keys...)
			if got := f.Calls(); !slices.Equal(got, tt.want) {
				t.Fatalf("calls = %q, want %q", got, tt.want)
			}
			if tt.bound != 0 {
				s := m.slotByNum(tt.bound)
				if s.label == "" {
					t.Fatalf("slot %d shows no label", tt.bound)
				}
				if m.selNum != tt.bound {
					t.Fatalf("selection on slot %d, want %d", m.selNum, tt.bound)
				}
			}
			if len(m.scan) != 0 || m.scanOpen {
				t.Fatalf("scan field not cleared: %q", string(m.scan))
			}
		})
	}
}

func TestScanBufferShown(t *testing.T) {
	m, f := newTestBench(t, 4)
	m = settle(t, m, keyRunes("SN-00"))
	mustContain(t, m.View(), "Scan ▸ SN-00▏", "enter binds to slot 1")
	m = settle(t, m, keyRunes("r"))
	if len(f.Calls()) != 0 {
		t.Fatalf("r with a pending scan called %q", f.Calls())
	}
	mustContain(t, m.View(), "SN-00r")
}

func TestScanBindError(t *testing.T) {
	m, f := newTestBench(t, 1)
	f.bindErr = errors.New("no idle slot without a label")
	m = settle(t, m, ev(1, 1, station.StateRunning, station.StepEK, "TPM-A"), keyRunes("SN-1"), keyType(tea.KeyEnter))
	mustContain(t, m.View(), "Label SN-1 not bound to the next free slot: no idle slot without a label")
}

func TestCountersFromEvents(t *testing.T) {
	m, _ := newTestBench(t, 3)
	m = settle(t, m,
		RunningMsg{On: true, At: t0},
		ev(1, 1, station.StateRunning, station.StepConnect, ""),
		ev(2, 1, station.StateRunning, station.StepConnect, ""),
		ev(3, 1, station.StateRunning, station.StepConnect, ""),
		passEv(1, 9, "TPM-A", "5f3a01"),
		failEv(2, 10, station.StepReadBack, "TPM-B", station.ErrReadBack, "Reseat the cable on slot 2 and press r."),
		passEv(3, 11, "TPM-C", "5f3a03"),
		ev(2, 20, station.StateRunning, station.StepConnect, "TPM-B"),
		failEv(2, 25, station.StepAttest, "TPM-B", station.ErrAttestation, "do not retry"),
		EventMsg{Time: t0.Add(25 * time.Second), Slot: 2, Serial: "TPM-B", State: station.StateQuarantined, Detail: "Device TPM-B failed attestation: put it in the red bin."},
		ev(1, 30, station.StateIdle, "", ""),
		ev(1, 35, station.StateRunning, station.StepConnect, ""),
		passEv(1, 44, "TPM-D", "5f3a04"),
		tickMsg(t0.Add(30*time.Minute)),
	)
	c := m.Counters()
	// Devices: A, C and D passed, B went to the red bin; attempts: five,
	// two of them failed; three of the four devices passed at once.
	if c.Passed != 3 || c.Failed != 2 || c.RedBin != 1 || c.Attempts != 5 || math.Abs(c.FirstPass-75) > 1e-9 {
		t.Fatalf("counters = %+v", c)
	}
	if math.Abs(c.Yield-60) > 1e-9 {
		t.Fatalf("yield = %v, want 60", c.Yield)
	}
	if c.Active != 30*time.Minute || math.Abs(c.PerHour-6) > 1e-9 {
		t.Fatalf("active %v, rate %v; want 30m0s and 6/h", c.Active, c.PerHour)
	}

	// Stopped for an hour: the rate counts work-order time only.
	m = settle(t, m, RunningMsg{On: false, At: t0.Add(30 * time.Minute)}, tickMsg(t0.Add(90*time.Minute)),
		RunningMsg{On: true, At: t0.Add(90 * time.Minute)}, tickMsg(t0.Add(120*time.Minute)))
	if c := m.Counters(); c.Active != time.Hour || math.Abs(c.PerHour-3) > 1e-9 {
		t.Fatalf("after a stop: active %v, rate %v; want 1h0m0s and 3/h", c.Active, c.PerHour)
	}
	m = settle(t, m, tea.WindowSizeMsg{Width: 120, Height: 30})
	mustContain(t, m.View(), "Passed 3 · Red bin 1 devices", "Attempts 5, failed 2", "Yield 60.0% · First-pass 75%", "3.0/h")
}

func TestFailureInstructionShown(t *testing.T) {
	m, _ := newTestBench(t, 4)
	m = settle(t, m, keyRunes("3"),
		ev(3, 1, station.StateRunning, station.StepReadBack, "TPM-C"),
		failEv(3, 4, station.StepReadBack, "TPM-C", station.ErrReadBack, "Reseat the cable on slot 3 and press r."))
	mustContain(t, m.View(), "failed at readback", "readback: read-back mismatch", "→ Reseat the cable on slot 3 and press r.")

	// A failure without a StepError still tells the operator what to do.
	m = settle(t, m, ev(3, 5, station.StateRunning, station.StepConnect, "TPM-C"),
		EventMsg{Time: t0.Add(6 * time.Second), Slot: 3, State: station.StateFailed, Step: station.StepEK, Err: errors.New("boom")})
	mustContain(t, m.View(), "failed at ek · attempt 2", "Error: boom", "→ Check the device on slot 3, then press r to retry or b to put it in the")
}

func TestQuitAsksWhileSlotsRun(t *testing.T) {
	m, _ := newTestBench(t, 2)
	if _, cmds := update(t, m, keyType(tea.KeyCtrlC)); len(cmds) != 1 || !isQuit(cmds[0]) {
		t.Fatal("ctrl+c on an idle bench does not quit")
	}
	m = settle(t, m, ev(1, 1, station.StateRunning, station.StepKeys, "TPM-A"))
	m, cmds := update(t, m, keyType(tea.KeyCtrlC))
	if len(cmds) != 0 || !m.confirmQuit {
		t.Fatal("ctrl+c while a slot runs quits without asking")
	}
	mustContain(t, m.View(), "1 slot(s) still provisioning. Quit anyway? y / N")
	m, cmds = update(t, m, keyRunes("n"))
	if len(cmds) != 0 || m.confirmQuit {
		t.Fatal("n does not cancel the question")
	}
	m, _ = update(t, m, keyType(tea.KeyCtrlC))
	if _, cmds = update(t, m, keyRunes("y")); len(cmds) != 1 || !isQuit(cmds[0]) {
		t.Fatal("y does not quit")
	}
}

func isQuit(c tea.Cmd) bool {
	_, ok := c().(tea.QuitMsg)
	return ok
}

func TestEventsBeforeSnapshotKept(t *testing.T) {
	f := newFakeBench(2)
	m := NewBenchModel(BenchOptions{Control: f, Now: fixedClock(t0)})
	m = settle(t, m, ev(2, 1, station.StateRunning, station.StepKeys, "TPM-B"),
		SnapshotMsg{Slots: f.Snapshot(), At: t0})
	if len(m.slots) != 2 || m.slotByNum(2).state != station.StateRunning || m.slotByNum(2).port != "/dev/ttyUSB1" {
		t.Fatalf("snapshot overwrote an event: %+v", *m.slotByNum(2))
	}
}

// TestSlotCardsFollowWidth: cards fill the window and grow with it; 8 and
// 16 slots at 80×24 get filled tiles, two columns, that still show every
// slot.
func TestSlotCardsFollowWidth(t *testing.T) {
	for _, tt := range []struct {
		w, h, n    int
		mode       gridMode
		cols       int
		minW, minH int
	}{
		{80, 24, 4, modeCards, 2, 39, 6},
		{120, 40, 8, modeCards, 4, 29, 14},
		{200, 60, 4, modeCards, 2, 99, 24},
		{240, 70, 16, modeCards, 6, 39, 19},
		{60, 20, 4, modeTiles, 1, 60, 2},
		{80, 24, 8, modeTiles, 2, 39, 3},
		{80, 24, 16, modeTiles, 2, 39, 1},
		{40, 24, 2, modeCards, 1, 40, 6},
	} {
		g := newSlotGrid()
		g.SetSize(tt.w, tt.h-fixedLines-1)
		mode, cols, w, h := g.layout(tt.n)
		if mode != tt.mode || cols != tt.cols || w < tt.minW || h < tt.minH {
			t.Errorf("%d×%d with %d slots: mode %d, %d cols of %d×%d; want mode %d, %d cols of at least %d×%d", tt.w, tt.h, tt.n, mode, cols, w, h, tt.mode, tt.cols, tt.minW, tt.minH)
		}
	}
}

func TestOperatorLoginTellsControl(t *testing.T) {
	f := newFakeBench(2)
	m := NewBenchModel(BenchOptions{Control: f, Auth: fakeAuth{}, Now: fixedClock(t0)})
	m = settle(t, m, tea.WindowSizeMsg{Width: 80, Height: 24})
	if m.Operator() != "" {
		t.Fatal("operator before login")
	}
	// Commands do not reach the bench before the login.
	m = settle(t, m, keyRunes("s"))
	if len(f.Calls()) != 0 {
		t.Fatalf("calls before login: %q", f.Calls())
	}
	m = settle(t, m, keyType(tea.KeyBackspace))
	msgs := append(typeKeys("alice"), keyType(tea.KeyTab))
	msgs = append(msgs, typeKeys("1234")...)
	m = settle(t, m, append(msgs, keyType(tea.KeyEnter))...)
	if m.Operator() != "Alice Martin" {
		t.Fatalf("operator = %q", m.Operator())
	}
	if got := f.Calls(); !slices.Equal(got, []string{`SetOperator("Alice Martin")`}) {
		t.Fatalf("calls = %q", got)
	}
	mustContain(t, m.View(), "operator Alice Martin")
}

func TestLoginNeverShowsPIN(t *testing.T) {
	m := NewBenchModel(BenchOptions{Control: newFakeBench(1), Auth: fakeAuth{}, Now: fixedClock(t0)})
	msgs := append(typeKeys("alice"), keyType(tea.KeyEnter))
	msgs = append(msgs, typeKeys("9137")...)
	m = settle(t, m, msgs...)
	if v := m.View(); strings.Contains(v, "9137") || !strings.Contains(v, "••••") {
		t.Fatalf("PIN field not masked:\n%s", v)
	}
	m = settle(t, m, keyType(tea.KeyEnter))
	v := m.View()
	mustContain(t, v, "Sign-in failed: wrong name or PIN (pin ****)")
	if strings.Contains(v, "9137") {
		t.Fatalf("view shows the PIN:\n%s", v)
	}
	if m.signedIn || m.login.pin.Value() != "" {
		t.Fatal("failed login signed in or kept the PIN")
	}
}

// TestLoginBadgeAfterFailedPIN: after a wrong PIN the form is empty with
// the name field focused, so a badge scanned next signs in (it used to land
// in the PIN field), and so does a name typed again.
func TestLoginBadgeAfterFailedPIN(t *testing.T) {
	m := NewBenchModel(BenchOptions{Control: newFakeBench(1), Auth: fakeAuth{}, Now: fixedClock(t0)})
	msgs := append(append(typeKeys("alice"), keyType(tea.KeyTab)), typeKeys("9137")...)
	m = settle(t, m, append(msgs, keyType(tea.KeyEnter))...)
	mustContain(t, m.View(), "Sign-in failed")
	if !m.login.name.Focused() || m.login.name.Value() != "" || m.login.pin.Focused() {
		t.Fatalf("after a failure: name %q focused %v, pin focused %v", m.login.name.Value(), m.login.name.Focused(), m.login.pin.Focused())
	}
	m = settle(t, m, keyRunes("BADGE-7781"), keyType(tea.KeyEnter))
	if m.Operator() != "Bob Lee" {
		t.Fatalf("badge after a failed PIN: operator = %q", m.Operator())
	}
	m2 := NewBenchModel(BenchOptions{Control: newFakeBench(1), Auth: fakeAuth{}, Now: fixedClock(t0)})
	m2 = settle(t, m2, append(msgs, keyType(tea.KeyEnter))...)
	m2 = settle(t, m2, append(append(append(typeKeys("alice"), keyType(tea.KeyTab)), typeKeys("1234")...), keyType(tea.KeyEnter))...)
	if m2.Operator() != "Alice Martin" {
		t.Fatalf("typed again after a failure: operator = %q", m2.Operator())
	}
}

func TestLoginBadge(t *testing.T) {
	m := NewBenchModel(BenchOptions{Control: newFakeBench(1), Auth: fakeAuth{}, Now: fixedClock(t0)})
	m = settle(t, m, keyRunes("BADGE-0000"))
	if v := m.View(); strings.Contains(v, "BADGE-0000") || !strings.Contains(v, "Badge") {
		t.Fatalf("badge code shown or badge mode missing:\n%s", v)
	}
	m = settle(t, m, keyType(tea.KeyEnter))
	if v := m.View(); !strings.Contains(v, "unknown badge ****") || strings.Contains(v, "BADGE-0000") {
		t.Fatalf("badge error:\n%s", v)
	}
	m = settle(t, m, keyRunes("BADGE-7781"), keyType(tea.KeyEnter))
	if m.Operator() != "Bob Lee" {
		t.Fatalf("operator = %q", m.Operator())
	}
}

func TestBenchProgressAndDone(t *testing.T) {
	m, _ := newTestBench(t, 1)
	m, _ = update(t, m, ProgressMsg("opening the CA"))
	mustContain(t, m.View(), "opening the CA")
	if _, cmds := update(t, m, DoneMsg{}); len(cmds) != 1 || !isQuit(cmds[0]) {
		t.Fatal("DoneMsg does not quit")
	}
}

func TestLoginBurstTakenAsNameWithTab(t *testing.T) {
	m := NewBenchModel(BenchOptions{Control: newFakeBench(1), Auth: fakeAuth{}, Now: fixedClock(t0)})
	m = settle(t, m, keyRunes("alice"), keyType(tea.KeyTab))
	m = settle(t, m, append(typeKeys("1234"), keyType(tea.KeyEnter))...)
	if m.Operator() != "Alice Martin" {
		t.Fatalf("operator = %q", m.Operator())
	}
}

// TestCountersQuarantineEndsRun: station.Bench ends a run whose device goes
// to the red bin with a single StateQuarantined event carrying the error.
func TestCountersQuarantineEndsRun(t *testing.T) {
	m, _ := newTestBench(t, 2)
	m = settle(t, m,
		ev(1, 1, station.StateRunning, station.StepAttest, "TPM-A"),
		EventMsg{Time: t0.Add(2 * time.Second), Slot: 1, Serial: "TPM-A", Step: station.StepAttest, State: station.StateQuarantined,
			Detail: "Device TPM-A failed attestation: put it in the red bin.",
			Err:    &station.StepError{Step: station.StepAttest, Err: station.ErrAttestation}},
		// The operator sends an idle slot's device to the red bin: no
		// attempt failed.
		EventMsg{Time: t0.Add(3 * time.Second), Slot: 2, State: station.StateQuarantined, Detail: "Put the device on slot 2 in the red bin."},
	)
	if c := m.Counters(); c.Failed != 1 || c.RedBin != 2 {
		t.Fatalf("counters = %+v, want 1 failed, 2 red bin", c)
	}
	mustContain(t, m.View(), "Error: attest: attestation failed", "→ Device TPM-A failed attestation: put it in the red bin.")
}

// BenchmarkBenchView16Busy renders the bench with 16 slots all running
// (spinner, step time, bar) at the sizes a bench screen has.
func BenchmarkBenchView16Busy(b *testing.B) {
	for _, sz := range [][3]int{{80, 24, 0}, {160, 48, 0}, {240, 70, 0}, {80, 24, 1}, {240, 70, 1}} {
		name := fmt.Sprintf("%dx%d", sz[0], sz[1])
		if sz[2] == 1 {
			name += "-256colours"
		}
		b.Run(name, func(b *testing.B) {
			if sz[2] == 1 {
				// As on a real console: every card filled, borders coloured.
				lipgloss.SetColorProfile(termenv.ANSI256)
				defer lipgloss.SetColorProfile(termenv.Ascii)
			}
			m, _ := benchAt(16, 12)
			nm, _ := m.Update(tea.WindowSizeMsg{Width: sz[0], Height: sz[1]})
			m = nm.(BenchModel)
			for i := 1; i <= 16; i++ {
				nm, _ = m.Update(ev(i, 1, station.StateRunning, station.StepConnect, ""))
				nm, _ = nm.Update(ev(i, 2, station.StateRunning, station.StepInstall, fmt.Sprintf("TPM-00A1B2C3D4E5F6%02d", i)))
				m = nm.(BenchModel)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				_ = m.View()
			}
		})
	}
}

// TestWorkOrderPanel: the panel shows the database's counters with the
// time left at the screen's rate; a device passing a second time counts
// once; the complete event turns the panel into the COMPLETE banner and no
// slot is failed.
func TestWorkOrderPanel(t *testing.T) {
	m, f := newTestBench(t, 2)
	f.progress = &station.WorkOrderProgress{WorkOrder: "WO-1", Quantity: 12, Done: 6, RunsOK: 6, RunsFailed: 2}
	m = settle(t, m, tea.WindowSizeMsg{Width: 100, Height: 30},
		RunningMsg{On: true, At: t0},
		ev(1, 1, station.StateRunning, station.StepConnect, ""), passEv(1, 9, "TPM-A", "01"),
		ev(1, 20, station.StateRunning, station.StepConnect, "TPM-A"), passEv(1, 29, "TPM-A", "01"),
		tickMsg(t0.Add(30*time.Minute)))
	if c := m.Counters(); c.Passed != 1 || c.Attempts != 2 {
		t.Fatalf("a device passed twice: %+v", c)
	}
	// 6 left at 2 devices/hour: 3 hours.
	mustContain(t, m.View(), "6/12 done · 6 left · 2 failed runs · ETA ~3h00m")
	f.progress = &station.WorkOrderProgress{WorkOrder: "WO-1", Quantity: 12, Done: 12, RunsOK: 12, RunsFailed: 2, Complete: true}
	m = settle(t, m, EventMsg{Time: t0.Add(31 * time.Minute), Slot: 2, Serial: "TPM-Z", State: station.StateIdle,
		Detail: "Work order complete: pull the device; it was not provisioned.", Err: station.ErrWorkOrderComplete}, keyRunes("2"))
	v := m.View()
	mustContain(t, v, "WORK ORDER WO-2611-07 COMPLETE · 12 of 12 devices", "The work order is complete")
	if strings.Contains(v, "FAILED") || m.Counters().Failed != 0 {
		t.Fatalf("the quota counted as a failure:\n%s", v)
	}
}

// TestRedBinStaysUntilAcknowledged: a red-bin instruction stays on screen
// after the device is pulled and while the slot runs the next device,
// until the operator presses a; with nothing to acknowledge, a starts a
// label typed by hand as before.
func TestRedBinStaysUntilAcknowledged(t *testing.T) {
	m, f := newTestBench(t, 2)
	m = settle(t, m,
		ev(1, 1, station.StateRunning, station.StepAttest, "TPM-A"),
		EventMsg{Time: t0.Add(2 * time.Second), Slot: 1, Serial: "TPM-A", Step: station.StepAttest, State: station.StateQuarantined,
			Detail: "The device on slot 1 failed attestation: do not retry; put it in the red bin.",
			Err:    &station.StepError{Step: station.StepAttest, Err: station.ErrAttestation}},
		ev(1, 5, station.StateIdle, "", ""),
		ev(1, 6, station.StateRunning, station.StepHello, "TPM-B"))
	mustContain(t, m.View(), "RED BIN", "slot 1 TPM-A: in the red bin? press a")
	m = settle(t, m, keyRunes("a"))
	if v := m.View(); strings.Contains(v, "press a") || !strings.Contains(v, "Red bin of slot 1 acknowledged.") {
		t.Fatalf("after a:\n%s", v)
	}
	if len(f.Calls()) != 0 {
		t.Fatalf("acknowledging called the bench: %q", f.Calls())
	}
	m = settle(t, m, keyRunes("a"))
	if string(m.scan) != "a" {
		t.Fatalf("a with nothing to acknowledge: scan field %q", string(m.scan))
	}
}

// TestLabelErrorShownOnPass: a label that could not be printed shows on
// the passed card and in the details; the device still counts as passed.
func TestLabelErrorShownOnPass(t *testing.T) {
	m, _ := newTestBench(t, 1)
	e := passEv(1, 9, "TPM-A", "5f3a01")
	e.LabelErr = errors.New("label printer 10.0.0.9:9100: connection refused")
	m = settle(t, m, ev(1, 1, station.StateRunning, station.StepConnect, ""), e)
	mustContain(t, m.View(), "PASSED", "label not printed: label printer 10.0.0.9:9100", "Label not printed (the device passed)")
	if c := m.Counters(); c.Passed != 1 || c.Failed != 0 {
		t.Fatalf("counters %+v", c)
	}
}

// TestStatisticsPanel: t shows the statistics in place of the slots:
// first-pass yield, devices per hour (last 15 minutes, shift), the
// cycle-time histogram and the failure reasons, most frequent first.
func TestStatisticsPanel(t *testing.T) {
	m, _ := newTestBench(t, 3)
	m = settle(t, m, tea.WindowSizeMsg{Width: 100, Height: 40}, RunningMsg{On: true, At: t0},
		ev(1, 0, station.StateRunning, station.StepConnect, ""), passEv(1, 1.5, "TPM-A", "01"),
		ev(2, 0, station.StateRunning, station.StepConnect, ""),
		failEv(2, 3, station.StepReadBack, "TPM-B", station.ErrReadBack, "Reseat the cable on slot 2 and press r."),
		ev(2, 10, station.StateRunning, station.StepConnect, "TPM-B"),
		failEv(2, 12, station.StepReadBack, "TPM-B", station.ErrReadBack, "Reseat the cable on slot 2 and press r."),
		ev(3, 0, station.StateRunning, station.StepConnect, ""),
		failEv(3, 4, station.StepAttest, "TPM-C", station.ErrAttestation, "red bin"),
		ev(3, 20, station.StateRunning, station.StepConnect, "TPM-C"), passEv(3, 27, "TPM-C", "03"),
		tickMsg(t0.Add(30*time.Minute)), keyRunes("t"))
	v := m.View()
	mustContain(t, v, "Statistics this shift", "First-pass yield 33.3%", "last 15 min 0, shift 4.0",
		"≤ 2s     1", "≤ 10s     1", "2   67%   67%  readback: read-back mismatch", "1   33%  100%  attest: attestation failed")
	if strings.Contains(v, "#1 ") {
		t.Fatalf("slots shown with the statistics:\n%s", v)
	}
	m = settle(t, m, keyRunes("t"))
	mustContain(t, m.View(), "#1")
}

// fakeDesk holds a red bin for the release flow.
type fakeDesk struct {
	items    []RedBinItem
	released []string
}

func (d *fakeDesk) RedBins() ([]RedBinItem, error) { return d.items, nil }

func (d *fakeDesk) Release(chip []byte, sup, pin, note string) error {
	if sup != "sam" || pin != "1357" {
		return fmt.Errorf("%s: wrong PIN %s or not a supervisor", sup, pin)
	}
	d.released = append(d.released, fmt.Sprintf("%x by %s: %s", chip, sup, note))
	d.items = d.items[1:]
	return nil
}

// TestRedBinReleaseFlow: ctrl+r lists the red bin; a supervisor's id, PIN
// and note release the selected chip; a wrong PIN is refused and never
// shown; the list refreshes after the release.
func TestRedBinReleaseFlow(t *testing.T) {
	d := &fakeDesk{items: []RedBinItem{{ChipID: []byte{0xab, 0xcd}, Serial: "TPM-B", Reason: "failed 3 times"}}}
	f := newFakeBench(1)
	m := NewBenchModel(BenchOptions{Control: f, RedBins: d, Now: fixedClock(t0)})
	m = settle(t, m, tea.WindowSizeMsg{Width: 100, Height: 30}, keyType(tea.KeyCtrlR))
	mustContain(t, m.View(), "Red-bin release (supervisor)", "TPM-B", "chip abcd", "failed 3 times")
	fill := func(sup, pin, note string) {
		msgs := append(typeKeys(sup), keyType(tea.KeyTab))
		msgs = append(append(msgs, typeKeys(pin)...), keyType(tea.KeyTab))
		msgs = append(append(msgs, typeKeys(note)...), keyType(tea.KeyEnter))
		m = settle(t, m, msgs...)
	}
	fill("sam", "9999", "rework done")
	v := m.View()
	mustContain(t, v, "Not released: sam: wrong PIN ****")
	if strings.Contains(v, "9999") || len(d.released) != 0 {
		t.Fatalf("wrong PIN: released %v\n%s", d.released, v)
	}
	// Fields keep the id and note; the PIN was cleared. Start again.
	m = settle(t, m, keyType(tea.KeyEsc), keyType(tea.KeyCtrlR))
	fill("sam", "1357", "rework done")
	if len(d.released) != 1 || d.released[0] != "abcd by sam: rework done" {
		t.Fatalf("released %v", d.released)
	}
	v = m.View()
	mustContain(t, v, "released from the red bin by sam", "Nothing is held in the red bin.")
	if strings.Contains(v, "1357") {
		t.Fatalf("PIN shown:\n%s", v)
	}
	m = settle(t, m, keyType(tea.KeyEsc))
	if v := m.View(); strings.Contains(v, "Red-bin release (supervisor)") || !strings.Contains(v, "Red-bin release closed.") {
		t.Fatalf("esc did not close the release screen:\n%s", v)
	}
}

type fakeSwitcher struct{ switched []string }

func (s *fakeSwitcher) SwitchWorkOrder(id, sup, pin string) error {
	if sup != "sam" || pin != "1357" {
		return fmt.Errorf("wrong PIN %s", pin)
	}
	s.switched = append(s.switched, id)
	return nil
}

// TestChooseWorkOrder: w opens the picker; a supervisor's id and PIN
// switch the bench to the chosen work order, which then shows, stopped; a
// wrong PIN is refused without showing it.
func TestChooseWorkOrder(t *testing.T) {
	sw := &fakeSwitcher{}
	f := newFakeBench(1)
	m := NewBenchModel(BenchOptions{Control: f, WorkOrder: "WO-A", WorkOrders: []string{"WO-A", "WO-B"}, Switcher: sw, Now: fixedClock(t0)})
	m = settle(t, m, tea.WindowSizeMsg{Width: 100, Height: 30}, keyRunes("w"))
	mustContain(t, m.View(), "Choose the work order (supervisor)", "WO-A  (current)", "WO-B")
	try := func(pin string) {
		msgs := append(append([]tea.Msg{keyType(tea.KeyDown)}, typeKeys("sam")...), keyType(tea.KeyTab))
		m = settle(t, m, append(append(msgs, typeKeys(pin)...), keyType(tea.KeyEnter))...)
	}
	try("0000")
	if v := m.View(); !strings.Contains(v, "Not switched: wrong PIN ****") || len(sw.switched) != 0 {
		t.Fatalf("wrong PIN:\n%s", v)
	}
	m = settle(t, m, keyType(tea.KeyEsc), keyRunes("w"))
	try("1357")
	if len(sw.switched) != 1 || sw.switched[0] != "WO-B" {
		t.Fatalf("switched %v", sw.switched)
	}
	v := m.View()
	mustContain(t, v, "Work order WO-B chosen: press s to start it.", "WO WO-B", "STOPPED")
	if strings.Contains(v, "1357") {
		t.Fatalf("PIN shown:\n%s", v)
	}
}

// TestStepTimeAgainstExpected: a running card shows its step's elapsed
// time against the expected time, learned from the passes of the shift
// (median of the step's times).
func TestStepTimeAgainstExpected(t *testing.T) {
	m, _ := newTestBench(t, 2)
	pass := func(slot int, sec float64, serial string, keys time.Duration) EventMsg {
		e := passEv(slot, sec, serial, "01")
		e.Result.Steps = map[station.Step]time.Duration{station.StepKeys: keys}
		return e
	}
	m = settle(t, m,
		ev(1, 0, station.StateRunning, station.StepConnect, ""), pass(1, 1, "TPM-A", 200*time.Millisecond),
		ev(1, 2, station.StateRunning, station.StepConnect, "TPM-B"), pass(1, 3, "TPM-B", 400*time.Millisecond),
		ev(1, 4, station.StateRunning, station.StepConnect, "TPM-C"), pass(1, 5, "TPM-C", 300*time.Millisecond),
		ev(2, 10, station.StateRunning, station.StepKeys, "TPM-D"),
		tickMsg(t0.Add(11*time.Second)))
	mustContain(t, m.View(), "keys 1.0s/0.3s")
}

// TestPlantStatusLine: with a plant registry configured, the status line
// shows the sync state the station reports, refreshed after every answer,
// escaped like any text from outside the view; without one it shows none.
func TestPlantStatusLine(t *testing.T) {
	f := newFakeBench(2)
	calls := 0
	m := NewBenchModel(BenchOptions{Control: f, WorkOrder: "WO-1", Station: "ST-01", Operator: "alice", Now: fixedClock(t0),
		Plant: func(context.Context) (string, error) { calls++; return "plant: 12 behind", nil }})
	m = settle(t, m, tea.WindowSizeMsg{Width: 120, Height: 30}, SnapshotMsg{Slots: f.Snapshot(), At: t0})
	nm, cmd := m.Update(PlantMsg{Status: "plant: offline since 14:02:05 (12 behind)"})
	m = nm.(BenchModel)
	if cmd == nil {
		t.Fatal("no follow-up request for the plant status")
	}
	mustContain(t, m.View(), "plant: offline since 14:02:05 (12 behind)")
	nm, _ = m.Update(PlantMsg{Err: errors.New("database is locked")})
	mustContain(t, nm.(BenchModel).View(), "plant: status unknown")
	plain, _ := newTestBench(t, 2)
	if strings.Contains(plain.View(), "plant:") {
		t.Error("a station without a plant registry shows a plant status")
	}
	if calls != 0 {
		t.Errorf("the view called the status function %d times inside Update", calls)
	}
}
