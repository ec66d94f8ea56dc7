// Package qacmd holds QA's commands, `wsc verify` and `wsc qa`, shared by
// the lean front binary (cmd/wsc/front, which runs them itself so that
// verification does not pay for the CA's start-up) and the full station
// binary (cmd/wsc, which registers the same commands). It links no ca, db,
// station or smallstep package: recording results in a station database
// (--db) is a hook the full binary provides.
package qacmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"text/tabwriter"

	"github.com/charmbracelet/bubbles/progress"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/cmd/internal/cli"
	"github.com/wsc-project/wsc/station/untrusted"
	"github.com/wsc-project/wsc/ui/qa"
	"github.com/wsc-project/wsc/wasmsign"
	"golang.org/x/term"
)

// Options wires what only some binaries can do into the commands.
type Options struct {
	// Record records the results in the station database at path, as
	// verifier, and says on out what it did not record. The full binary
	// provides it (package db); nil in the front.
	Record func(ctx context.Context, out io.Writer, path, verifier string, results []wasmsign.Result) error
	// Delegate runs the whole command line in the full binary. The front
	// sets it: `wsc verify --db …` without Record hands over before any
	// module is verified. It returns only on failure.
	Delegate func() error
}

// VerifyCmd is `wsc verify`.
func VerifyCmd(o Options) *cobra.Command {
	var (
		trustPath, junit, at, recordDB, verifier string
		edPubPath, detachedPath                  string
		asJSON, allowMissingCRL                  bool
		workers                                  int
	)
	cmd := &cobra.Command{
		Use:   "verify (--trust BUNDLE | --ed25519-pub KEY) [--detached SIG] [--json | --junit FILE] PATH...",
		Short: "Verify signed firmware (files and folders, recursively) against the trust bundle",
		Long: `verify checks every .wasm module under PATH against the trust bundle (roots, intermediates, CRLs):
the hash list must equal a signed set exactly, the chain must end at a pinned root with code-signing
usage, and every CA on the path (intermediates and root) must have a CRL in the bundle that is fresh
at the verification time (thisUpdate <= t <= nextUpdate) and signed by that CA; a missing, stale or
forged CRL fails closed. --allow-missing-crl accepts a CA without any CRL (never a stale or forged one)
and the report marks every result that relied on it. Times are checked now, unless --at is given,
which the report shows. Exit status 1 when any module fails, 2 for a bad command line or bundle.

--ed25519-pub KEY verifies wasmsign2 (Ed25519) signatures with KEY instead, in any of wasmsign2's
public key formats (its key file, DER, PEM, OpenSSH line). --detached SIG verifies one MODULE against
a detached signature (what 'wsc sign --detached' and 'wasmsign2 sign -S' write).

--json prints one report object; each result carries a stable reason_code beside the human reason
(docs/reason-codes.md) and signer_serial as openssl prints serials (upper-case hex).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if recordDB != "" && o.Record == nil {
				if o.Delegate == nil {
					return cli.Usagef("--db: this binary cannot record in a station database; run wsc-station verify")
				}
				return o.Delegate()
			}
			mode, err := loadVerifyMode(trustPath, edPubPath, detachedPath, at, allowMissingCRL, args)
			if err != nil {
				return err
			}
			// A path that does not exist is a mistake on the command line
			// (exit 2), not a module that failed verification (exit 1).
			for _, p := range args {
				if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
					return cli.Usagef("%s does not exist: give a .wasm file or a folder of them", p)
				}
			}
			if workers <= 0 {
				workers = runtime.NumCPU()
			}
			out := cmd.OutOrStdout()
			var prog func(done, total int)
			if IsTerminal() && !asJSON {
				bar := progress.New(progress.WithDefaultGradient(), progress.WithWidth(40))
				prog = func(done, total int) {
					fmt.Fprintf(os.Stderr, "\r%s %d/%d", bar.ViewAs(float64(done)/float64(max(total, 1))), done, total)
					if done == total {
						fmt.Fprintln(os.Stderr)
					}
				}
			}
			results, err := mode.verify(cmd.Context(), args, workers, prog)
			if errors.Is(err, fs.ErrNotExist) {
				return cli.UsageError(err)
			}
			if err != nil {
				return cli.InternalError(err)
			}
			if len(results) == 0 {
				if asJSON {
					// A script reading stdout gets an empty report, not nothing.
					if err := wasmsign.NewReport(results).WriteJSON(out); err != nil {
						return cli.InternalError(err)
					}
				}
				return cli.Usagef("no .wasm module found under the given paths")
			}
			rep := wasmsign.NewReport(results)
			if junit != "" {
				f, err := os.Create(junit)
				if err != nil {
					return cli.InternalError(err)
				}
				if err := rep.WriteJUnit(f); err != nil {
					f.Close()
					return cli.InternalError(err)
				}
				if err := f.Close(); err != nil {
					return cli.InternalError(err)
				}
			}
			if asJSON {
				if err := rep.WriteJSON(out); err != nil {
					return err
				}
			} else {
				printVerifyTable(out, rep)
			}
			// What to do about a bundle whose CRLs are missing, stale or
			// forged goes to stderr, so that it is seen also when stdout
			// is a JSON report.
			hint := qa.CRLInstruction(results)
			if hint != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "wsc verify: "+hint)
			}
			if recordDB != "" {
				if err := o.Record(cmd.Context(), out, recordDB, verifier, results); err != nil {
					return cli.InternalError(err)
				}
			}
			if !rep.OK() {
				err := fmt.Errorf("%d of %d modules failed verification", rep.Total-rep.Valid, rep.Total)
				if hint != "" {
					err = fmt.Errorf("%w: the trust bundle's CRLs are missing, stale or not signed by their CA", err)
				}
				return cli.Failed(err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&trustPath, "trust", "", "trust bundle (PEM: roots, intermediates, CRLs), from 'wsc ca bundle'")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().StringVar(&junit, "junit", "", "also write a JUnit XML report to this file")
	cmd.Flags().StringVar(&at, "at", "", "verify certificates and CRLs at this time (RFC 3339) instead of now; shown in the report")
	cmd.Flags().IntVar(&workers, "workers", 0, "parallel workers (default: all cores)")
	cmd.Flags().StringVar(&recordDB, "db", "", "record each result in this station database")
	cli.DeprecatedAlias(cmd.Flags(), "db", "record-db")
	cmd.Flags().StringVar(&verifier, "verifier", "qa", "who verified (recorded with --db)")
	cmd.Flags().BoolVar(&allowMissingCRL, "allow-missing-crl", false, allowMissingCRLUsage)
	cmd.Flags().StringVar(&edPubPath, "ed25519-pub", "", "verify wasmsign2 (Ed25519) signatures with this public key instead of --trust")
	cmd.Flags().StringVar(&detachedPath, "detached", "", "detached signature of the one MODULE (from 'wsc sign --detached' or 'wasmsign2 sign -S')")
	return cmd
}

// allowMissingCRLUsage is the help of --allow-missing-crl (wsc verify, wsc qa).
const allowMissingCRLUsage = "accept a CA of the chain that has no CRL in the bundle (revocation by it is NOT checked; " +
	"every such result is marked in the table, JSON and JUnit reports); a stale or forged CRL is still refused"

// LoadPolicy reads the trust bundle (every read or parse error is an
// error) and applies --at and --allow-missing-crl.
func LoadPolicy(trustPath, at string, allowMissingCRL bool) (*wasmsign.TrustPolicy, error) {
	b, err := os.ReadFile(trustPath)
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	policy, err := wasmsign.LoadTrustBundle(b)
	if err != nil {
		return nil, fmt.Errorf("trust bundle %s: %w", trustPath, err)
	}
	if at != "" {
		t, err := cli.ParseTime(at)
		if err != nil {
			return nil, fmt.Errorf("--at: %w", err)
		}
		policy.At, policy.AtExplicit = t, true
	}
	policy.AllowMissingCRL = allowMissingCRL
	return policy, nil
}

// printVerifyTable prints the report for a terminal. File names, device
// serials and reasons (which quote certificate subjects) are chosen by
// whoever made the modules: every cell goes through untrusted.String, so an
// escape sequence, a tab or a newline cannot forge a row or a column.
// The JSON and JUnit reports keep the exact text, escaped their own way.
func printVerifyTable(w io.Writer, rep *wasmsign.Report) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tSIGNER SERIAL\tDEVICE\tRESULT\tREASON")
	for _, r := range rep.Results {
		status, why := string(r.Status), r.Reason
		if r.RevocationUnchecked {
			status += "!"
			if why == "" {
				why = r.Warning
			}
		}
		if why == "" && r.Manifest != nil {
			why = r.Manifest.Summary()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", untrusted.String(r.File), dash(untrusted.String(r.SignerSerial)), dash(untrusted.String(r.DeviceSerial)),
			status, untrusted.String(why))
	}
	_ = tw.Flush()
	when := "now (" + rep.VerifiedAt.UTC().Format("2006-01-02T15:04:05Z") + ")"
	if rep.AtExplicit {
		when = "AT AN EXPLICIT TIME: " + rep.VerifiedAt.UTC().Format("2006-01-02T15:04:05Z")
	}
	fmt.Fprintf(w, "%d modules: %d valid, %d invalid, %d errors; checked %s\n", rep.Total, rep.Valid, rep.Invalid, rep.Errors, when)
	if rep.RevocationUnchecked > 0 {
		fmt.Fprintf(w, "WARNING: %d modules (marked !) were accepted WITHOUT a CRL check (--allow-missing-crl): "+
			"a revoked signer would not be noticed\n", rep.RevocationUnchecked)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// QACmd is `wsc qa`, the QA screen.
func QACmd() *cobra.Command {
	var (
		trustPath, dir, at string
		allowMissingCRL    bool
	)
	cmd := &cobra.Command{
		Use:   "qa --trust BUNDLE [--dir FOLDER]",
		Short: "QA view: pick a folder of signed firmware, watch verification, browse and export the results",
		Long: `qa is the interactive form of wsc verify, with the same rules: every CA on a module's chain must
have a fresh CRL in the trust bundle, signed by that CA, unless --allow-missing-crl is given (results
that relied on it show "valid!" and the summary counts them; exported reports carry the flag).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			policy, err := LoadPolicy(trustPath, at, allowMissingCRL)
			if err != nil {
				return cli.UsageError(err)
			}
			if !IsTerminal() {
				return cli.Usagef("the QA view needs a terminal: use 'wsc verify' in scripts")
			}
			_, err = tea.NewProgram(qa.New(qa.Options{Runner: qa.PolicyRunner(policy, 0), Dir: dir, Title: "wsc qa"}),
				tea.WithAltScreen(), tea.WithContext(cmd.Context())).Run()
			return err
		},
	}
	cmd.Flags().StringVar(&trustPath, "trust", "", "trust bundle (PEM: roots, intermediates, CRLs)")
	cmd.Flags().StringVar(&dir, "dir", ".", "folder proposed at start")
	cmd.Flags().StringVar(&at, "at", "", "verify at this time (RFC 3339) instead of now; shown in the report")
	cmd.Flags().BoolVar(&allowMissingCRL, "allow-missing-crl", false, allowMissingCRLUsage)
	_ = cmd.MarkFlagRequired("trust")
	return cmd
}

// IsTerminal reports whether standard output is a terminal.
func IsTerminal() bool { return term.IsTerminal(int(os.Stdout.Fd())) }
