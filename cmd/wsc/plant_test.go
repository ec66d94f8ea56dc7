package main

import (
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsc-project/wsc/db/plant/pgtest"
)

// TestPlantCLI drives the real binary: a demo station's records go to a real PostgreSQL
// registry (TLS client certificate of the station's role), the ledger verifies against the
// registry's copy, the plant check passes, a plant revocation request is recorded, the report
// prints as CSV; after the station's database is rewritten, `wsc audit verify --plant` fails.
func TestPlantCLI(t *testing.T) {
	testenv.NeedTools(t, "swtpm", "swtpm_setup", "swtpm_localca")
	wsc, agent := buildBinaries(t)
	ws := t.TempDir()
	if b, err := exec.Command(wsc, "demo", "--devices", "2", "--workspace", ws, "--headless", "--agent", agent).CombinedOutput(); err != nil {
		t.Fatalf("demo: %v\n%s", err, b)
	}
	dbPath := filepath.Join(ws, "station.db")
	srv := pgtest.Start(t)
	if err := srv.CreateDatabase("plant"); err != nil {
		t.Fatal(err)
	}
	admin := srv.AdminDSNFor("plant")
	station := srv.ClientDSN("station_demo", "plant", "")
	run := func(want int, args ...string) string {
		t.Helper()
		b, err := exec.Command(wsc, args...).CombinedOutput()
		if code := exitCode(err); code != want {
			t.Fatalf("wsc %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, b)
		}
		return string(b)
	}
	run(0, "plant", "init", "--dsn", admin)
	if out := run(0, "plant", "init", "--dsn", admin); !strings.Contains(out, "0 migrations applied") {
		t.Fatalf("second init: %s", out)
	}
	run(0, "plant", "station", "add", "--dsn", admin, "--id", "demo", "--role", "station_demo", "--audit-key", filepath.Join(ws, "ca", "audit.pub"))
	if out := run(0, "plant", "sync", "--dsn", station, "--db", dbPath, "--station", "demo"); !strings.Contains(out, "plant: in sync") {
		t.Fatalf("sync: %s", out)
	}
	fp := strings.TrimSpace(run(0, "audit", "fingerprint", "--pub", filepath.Join(ws, "ca", "audit.pub")))
	if out := run(0, "audit", "verify", "--db", dbPath, "--audit-key-fingerprint", fp, "--plant", station, "--station", "demo"); !strings.Contains(out, "plant witness: ok") {
		t.Fatalf("audit verify --plant: %s", out)
	}
	if out := run(0, "plant", "check", "--dsn", admin, "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("check --json on a clean plant: %s", out)
	}
	if out := run(0, "plant", "find", "--dsn", admin, "SIM-0001"); !strings.Contains(out, `"device":"SIM-0001"`) || !strings.Contains(out, `"confirmed":true`) {
		t.Fatalf("find: %s", out)
	}
	run(1, "plant", "find", "--dsn", admin, "NO-SUCH-DEVICE")
	if out := run(0, "plant", "report", "--dsn", admin, "--json"); !strings.Contains(out, `"station":"demo"`) {
		t.Fatalf("report --json: %s", out)
	}
	csv := run(0, "plant", "report", "--dsn", admin, "--csv")
	if !strings.Contains(csv, "demo,") || !strings.HasPrefix(csv, "station,work_order,devices") {
		t.Fatalf("report: %s", csv)
	}
	serial, err := exec.Command("sqlite3", dbPath, "SELECT serial_hex FROM certificates LIMIT 1").Output()
	if err != nil {
		t.Fatal(err)
	}
	if out := run(0, "plant", "revoke", "--dsn", admin, "--serial", strings.TrimSpace(string(serial)), "--reason", "keyCompromise"); !strings.Contains(out, "station demo applies it") {
		t.Fatalf("revoke: %s", out)
	}
	run(2, "plant", "revoke", "--dsn", admin, "--serial", "abcdef", "--reason", "keyCompromise") // unknown serial: a bad argument
	// The station's disk is replaced by an older copy's rewrite: the last rows are gone and
	// the head moved back, consistently (local checks alone cannot tell).
	if b, err := exec.Command("sqlite3", dbPath, `DROP TRIGGER audit_no_delete;
		DELETE FROM audit WHERE id > (SELECT max(id) - 3 FROM audit);
		UPDATE audit_head SET seq = (SELECT max(id) FROM audit), hash = (SELECT hash FROM audit ORDER BY id DESC LIMIT 1);
		UPDATE sqlite_sequence SET seq = (SELECT max(id) FROM audit) WHERE name = 'audit';`).CombinedOutput(); err != nil {
		t.Fatalf("rewrite: %v %s", err, b)
	}
	out := run(1, "audit", "verify", "--db", dbPath, "--audit-key-fingerprint", fp, "--plant", station, "--station", "demo")
	if !strings.Contains(out, "plant witness: FAILED") || !strings.Contains(out, "truncation") {
		t.Fatalf("audit verify after rewrite: %s", out)
	}
	if out := run(1, "plant", "check", "--dsn", admin); !strings.Contains(out, "alarm") {
		t.Fatalf("plant check after the alarm: %s", out)
	}
}
