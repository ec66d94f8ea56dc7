package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/station"
	"github.com/wsc-project/wsc/ui"
)

// line is everything a station run needs, opened from its config file.
type line struct {
	cfg   *station.FileConfig
	ca    *ca.CA
	store *db.Store
	prov  *station.Provisioner
	// wo is the current work order's id when a supervisor switched it.
	wo atomic.Value
}

func (l *line) Close() error {
	var errs []error
	if l.ca != nil {
		errs = append(errs, l.ca.Close())
	}
	if l.store != nil {
		errs = append(errs, l.store.Close())
	}
	return errors.Join(errs...)
}

// openLine loads the config, unlocks the CA (once per shift), opens the
// database and records the work order.
func openLine(ctx context.Context, path string) (_ *line, err error) {
	cfg, err := station.LoadConfig(path)
	if err != nil {
		return nil, usageError(fmt.Errorf("--config: %w", err))
	}
	// l is not the named result: on an error path the result is nil, and
	// what was opened so far must still be closed.
	l := &line{cfg: cfg}
	defer func() {
		if err != nil {
			_ = l.Close()
		}
	}()
	pass, err := ca.ReadPassphrase(cfg.CA.Passphrase)
	if err != nil {
		return nil, usagef("CA passphrase: %w", err)
	}
	var profile *ca.Profile
	if cfg.WorkOrder.Profile != "" && cfg.WorkOrder.Profile != "default" {
		profile, err = ca.LoadProfile(cfg.WorkOrder.Profile)
		if err != nil {
			return nil, usageError(err)
		}
	}
	t0 := time.Now()
	auditKey, err := ca.AuditKey(cfg.CA.Dir, pass)
	unlockTime = time.Since(t0)
	if err != nil {
		clear(pass)
		return nil, err
	}
	// The pinned audit key and the witness file (audit: section): a key
	// that is not pinned stops the station.
	auditOpts, err := cfg.Audit.StoreOptions(cfg.CA.Dir, auditKey)
	if err != nil {
		clear(pass)
		return nil, usageError(err)
	}
	dbOpts := append([]db.Option{db.WithActor(cfg.Station)}, auditOpts...)
	l.store, err = db.Open(cfg.Database, dbOpts...)
	if err != nil {
		clear(pass)
		return nil, err
	}
	// The CA's embedded authority records every certificate it signs, and
	// revocations, in the station database through smallstep's AuthDB.
	t0 = time.Now()
	l.ca, err = ca.Open(cfg.CA.Dir, pass, ca.WithStore(station.CAStore(l.store)), ca.WithAuditor(l.store, cfg.Station))
	unlockTime += time.Since(t0)
	clear(pass)
	if err != nil {
		return nil, fmt.Errorf("open CA: %w", err)
	}
	if err := station.EnsureWorkOrder(ctx, l.store, cfg.WorkOrder); err != nil {
		return nil, err
	}
	pcfg := station.Config{Issuer: l.ca, Store: l.store, Station: cfg.Station, WorkOrder: cfg.WorkOrder.ID,
		Profile: profile, Lock: cfg.WorkOrder.Lock == "lock", Baud: cfg.Baud, EOLModuleDir: cfg.EOLModules}
	if pcfg.Proofs, err = cfg.ProofPolicy(); err != nil {
		return nil, err
	}
	if pcfg.Trust, err = cfg.TrustConfig(); err != nil {
		return nil, err
	}
	l.prov, err = station.NewProvisioner(pcfg)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// signIn checks the operator and records them with every run from now on.
func (l *line) signIn(ctx context.Context, id, pinSource string) error {
	op, err := login(ctx, l.store, id, pinSource)
	if err != nil {
		return err
	}
	l.prov.SetOperator(op)
	return nil
}

// login checks an operator's PIN from a passphrase-style source.
func login(ctx context.Context, s *db.Store, id, pinSource string) (string, error) {
	if id == "" {
		return "", errors.New("--operator is required (operators identify themselves at the start of a shift)")
	}
	pin, err := ca.ReadPassphrase(pinSource)
	if err != nil {
		return "", fmt.Errorf("operator PIN: %w", err)
	}
	op, err := s.VerifyOperator(ctx, id, string(pin))
	clear(pin)
	if err != nil {
		return "", fmt.Errorf("operator %s: %w", id, err)
	}
	return op.ID, nil
}

func stationCmd() *cobra.Command {
	var (
		cfgPath, operator, pinSource string
		headless                     bool
		checkPath                    string
	)
	cmd := &cobra.Command{
		Use:   "station",
		Short: "Run the bench: provision every device plugged into the configured slots",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if checkPath != "" {
				return checkConfig(cmd.OutOrStdout(), checkPath)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			l, err := openLine(ctx, cfgPath)
			if err != nil {
				return err
			}
			defer l.Close()
			defer startPlantSync(ctx, l, plantLog(headless, cmd.ErrOrStderr()))()
			if headless || !isTerminal() {
				if err := l.signIn(ctx, operator, pinSource); err != nil {
					return err
				}
				return runHeadless(ctx, l, cmd.OutOrStdout())
			}
			return runStationTUI(ctx, l)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "station.yaml", "station configuration file (YAML)")
	cmd.Flags().BoolVar(&headless, "headless", false, "no terminal view: print one line per event")
	cmd.Flags().StringVar(&checkPath, "check-config", "", "only check this configuration file: print each problem with its line, exit 2 if there is one")
	cmd.Flags().StringVar(&operator, "operator", "", "operator id (headless)")
	cmd.Flags().StringVar(&pinSource, "pin-source", "prompt", "where the operator's PIN comes from: "+secretSources)
	return cmd
}

func runHeadless(ctx context.Context, l *line, out io.Writer) error {
	events := make(chan station.Event, 256)
	slots, err := l.cfg.BenchSlots()
	if err != nil {
		return err
	}
	ap, err := afterPass(l)
	if err != nil {
		return err
	}
	bench, err := station.NewBench(station.BenchConfig{Provisioner: l.prov, Slots: slots, MaxFailures: l.cfg.MaxFailures,
		Running: true, AfterPass: ap, Events: func(e station.Event) { events <- e }})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "station %s: work order %s, %d slots, running (Ctrl-C to stop)\n", l.cfg.Station, l.cfg.WorkOrder.ID, len(slots))
	go l.watchCA(ctx, 2*time.Second, true, func(msg string) { fmt.Fprintln(out, "ca: "+msg) })
	done := make(chan error, 1)
	go func() { done <- bench.Run(ctx) }()
	for {
		select {
		case e := <-events:
			fmt.Fprintln(out, headlessLine(e))
			if e.State == station.StateFailed || e.State == station.StateQuarantined {
				for _, st := range bench.Snapshot() {
					if st.Slot == e.Slot && st.Instruction != "" {
						fmt.Fprintf(out, "  slot %d: %s\n", st.Slot, ui.Untrusted(headlessInstruction(st.Instruction, false)))
					}
				}
			}
		case <-done:
			for {
				select {
				case e := <-events:
					fmt.Fprintln(out, headlessLine(e))
				default:
					fmt.Fprintln(out, "station stopped")
					return nil
				}
			}
		}
	}
}

func provisionCmd() *cobra.Command {
	var cfgPath, port, label, operator, pinSource string
	var rework, chipReset, asJSON bool
	cmd := &cobra.Command{
		Use:   "provision",
		Short: "Provision the one device on --port, headless, and exit (0 = provisioned)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if chipReset && !rework {
				return usagef("--chip-reset is part of a supervised rework: add --rework (with --label and a supervisor as --operator)")
			}
			if chipReset && !rework {
				return usagef("--chip-reset is part of a supervised rework: add --rework (with --label and a supervisor as --operator)")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			l, err := openLine(ctx, cfgPath)
			if err != nil {
				return err
			}
			defer l.Close()
			if operator != "" {
				if err := l.signIn(ctx, operator, pinSource); err != nil {
					return err
				}
			}
			job := station.Job{Slot: 1, Port: port, Label: label}
			if rework {
				// Re-binding a serial to another chip supersedes the old
				// chip's certificate: a signed-in supervisor decides it,
				// against the scanned label.
				if label == "" || operator == "" {
					return usagef("--rework needs --label (the scanned label) and --operator (a supervisor who signs in)")
				}
				who, err := l.store.GetOperator(ctx, operator)
				if err != nil {
					return err
				}
				if !supervisorRoles[who.Role] {
					return usagef("%s has role %q: only a supervisor (or security) authorises a rework", operator, who.Role)
				}
				// --chip-reset: the supervisor states that the RMA desk cleared
				// this chip's TPM, so the owner authorisation sealed for it
				// earlier no longer holds; the run records it in the ledger
				// (owner_auth.chip-reset, by this supervisor).
				job.Rework = &station.Rework{Supervisor: operator, ChipReset: chipReset}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				// stdout carries the one JSON result; the event lines go
				// to stderr.
				out = cmd.ErrOrStderr()
			}
			job.Events = func(e station.Event) { fmt.Fprintln(out, headlessLine(e)) }
			res, err := l.prov.Provision(ctx, job)
			// The session ends with this device: a certificate it signed and
			// the device never confirmed is revoked now.
			if revoked, serr := l.prov.SweepUnconfirmed(context.WithoutCancel(ctx)); serr != nil {
				fmt.Fprintf(out, "revoking the unconfirmed certificate failed: %v\n", serr)
			} else {
				for _, sn := range revoked {
					fmt.Fprintf(out, "certificate %s revoked (cessationOfOperation): the device did not confirm it\n", sn)
				}
			}
			if asJSON {
				if jerr := writeProvisionJSON(cmd.OutOrStdout(), res, err); jerr != nil {
					return internalError(jerr)
				}
			}
			if err != nil {
				var se *station.StepError
				if errors.As(err, &se) {
					fmt.Fprintln(out, ui.Untrusted(headlessInstruction(se.Instruction, true)))
				}
				return failed(untrustedError{err})
			}
			fmt.Fprintf(out, "device %s provisioned: certificate %s (%.3f s)\n", ui.Untrusted(res.Serial), ui.Untrusted(res.CertSerial), res.Duration.Seconds())
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "station.yaml", "station configuration file (YAML); its slots are ignored")
	cmd.Flags().StringVar(&port, "port", "", "serial port of the device")
	cmd.Flags().StringVar(&label, "label", "", "scanned device label; must match the serial the device reports")
	cmd.Flags().StringVar(&operator, "operator", "", "operator id")
	cmd.Flags().StringVar(&pinSource, "pin-source", "prompt", "where the operator's PIN comes from: "+secretSources)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as one JSON object on stdout (snake_case, reason_code from docs/reason-codes.md); event lines go to stderr")
	cmd.Flags().BoolVar(&rework, "rework", false, "re-bind the serial to this device's chip (a board whose chip was replaced): needs --label and a supervisor as --operator; the old chip's certificate is superseded")
	cmd.Flags().BoolVar(&chipReset, "chip-reset", false, "with --rework: the RMA desk cleared this chip's TPM (owner authorisation reset; wsc owner-auth unseal, tpm2_clear); recorded in the ledger as the supervisor's statement")
	_ = cmd.MarkFlagRequired("port")
	return cmd
}

// provisionResult is `wsc provision --json`'s output.
type provisionResult struct {
	Result     string  `json:"result"` // "ok" or "failed"
	Serial     string  `json:"serial"`
	CertSerial string  `json:"cert_serial"`
	Proof      string  `json:"proof"`
	Step       string  `json:"step"` // the step that failed, or "done"
	Reason     string  `json:"reason"`
	ReasonCode string  `json:"reason_code"`
	DurationS  float64 `json:"duration_s"`
}

func writeProvisionJSON(w io.Writer, res *station.Result, err error) error {
	r := provisionResult{Result: "ok", Step: string(station.StepDone)}
	if res != nil {
		r.Serial, r.CertSerial, r.Proof, r.DurationS = res.Serial, res.CertSerial, res.Proof, res.Duration.Seconds()
	}
	if err != nil {
		r.Result, r.Reason, r.ReasonCode = "failed", err.Error(), station.ReasonCode(err)
		var se *station.StepError
		if errors.As(err, &se) {
			r.Step = string(se.Step)
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
