package ui

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/wsc-project/wsc/station"
)

// Golden tests run each model in a real bubbletea program (teatest), send
// it keys and station events, quit, and compare the final View with
// testdata/<test name>.golden. Regenerate with
//
//	go test ./ui -run Golden -update
//
// The output is deterministic: ASCII colour profile (TestMain), a frozen
// clock (spinner frame, elapsed times and rates derive from it), fixed
// event times and fixed certificate serials.

// startProgram runs m in teatest at w×h and waits until the view shows
// ready.
func startProgram(t *testing.T, m tea.Model, w, h int, ready string) *teatest.TestModel {
	t.Helper()
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(w, h))
	waitFor(t, tm, ready)
	return tm
}

func waitFor(t *testing.T, tm *teatest.TestModel, s string) {
	t.Helper()
	teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(s)) },
		teatest.WithDuration(5*time.Second), teatest.WithCheckInterval(10*time.Millisecond))
}

// finish sends msgs (processed in order before the quit that follows them),
// quits and compares the final view with the golden file.
func finish(t *testing.T, tm *teatest.TestModel, msgs ...tea.Msg) {
	t.Helper()
	for _, msg := range msgs {
		tm.Send(msg)
	}
	if err := tm.Quit(); err != nil {
		t.Fatal(err)
	}
	fm := tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second))
	teatest.RequireEqualOutput(t, []byte(fm.View()))
}

// benchAt is a signed-in bench view over n fake slots whose clock shows
// t0+sec.
func benchAt(n int, sec float64) (BenchModel, *fakeBench) {
	f := newFakeBench(n)
	m := NewBenchModel(BenchOptions{Control: f, Title: "wsc station — line 2", WorkOrder: "WO-2611-07", Station: "ST-01",
		Operator: "Alice Martin", Now: fixedClock(t0.Add(time.Duration(sec * float64(time.Second))))})
	return m, f
}

// shift is a morning on a 4-slot bench: the work order starts at t0,
// slot 1 passed, slot 2 runs, slot 3 failed its read-back, slot 4 runs.
func shift() []tea.Msg {
	return []tea.Msg{
		RunningMsg{On: true, At: t0},
		ev(1, 1, station.StateRunning, station.StepConnect, ""),
		ev(1, 1.2, station.StateRunning, station.StepHello, "TPM-00A1B2C3D4E5F601"),
		passEv(1, 9.4, "TPM-00A1B2C3D4E5F601", "5f3a01c2d4e6f8091a2b3c4d5e6f7081"),
		ev(2, 2, station.StateRunning, station.StepConnect, ""),
		ev(2, 2.5, station.StateRunning, station.StepActivate, "TPM-00A1B2C3D4E5F602"),
		ev(3, 3, station.StateRunning, station.StepConnect, ""),
		ev(3, 6, station.StateRunning, station.StepReadBack, "TPM-00A1B2C3D4E5F603"),
		failEv(3, 7.5, station.StepReadBack, "TPM-00A1B2C3D4E5F603", station.ErrReadBack, "Reseat the cable on slot 3 and press r."),
		ev(4, 4, station.StateRunning, station.StepConnect, ""),
		ev(4, 5, station.StateRunning, station.StepKeys, "TPM-00A1B2C3D4E5F604"),
	}
}

