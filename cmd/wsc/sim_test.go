package main

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsc-project/wsc/devices/sim/testenv"
	"github.com/wsc-project/wsc/station"
)

// startProc runs the wsc binary with args (and extra environment), and
// collects its output lines; the process is killed at the end of the test.
func startProc(t *testing.T, env []string, args ...string) *stationProc {
	t.Helper()
	wsc, _ := buildBinaries(t)
	cmd := exec.Command(wsc, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &stationProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.done })
	return p
}

func has(sub string) func([]string) bool {
	return func(l []string) bool { return strings.Contains(strings.Join(l, "\n"), sub) }
}

// slotLine reports whether a headless line of slot n holds every one of want.
func slotLine(n string, want ...string) func([]string) bool {
	return func(lines []string) bool {
		for _, l := range lines {
			if !strings.Contains(l, " slot="+n+" ") {
				continue
			}
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(l, w)
			}
			if ok {
				return true
			}
		}
		return false
	}
}

// TestSimBenchWithStation runs `wsc sim` (a TPM and a secure element and a
// third TPM) and the real `wsc station --headless` on the station.yaml it
// wrote, signed in as the training operator. A trainer arms a fault at
// install on device 2 and pulls device 3's cable: slot 1 passes, slot 2
// fails at install with the injected device error, slot 3 waits. Plugging
// device 3 in makes it pass; reseating device 2 (pull, plug) runs it again
// and it passes. ctrl+c stops the sim and every process it started.
func TestSimBenchWithStation(t *testing.T) {
	testenv.NeedTools(t, "swtpm", "swtpm_setup", "swtpm_localca")
	wsc, agent := buildBinaries(t)
	dir := filepath.Join(t.TempDir(), "bench")
	s := startProc(t, nil, "sim", "--dir", dir, "--devices", "3", "--mix", "tpm,se", "--agent", agent, "--quantity", "5")
	s.wait(t, "the simulated bench", 120*time.Second, has("simulated bench ready: 3 devices on 3 slots"))
	cfgPath := filepath.Join(dir, "station.yaml")
	cfg, err := station.LoadConfig(cfgPath)
	if err != nil {
		t.Fatalf("the station.yaml wsc sim wrote does not load: %v", err)
	}
	if strings.Join(cfg.WorkOrder.Proofs, ",") != "tpm,atecc608" || len(cfg.TPMVendorRoots) != 1 || len(cfg.SEVendorRoots) != 1 || len(cfg.Slots) != 3 || cfg.WorkOrder.Quantity != 5 {
		t.Fatalf("station.yaml: proofs %v, tpm roots %v, se roots %v, %d slots, quantity %d", cfg.WorkOrder.Proofs, cfg.TPMVendorRoots, cfg.SEVendorRoots, len(cfg.Slots), cfg.WorkOrder.Quantity)
	}
	ctl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(wsc, append(append([]string{"sim"}, args...), "--dir", dir)...).CombinedOutput()
		if err != nil {
			t.Fatalf("wsc sim %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	ctl("fail", "2", "--at", "install")
	ctl("pull", "3")
	if st := ctl("status"); !strings.Contains(st, "fail-at=install") || !strings.Contains(st, "SIM-0003 tpm") || !strings.Contains(st, "pulled") {
		t.Fatalf("status:\n%s", st)
	}
	if out, err := exec.Command(wsc, "sim", "fail", "9", "--at", "install", "--dir", dir).CombinedOutput(); err == nil {
		t.Fatalf("fail on a device that does not exist accepted:\n%s", out)
	}

	p := startProc(t, []string{"WSC_TEST_PIN=1234"}, "station", "--headless", "--config", cfgPath, "--operator", "trainer", "--pin-source", "env:WSC_TEST_PIN")
	p.wait(t, "slot 1 passed and slot 2 failed at install", 120*time.Second, func(l []string) bool {
		return slotLine("1", "state=passed")(l) && slotLine("2", "step=install", "fault injected at install")(l)
	})
	if slotLine("3", "state=running")(p.lines) {
		t.Fatalf("slot 3 ran with its cable pulled:\n%s", strings.Join(p.lines, "\n"))
	}
	ctl("plug", "3")
	p.wait(t, "slot 3 passed once plugged", 120*time.Second, slotLine("3", "state=passed"))
	// Reseat device 2: the slot sees it go and come back, and runs it.
	// The cable stays out until the station has tried the line (bytes it
	// wrote were lost): its probe then times out, so it has seen the device
	// go, however slow the machine is.
	lost := func() int64 {
		for _, line := range strings.Split(ctl("status"), "\n") {
			if f := strings.Fields(line); len(f) >= 6 && f[0] == "2" {
				if v, ok := strings.CutPrefix(f[5], "lost="); ok {
					n, err := strconv.ParseInt(v, 10, 64)
					if err != nil {
						t.Fatalf("status line %q: %v", line, err)
					}
					return n
				}
			}
		}
		t.Fatal("wsc sim status has no lost= count for slot 2")
		return 0
	}
	before := lost()
	ctl("pull", "2")
	deadline := time.Now().Add(120 * time.Second)
	for lost() == before {
		if time.Now().After(deadline) {
			t.Fatal("the station never tried slot 2's line while its cable was pulled")
		}
		time.Sleep(50 * time.Millisecond) // polling wsc sim status; the verdict waits for the count
	}
	ctl("plug", "2")
	p.wait(t, "slot 2 passed after the reseat", 120*time.Second, slotLine("2", "state=passed"))
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done

	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	<-s.done
	if !has("simulated bench stopped")(s.lines) {
		t.Fatalf("sim did not stop cleanly:\n%s", strings.Join(s.lines, "\n"))
	}
	if ps, _ := exec.Command("pgrep", "-f", dir).Output(); len(strings.TrimSpace(string(ps))) > 0 {
		t.Fatalf("processes left running for %s: %s", dir, ps)
	}
}

// TestCheckConfigCommand: wsc station --check-config prints FILE:LINE for
// each problem and exits 2; a good file exits 0 with a summary.
func TestCheckConfigCommand(t *testing.T) {
	wsc, _ := buildBinaries(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("station: s\ndatabase: d.db\nwork_order: {id: W, quantity: 0}\nslots: [{slot: 1, port: /dev/null}]\ncolour: red\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(wsc, "station", "--check-config", bad).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), bad+":5: unknown key \"colour\"") {
		t.Fatalf("bad config: %v\n%s", err, out)
	}
	if err := os.WriteFile(bad, []byte("station: s\ndatabase: d.db\nwork_order: {id: W, quantity: 0}\nslots: [{slot: 1, port: /dev/null}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = exec.Command(wsc, "station", "--check-config", bad).CombinedOutput()
	for _, want := range []string{bad + ":3: work_order: id and a positive quantity", "ca.dir is required", "tpm needs tpm_vendor_roots"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestHeadlessInstructions: without a screen no instruction tells the
// operator to press a key; each says what works headless.
func TestHeadlessInstructions(t *testing.T) {
	for _, in := range []string{
		"Reseat the cable on slot 2 and press r.",
		"Cannot open the port of slot 1: check the USB cable and adapter, then press r.",
		"The label does not match the device on slot 3: check you scanned the right board, then rescan and press r.",
		"The work order's quantity is reached: stop the work order (s) and ask the shift lead for the next one.",
	} {
		for _, once := range []bool{false, true} {
			got := headlessInstruction(in, once)
			if strings.Contains(got, "press r") || strings.Contains(got, "(s)") || got == in {
				t.Errorf("once=%v: %q -> %q", once, in, got)
			}
			if once && !strings.Contains(got, "provision") && !strings.Contains(got, "stop provisioning") {
				t.Errorf("one-shot instruction does not say to run the command again: %q", got)
			}
		}
	}
	line := headlessLine(station.Event{Slot: 2, State: station.StateFailed, Detail: "Reseat the cable on slot 2 and press r."})
	if strings.Contains(line, "press r") || !strings.Contains(line, "plugged back in") {
		t.Fatalf("headless line: %q", line)
	}
}
