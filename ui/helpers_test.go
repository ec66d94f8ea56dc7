package ui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"
	"github.com/wsc-project/wsc/station"
)

// TestMain makes every rendering deterministic: no colours or attributes
// (golden files hold plain text) and a fixed background.
func TestMain(m *testing.M) {
	lipgloss.SetColorProfile(termenv.Ascii)
	lipgloss.SetHasDarkBackground(true)
	os.Exit(m.Run())
}

// t0 is the fixed instant the tests' clocks show.
var t0 = time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)

// fixedClock returns a clock that always shows at.
func fixedClock(at time.Time) func() time.Time { return func() time.Time { return at } }

// fakeBench stands for the control surface of station.Bench — and only
// that: it has no serial ports, no devices and no provisioning. It keeps a
// list of slot statuses and records every call, so that the tests can check
// which method a key press leads to and what the operator view shows for a
// given sequence of station events (sent as EventMsg, exactly as
// `wsc station` forwards the real bench's events). The real bench with
// simulated devices is exercised end to end by the station and cmd/wsc
// tests.
type fakeBench struct {
	mu       sync.Mutex
	slots    []station.SlotStatus
	running  bool
	calls    []string
	operator string
	// retryErr, quarantineErr and bindErr make the next call fail.
	retryErr, quarantineErr, bindErr error
	// progress is what Progress reports (an error while nil).
	progress *station.WorkOrderProgress
}

// Progress reports the work order counters set in progress.
func (f *fakeBench) Progress(context.Context) (station.WorkOrderProgress, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.progress == nil {
		return station.WorkOrderProgress{}, errors.New("no counters")
	}
	return *f.progress, nil
}

func newFakeBench(n int) *fakeBench {
	f := &fakeBench{}
	for i := 1; i <= n; i++ {
		f.slots = append(f.slots, station.SlotStatus{Slot: i, Port: fmt.Sprintf("/dev/ttyUSB%d", i-1), State: station.StateIdle})
	}
	return f
}

func (f *fakeBench) record(s string) {
	f.mu.Lock()
	f.calls = append(f.calls, s)
	f.mu.Unlock()
}

func (f *fakeBench) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeBench) SetRunning(on bool) {
	f.record(fmt.Sprintf("SetRunning(%v)", on))
	f.mu.Lock()
	f.running = on
	f.mu.Unlock()
}

func (f *fakeBench) Running() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running
}

func (f *fakeBench) Retry(n int) error {
	f.record(fmt.Sprintf("Retry(%d)", n))
	return f.retryErr
}

func (f *fakeBench) Quarantine(n int) error {
	f.record(fmt.Sprintf("Quarantine(%d)", n))
	return f.quarantineErr
}

func (f *fakeBench) BindLabel(n int, label string) (int, error) {
	f.record(fmt.Sprintf("BindLabel(%d, %q)", n, label))
	if f.bindErr != nil {
		return 0, f.bindErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.slots {
		s := &f.slots[i]
		if (n == 0 && s.Label == "" && s.State == station.StateIdle) || s.Slot == n {
			s.Label = label
			return s.Slot, nil
		}
	}
	return 0, errors.New("no idle slot without a label")
}

func (f *fakeBench) Snapshot() []station.SlotStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.slots)
}

func (f *fakeBench) SetOperator(name string) {
	f.record(fmt.Sprintf("SetOperator(%q)", name))
	f.mu.Lock()
	f.operator = name
	f.mu.Unlock()
}

// fakeAuth stands for the station's operator directory: alice/1234 and
// badge BADGE-7781 are accepted. Its error deliberately quotes the PIN, as
// a careless implementation might, to prove the view scrubs it.
type fakeAuth struct{}

func (fakeAuth) Login(name, pin string) (string, error) {
	if name == "alice" && pin == "1234" {
		return "Alice Martin", nil
	}
	return "", fmt.Errorf("wrong name or PIN (pin %s)", pin)
}

func (fakeAuth) Badge(code string) (string, error) {
	if code == "BADGE-7781" {
		return "Bob Lee", nil
	}
	return "", fmt.Errorf("unknown badge %s", code)
}

// Key message helpers.
func keyRunes(s string) tea.KeyMsg     { return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)} }
func keyType(t tea.KeyType) tea.KeyMsg { return tea.KeyMsg{Type: t} }

// typeKeys returns one key message per character, as a person types.
func typeKeys(s string) []tea.Msg {
	var out []tea.Msg
	for _, r := range s {
		out = append(out, keyRunes(string(r)))
	}
	return out
}

// update applies messages to a bench model and returns it with the
// commands they produced.
func update(t *testing.T, m BenchModel, msgs ...tea.Msg) (BenchModel, []tea.Cmd) {
	t.Helper()
	var cmds []tea.Cmd
	for _, msg := range msgs {
		nm, cmd := m.Update(msg)
		m = nm.(BenchModel)
		if cmd != nil {
			cmds = append(cmds, cmd)
		}
	}
	return m, cmds
}

// run executes commands (unfolding batches) and returns their messages.
// Only commands that return at once may be passed (no ticks).
func run(cmds ...tea.Cmd) []tea.Msg {
	var out []tea.Msg
	for _, c := range cmds {
		if c == nil {
			continue
		}
		msg := c()
		if b, ok := msg.(tea.BatchMsg); ok {
			out = append(out, run(b...)...)
			continue
		}
		if msg != nil {
			out = append(out, msg)
		}
	}
	return out
}

// settle applies msgs, runs the commands they produce and feeds the
// results back until nothing is left (the clock does not tick by itself).
func settle(t *testing.T, m BenchModel, msgs ...tea.Msg) BenchModel {
	t.Helper()
	for len(msgs) > 0 {
		var cmds []tea.Cmd
		for _, msg := range msgs {
			nm, cmd := m.Update(msg)
			m = nm.(BenchModel)
			if _, tick := msg.(tickMsg); !tick && cmd != nil {
				// A tick's command is the next tick: not followed.
				cmds = append(cmds, cmd)
			}
		}
		msgs = run(cmds...)
	}
	return m
}

// ev builds a station event at t0+sec seconds.
func ev(slot int, sec float64, state station.State, step station.Step, serial string) EventMsg {
	return EventMsg{Time: t0.Add(time.Duration(sec * float64(time.Second))), Slot: slot, Serial: serial, Step: step, State: state}
}

// failEv builds a failure event as the provisioner emits it.
func failEv(slot int, sec float64, step station.Step, serial string, cause error, instr string) EventMsg {
	e := ev(slot, sec, station.StateFailed, step, serial)
	e.Err = &station.StepError{Step: step, Instruction: instr, Err: cause}
	return e
}

// passEv builds a pass event carrying its result.
func passEv(slot int, sec float64, serial, cert string) EventMsg {
	e := ev(slot, sec, station.StatePassed, station.StepDone, serial)
	e.Result = &station.Result{Serial: serial, CertSerial: cert}
	e.Detail = "certificate " + cert
	return e
}

func mustContain(t *testing.T, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("view lacks %q:\n%s", sub, s)
		}
	}
}
