package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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

// slotShows reports whether the screen shows slot k with word (PASSED,
// RUNNING, FAILED, RED BIN) on its card or tile.
func slotShows(screen string, k int, word string) bool {
	re := regexp.MustCompile(`#` + strconv.Itoa(k) + `\s+\S+ ` + regexp.QuoteMeta(word))
	return re.MatchString(screen)
}

// TestWorkOrderInTmux drives the real wsc station in a real terminal at
// 80×24 and 160×48 against `wsc sim` with 13 devices on 4 slots and a work
// order of 12: the trainer signs in, picks the second work order of the
// config (w, as supervisor), starts it and replaces
// each passed board with the next one (wsc sim next); slot 2's first board
// fails at keys (wsc sim fail) and the operator sends it to the red bin
// (b); slot 3's first cable is pulled during its run and plugged back. The
// screen ends with the COMPLETE banner, 12 devices passed and 2 failed
// attempts — the counters of `wsc db stats` — and nothing the test started
// outlives it.
func TestWorkOrderInTmux(t *testing.T) {
	testenv.NeedTools(t, "tmux", "swtpm", "swtpm_setup", "swtpm_localca")
	for _, size := range [][2]int{{80, 24}, {160, 48}} {
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) { workOrderInTmux(t, size[0], size[1]) })
	}
}

func workOrderInTmux(t *testing.T, w, h int) {
	wsc, agent := buildBinaries(t)
	dir := filepath.Join(t.TempDir(), "bench")
	s := startProc(t, nil, "sim", "--dir", dir, "--devices", "13", "--slots", "4", "--quantity", "12",
		"--latency-profile", "slb9670", "--agent", agent)
	s.wait(t, "the simulated bench", 180*time.Second, has("simulated bench ready: 13 devices on 4 slots"))
	simctl := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(wsc, append(append([]string{"sim"}, args...), "--dir", dir)...).CombinedOutput(); err != nil {
			t.Fatalf("wsc sim %v: %v\n%s", args, err, out)
		}
	}
	cfg := filepath.Join(dir, "station.yaml")
	m := &tmux{t: t, session: fmt.Sprintf("wsc-wo-%d", time.Now().UnixNano())}
	m.run("new-session", "-d", "-s", m.session, "-x", strconv.Itoa(w), "-y", strconv.Itoa(h),
		fmt.Sprintf("%s station --config %s; sleep 60", wsc, cfg))
	t.Cleanup(func() {
		_ = exec.Command("tmux", "kill-session", "-t", m.session).Run()
		_ = s.cmd.Process.Signal(os.Interrupt)
		<-s.done
	})

	m.waitFor("the login screen", 30*time.Second, "PIN")
	m.literal("trainer")
	m.keys("Tab")
	m.literal("1234")
	m.keys("Enter")
	m.waitFor("the bench", 30*time.Second, "#1", "#4", "trainer", "WO SIM-WO-1")

	// The supervisor picks the second work order of the config.
	m.keys("w")
	m.waitFor("the work-order picker", 20*time.Second, "Choose the work order", "SIM-WO-1-2")
	m.keys("Down")
	m.literal("trainer")
	m.keys("Tab")
	m.literal("1234")
	m.keys("Enter")
	m.waitFor("the chosen work order", 30*time.Second, "Work order SIM-WO-1-2 chosen", "WO SIM-WO-1-2")

	simctl("fail", "2", "--at", "keys")
	m.keys("s")
	m.waitFor("the work order running", 30*time.Second, "RUNNING")

	// Pull slot 3's cable while its first board runs.
	deadline := time.Now().Add(60 * time.Second)
	for !slotShows(m.screen(), 3, "RUNNING") {
		if time.Now().After(deadline) {
			t.Fatalf("slot 3 never ran:\n%s", m.screen())
		}
		time.Sleep(20 * time.Millisecond)
	}
	simctl("pull", "3")

	redBinned, replugged := false, false
	nexted := map[int]bool{}
	deadline = time.Now().Add(6 * time.Minute)
	var screen string
	for {
		screen = m.screen()
		if strings.Contains(screen, "COMPLETE") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("work order not complete:\n%s", screen)
		}
		if !redBinned && slotShows(screen, 2, "FAILED") {
			m.keys("2")
			m.waitFor("slot 2 selected", 20*time.Second, "Slot 2 ·")
			m.keys("b")
			m.waitFor("slot 2 in the red bin", 20*time.Second, "RED BIN")
			redBinned = true
			simctl("next", "2")
			continue
		}
		if !replugged && slotShows(screen, 3, "FAILED") {
			if !strings.Contains(screen, "Reseat") && !strings.Contains(screen, "reseat") {
				m.keys("3")
				m.waitFor("slot 3's instruction", 20*time.Second, "Reseat the cable on slot 3")
			}
			simctl("plug", "3")
			replugged = true
			continue
		}
		for k := 1; k <= 4; k++ {
			passed := slotShows(screen, k, "PASSED")
			if passed && !nexted[k] {
				nexted[k] = true
				// The last fresh board may be gone: then the slot stays.
				_ = exec.Command(wsc, "sim", "next", strconv.Itoa(k), "--dir", dir).Run()
			}
			if !passed {
				nexted[k] = false
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !redBinned || !replugged {
		t.Fatalf("red bin %v, replugged %v:\n%s", redBinned, replugged, screen)
	}
	screen = m.waitFor("the final counters", 30*time.Second, "COMPLETE", "12 of 12 devices")
	t.Logf("final screen:\n%s", screen)

	out, err := exec.Command(wsc, "db", "stats", "--db", filepath.Join(dir, "station.db"), "--work-order", "SIM-WO-1-2", "--json").Output()
	if err != nil {
		t.Fatalf("db stats: %v", err)
	}
	var st []struct {
		WorkOrder string `json:"work_order"`
		Quantity  int    `json:"quantity"`
		Done      int    `json:"done"`
		Failed    int    `json:"failed_runs"`
	}
	if err := json.Unmarshal(out, &st); err != nil || len(st) != 1 {
		t.Fatalf("db stats: %v\n%s", err, out)
	}
	if st[0].Done != 12 {
		t.Fatalf("db stats: %+v, want 12 done", st[0])
	}
	// The screen counts what the database counts: devices passed, failed
	// attempts.
	for _, want := range []string{fmt.Sprintf("Passed %d", st[0].Done), fmt.Sprintf("failed %d", st[0].Failed)} {
		if !strings.Contains(screen, want) {
			t.Errorf("screen lacks %q (db stats %+v):\n%s", want, st[0], screen)
		}
	}
	if st[0].Failed < 2 {
		t.Errorf("db stats: %d failed runs, want at least the fault at keys and the pulled cable", st[0].Failed)
	}

	_ = exec.Command("tmux", "kill-session", "-t", m.session).Run()
	_ = s.cmd.Process.Signal(os.Interrupt)
	<-s.done
	deadline = time.Now().Add(15 * time.Second)
	for exec.Command("pgrep", "-f", dir).Run() == nil {
		if time.Now().After(deadline) {
			ps, _ := exec.Command("pgrep", "-af", dir).Output()
			t.Fatalf("processes outlived the test:\n%s", ps)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
