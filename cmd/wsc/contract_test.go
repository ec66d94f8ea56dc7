package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/station"
)

// contractWS is a real station workspace for the command-line contract
// tests: a CA folder made by `wsc ca init` (root, intermediate, audit key,
// folder ledger), a station database whose ledger is signed by that audit
// key and witnessed in the CA folder, an operator and a supervisor, and a
// file that is not a database.
type contractWS struct {
	dir, caDir, pass, pin, dbPath, fp, garbage, rootCert string
}

const contractPassphrase = "correct horse battery staple on the line"

func newContractWS(t *testing.T) *contractWS {
	t.Helper()
	w := &contractWS{dir: t.TempDir()}
	w.caDir = filepath.Join(w.dir, "ca")
	w.pass = secretFile(t, w.dir, "pass", contractPassphrase, 0o600)
	w.pin = secretFile(t, w.dir, "pin", "4711", 0o600)
	code, out := execute(t, "ca", "init", "--ca-dir", w.caDir, "--passphrase-source", "file:"+w.pass, "--json")
	if code != exitOK {
		t.Fatalf("ca init: exit %d\n%s", code, out)
	}
	m := regexp.MustCompile(`fingerprint ([0-9a-f]{64})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ca init printed no audit key fingerprint:\n%s", out)
	}
	w.fp = m[1]
	w.rootCert = filepath.Join(w.caDir, ca.RootCertFile)
	key, err := ca.AuditKey(w.caDir, []byte(contractPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	w.dbPath = filepath.Join(w.dir, "station.db")
	s, err := db.Open(w.dbPath, db.WithAuditSigner(key, 5), db.WithWitness(filepath.Join(w.caDir, station.DefaultWitnessFile)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.CreateWorkOrder(ctx, db.WorkOrder{ID: "WO-1", Product: "gw", Quantity: 5}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := s.EnsureDevice(ctx, db.Device{Serial: fmt.Sprintf("D-%d", i), Backend: "tpm", EKPublicHash: db.KeyHash([]byte{byte(i)})}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, op := range [][2]string{{"op1", "operator"}, {"sup1", "supervisor"}} {
		if code, out := execute(t, "operator", "add", "--db", w.dbPath, "--id", op[0], "--role", op[1], "--pin-source", "file:"+w.pin); code != exitOK {
			t.Fatalf("operator add %s: exit %d\n%s", op[0], code, out)
		}
	}
	w.garbage = filepath.Join(w.dir, "garbage.db")
	if err := os.WriteFile(w.garbage, []byte(strings.Repeat("this is not an SQLite database\n", 200)), 0o600); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestExitCodeContract runs every command this file's owner wires (ca, db,
// operator, audit, redbin, plant) in-process with a success, a bad
// argument, a bad input and, where the command checks something, a failed
// check, and asserts the documented exit code (0, 2, 2 or 3, 1) and a
// sentence saying why.
func TestExitCodeContract(t *testing.T) {
	w := newContractWS(t)
	missing := filepath.Join(w.dir, "no-such-file")
	wrongPin := secretFile(t, w.dir, "wrong-pin", "0000", 0o600)
	notPEM := filepath.Join(w.dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadDSN := "postgres://nobody@127.0.0.1:1/none?connect_timeout=2&sslmode=disable"
	tests := []struct {
		name     string
		args     []string
		want     int
		contains string
	}{
		// ca
		{"ca status ok", []string{"ca", "status", "--ca-dir", w.caDir, "--json"}, exitOK, `"roots"`},
		{"ca status bad flag", []string{"ca", "status", "--ca-dir"}, exitUsage, "needs an argument"},
		{"ca inspect ok", []string{"ca", "inspect", w.rootCert}, exitOK, "SHA-256"},
		{"ca inspect no argument", []string{"ca", "inspect"}, exitUsage, "accepts 1 arg"},
		{"ca inspect missing file", []string{"ca", "inspect", missing}, exitUsage, "no such file"},
		{"ca inspect not a certificate", []string{"ca", "inspect", notPEM}, exitUsage, "inspect"},
		{"ca ledger verify ok", []string{"ca", "ledger", "verify", "--ca-dir", w.caDir}, exitOK, "ledger OK"},
		{"ca ledger verify wrong pin", []string{"ca", "ledger", "verify", "--ca-dir", w.caDir, "--pin", strings.Repeat("ab", 32)}, exitFailed, "not the pinned"},
		{"ca bundle without output", []string{"ca", "bundle", "--ca-dir", w.caDir}, exitUsage, "--output is required"},
		{"ca revoke neither serial nor cert", []string{"ca", "revoke", "--ca-dir", w.caDir}, exitUsage, "--serial or --cert"},
		{"ca revoke bad reason", []string{"ca", "revoke", "--ca-dir", w.caDir, "--serial", "01", "--reason", "bored"}, exitUsage, "--reason"},
		{"ca revoke bad serial", []string{"ca", "revoke", "--ca-dir", w.caDir, "--db", w.dbPath, "--serial", "xyz", "--passphrase-source", "file:" + w.pass}, exitUsage, "not a hexadecimal"},
		{"ca revoke unknown serial", []string{"ca", "revoke", "--ca-dir", w.caDir, "--db", w.dbPath, "--serial", "0DEADBEEF", "--passphrase-source", "file:" + w.pass}, exitUsage, "never issued"},
		{"ca revoke wrong passphrase", []string{"ca", "revoke", "--ca-dir", w.caDir, "--db", w.dbPath, "--serial", "0DEADBEEF", "--passphrase-source", "file:" + wrongPin}, exitUsage, "passphrase"},
		{"ca init over an existing folder", []string{"ca", "init", "--ca-dir", w.caDir, "--passphrase-source", "file:" + w.pass}, exitUsage, "exist"},
		{"ca init bad validity", []string{"ca", "init", "--ca-dir", filepath.Join(w.dir, "ca2"), "--root-validity", "forever", "--passphrase-source", "file:" + w.pass}, exitUsage, "--root-validity"},
		{"ca intermediate install without chain", []string{"ca", "intermediate", "install", "--ca-dir", w.caDir}, exitUsage, "--chain is required"},
		{"ca intermediate install not a chain", []string{"ca", "intermediate", "install", "--ca-dir", w.caDir, "--chain", notPEM}, exitUsage, "--chain"},
		{"ca import bad file", []string{"ca", "import", "--ca-dir", w.caDir, notPEM}, exitUsage, "not.pem"},
		{"ca import missing file", []string{"ca", "import", "--ca-dir", w.caDir, missing}, exitUsage, "no such file"},
		{"ca passphrase change bad key", []string{"ca", "passphrase", "change", "--ca-dir", w.caDir, "--key", "door"}, exitUsage, "--key must be"},
		{"ca ceremony missing flags", []string{"ca", "ceremony"}, exitUsage, "required flag"},
		// db
		{"db export ok", []string{"db", "export", "--db", w.dbPath}, exitOK, "["},
		{"db export without --db", []string{"db", "export"}, exitUsage, "--db is required"},
		{"db export bad format", []string{"db", "export", "--db", w.dbPath, "--format", "xml"}, exitUsage, "--format"},
		{"db export bad since", []string{"db", "export", "--db", w.dbPath, "--since", "yesterday"}, exitUsage, "--since"},
		{"db export missing file", []string{"db", "export", "--db", missing}, exitUsage, "no such file"},
		{"db export not a database", []string{"db", "export", "--db", w.garbage}, exitInternal, ""},
		{"db stats ok", []string{"db", "stats", "--db", w.dbPath, "--json"}, exitOK, `"work_order"`},
		{"db stats without --db", []string{"db", "stats"}, exitUsage, "--db is required"},
		{"db stats not a database", []string{"db", "stats", "--db", w.garbage}, exitInternal, ""},
		// operator
		{"operator add without id", []string{"operator", "add", "--db", w.dbPath}, exitUsage, "--id are required"},
		{"operator add unreadable PIN source", []string{"operator", "add", "--db", w.dbPath, "--id", "x", "--pin-source", "file:" + missing}, exitUsage, "PIN"},
		// audit
		{"audit verify ok", []string{"audit", "verify", "--db", w.dbPath, "--audit-key-fingerprint", w.fp}, exitOK, "audit ledger: ok"},
		{"audit verify no pin", []string{"audit", "verify", "--db", w.dbPath}, exitUsage, "no pinned audit key"},
		{"audit verify missing database", []string{"audit", "verify", "--db", missing, "--audit-key-fingerprint", w.fp}, exitUsage, "no such file"},
		{"audit verify foreign pin", []string{"audit", "verify", "--db", w.dbPath, "--audit-key-fingerprint", strings.Repeat("ab", 32)}, exitFailed, "FAILED"},
		{"audit verify not a database", []string{"audit", "verify", "--db", w.garbage, "--audit-key-fingerprint", w.fp, "--no-witness"}, exitInternal, ""},
		{"audit init-key never replaces", []string{"audit", "init-key", "--ca-dir", w.caDir, "--passphrase-source", "file:" + w.pass}, exitUsage, "never replaced"},
		{"audit fingerprint ok", []string{"audit", "fingerprint", "--pub", filepath.Join(w.caDir, ca.AuditPubKeyFile)}, exitOK, w.fp},
		{"audit fingerprint not a key", []string{"audit", "fingerprint", "--pub", notPEM}, exitUsage, "--pub"},
		{"audit repair-witness without flags", []string{"audit", "repair-witness"}, exitUsage, "required"},
		// redbin
		{"redbin list ok", []string{"redbin", "list", "--db", w.dbPath, "--json"}, exitOK, "[]"},
		{"redbin list without --db", []string{"redbin", "list"}, exitUsage, "--db is required"},
		{"redbin list not a database", []string{"redbin", "list", "--db", w.garbage}, exitInternal, ""},
		{"redbin release without note", []string{"redbin", "release", "--db", w.dbPath, "--serial", "D-1"}, exitUsage, "--note"},
		{"redbin release bad chip", []string{"redbin", "release", "--db", w.dbPath, "--chip", "zz", "--note", "n"}, exitUsage, "--chip"},
		{"redbin release wrong PIN", []string{"redbin", "release", "--db", w.dbPath, "--chip", "abcd", "--note", "n", "--supervisor", "sup1", "--pin-source", "file:" + wrongPin}, exitUsage, "PIN"},
		{"redbin release by an operator", []string{"redbin", "release", "--db", w.dbPath, "--chip", "abcd", "--note", "n", "--supervisor", "op1", "--pin-source", "file:" + w.pin}, exitUsage, "only a supervisor"},
		{"redbin release chip not held", []string{"redbin", "release", "--db", w.dbPath, "--chip", "abcd", "--note", "n", "--supervisor", "sup1", "--pin-source", "file:" + w.pin}, exitUsage, "not in the red bin"},
		// plant (the PostgreSQL successes and findings are in plant_test.go)
		{"plant check without dsn", []string{"plant", "check", "--dsn", ""}, exitUsage, "--dsn is required"},
		{"plant check registry unreachable", []string{"plant", "check", "--dsn", deadDSN}, exitInternal, ""},
		{"plant bundle without output", []string{"plant", "bundle", "--dsn", deadDSN}, exitUsage, "--output is required"},
		{"plant report bad day", []string{"plant", "report", "--dsn", deadDSN, "--day", "monday"}, exitUsage, "--day"},
		{"plant sync bad config", []string{"plant", "sync", "--dsn", deadDSN, "--config", notPEM}, exitUsage, "--config"},
		{"plant revoke without reason", []string{"plant", "revoke", "--dsn", deadDSN, "--serial", "01"}, exitUsage, "required"},
		{"plant find no argument", []string{"plant", "find", "--dsn", deadDSN}, exitUsage, "accepts 1 arg"},
		{"plant serve without TLS", []string{"plant", "serve", "--dsn", deadDSN}, exitUsage, "--tls-cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := execute(t, tt.args...)
			if code != tt.want || !strings.Contains(out, tt.contains) {
				t.Fatalf("wsc %s: exit %d, want %d; output lacks %q?\n%s", strings.Join(tt.args, " "), code, tt.want, tt.contains, out)
			}
			if code != exitOK && !strings.Contains(out, "wsc: ") {
				t.Fatalf("exit %d without a message on stderr:\n%s", code, out)
			}
		})
	}
}

// executeSplit is execute with standard output and standard error apart.
func executeSplit(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	root := rootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	if err != nil {
		fmt.Fprintf(&errOut, "wsc: %v\n", err)
	}
	return exitStatus(err), out.String(), errOut.String()
}

// TestFlagVocabulary: one spelling per idea (--ca-dir, -o/--output), the
// old spellings still work for a release, hidden, with a warning on
// standard error only; no flag's help shows cobra's back-quote value name.
func TestFlagVocabulary(t *testing.T) {
	root := rootCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: back-quote in usage %q (pflag shows the quoted word as the value name)", c.CommandPath(), f.Name, f.Usage)
			}
			if f.Hidden {
				if len(f.Annotations[aliasOf]) != 1 {
					t.Errorf("%s --%s: hidden but not a deprecated alias", c.CommandPath(), f.Name)
				}
				return
			}
			switch {
			case f.Name == "out":
				t.Errorf("%s: visible --out (the vocabulary is -o/--output)", c.CommandPath())
			case f.Name == "dir" && (strings.HasPrefix(c.CommandPath(), "wsc ca") || strings.HasPrefix(c.CommandPath(), "wsc audit")):
				t.Errorf("%s: visible --dir for the CA folder (the vocabulary is --ca-dir)", c.CommandPath())
			case f.Shorthand == "o" && f.Name != "output":
				t.Errorf("%s: -o is --%s, not --output", c.CommandPath(), f.Name)
			}
			// Every secret source in the commands of this file's owner says the same syntax.
			mine := false
			for _, p := range []string{"wsc ca", "wsc audit", "wsc db", "wsc operator", "wsc redbin"} {
				mine = mine || strings.HasPrefix(c.CommandPath(), p)
			}
			if mine && (strings.HasSuffix(f.Name, "passphrase-source") || f.Name == "pin-source" || f.Name == "share") && !strings.Contains(f.Usage, secretSources) {
				t.Errorf("%s --%s: usage %q does not state the source syntax %q", c.CommandPath(), f.Name, f.Usage, secretSources)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)

	for _, args := range [][]string{{"ca", "intermediate", "sign", "--help"}, {"ca", "intermediate", "install", "--help"}, {"redbin", "release", "--help"}} {
		code, out := execute(t, args...)
		if code != exitOK {
			t.Fatalf("%v: exit %d", args, code)
		}
		for _, glitch := range []string{"--csr intermediate csr", "--chain intermediate sign", "--chip wsc redbin list", "--dir ", "--out "} {
			if strings.Contains(out, glitch) {
				t.Errorf("wsc %s shows %q:\n%s", strings.Join(args, " "), glitch, out)
			}
		}
	}

	w := t.TempDir()
	caDir := filepath.Join(w, "ca")
	pass := secretFile(t, w, "pass", contractPassphrase, 0o600)
	code, stdout, stderr := executeSplit(t, "ca", "init", "--root-only", "--dir", caDir, "--passphrase-source", "file:"+pass, "--json")
	if code != exitOK || !strings.Contains(stderr, "flag --dir is deprecated, use --ca-dir instead") {
		t.Fatalf("ca init --dir: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if strings.Contains(stdout, "deprecated") || !strings.HasPrefix(strings.TrimSpace(stdout), "{") {
		t.Fatalf("the warning or a secret reached the JSON on stdout:\n%s", stdout)
	}
	if _, err := os.Stat(filepath.Join(caDir, ca.RootCertFile)); err != nil {
		t.Fatalf("--dir was not honoured: %v", err)
	}
	code, stdout, stderr = executeSplit(t, "ca", "crl", "--root", "--dir", caDir, "--out", filepath.Join(w, "crls"), "--passphrase-source", "file:"+pass)
	if code != exitOK || !strings.Contains(stderr, "flag --out is deprecated, use --output instead") {
		t.Fatalf("ca crl --out: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if m, _ := filepath.Glob(filepath.Join(w, "crls", "crl-*.pem")); len(m) != 1 {
		t.Fatalf("--out was not honoured: %v", m)
	}
	code, stdout, stderr = executeSplit(t, "ca", "status", "--ca-dir", caDir)
	if code != exitOK || strings.Contains(stderr, "deprecated") {
		t.Fatalf("ca status --ca-dir: exit %d\n%s%s", code, stdout, stderr)
	}
}
