// Package cli holds what both wsc binaries share on the command line: the
// exit-code scheme, flag helpers, the help and version commands and the
// list of top-level commands. The lean front binary (cmd/wsc/front) and the
// full station binary (cmd/wsc) both import it, so it must stay light: no
// ca, db, station or smallstep import here (cmd/wsc/front's dependency test
// fails if one creeps in).
package cli

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes of every wsc command. Scripts branch on them; `wsc help
// exit-codes` and the README print this table.
const (
	// ExitOK: the command did what was asked and every check passed.
	ExitOK = 0
	// ExitFailed: the thing checked is bad — a module that fails
	// verification, an audit ledger with a defect, a device that failed.
	ExitFailed = 1
	// ExitUsage: the command line or a configuration file is wrong — an
	// unknown command or flag, a missing required flag, a bad argument or
	// value, a path that does not exist, a policy the code cannot honour.
	ExitUsage = 2
	// ExitInternal: the environment or wsc itself failed — a disk, a
	// device that cannot be opened, a database error, a bug.
	ExitInternal = 3
)

// ExitCodesHelp is the text of `wsc help exit-codes`.
const ExitCodesHelp = `Exit codes (every wsc command; wsc-agent uses the same scheme):

  0  success: the command did what was asked and every check passed
  1  the thing checked is bad: a module failed verification, the audit ledger
     has a defect, a device failed provisioning
  2  usage or configuration error: unknown command or flag, a missing or bad
     argument or value, a path that does not exist, a configuration file the
     station cannot honour
  3  internal or environment error: a disk, database or device that cannot be
     used, or a bug in wsc (the message says what; please report bugs)
  130 wsc demo stopped by ctrl+c: devices stopped, records consistent, a
     one-line summary of what finished

A script can therefore tell bad firmware (1) from a bad command line (2) and
from a broken machine (3). The message on standard error always says why.
`

// Coded is an error that carries its process exit code. ExitError is one;
// a binary may define its own (cmd/wsc keeps its exitError literal form).
type Coded interface {
	error
	ExitCode() int
}

// ExitError carries a process exit code through cobra. Commands return one
// through Failed, UsageError and InternalError (or construct it directly).
type ExitError struct {
	// Code is the process exit code.
	Code int
	// Err is the error reported on standard error.
	Err error
}

func (e *ExitError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode returns Code.
func (e *ExitError) ExitCode() int { return e.Code }

// Failed marks err as "the thing checked is bad" (exit 1).
func Failed(err error) error { return WithCode(ExitFailed, err) }

// UsageError marks err as a usage or configuration error (exit 2).
func UsageError(err error) error { return WithCode(ExitUsage, err) }

// Usagef is UsageError(fmt.Errorf(format, args...)).
func Usagef(format string, args ...any) error { return UsageError(fmt.Errorf(format, args...)) }

// InternalError marks err as an internal or environment error (exit 3).
func InternalError(err error) error { return WithCode(ExitInternal, err) }

// WithCode marks err with an exit code; nil stays nil.
func WithCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &ExitError{Code: code, Err: err}
}

// ranError marks an error that a command's own RunE returned, as opposed to
// one cobra returned before running it (unknown command, bad flag, wrong
// number of arguments, missing required flag), which is always a usage error.
type ranError struct{ err error }

func (e *ranError) Error() string { return e.err.Error() }
func (e *ranError) Unwrap() error { return e.err }

// KnownError classifies one sentinel error for ExitStatus.
type KnownError struct {
	// Err is the sentinel, matched with errors.Is.
	Err error
	// Code is the exit code it means.
	Code int
}

// ExitStatus is the process exit status for the error a command returned:
// the code it carries (the outermost Coded error); otherwise 2 for anything
// cobra rejected before the command ran; otherwise the code of the first
// known sentinel error that matches (the binary's own table: the station
// binary maps ca, db and station errors); otherwise 3, because an error
// nobody classified is not a verdict on the thing checked.
func ExitStatus(err error, known []KnownError) int {
	if err == nil {
		return ExitOK
	}
	var c Coded
	if errors.As(err, &c) {
		return c.ExitCode()
	}
	var ran *ranError
	if !errors.As(err, &ran) {
		return ExitUsage
	}
	for _, k := range known {
		if errors.Is(err, k.Err) {
			return k.Code
		}
	}
	return ExitInternal
}

// SetExitCodes prepares a command tree for ExitStatus: flag errors,
// argument errors and unknown subcommands become usage errors, and errors
// from RunE are marked as coming from the command itself (and deprecated
// flag spellings are warned about before it runs). Call it once the tree is
// complete.
func SetExitCodes(root *cobra.Command) {
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return UsageError(fmt.Errorf("%w (see '%s --help')", err, c.CommandPath()))
	})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		switch {
		case c.Args != nil:
			validate := c.Args
			c.Args = func(cmd *cobra.Command, args []string) error {
				if err := validate(cmd, args); err != nil {
					return UsageError(fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath()))
				}
				return nil
			}
		case c.HasSubCommands() && !c.Runnable():
			// cobra's default for a group of commands accepts any argument
			// below the root and prints the group's help with exit 0: a typo
			// in a subcommand name would look like success to a script.
			c.Args = cobra.ArbitraryArgs
			c.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) == 0 {
					return cmd.Help()
				}
				msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
				if cmd.SuggestionsMinimumDistance <= 0 {
					cmd.SuggestionsMinimumDistance = 2 // cobra's default for the root
				}
				if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
					msg += "; did you mean " + strings.Join(s, " or ") + "?"
				}
				return Usagef("%s (see '%s --help')", msg, cmd.CommandPath())
			}
		}
		if run := c.RunE; run != nil {
			c.RunE = func(cmd *cobra.Command, args []string) error {
				WarnDeprecated(cmd)
				if err := run(cmd, args); err != nil {
					return &ranError{err: err}
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// ExitOnPanic turns a panic in the main goroutine into exit code 3 with the
// stack on standard error (Go's default exit status for a panic is 2, which
// would read as a usage error). Deferred first thing in main.
func ExitOnPanic() {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stderr, "wsc: internal error (a bug; please report it with this output): %v\n%s", r, debug.Stack())
		os.Exit(ExitInternal)
	}
}
