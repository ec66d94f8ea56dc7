package qa

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/muesli/termenv"
)

// TestMain makes every rendering deterministic: no colours or attributes
// (golden files hold plain text) and a fixed background. Tests of the
// colours set a colour profile themselves.
func TestMain(m *testing.M) {
	lipgloss.SetColorProfile(termenv.Ascii)
	lipgloss.SetHasDarkBackground(true)
	os.Exit(m.Run())
}

// t0 is the fixed instant the tests' clocks show.
var t0 = time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)

// fixedClock returns a clock that always shows at.
func fixedClock(at time.Time) func() time.Time { return func() time.Time { return at } }

func keyRunes(s string) tea.KeyMsg     { return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)} }
func keyType(t tea.KeyType) tea.KeyMsg { return tea.KeyMsg{Type: t} }

// typeKeys is s typed key by key.
func typeKeys(s string) []tea.Msg {
	var out []tea.Msg
	for _, r := range s {
		out = append(out, keyRunes(string(r)))
	}
	return out
}

func mustContain(t *testing.T, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Fatalf("view lacks %q:\n%s", sub, s)
		}
	}
}

// run executes commands (batches and sequences flattened) and returns the
// messages they produce; a quit is dropped.
func run(cmds ...tea.Cmd) []tea.Msg {
	var out []tea.Msg
	for _, c := range cmds {
		if c == nil {
			continue
		}
		switch msg := c().(type) {
		case nil, tea.QuitMsg:
		case tea.BatchMsg:
			out = append(out, run(msg...)...)
		default:
			if seq, ok := sequence(msg); ok {
				out = append(out, run(seq...)...)
				continue
			}
			out = append(out, msg)
		}
	}
	return out
}

// sequence unpacks tea.Sequence's message (an unexported slice of
// commands).
func sequence(msg tea.Msg) ([]tea.Cmd, bool) {
	v := reflect.ValueOf(msg)
	if v.Kind() != reflect.Slice || v.Type().Elem() != reflect.TypeOf(tea.Cmd(nil)) {
		return nil, false
	}
	out := make([]tea.Cmd, v.Len())
	for i := range out {
		out[i] = v.Index(i).Interface().(tea.Cmd)
	}
	return out, true
}

// update applies msgs to a QA model, runs the commands and feeds their
// messages back until nothing is left. Commands here return promptly: the
// verification command waits for the runner's next report.
func update(t *testing.T, m Model, msgs ...tea.Msg) Model {
	t.Helper()
	for len(msgs) > 0 {
		var cmds []tea.Cmd
		for _, msg := range msgs {
			nm, cmd := m.Update(msg)
			m = nm.(Model)
			cmds = append(cmds, cmd)
		}
		msgs = run(cmds...)
	}
	return m
}

// isQuit reports whether cmd quits the program (alone, or last in a
// sequence).
func isQuit(cmd tea.Cmd) bool {
	if cmd == nil {
		return false
	}
	msg := cmd()
	if _, ok := msg.(tea.QuitMsg); ok {
		return true
	}
	return false
}

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
		teatest.WithDuration(10*time.Second), teatest.WithCheckInterval(10*time.Millisecond))
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
	fm := tm.FinalModel(t, teatest.WithFinalTimeout(10*time.Second))
	teatest.RequireEqualOutput(t, []byte(fm.View()))
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
