package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"text/tabwriter"

	"github.com/charmbracelet/bubbles/progress"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/ui"
	"github.com/wsc-project/wsc/wasmsign"
)

func verifyCmd() *cobra.Command {
	var (
		trustPath, junit, at, recordDB, verifier string
		asJSON                                   bool
		workers                                  int
	)
	cmd := &cobra.Command{
		Use:   "verify --trust BUNDLE [--json | --junit FILE] PATH...",
		Short: "Verify signed firmware (files and folders, recursively) against the trust bundle",
		Long: `verify checks every .wasm module under PATH against the trust bundle (roots, intermediates, CRLs):
the hash list must equal a signed set exactly, the chain must end at a pinned root with code-signing
usage, and CRLs are honoured (a stale CRL fails closed). Times are checked now, unless --at is given,
which the report shows. Exit status 1 when any module fails.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			policy, err := loadPolicy(trustPath, at)
			if err != nil {
				return err
			}
			if workers <= 0 {
				workers = runtime.NumCPU()
			}
			out := cmd.OutOrStdout()
			var prog func(done, total int)
			if isTerminal() && !asJSON {
				bar := progress.New(progress.WithDefaultGradient(), progress.WithWidth(40))
				prog = func(done, total int) {
					fmt.Fprintf(os.Stderr, "\r%s %d/%d", bar.ViewAs(float64(done)/float64(max(total, 1))), done, total)
					if done == total {
						fmt.Fprintln(os.Stderr)
					}
				}
			}
			results, err := wasmsign.BatchVerify(cmd.Context(), args, policy, workers, prog)
			if err != nil {
				return err
			}
			if len(results) == 0 {
				return errors.New("no .wasm module found under the given paths")
			}
			rep := wasmsign.NewReport(results)
			if junit != "" {
				f, err := os.Create(junit)
				if err != nil {
					return err
				}
				if err := rep.WriteJUnit(f); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
			}
			if asJSON {
				if err := rep.WriteJSON(out); err != nil {
					return err
				}
			} else {
				printVerifyTable(out, rep)
			}
			if recordDB != "" {
				if err := recordVerifications(cmd.Context(), out, recordDB, verifier, results); err != nil {
					return err
				}
			}
			if !rep.OK() {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d modules failed verification", rep.Total-rep.Valid, rep.Total)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&trustPath, "trust", "", "trust bundle (PEM: roots, intermediates, CRLs), from `wsc ca bundle`")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().StringVar(&junit, "junit", "", "also write a JUnit XML report to this file")
	cmd.Flags().StringVar(&at, "at", "", "verify certificates and CRLs at this time (RFC 3339) instead of now; shown in the report")
	cmd.Flags().IntVar(&workers, "workers", 0, "parallel workers (default: all cores)")
	cmd.Flags().StringVar(&recordDB, "record-db", "", "record each result in this station database")
	cmd.Flags().StringVar(&verifier, "verifier", "qa", "who verified (recorded with --record-db)")
	_ = cmd.MarkFlagRequired("trust")
	return cmd
}

func loadPolicy(trustPath, at string) (*wasmsign.TrustPolicy, error) {
	b, err := os.ReadFile(trustPath)
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	policy, err := wasmsign.LoadTrustBundle(b)
	if err != nil {
		return nil, fmt.Errorf("trust bundle %s: %w", trustPath, err)
	}
	if at != "" {
		t, err := parseTime(at)
		if err != nil {
			return nil, fmt.Errorf("--at: %w", err)
		}
		policy.At, policy.AtExplicit = t, true
	}
	return policy, nil
}

func printVerifyTable(w io.Writer, rep *wasmsign.Report) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tSIGNER SERIAL\tDEVICE\tRESULT\tREASON")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.File, dash(r.SignerSerial), dash(r.DeviceSerial), r.Status, r.Reason)
	}
	_ = tw.Flush()
	when := "now (" + rep.VerifiedAt.UTC().Format("2006-01-02T15:04:05Z") + ")"
	if rep.AtExplicit {
		when = "AT AN EXPLICIT TIME: " + rep.VerifiedAt.UTC().Format("2006-01-02T15:04:05Z")
	}
	fmt.Fprintf(w, "%d modules: %d valid, %d invalid, %d errors; checked %s\n", rep.Total, rep.Valid, rep.Invalid, rep.Errors, when)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func recordVerifications(ctx context.Context, out io.Writer, path, verifier string, results []wasmsign.Result) error {
	s, err := db.Open(path, db.WithActor(verifier))
	if err != nil {
		return err
	}
	defer s.Close()
	skipped := 0
	for _, r := range results {
		if r.DeviceSerial == "" {
			skipped++
			continue
		}
		if _, err := s.GetDevice(ctx, r.DeviceSerial); errors.Is(err, db.ErrNotFound) {
			// Not a device of this station: nothing to attach the result to.
			skipped++
			continue
		} else if err != nil {
			return err
		}
		v := db.Verification{DeviceSerial: r.DeviceSerial, CertSerialHex: r.SignerSerial, Verifier: verifier, Result: db.VerifyPass, Detail: r.File}
		if r.Status != wasmsign.StatusValid {
			v.Result, v.Detail = db.VerifyFail, r.File+": "+r.Reason
		}
		if _, err := s.RecordVerification(ctx, v); err != nil {
			return fmt.Errorf("record verification of %s: %w", r.File, err)
		}
	}
	if skipped > 0 {
		fmt.Fprintf(out, "%d results not recorded: their signer is not a device of this station's database\n", skipped)
	}
	return nil
}

func qaCmd() *cobra.Command {
	var trustPath, dir, at string
	cmd := &cobra.Command{
		Use:   "qa --trust BUNDLE [--dir FOLDER]",
		Short: "QA view: pick a folder of signed firmware, watch verification, browse and export the results",
		RunE: func(cmd *cobra.Command, _ []string) error {
			policy, err := loadPolicy(trustPath, at)
			if err != nil {
				return err
			}
			if !isTerminal() {
				return errors.New("the QA view needs a terminal: use `wsc verify` in scripts")
			}
			runner := ui.VerifyFunc(func(ctx context.Context, paths []string, progress func(done, total int)) ([]wasmsign.Result, error) {
				return wasmsign.BatchVerify(ctx, paths, policy, 0, progress)
			})
			_, err = tea.NewProgram(ui.NewQAModel(ui.QAOptions{Runner: runner, Dir: dir, Title: "wsc qa — firmware verification"}),
				tea.WithAltScreen(), tea.WithContext(cmd.Context())).Run()
			return err
		},
	}
	cmd.Flags().StringVar(&trustPath, "trust", "", "trust bundle (PEM: roots, intermediates, CRLs)")
	cmd.Flags().StringVar(&dir, "dir", ".", "folder proposed at start")
	cmd.Flags().StringVar(&at, "at", "", "verify at this time (RFC 3339) instead of now; shown in the report")
	_ = cmd.MarkFlagRequired("trust")
	return cmd
}
