package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/station"
)

// execute runs a fresh command tree in-process and returns its exit code and
// what it printed.
func execute(t *testing.T, args ...string) (int, string) {
	t.Helper()
	root := rootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	if err != nil {
		fmt.Fprintf(&out, "wsc: %v\n", err)
	}
	return exitStatus(err), out.String()
}

// TestExitCodesFromCobra: what cobra rejects before a command runs is a
// usage error (2), at every level of the tree; help and version are 0.
func TestExitCodesFromCobra(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		want     int
		contains string
	}{
		{"unknown command", []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"unknown subcommand", []string{"ca", "frobnicate"}, exitUsage, `unknown command "frobnicate" for "wsc ca"`},
		{"unknown subcommand with suggestion", []string{"db", "exprt"}, exitUsage, "did you mean export"},
		{"unknown flag", []string{"verify", "--bogus", "x.wasm"}, exitUsage, "unknown flag: --bogus"},
		{"bad flag value", []string{"verify", "--trust", "b.pem", "--workers", "many", "x.wasm"}, exitUsage, "invalid argument"},
		{"missing argument", []string{"verify", "--trust", "b.pem"}, exitUsage, "requires at least 1 arg"},
		{"missing required flag", []string{"verify", "x.wasm"}, exitUsage, "--trust BUNDLE (certificate chains) or --ed25519-pub KEY"},
		{"extra argument", []string{"version", "extra"}, exitUsage, "extra"},
		{"help", []string{"--help"}, exitOK, "Exit codes"},
		{"group without subcommand shows help", []string{"ca"}, exitOK, "Usage:"},
		{"help topic", []string{"help", "exit-codes"}, exitOK, "3  internal or environment error"},
		{"help of a subcommand", []string{"help", "ca", "crl"}, exitOK, "Usage:"},
		{"unknown help topic", []string{"help", "frobnicate"}, exitUsage, `unknown help topic "frobnicate"`},
		{"version flag", []string{"--version"}, exitOK, "wsc "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := execute(t, tt.args...)
			if code != tt.want || !strings.Contains(out, tt.contains) {
				t.Fatalf("wsc %s: exit %d, want %d; output lacks %q?\n%s", strings.Join(tt.args, " "), code, tt.want, tt.contains, out)
			}
		})
	}
}

// TestExitCodesFromCommands: a command's own error carries its code; an
// unclassified one is internal (3), except a path that does not exist (2).
func TestExitCodesFromCommands(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"failed", failed(base), exitFailed},
		{"usage", usagef("--at: %w", base), exitUsage},
		{"internal", internalError(base), exitInternal},
		{"wrapped keeps the code", fmt.Errorf("verify: %w", failed(base)), exitFailed},
		{"outermost code wins", usageError(internalError(base)), exitUsage},
		{"unclassified", base, exitInternal},
		{"missing path", &fs.PathError{Op: "open", Path: "x.wasm", Err: fs.ErrNotExist}, exitUsage},
		{"legacy literal", &exitError{code: 1, err: base}, exitFailed},
		{"a device's failed proof", fmt.Errorf("slot 1: %w: %w", station.ErrAttestation, ca.ErrCertifyNonce), exitFailed},
		{"wrong passphrase", fmt.Errorf("open CA: %w", ca.ErrBadPassphrase), exitUsage},
		{"own code wins over the table", internalError(fmt.Errorf("x: %w", ca.ErrBadPassphrase)), exitInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := &cobra.Command{Use: "wsc", SilenceErrors: true, SilenceUsage: true}
			root.AddCommand(&cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return tt.err }})
			setExitCodes(root)
			root.SetArgs([]string{"x"})
			err := root.Execute()
			if got := exitStatus(err); got != tt.want {
				t.Fatalf("exit %d, want %d (err %v)", got, tt.want, err)
			}
			if tt.err != nil && !errors.Is(err, tt.err) && !errors.Is(err, base) {
				t.Fatalf("the command's error was lost: %v", err)
			}
		})
	}
	if failed(nil) != nil || usageError(nil) != nil || internalError(nil) != nil {
		t.Fatal("a nil error gained an exit code")
	}
}

// TestVersionCommand: `wsc version --json` is one JSON object with the
// documented keys; the text form names the Go version.
func TestVersionCommand(t *testing.T) {
	code, out := execute(t, "version", "--json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, out)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if v["program"] != "wsc" || v["module"] != "github.com/wsc-project/wsc" || !strings.HasPrefix(fmt.Sprint(v["go_version"]), "go1.") {
		t.Fatalf("version JSON %v", v)
	}
	code, out = execute(t, "version")
	if code != exitOK || !strings.Contains(out, "go:            go1.") {
		t.Fatalf("exit %d: %s", code, out)
	}
}
