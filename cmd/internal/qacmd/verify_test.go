package qacmd

import (
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/wsc-project/wsc/cmd/internal/cli"
)

// TestVerifyDBWithoutRecorder: --db in a binary without the database
// hands the command line over before anything is read (the trust bundle
// here does not even exist), or, with nowhere to hand it, is a usage
// error.
func TestVerifyDBWithoutRecorder(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.pem")
	args := []string{"--trust", missing, "--db", "station.db", "x.wasm"}
	handed := errors.New("handed over")
	calls := 0
	cmd := VerifyCmd(Options{Delegate: func() error { calls++; return handed }})
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.Execute(); !errors.Is(err, handed) || calls != 1 {
		t.Fatalf("with a delegate: %v, %d calls", err, calls)
	}
	cmd = VerifyCmd(Options{})
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.Execute(); cli.ExitStatus(err, nil) != cli.ExitUsage {
		t.Fatalf("without recorder or delegate: %v (exit %d), want a usage error", err, cli.ExitStatus(err, nil))
	}
}
