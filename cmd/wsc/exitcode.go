package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/station"
)

// Exit codes of every wsc command. Scripts branch on them; `wsc help
// exit-codes` and the README print this table.
const (
	// exitOK: the command did what was asked and every check passed.
	exitOK = 0
	// exitFailed: the thing checked is bad — a module that fails
	// verification, an audit ledger with a defect, a device that failed.
	exitFailed = 1
	// exitUsage: the command line or a configuration file is wrong — an
	// unknown command or flag, a missing required flag, a bad argument or
	// value, a path that does not exist, a policy the code cannot honour.
	exitUsage = 2
	// exitInternal: the environment or wsc itself failed — a disk, a
	// device that cannot be opened, a database error, a bug.
	exitInternal = 3
)

// exitCodesHelp is the text of `wsc help exit-codes`.
const exitCodesHelp = `Exit codes (every wsc command; wsc-agent uses the same scheme):

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

// exitError carries a process exit code through cobra. Commands return one
// through failed, usageError and internalError (or construct it directly).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// failed marks err as "the thing checked is bad" (exit 1).
func failed(err error) error { return withCode(exitFailed, err) }

// usageError marks err as a usage or configuration error (exit 2).
func usageError(err error) error { return withCode(exitUsage, err) }

// usagef is usageError(fmt.Errorf(format, args...)).
func usagef(format string, args ...any) error { return usageError(fmt.Errorf(format, args...)) }

// internalError marks err as an internal or environment error (exit 3).
func internalError(err error) error { return withCode(exitInternal, err) }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// ranError marks an error that a command's own RunE returned, as opposed to
// one cobra returned before running it (unknown command, bad flag, wrong
// number of arguments, missing required flag), which is always a usage error.
type ranError struct{ err error }

func (e *ranError) Error() string { return e.err.Error() }
func (e *ranError) Unwrap() error { return e.err }

// exitStatus is the process exit status for the error a command returned:
// the code it carries (the outermost exitError); otherwise 2 for anything
// cobra rejected before the command ran; otherwise the code of a known
// sentinel error (knownErrors); otherwise 3, because an error nobody
// classified is not a verdict on the thing checked.
func exitStatus(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ran *ranError
	if !errors.As(err, &ran) {
		return exitUsage
	}
	for _, k := range knownErrors {
		if errors.Is(err, k.err) {
			return k.code
		}
	}
	return exitInternal
}

// knownErrors classifies the sentinel errors of our packages that reach a
// command unwrapped by an exitError: what a device proved wrong is a failed
// check; a wrong passphrase or a path that does not exist is the user's
// input. A command's own exitError always wins over this table.
var knownErrors = []struct {
	err  error
	code int
}{
	{station.ErrLabelMismatch, exitFailed},
	{station.ErrAttestation, exitFailed},
	{station.ErrReadBack, exitFailed},
	{station.ErrEndOfLine, exitFailed},
	{station.ErrNoProof, exitFailed},
	{station.ErrChipMismatch, exitFailed},
	{station.ErrRedBin, exitFailed},
	{station.ErrSerialInvalid, exitFailed},
	{station.ErrKeyPolicy, exitFailed},
	{station.ErrDelivery, exitFailed},
	{ca.ErrEvidenceMalformed, exitFailed},
	{ca.ErrEKUntrusted, exitFailed},
	{ca.ErrEKMismatch, exitFailed},
	{ca.ErrCertifyMagic, exitFailed},
	{ca.ErrCertifyType, exitFailed},
	{ca.ErrCertifyNonce, exitFailed},
	{ca.ErrCertifyName, exitFailed},
	{ca.ErrCertifySignature, exitFailed},
	{ca.ErrKeyAttributes, exitFailed},
	{ca.ErrCSRKeyMismatch, exitFailed},
	{ca.ErrActivation, exitFailed},
	{ca.ErrReceived, exitFailed},
	{ca.ErrUnknownIssuer, exitFailed},
	{ca.ErrCRLNumber, exitFailed},
	{ca.ErrLedgerBroken, exitFailed},
	{ca.ErrLedgerUnsigned, exitFailed},
	{db.ErrAuditTampered, exitFailed},
	{db.ErrWitnessMismatch, exitFailed},
	{ca.ErrBadPassphrase, exitUsage},
	{ca.ErrEmptyPassphrase, exitUsage},
	{ca.ErrWeakPassphrase, exitUsage},
	{ca.ErrPassphraseMismatch, exitUsage},
	{ca.ErrPassphraseFileMode, exitUsage},
	{ca.ErrQuorum, exitUsage},
	{ca.ErrShareCorrupt, exitUsage},
	{ca.ErrNoCustody, exitUsage},
	{ca.ErrUnknownSerial, exitUsage},
	{ca.ErrCertificateNotFound, exitUsage},
	{ca.ErrExists, exitUsage},
	{ca.ErrWeakPassphrase, exitUsage},
	{ca.ErrPassphraseMismatch, exitUsage},
	{ca.ErrPassphraseFileMode, exitUsage},
	{ca.ErrReceived, exitFailed},
	{ca.ErrUnknownSerial, exitUsage},
	{ca.ErrQuorum, exitUsage},
	{ca.ErrShareCorrupt, exitUsage},
	{ca.ErrAuditKeyMissing, exitUsage},
	{db.ErrWitnessMismatch, exitFailed},
	{db.ErrWitnessTorn, exitFailed},
	{db.ErrBadPIN, exitUsage},
	{db.ErrAlreadyRevoked, exitUsage},
	{fs.ErrNotExist, exitUsage},
}

// setExitCodes prepares a command tree for exitStatus: flag errors, argument
// errors and unknown subcommands become usage errors, and errors from RunE
// are marked as coming from the command itself. Call it once the tree is
// complete.
func setExitCodes(root *cobra.Command) {
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError(fmt.Errorf("%w (see '%s --help')", err, c.CommandPath()))
	})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		switch {
		case c.Args != nil:
			validate := c.Args
			c.Args = func(cmd *cobra.Command, args []string) error {
				if err := validate(cmd, args); err != nil {
					return usageError(fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath()))
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
				return usagef("%s (see '%s --help')", msg, cmd.CommandPath())
			}
		}
		if run := c.RunE; run != nil {
			c.RunE = func(cmd *cobra.Command, args []string) error {
				warnDeprecated(cmd)
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

// exitOnPanic turns a panic in the main goroutine into exit code 3 with the
// stack on standard error (Go's default exit status for a panic is 2, which
// would read as a usage error). Deferred first thing in main.
func exitOnPanic() {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stderr, "wsc: internal error (a bug; please report it with this output): %v\n%s", r, debug.Stack())
		os.Exit(exitInternal)
	}
}
