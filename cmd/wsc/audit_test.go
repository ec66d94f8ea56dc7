package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
)

// auditWorkspace is a station database written with a real audit key (created by
// `wsc audit init-key`) and its witness file in the CA folder, as the station lays it out.
func auditWorkspace(t *testing.T, wsc string) (dir, dbPath, fp string) {
	t.Helper()
	dir = t.TempDir()
	pass := filepath.Join(dir, "pass")
	if err := os.WriteFile(pass, []byte("audit passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	caDir := filepath.Join(dir, "ca")
	if err := os.MkdirAll(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(wsc, "audit", "init-key", "--ca-dir", caDir, "--passphrase-source", "file:"+pass).CombinedOutput()
	if err != nil {
		t.Fatalf("init-key: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f, ok := strings.CutPrefix(l, "fingerprint: "); ok {
			fp = f
		}
	}
	if len(fp) != 64 {
		t.Fatalf("no fingerprint in %s", out)
	}
	// A second init-key never replaces the key.
	if out, err := exec.Command(wsc, "audit", "init-key", "--ca-dir", caDir, "--passphrase-source", "file:"+pass).CombinedOutput(); err == nil {
		t.Fatalf("second init-key succeeded: %s", out)
	}
	key, err := ca.AuditKey(caDir, []byte("audit passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	dbPath = filepath.Join(dir, "station.db")
	s, err := db.Open(dbPath, db.WithAuditSigner(key, 5), db.WithWitness(filepath.Join(caDir, "audit.witness")))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.CreateWorkOrder(ctx, db.WorkOrder{ID: "WO-1", Product: "gw", Quantity: 5}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ {
		if err := s.EnsureDevice(ctx, db.Device{Serial: fmt.Sprintf("D-%d", i), Backend: "tpm", EKPublicHash: db.KeyHash([]byte{byte(i)})}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, dbPath, fp
}

func TestAuditVerifyCLI(t *testing.T) {
	testenv.NeedTools(t, "sqlite3")
	wsc, _ := buildBinaries(t)
	dir, dbPath, fp := auditWorkspace(t, wsc)
	run := func(args ...string) (string, int) {
		b, err := exec.Command(wsc, args...).CombinedOutput()
		return string(b), exitCode(err)
	}
	runJSON := func(args ...string) (string, int) { // stdout only
		b, err := exec.Command(wsc, args...).Output()
		return string(b), exitCode(err)
	}
	if out, code := run("audit", "verify", "--db", dbPath, "--audit-key-fingerprint", fp); code != 0 || !strings.Contains(out, "audit ledger: ok") ||
		!strings.Contains(out, "13 rows of certificates") {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
	// Usage errors: exit 2.
	if out, code := run("audit", "verify", "--db", dbPath); code != 2 || !strings.Contains(out, "no pinned audit key") {
		t.Fatalf("verify without a pin: exit %d\n%s", code, out)
	}
	if _, code := run("audit", "verify", "--db", dbPath, "--bogus"); code != 2 {
		t.Fatalf("unknown flag: exit %d", code)
	}
	if _, code := run("audit", "verify", "--db", dbPath, "--audit-key-fingerprint", "abc"); code != 2 {
		t.Fatalf("malformed fingerprint: exit %d", code)
	}
	// Another station's key pinned: the key beside the database is not trusted.
	other := strings.Repeat("ab", 32)
	out, code := runJSON("audit", "verify", "--db", dbPath, "--audit-key-fingerprint", other, "--json")
	var rep auditReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || rep.Result != "failed" || rep.Failures[0].Kind != string(db.AuditUnpinnedKey) {
		t.Fatalf("foreign pin: exit %d %v\n%s", code, err, out)
	}
	// The tail is deleted with its checkpoints and the bookkeeping fixed: the witness tells.
	if b, err := exec.Command("sqlite3", dbPath, `DROP TRIGGER audit_no_delete; DROP TRIGGER devices_no_delete;
		DELETE FROM audit WHERE id > 10; UPDATE audit_head SET seq = 10, hash = (SELECT hash FROM audit WHERE id = 10);
		UPDATE sqlite_sequence SET seq = 10 WHERE name = 'audit'; DELETE FROM devices WHERE serial NOT IN ('D-0','D-1','D-2','D-3','D-4','D-5','D-6','D-7');`).CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, b)
	}
	out, code = runJSON("audit", "verify", "--db", dbPath, "--audit-key-fingerprint", fp, "--json")
	rep = auditReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || rep.Result != "failed" || !rep.WitnessChecked ||
		len(rep.Failures) != 1 || rep.Failures[0].Kind != "truncated" || rep.Failures[0].Row != 11 {
		t.Fatalf("truncated: exit %d %v\n%s", code, err, out)
	}
	for _, k := range []string{`"result"`, `"witness_checked"`, `"head_seq"`, `"covered_rows"`, `"failures"`, `"kind"`} {
		if !strings.Contains(out, k) {
			t.Errorf("json lacks %s", k)
		}
	}
	// Without the witness the same database passes, and the report says what was not checked.
	if out, code := run("audit", "verify", "--db", dbPath, "--audit-key-fingerprint", fp, "--no-witness"); code != 0 || !strings.Contains(out, "NOT CHECKED") {
		t.Fatalf("--no-witness: exit %d\n%s", code, out)
	}
	// A witness on another path is found through --witness.
	moved := filepath.Join(t.TempDir(), "elsewhere.witness")
	if err := os.Rename(filepath.Join(dir, "ca", "audit.witness"), moved); err != nil {
		t.Fatal(err)
	}
	if out, code := run("audit", "verify", "--db", dbPath, "--audit-key-fingerprint", fp); code != 1 || !strings.Contains(out, "[witness-missing]") {
		t.Fatalf("witness moved away: exit %d\n%s", code, out)
	}
	if out, code := run("audit", "verify", "--db", dbPath, "--audit-key-fingerprint", fp, "--witness", moved); code != 1 || !strings.Contains(out, "[truncated]") {
		t.Fatalf("--witness: exit %d\n%s", code, out)
	}
}

// A station whose audit.key is missing stops with an instruction; nothing creates it.
func TestStationRefusesMissingAuditKey(t *testing.T) {
	dir := t.TempDir()
	pass := filepath.Join(dir, "pass")
	if err := os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ca.Init(filepath.Join(dir, "ca"), []byte("correct horse battery staple"), ca.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "station.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`station: st
database: station.db
ca: {dir: ca, passphrase: "file:%s"}
audit: {key_fingerprints: [%s]}
work_order: {id: WO-1, product: p, quantity: 5, proofs: [unattested]}
slots:
  - {slot: 1, port: /dev/null}
`, pass, strings.Repeat("ab", 32))), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := openLine(context.Background(), cfg)
	if !errors.Is(err, ca.ErrAuditKeyMissing) || !strings.Contains(err.Error(), "wsc audit init-key") {
		t.Fatalf("open line without audit key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca", ca.AuditKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("audit key created: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "station.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("database created before the audit key was found: %v", err)
	}
}
