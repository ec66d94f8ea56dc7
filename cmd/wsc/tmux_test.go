package main

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wsc-project/wsc/devices/sim/testenv"
)

// tmux drives a real terminal: send-keys types, capture-pane reads.
type tmux struct {
	t       *testing.T
	session string
}

func (m *tmux) run(args ...string) string {
	m.t.Helper()
	out, err := exec.Command("tmux", args...).CombinedOutput()
	if err != nil {
		m.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (m *tmux) keys(keys ...string) {
	m.run(append([]string{"send-keys", "-t", m.session}, keys...)...)
}

// literal types text as one burst, as a barcode scanner or a person typing fast.
func (m *tmux) literal(s string) { m.run("send-keys", "-t", m.session, "-l", s) }

func (m *tmux) screen() string { return m.run("capture-pane", "-p", "-t", m.session) }

// waitFor waits until the screen contains every one of want.
func (m *tmux) waitFor(what string, timeout time.Duration, want ...string) string {
	m.t.Helper()
	deadline := time.Now().Add(timeout)
	var s string
	for time.Now().Before(deadline) {
		s = m.screen()
		ok := true
		for _, w := range want {
			if !strings.Contains(s, w) {
				ok = false
				break
			}
		}
		if ok {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	m.t.Fatalf("timed out waiting for %s; screen:\n%s", what, s)
	return ""
}

// TestStationInTmux drives `wsc station` in a real terminal against three
// simulated devices with SLB9670 timings: the operator logs in, starts the
// work order, the devices go green; slot 2's cable is pulled mid-run and the
// screen tells the operator to reseat it; after the cable is back and r is
// pressed, slot 2 passes too.
func TestStationInTmux(t *testing.T) {
	testenv.NeedTools(t, "tmux")
	f := newStationFixture(t, 3, "slb9670")
	wsc, _ := buildBinaries(t)
	m := &tmux{t: t, session: fmt.Sprintf("wsc-test-%d", time.Now().UnixNano())}
	m.run("new-session", "-d", "-s", m.session, "-x", "100", "-y", "32",
		fmt.Sprintf("%s station --config %s; sleep 60", wsc, f.config))
	t.Cleanup(func() {
		_ = exec.Command("tmux", "kill-session", "-t", m.session).Run()
		// Nothing the test started may outlive it: a station left running
		// would keep probing pseudo-terminal paths that later tests reuse.
		_ = exec.Command("pkill", "-f", f.config).Run()
	})

	m.waitFor("the login screen", 20*time.Second, "PIN")
	m.literal("ana")
	m.keys("Tab")
	m.literal("2468")
	m.keys("Enter")
	m.waitFor("the bench", 20*time.Second, "#1", "#2", "#3", "ana")

	// Start the work order; pull slot 2's cable while it runs.
	dev2 := f.bench.Devices[1]
	// Keys are sent one at a time, each after the screen shows its effect:
	// characters arriving together read as a barcode scan (ui.ScanRule).
	m.keys("s")
	m.waitFor("the work order running", 20*time.Second, "● RUNNING")
	m.keys("2")
	m.waitFor("slot 2 selected", 20*time.Second, "Slot 2 ·")
	deadline := time.Now().Add(30 * time.Second)
	for !slotRunning(m.screen(), "#2") {
		if time.Now().After(deadline) {
			t.Fatalf("slot 2 never ran:\n%s", m.screen())
		}
		time.Sleep(20 * time.Millisecond)
	}
	dev2.Link.SetConnected(false)
	s := m.waitFor("slots 1 and 3 green, slot 2's instruction", 90*time.Second, "#1 ✓ PASSED", "#3 ✓ PASSED", "Reseat the cable on slot 2")
	if strings.Contains(s, "#2 ✓ PASSED") {
		t.Fatalf("slot 2 passed without its cable:\n%s", s)
	}

	// Cable back, operator presses r: slot 2 passes.
	dev2.Link.SetConnected(true)
	time.Sleep(300 * time.Millisecond)
	m.keys("r")
	// If the slot had already seen the reseat and restarted, r has nothing
	// to retry; either way slot 2 must end green.
	m.waitFor("slot 2 green after retry", 90*time.Second, "#2 ✓ PASSED", "Passed 3")

	// Closing the terminal (tmux kills the session: SIGHUP) stops the station.
	_ = exec.Command("tmux", "kill-session", "-t", m.session).Run()
	deadline = time.Now().Add(10 * time.Second)
	for exec.Command("pgrep", "-f", f.config).Run() == nil {
		if time.Now().After(deadline) {
			t.Fatal("wsc station kept running after its terminal went away")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// slotRunning reports whether the card of slot id shows RUNNING.
func slotRunning(screen, id string) bool {
	for _, line := range strings.Split(screen, "\n") {
		if i := strings.Index(line, id+" "); i >= 0 {
			rest := line[i:]
			if j := strings.IndexAny(rest, "│║"); j >= 0 {
				rest = rest[:j]
			}
			if strings.Contains(rest, "RUNNING") {
				return true
			}
		}
	}
	return false
}