func TestBenchGolden(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		m, _ := benchAt(4, 0)
		tm := startProgram(t, m, 80, 24, "#4")
		finish(t, tm)
	})
	t.Run("provisioning", func(t *testing.T) {
		m, _ := benchAt(4, 12)
		tm := startProgram(t, m, 80, 24, "#4")
		finish(t, tm, append(shift(), keyRunes("2"))...)
	})
	t.Run("failure", func(t *testing.T) {
		m, _ := benchAt(4, 12)
		tm := startProgram(t, m, 80, 24, "#4")
		finish(t, tm, append(shift(), keyRunes("3"))...)
	})
	t.Run("quarantine", func(t *testing.T) {
		m, _ := benchAt(4, 40)
		tm := startProgram(t, m, 80, 24, "#4")
		msgs := append(shift(),
			ev(3, 20, station.StateRunning, station.StepConnect, "TPM-00A1B2C3D4E5F603"),
			ev(3, 22, station.StateRunning, station.StepAttest, "TPM-00A1B2C3D4E5F603"),
			// As station.Bench ends a run that quarantines: one event.
			EventMsg{Time: t0.Add(23 * time.Second), Slot: 3, Serial: "TPM-00A1B2C3D4E5F603", Step: station.StepAttest, State: station.StateQuarantined,
				Detail: "Device TPM-00A1B2C3D4E5F603 failed attestation: put it in the red bin.",
				Err:    &station.StepError{Step: station.StepAttest, Err: errors.Join(station.ErrAttestation, errors.New("certified name differs"))}},
			keyRunes("3"))
		finish(t, tm, msgs...)
	})
	t.Run("scan_pending", func(t *testing.T) {
		m, _ := benchAt(4, 12)
		tm := startProgram(t, m, 80, 24, "#4")
		finish(t, tm, append(shift(), keyRunes("3"), keyRunes("SN-24-00"))...)
	})
	t.Run("stats_120x40", func(t *testing.T) {
		m, _ := benchAt(4, 12)
		tm := startProgram(t, m, 120, 40, "#4")
		finish(t, tm, append(shift(), keyRunes("t"))...)
	})
	t.Run("help", func(t *testing.T) {
		m, _ := benchAt(4, 12)
		tm := startProgram(t, m, 80, 24, "#4")
		finish(t, tm, append(shift(), keyRunes("?"))...)
	})
	t.Run("quit_confirm", func(t *testing.T) {
		m, _ := benchAt(4, 12)
		tm := startProgram(t, m, 80, 24, "#4")
		tm.Send(tea.BatchMsg(nil)) // no-op: keeps the sequence readable
		for _, msg := range shift() {
			tm.Send(msg)
		}
		tm.Send(keyType(tea.KeyCtrlC))
		waitFor(t, tm, "Quit anyway?")
		finish(t, tm)
	})
	t.Run("size_80x24_8_slots", func(t *testing.T) {
		m, _ := benchAt(8, 12)
		tm := startProgram(t, m, 80, 24, "#8")
		finish(t, tm, append(shift(), keyRunes("3"))...)
	})
	t.Run("size_60x20", func(t *testing.T) {
		m, _ := benchAt(4, 12)
		tm := startProgram(t, m, 60, 20, "#4")
		finish(t, tm, append(shift(), keyRunes("3"))...)
	})
	t.Run("size_120x40_8_slots", func(t *testing.T) {
		m, _ := benchAt(8, 12)
		tm := startProgram(t, m, 120, 40, "#8")
		finish(t, tm, shift()...)
	})
}

func TestLoginGolden(t *testing.T) {
	t.Run("form", func(t *testing.T) {
		m := NewBenchModel(BenchOptions{Control: newFakeBench(4), Auth: fakeAuth{}, Now: fixedClock(t0)})
		tm := startProgram(t, m, 80, 24, "sign in")
		finish(t, tm, append(append(typeKeys("alice"), keyType(tea.KeyTab)), typeKeys("12")...)...)
	})
	t.Run("wrong_pin", func(t *testing.T) {
		m := NewBenchModel(BenchOptions{Control: newFakeBench(4), Auth: fakeAuth{}, Now: fixedClock(t0)})
		tm := startProgram(t, m, 80, 24, "sign in")
		msgs := append(append(typeKeys("alice"), keyType(tea.KeyTab)), typeKeys("9137")...)
		for _, msg := range append(msgs, keyType(tea.KeyEnter)) {
			tm.Send(msg)
		}
		waitFor(t, tm, "Sign-in failed")
		finish(t, tm)
	})
}

