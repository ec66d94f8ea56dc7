package main

import (
	"bufio"
	"context"
	"crypto"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/sim"
	"github.com/wsc-project/wsc/devices/sim/testenv"
)

// stationFixture is a CA, a database with an operator, simulated devices on
// the bench and a station config file pointing at them.
type stationFixture struct {
	dir, config string
	bench       *sim.Bench
}

func newStationFixture(t *testing.T, n int, profile string) *stationFixture {
	t.Helper()
	return newStationFixtureBench(t, sim.BenchConfig{N: n, LatencyProfile: profile})
}

// newStationFixtureBench is newStationFixture for any simulated bench (Dir,
// SerialPrefix, AgentBinary and AgentLogDir are filled in).
func newStationFixtureBench(t *testing.T, bc sim.BenchConfig) *stationFixture {
	t.Helper()
	if len(bc.Mix) == 0 || slices.Contains(bc.Mix, sim.KindTPM) {
		testenv.NeedTools(t, "swtpm", "swtpm_setup", "swtpm_localca")
	}
	_, agent := buildBinaries(t)
	dir := t.TempDir()
	ctx := context.Background()
	if err := os.WriteFile(filepath.Join(dir, "pass"), []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ca.Init(filepath.Join(dir, "ca"), []byte("correct horse battery staple"), ca.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	auditKey, err := ca.CreateAuditKey(filepath.Join(dir, "ca"), []byte("correct horse battery staple"))
	if err != nil {
		t.Fatal(err)
	}
	auditPin, err := ca.AuditKeyFingerprint(auditKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	bc.Dir, bc.SerialPrefix, bc.AgentBinary, bc.AgentLogDir = dir, "LINE", agent, filepath.Join(dir, "logs")
	b, err := sim.StartBench(ctx, bc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	store, err := db.Open(filepath.Join(dir, "station.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.UpsertOperator(ctx, db.Operator{ID: "ana", Name: "Ana", Role: "operator"}, "2468"); err != nil {
		t.Fatal(err)
	}
	store.Close()
	var slots strings.Builder
	for i, d := range b.Devices {
		fmt.Fprintf(&slots, "  - {slot: %d, port: %q}\n", i+1, d.Port)
	}
	vendor := ""
	var proofs []string
	if b.VendorRoot != "" { // a bench of secure elements only has no TPM vendor
		vendor = fmt.Sprintf("tpm_vendor_roots: [%q]\ntpm_vendor_intermediates: [%q]\n", b.VendorRoot, b.VendorIssuer)
		proofs = append(proofs, "tpm")
	}
	if b.SEVendorRoot != "" {
		vendor += fmt.Sprintf("se_vendor_roots: [%q]\nse_vendor_intermediates: [%q]\n", b.SEVendorRoot, b.SEVendorIssuer)
		proofs = append(proofs, "atecc608")
	}
	cfg := fmt.Sprintf(`station: bench-test
database: station.db
ca: {dir: ca, passphrase: "file:%s"}
audit: {key_fingerprints: [%s]}
%swork_order: {id: WO-7, product: sensor, quantity: 50, lock: none, proofs: [%s]}
slots:
%s`, filepath.Join(dir, "pass"), auditPin, vendor, strings.Join(proofs, ", "), slots.String())
	path := filepath.Join(dir, "station.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return &stationFixture{dir: dir, config: path, bench: b}
}

// stationProc is a running `wsc station --headless`.
type stationProc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func startStation(t *testing.T, f *stationFixture) *stationProc {
	t.Helper()
	wsc, _ := buildBinaries(t)
	cmd := exec.Command(wsc, "station", "--headless", "--config", f.config, "--operator", "ana", "--pin-source", "env:WSC_TEST_PIN")
	cmd.Env = append(os.Environ(), "WSC_TEST_PIN=2468")
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

// waitLines waits until pred holds for the output so far.
func (p *stationProc) wait(t *testing.T, what string, timeout time.Duration, pred func([]string) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		ok := pred(p.lines)
		p.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-p.done:
			p.mu.Lock()
			defer p.mu.Unlock()
			t.Fatalf("station exited while waiting for %s:\n%s", what, strings.Join(p.lines, "\n"))
		case <-time.After(50 * time.Millisecond):
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Fatalf("timed out waiting for %s:\n%s", what, strings.Join(p.lines, "\n"))
}

func countPassed(lines []string) map[string]bool {
	passed := map[string]bool{}
	for _, l := range lines {
		if strings.Contains(l, "state=passed") {
			for _, f := range strings.Fields(l) {
				if s, ok := strings.CutPrefix(f, "device="); ok {
					passed[s] = true
				}
			}
		}
	}
	return passed
}

// TestStationCrashResume kills the station (SIGKILL) at a random moment
// while it provisions three slow (SLB9670-profile) devices, restarts it, and
// checks that every device completes without a second certificate, and that
// the database and its audit ledger are intact.
func TestStationCrashResume(t *testing.T) {
	f := newStationFixture(t, 3, "slb9670")
	p := startStation(t, f)
	p.wait(t, "a device creating keys", 60*time.Second, func(l []string) bool {
		return strings.Contains(strings.Join(l, "\n"), "step=keys")
	})
	time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done

	p2 := startStation(t, f)
	p2.wait(t, "all three devices passed after restart", 120*time.Second, func(l []string) bool { return len(countPassed(l)) == 3 })
	if err := p2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p2.done

	ctx := context.Background()
	store, err := db.Open(filepath.Join(f.dir, "station.db"), db.WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range f.bench.Devices {
		certs, err := store.Certificates(ctx, d.Serial)
		if err != nil {
			t.Fatal(err)
		}
		if len(certs) != 1 {
			t.Errorf("%s: %d certificates after crash and resume, want 1 (no re-issue)", d.Serial, len(certs))
		}
	}
	pub, err := ca.LoadPublicKey(filepath.Join(f.dir, "ca", ca.AuditPubKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.VerifyAudit(ctx, db.AuditVerifyOptions{Keys: []crypto.PublicKey{pub}}); err != nil {
		t.Fatalf("audit ledger after crash: %v", err)
	}
}

// TestStationDiscoversPorts: with no slots listed, `wsc station` finds the
// bench's ports through a glob (links to the simulated devices' ptys, as
// udev's /dev/serial/by-path links are on a real bench) and provisions
// every device found.
func TestStationDiscoversPorts(t *testing.T) {
	f := newStationFixture(t, 2, "")
	ports := filepath.Join(f.dir, "ports")
	if err := os.MkdirAll(ports, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, d := range f.bench.Devices {
		if err := os.Symlink(d.Port, filepath.Join(ports, fmt.Sprintf("bench-%d", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(f.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b[:strings.Index(string(b), "slots:")]) + "discover: {globs: [\"ports/bench-*\"]}\n"
	if err := os.WriteFile(f.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startStation(t, f)
	p.wait(t, "both discovered devices passed", 60*time.Second, func(l []string) bool {
		return len(countPassed(l)) == 2 && strings.Contains(strings.Join(l, "\n"), "2 slots")
	})
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
}

// TestStationCrashResumeSE: the station is killed while it provisions two
// ATECC608 devices (emulator with datasheet timings, so the kill lands in
// the middle of chip work); after a restart both finish, each with exactly
// one certificate: the key made in the chip before the crash is reused and
// its certificate re-delivered.
func TestStationCrashResumeSE(t *testing.T) {
	f := newStationFixtureBench(t, sim.BenchConfig{N: 2, Mix: []string{"se"}, SEDatasheetTimings: true})
	p := startStation(t, f)
	p.wait(t, "an SE device creating its key", 60*time.Second, func(l []string) bool {
		return strings.Contains(strings.Join(l, "\n"), "step=keys")
	})
	time.Sleep(time.Duration(rand.IntN(1200)) * time.Millisecond)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p2 := startStation(t, f)
	p2.wait(t, "both SE devices passed after restart", 120*time.Second, func(l []string) bool { return len(countPassed(l)) == 2 })
	_ = p2.cmd.Process.Signal(syscall.SIGTERM)
	<-p2.done
	s, err := db.Open(filepath.Join(f.dir, "station.db"), db.WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, d := range f.bench.Devices {
		certs, err := s.Certificates(context.Background(), d.Serial)
		if err != nil {
			t.Fatal(err)
		}
		if len(certs) != 1 {
			t.Errorf("SE device %s: %d certificates after crash and resume, want 1", d.Serial, len(certs))
		}
	}
}
