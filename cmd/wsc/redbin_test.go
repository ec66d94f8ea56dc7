package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsc-project/wsc/db"
)

// runCmd runs a wsc subcommand in-process and returns its output.
func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := redbinCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// TestRedBinRelease: only a signed-in supervisor releases a chip, with a
// note; the release is in the ledger with the supervisor's name; the list
// escapes what a device reported.
func TestRedBinRelease(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "station.db")
	s, err := db.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	chip := bytes.Repeat([]byte{0xab}, 32)
	if err := s.EnsureDevice(ctx, db.Device{Serial: "D-1", Backend: "tpm", EKPublicHash: chip, Proof: "tpm"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RedBin(ctx, db.RedBinEntry{ChipID: chip, Serial: "D-1\x1b[2J", Reason: "eol failed", Operator: "ana"}); err != nil {
		t.Fatal(err)
	}
	for _, op := range []db.Operator{{ID: "ana", Role: "operator"}, {ID: "sam", Role: "supervisor"}} {
		if err := s.UpsertOperator(ctx, op, "2468"); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	t.Setenv("PIN", "2468")
	t.Setenv("BADPIN", "1111")

	out, err := runCmd(t, "list", "--db", path)
	if err != nil || !strings.Contains(out, `D-1\x1b[2J`) || strings.Contains(out, "\x1b") {
		t.Fatalf("list: %v\n%q", err, out)
	}
	if _, err := runCmd(t, "release", "--db", path, "--serial", "D-1", "--supervisor", "ana", "--pin-source", "env:PIN", "--note", "ok"); err == nil ||
		!strings.Contains(err.Error(), "only a supervisor") {
		t.Fatalf("operator released the red bin: %v", err)
	}
	if _, err := runCmd(t, "release", "--db", path, "--serial", "D-1", "--supervisor", "sam", "--pin-source", "env:BADPIN", "--note", "ok"); err == nil {
		t.Fatal("wrong PIN released the red bin")
	}
	if _, err := runCmd(t, "release", "--db", path, "--serial", "D-1", "--supervisor", "sam", "--pin-source", "env:PIN"); err == nil ||
		!strings.Contains(err.Error(), "--note") {
		t.Fatalf("release without a note: %v", err)
	}
	if out, err := runCmd(t, "release", "--db", path, "--serial", "D-1", "--supervisor", "sam", "--pin-source", "env:PIN", "--note", "reworked"); err != nil {
		t.Fatalf("supervisor release: %v\n%s", err, out)
	}
	if _, err := runCmd(t, "release", "--db", path, "--serial", "D-1", "--supervisor", "sam", "--pin-source", "env:PIN", "--note", "again"); err == nil ||
		!strings.Contains(err.Error(), "not in the red bin") {
		t.Fatalf("second release: %v", err)
	}
	out, err = runCmd(t, "list", "--db", path, "--all", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		ReleasedBy  string `json:"released_by"`
		ReleaseNote string `json:"release_note"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 || rows[0].ReleasedBy != "sam" || rows[0].ReleaseNote != "reworked" {
		t.Fatalf("list --all --json: %v %+v\n%s", err, rows, out)
	}
	s, err = db.Open(path, db.WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	entries, err := s.AuditEntries(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var releases, logins int
	for _, e := range entries {
		switch e.Kind {
		case "redbin.release":
			releases++
			if e.Actor != "sam" {
				t.Errorf("release recorded by %q", e.Actor)
			}
		case "operator.login":
			logins++
		}
	}
	if releases != 1 || logins != 4 {
		t.Errorf("ledger: %d releases, %d sign-ins; want 1 and 4", releases, logins)
	}
}