// chdir makes dir the working folder, so that the QA view verifies "." and
// shows paths that do not depend on the temporary folder. The returned
// function goes back (before the golden file, which lives in the package's
// testdata, is read).
func chdir(t *testing.T, dir string) (back func()) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	back = func() {
		once.Do(func() {
			if err := os.Chdir(wd); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Cleanup(back)
	return back
}

// cardStates lists the card states the golden files cover, with the events
// that put slot n in that state (times in seconds after t0).
var cardStates = []struct {
	name   string
	events func(n int) []tea.Msg
}{
	{"waiting", func(int) []tea.Msg { return nil }},
	{"running", func(n int) []tea.Msg {
		serial := fmt.Sprintf("TPM-00A1B2C3D4E5F6%02d", n)
		return []tea.Msg{ev(n, 1, station.StateRunning, station.StepConnect, ""), ev(n, 2, station.StateRunning, station.StepInstall, serial)}
	}},
	{"passed", func(n int) []tea.Msg {
		serial := fmt.Sprintf("TPM-00A1B2C3D4E5F6%02d", n)
		return []tea.Msg{ev(n, 1, station.StateRunning, station.StepConnect, ""), passEv(n, 9.4, serial, fmt.Sprintf("5f3a01c2d4e6f8091a2b3c4d5e6f70%02d", n))}
	}},
	{"failed", func(n int) []tea.Msg {
		serial := fmt.Sprintf("TPM-00A1B2C3D4E5F6%02d", n)
		return []tea.Msg{ev(n, 1, station.StateRunning, station.StepConnect, ""), ev(n, 3, station.StateRunning, station.StepReadBack, serial),
			failEv(n, 4, station.StepReadBack, serial, station.ErrReadBack, fmt.Sprintf("Reseat the cable on slot %d and press r.", n))}
	}},
	{"red_bin", func(n int) []tea.Msg {
		serial := fmt.Sprintf("TPM-00A1B2C3D4E5F6%02d", n)
		return []tea.Msg{ev(n, 1, station.StateRunning, station.StepAttest, serial),
			EventMsg{Time: t0.Add(2 * time.Second), Slot: n, Serial: serial, Step: station.StepAttest, State: station.StateQuarantined,
				Detail: fmt.Sprintf("The device on slot %d failed attestation: do not retry; put it in the red bin.", n),
				Err:    &station.StepError{Step: station.StepAttest, Err: station.ErrAttestation}}}
	}},
}

// TestCardGolden renders every card state at 80×24, 120×40 and 200×60 on a
// one-slot bench, and benches of 4, 8 and 16 slots whose slots cycle
// through the states, at the same sizes (the last slot is selected).
func TestCardGolden(t *testing.T) {
	sizes := [][2]int{{80, 24}, {120, 40}, {200, 60}}
	for _, sz := range sizes {
		for _, st := range cardStates {
			t.Run(fmt.Sprintf("1_slot_%s_%dx%d", st.name, sz[0], sz[1]), func(t *testing.T) {
				m, _ := benchAt(1, 12)
				tm := startProgram(t, m, sz[0], sz[1], "#1")
				finish(t, tm, append([]tea.Msg{RunningMsg{On: true, At: t0}}, st.events(1)...)...)
			})
		}
		for _, n := range []int{4, 8, 16} {
			t.Run(fmt.Sprintf("%d_slots_%dx%d", n, sz[0], sz[1]), func(t *testing.T) {
				m, _ := benchAt(n, 12)
				tm := startProgram(t, m, sz[0], sz[1], fmt.Sprintf("#%d", n))
				msgs := []tea.Msg{RunningMsg{On: true, At: t0}}
				for i := 1; i <= n; i++ {
					msgs = append(msgs, cardStates[i%len(cardStates)].events(i)...)
				}
				finish(t, tm, msgs...)
			})
		}
	}
}
