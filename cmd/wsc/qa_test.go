package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// demoPass writes the demo CA's passphrase (the last non-comment line of
// the demo's DEMO-ONLY file) to a file a passphrase source can read.
func demoPassFile(t *testing.T, ws string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ws, "DEMO-ONLY-ca-passphrase.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var pass string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			pass = l
		}
	}
	p := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(p, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// TestQARevocationAndAudit follows a plant's records after the demo:
// security revokes one device's certificate (keyCompromise), publishes the
// trust bundle with per-issuer CRLs, and QA's `wsc verify` now rejects that
// device's firmware while the other device's still verifies; the audit
// ledger verifies, and after a row is edited with the sqlite3 tool
// `wsc audit verify` fails with exit status 1.
func TestQARevocationAndAudit(t *testing.T) {
	wsc, agent := buildBinaries(t)
	ws := t.TempDir()
	if b, err := exec.Command(wsc, "demo", "--devices", "2", "--workspace", ws, "--headless", "--agent", agent).CombinedOutput(); err != nil {
		t.Fatalf("demo: %v\n%s", err, b)
	}
	dbPath := filepath.Join(ws, "station.db")
	pass := demoPassFile(t, ws)
	serial, err := exec.Command("sqlite3", dbPath, "SELECT c.serial_hex FROM certificates c JOIN devices d ON d.id = c.device_id WHERE d.serial = 'SIM-0002'").Output()
	if err != nil || len(bytes.TrimSpace(serial)) == 0 {
		t.Fatalf("certificate of SIM-0002: %v %q", err, serial)
	}
	caDir := filepath.Join(ws, "ca")
	run := func(args ...string) string {
		t.Helper()
		b, err := exec.Command(wsc, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("wsc %v: %v\n%s", args, err, b)
		}
		return string(b)
	}
	run("ca", "revoke", "--dir", caDir, "--db", dbPath, "--serial", string(bytes.TrimSpace(serial)), "--reason", "keyCompromise", "--passphrase-source", "file:"+pass)
	// Every CA of the bundle needs a CRL (the bundle fails closed): the
	// demo's root signs its own on this single-machine folder.
	run("ca", "crl", "--root", "--dir", caDir, "--passphrase-source", "file:"+pass)
	bundle := filepath.Join(ws, "bundle-with-crls.pem")
	run("ca", "bundle", "--dir", caDir, "--db", dbPath, "-o", bundle, "--passphrase-source", "file:"+pass)
	if b, _ := os.ReadFile(bundle); !bytes.Contains(b, []byte("BEGIN X509 CRL")) {
		t.Fatal("trust bundle has no CRL")
	}

	b, err := exec.Command(wsc, "verify", "--trust", bundle, filepath.Join(ws, "firmware")).CombinedOutput()
	if exitCode(err) != 1 {
		t.Fatalf("verify with a revoked signer: exit %d, want 1\n%s", exitCode(err), b)
	}
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.Contains(line, "SIM-0001.wasm") && !strings.Contains(line, " valid "):
			t.Errorf("SIM-0001's firmware should still verify: %s", line)
		case strings.Contains(line, "SIM-0002.wasm") && !strings.Contains(line, "revoked"):
			t.Errorf("SIM-0002's firmware should be rejected as revoked: %s", line)
		}
	}

	// The ledger verifies, then an edited row is found.
	run("audit", "verify", "--db", dbPath)
	if b, err := exec.Command("sqlite3", dbPath, `DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'mallory' WHERE id = 3;`).CombinedOutput(); err != nil {
		t.Fatalf("sqlite3 tamper: %v\n%s", err, b)
	}
	b, err = exec.Command(wsc, "audit", "verify", "--db", dbPath).CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(b), "edited") {
		t.Fatalf("audit verify after an edit: exit %d\n%s", exitCode(err), b)
	}
}
