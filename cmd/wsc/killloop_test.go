package main

import (
	"context"
	"crypto"
	"database/sql"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // raw read-only queries of the invariants
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/proto"
	"go.bug.st/serial"
)

// killCycles is how many times TestStationKillLoop kills the station
// (WSC_KILL_CYCLES overrides; CI runs the default).
func killCycles() int {
	if n, err := strconv.Atoi(os.Getenv("WSC_KILL_CYCLES")); err == nil && n > 0 {
		return n
	}
	return 200
}

// resetDevice removes a device's keys and chain through the agent, so that
// the next provisioning is a re-provisioning with a new key.
func resetDevice(t *testing.T, port string) {
	t.Helper()
	p, err := serial.Open(port, &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	c := proto.NewClient(p, proto.WithLogger(slog.New(slog.DiscardHandler)))
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestStationKillLoop kills `wsc station --headless` with SIGKILL at random
// moments while it provisions three simulated devices, many times in a row;
// every few cycles a device is reset (new key), so re-provisioning and the
// revocation of the superseded certificate are interrupted too. After each
// kill: PRAGMA integrity_check is ok, the audit ledger verifies, no
// certificate lacks its device/key rows, no device has two live
// certificates. At the end one clean run completes every device.
func TestStationKillLoop(t *testing.T) {
	f := newStationFixture(t, 3, "")
	wsc, _ := buildBinaries(t)
	dbPath := filepath.Join(f.dir, "station.db")
	// The audit key was created with the CA (newStationFixture).
	var pub crypto.PublicKey
	cycles := killCycles()
	rng := rand.New(rand.NewPCG(1, 2))
	killedMidRun, prevUnfinished := 0, 0
	for i := range cycles {
		if i%10 == 9 {
			resetDevice(t, f.bench.Devices[rng.IntN(len(f.bench.Devices))].Port)
		}
		cmd := exec.Command(wsc, "station", "--headless", "--config", f.config, "--operator", "ana", "--pin-source", "env:WSC_TEST_PIN")
		cmd.Env = append(os.Environ(), "WSC_TEST_PIN=2468")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Start-up (CA and audit key unlock) takes about 0.3 s; kill
		// anywhere from before it is up to well into provisioning.
		time.Sleep(time.Duration(rng.IntN(700)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		if pub == nil {
			if k, err := ca.LoadPublicKey(filepath.Join(f.dir, "ca", ca.AuditPubKeyFile)); err == nil {
				pub = k
			}
		}
		if n := checkInvariants(t, dbPath, pub); n > prevUnfinished {
			killedMidRun++
			prevUnfinished = n
		}
	}
	t.Logf("%d kills, %d with provisioning under way", cycles, killedMidRun)

	// A clean run finishes every device.
	p := startStation(t, f)
	p.wait(t, "every device passes after the kill loop", 120*time.Second, func(l []string) bool { return len(countPassed(l)) == 3 })
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	checkInvariants(t, dbPath, pub)
}

// checkInvariants checks the database after a kill; it returns how many runs
// were left unfinished so far (a kill that hit a provisioning adds one).
func checkInvariants(t *testing.T, path string, pub crypto.PublicKey) (unfinishedRuns int) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		return 0 // killed before the database was created
	}
	ctx := context.Background()
	s, err := db.Open(path, db.WithReadOnly())
	if err != nil {
		t.Fatalf("open after kill: %v", err)
	}
	defer s.Close()
	if err := s.IntegrityCheck(ctx); err != nil {
		t.Fatalf("integrity after kill: %v", err)
	}
	var keys []crypto.PublicKey
	if pub != nil {
		keys = []crypto.PublicKey{pub}
	}
	if _, err := s.VerifyAudit(ctx, db.AuditVerifyOptions{Keys: keys}); err != nil {
		t.Fatalf("audit ledger after kill: %v", err)
	}
	raw, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var orphans, doubleLive, unfinished int
	if err := raw.QueryRow(`SELECT count(*) FROM certificates c LEFT JOIN devices d ON d.id = c.device_id
		LEFT JOIN keys k ON k.id = c.key_id WHERE d.id IS NULL OR k.id IS NULL OR k.device_id <> c.device_id`).Scan(&orphans); err != nil {
		t.Fatal(err)
	}
	if err := raw.QueryRow(`SELECT count(*) FROM (SELECT device_id FROM certificates WHERE revoked_at IS NULL
		GROUP BY device_id, role HAVING count(*) > 1)`).Scan(&doubleLive); err != nil {
		t.Fatal(err)
	}
	if err := raw.QueryRow(`SELECT count(*) FROM runs WHERE result IS NULL`).Scan(&unfinished); err != nil {
		t.Fatal(err)
	}
	if orphans != 0 || doubleLive != 0 {
		t.Fatalf("after kill: %d certificates without their rows, %d devices with two live certificates", orphans, doubleLive)
	}
	return unfinished
}
