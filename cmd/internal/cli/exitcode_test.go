package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"testing"

	"github.com/spf13/cobra"
)

// coded is a binary's own exit-code error type (cmd/wsc has one).
type coded struct{ code int }

func (c coded) Error() string { return "coded" }
func (c coded) ExitCode() int { return c.code }

func TestExitStatus(t *testing.T) {
	sentinel := errors.New("sentinel")
	known := []KnownError{{Err: sentinel, Code: ExitFailed}, {Err: fs.ErrNotExist, Code: ExitUsage}}
	ran := func(err error) error { return &ranError{err: err} }
	for _, tt := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, ExitOK},
		{"failed", Failed(errors.New("bad module")), ExitFailed},
		{"usage", Usagef("bad %s", "flag"), ExitUsage},
		{"internal", InternalError(errors.New("disk")), ExitInternal},
		{"outermost code wins", UsageError(fmt.Errorf("x: %w", Failed(errors.New("y")))), ExitUsage},
		{"a binary's own coded type", ran(fmt.Errorf("x: %w", coded{code: 130})), 130},
		{"rejected by cobra before running", errors.New("unknown flag"), ExitUsage},
		{"known sentinel from RunE", ran(fmt.Errorf("wrap: %w", sentinel)), ExitFailed},
		{"path that does not exist", ran(fmt.Errorf("open: %w", fs.ErrNotExist)), ExitUsage},
		{"unclassified from RunE", ran(errors.New("boom")), ExitInternal},
		{"nil code error", WithCode(ExitFailed, nil), ExitOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExitStatus(tt.err, known); got != tt.want {
				t.Fatalf("ExitStatus(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

// TestSetExitCodes drives a small tree: a bad flag, a missing argument and
// an unknown subcommand are usage errors; what RunE returns is classified.
func TestSetExitCodes(t *testing.T) {
	build := func() *cobra.Command {
		root := Root()
		group := &cobra.Command{Use: "group"}
		group.AddCommand(&cobra.Command{Use: "leaf", Args: cobra.ExactArgs(1), RunE: func(*cobra.Command, []string) error {
			return errors.New("unclassified")
		}})
		root.AddCommand(group, VersionCmd())
		Finish(root)
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		return root
	}
	for _, tt := range []struct {
		args []string
		want int
	}{
		{[]string{"version"}, ExitOK},
		{[]string{"version", "--no-such-flag"}, ExitUsage},
		{[]string{"group", "leaf"}, ExitUsage},
		{[]string{"group", "lef"}, ExitUsage},
		{[]string{"group", "leaf", "x"}, ExitInternal},
		{[]string{"help", "no-such-topic"}, ExitUsage},
		{[]string{"help", "exit-codes"}, ExitOK},
	} {
		root := build()
		root.SetArgs(tt.args)
		if got := ExitStatus(root.Execute(), nil); got != tt.want {
			t.Errorf("wsc %v: exit %d, want %d", tt.args, got, tt.want)
		}
	}
}
