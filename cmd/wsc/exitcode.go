package main

import (
	"io/fs"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/cmd/internal/cli"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/station"
)

// Exit codes of every wsc command: the scheme lives in cmd/internal/cli,
// shared with the lean front binary (cmd/wsc/front).
const (
	exitOK       = cli.ExitOK
	exitFailed   = cli.ExitFailed
	exitUsage    = cli.ExitUsage
	exitInternal = cli.ExitInternal
)

// exitCodesHelp is the text of `wsc help exit-codes`.
const exitCodesHelp = cli.ExitCodesHelp

// exitError carries a process exit code through cobra (cli.Coded). Commands
// return one through failed, usageError and internalError (or construct it
// directly).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// ExitCode is the process exit code (cli.Coded).
func (e *exitError) ExitCode() int { return e.code }

// failed marks err as "the thing checked is bad" (exit 1).
func failed(err error) error { return cli.Failed(err) }

// usageError marks err as a usage or configuration error (exit 2).
func usageError(err error) error { return cli.UsageError(err) }

// usagef is usageError(fmt.Errorf(format, args...)).
func usagef(format string, args ...any) error { return cli.Usagef(format, args...) }

// internalError marks err as an internal or environment error (exit 3).
func internalError(err error) error { return cli.InternalError(err) }

// exitStatus is the process exit status for the error a command returned
// (cli.ExitStatus with this binary's table of sentinel errors).
func exitStatus(err error) int { return cli.ExitStatus(err, knownErrors) }

// knownErrors classifies the sentinel errors of our packages that reach a
// command unwrapped by an exitError: what a device proved wrong is a failed
// check; a wrong passphrase or a path that does not exist is the user's
// input. A command's own exitError always wins over this table.
var knownErrors = []cli.KnownError{
	{Err: station.ErrLabelMismatch, Code: exitFailed},
	{Err: station.ErrAttestation, Code: exitFailed},
	{Err: station.ErrReadBack, Code: exitFailed},
	{Err: station.ErrEndOfLine, Code: exitFailed},
	{Err: station.ErrNoProof, Code: exitFailed},
	{Err: station.ErrChipMismatch, Code: exitFailed},
	{Err: station.ErrRedBin, Code: exitFailed},
	{Err: station.ErrSerialInvalid, Code: exitFailed},
	{Err: station.ErrKeyPolicy, Code: exitFailed},
	{Err: station.ErrDelivery, Code: exitFailed},
	{Err: ca.ErrEvidenceMalformed, Code: exitFailed},
	{Err: ca.ErrEKUntrusted, Code: exitFailed},
	{Err: ca.ErrEKMismatch, Code: exitFailed},
	{Err: ca.ErrCertifyMagic, Code: exitFailed},
	{Err: ca.ErrCertifyType, Code: exitFailed},
	{Err: ca.ErrCertifyNonce, Code: exitFailed},
	{Err: ca.ErrCertifyName, Code: exitFailed},
	{Err: ca.ErrCertifySignature, Code: exitFailed},
	{Err: ca.ErrKeyAttributes, Code: exitFailed},
	{Err: ca.ErrCSRKeyMismatch, Code: exitFailed},
	{Err: ca.ErrActivation, Code: exitFailed},
	{Err: ca.ErrReceived, Code: exitFailed},
	{Err: ca.ErrUnknownIssuer, Code: exitFailed},
	{Err: ca.ErrCRLNumber, Code: exitFailed},
	{Err: ca.ErrLedgerBroken, Code: exitFailed},
	{Err: ca.ErrLedgerUnsigned, Code: exitFailed},
	{Err: db.ErrAuditTampered, Code: exitFailed},
	{Err: db.ErrWitnessMismatch, Code: exitFailed},
	{Err: ca.ErrBadPassphrase, Code: exitUsage},
	{Err: ca.ErrEmptyPassphrase, Code: exitUsage},
	{Err: ca.ErrWeakPassphrase, Code: exitUsage},
	{Err: ca.ErrPassphraseMismatch, Code: exitUsage},
	{Err: ca.ErrPassphraseFileMode, Code: exitUsage},
	{Err: ca.ErrQuorum, Code: exitUsage},
	{Err: ca.ErrShareCorrupt, Code: exitUsage},
	{Err: ca.ErrNoCustody, Code: exitUsage},
	{Err: ca.ErrUnknownSerial, Code: exitUsage},
	{Err: ca.ErrCertificateNotFound, Code: exitUsage},
	{Err: ca.ErrExists, Code: exitUsage},
	{Err: ca.ErrWeakPassphrase, Code: exitUsage},
	{Err: ca.ErrPassphraseMismatch, Code: exitUsage},
	{Err: ca.ErrPassphraseFileMode, Code: exitUsage},
	{Err: ca.ErrReceived, Code: exitFailed},
	{Err: ca.ErrUnknownSerial, Code: exitUsage},
	{Err: ca.ErrQuorum, Code: exitUsage},
	{Err: ca.ErrShareCorrupt, Code: exitUsage},
	{Err: ca.ErrAuditKeyMissing, Code: exitUsage},
	{Err: db.ErrWitnessMismatch, Code: exitFailed},
	{Err: db.ErrWitnessTorn, Code: exitFailed},
	{Err: db.ErrBadPIN, Code: exitUsage},
	{Err: db.ErrAlreadyRevoked, Code: exitUsage},
	{Err: fs.ErrNotExist, Code: exitUsage},
}

// setExitCodes prepares a command tree for exitStatus (cli.SetExitCodes).
func setExitCodes(root *cobra.Command) { cli.SetExitCodes(root) }

// exitOnPanic turns a panic in the main goroutine into exit code 3
// (cli.ExitOnPanic; a variable, so that the deferred call is the function
// that recovers).
var exitOnPanic = cli.ExitOnPanic
