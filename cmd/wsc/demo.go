package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/station"
	"github.com/wsc-project/wsc/ui"
	"github.com/wsc-project/wsc/wasmsign"
	"golang.org/x/term"
)

func demoCmd() *cobra.Command {
	var (
		n         int
		workspace string
		headless  bool
		agentBin  string
		profile   string
		mix       []string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Provision simulated TPM (and secure-element) devices end to end with a fresh private CA",
		Long: `demo creates a private CA (root + station intermediate) in WORKSPACE/ca, starts N simulated
devices — each a wsc-agent process on a real pseudo-terminal backed by its own swtpm with EK
certificates — and provisions them all: attestation, CSR, issuance, chain into TPM NV, read-back,
end-of-line signature, records in WORKSPACE/station.db. With --mix tpm,se every second device has an
ATECC608 secure element (emulated) instead: key made by GenKey in the chip, chain stored as Microchip
compressed certificates. Exit status 0 only if every device passed.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if workspace == "" {
				var err error
				workspace, err = os.MkdirTemp("", "wsc-demo-")
				if err != nil {
					return err
				}
			}
			abs, err := filepath.Abs(workspace)
			if err != nil {
				return err
			}
			agent, err := findAgent(agentBin)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			for _, k := range mix {
				if k != "tpm" && k != "se" {
					return &exitError{code: 2, err: fmt.Errorf("--mix: unknown device kind %q (want tpm or se, e.g. --mix tpm,se)", k)}
				}
			}
			cfg := station.DemoConfig{Workspace: abs, Devices: n, AgentBinary: agent, LatencyProfile: profile, Mix: mix}
			out := cmd.OutOrStdout()
			var rep *station.DemoReport
			if !headless && term.IsTerminal(int(os.Stdout.Fd())) {
				rep, err = demoTUI(ctx, cfg)
			} else {
				cfg.Progress = func(s string) { fmt.Fprintln(out, "setup:", s) }
				cfg.Events = func(e station.Event) { fmt.Fprintln(out, headlessLine(e)) }
				rep, err = station.RunDemo(ctx, cfg)
			}
			if err != nil {
				return err
			}
			printSummary(out, rep)
			if f := rep.Failed(); f > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d devices failed", f, len(rep.Outcomes))}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&n, "devices", 3, "number of simulated devices")
	cmd.Flags().StringVar(&workspace, "workspace", "", "folder for the CA, database, TPM states and logs (default: a fresh temporary folder)")
	cmd.Flags().BoolVar(&headless, "headless", false, "print one line per event instead of the terminal view")
	cmd.Flags().StringVar(&agentBin, "agent", "", "wsc-agent executable (default: next to wsc, then $PATH)")
	cmd.Flags().StringVar(&profile, "latency-profile", "", "make simulated TPMs as slow as a real chip (slb9670, slb9672, st33, npct750, attpm20); secure elements then take the ATECC608 datasheet's times")
	cmd.Flags().StringSliceVar(&mix, "mix", nil, "device kinds assigned round-robin: tpm, se (ATECC608 secure element), e.g. --mix tpm,se (default all tpm)")
	return cmd
}

// demoTUI runs the demo behind the bubbletea slot view.
func demoTUI(ctx context.Context, cfg station.DemoConfig) (*station.DemoReport, error) {
	title := "wsc demo — provisioning simulated TPM devices"
	if len(cfg.Mix) > 0 {
		title = "wsc demo — provisioning simulated devices (" + strings.Join(cfg.Mix, ", ") + ")"
	}
	p := tea.NewProgram(ui.NewDemoModel(title, cfg.Devices), tea.WithContext(ctx))
	cfg.Progress = func(s string) { p.Send(ui.ProgressMsg(s)) }
	cfg.Events = func(e station.Event) { p.Send(ui.EventMsg(e)) }
	var (
		rep  *station.DemoReport
		rerr error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		rep, rerr = station.RunDemo(ctx, cfg)
		p.Send(ui.DoneMsg{})
	}()
	if _, err := p.Run(); err != nil && !errors.Is(err, tea.ErrProgramKilled) {
		<-done
		return rep, errors.Join(rerr, err)
	}
	<-done
	return rep, rerr
}

func printSummary(w io.Writer, rep *station.DemoReport) {
	fmt.Fprintf(w, "\nworkspace: %s\n", rep.Workspace)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tDEVICE\tBACKEND\tCERTIFICATE SERIAL\tSECONDS\tRESULT")
	for _, o := range rep.Outcomes {
		if o.Err != nil {
			fmt.Fprintf(tw, "%d\t%s\t-\t-\t-\tFAILED: %s\n", o.Job.Slot, o.Job.Port, ui.Untrusted(o.Err.Error()))
			continue
		}
		r := o.Result
		res := "ok"
		if r.Redelivered {
			res = "ok (re-delivered)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%.3f\t%s\n", o.Job.Slot, ui.Untrusted(r.Serial), ui.Untrusted(r.Backend), ui.Untrusted(r.CertSerial), r.Duration.Seconds(), res)
	}
	_ = tw.Flush()
	ok := 0
	for _, o := range rep.Outcomes {
		if o.Err == nil {
			ok++
		}
	}
	fmt.Fprintf(w, "%d of %d devices provisioned in %.2f s (set-up %.2f s)\n", ok, len(rep.Outcomes), rep.Wall.Seconds(), rep.SetUp.Seconds())
	valid := 0
	for _, q := range rep.QA {
		if q.Status == wasmsign.StatusValid {
			valid++
		} else {
			fmt.Fprintf(w, "QA: %s FAILED: %s\n", ui.Untrusted(q.File), ui.Untrusted(q.Reason))
		}
	}
	fmt.Fprintf(w, "QA: %d of %d end-of-line modules verified against %s\n", valid, len(rep.QA), filepath.Join(rep.Workspace, "trust-bundle.pem"))
	if n := wasmsign.NewReport(rep.QA).RevocationUnchecked; n > 0 {
		fmt.Fprintf(w, "QA: WARNING: %d of them verified WITHOUT a CRL check (the demo bundle lacks CRLs)\n", n)
	}
	fmt.Fprintf(w, "records: wsc db export --db %s --format json\n", filepath.Join(rep.Workspace, "station.db"))
}

// findAgent locates the wsc-agent executable: the flag, then next to this
// executable, then $PATH.
func findAgent(flagPath string) (string, error) {
	if flagPath != "" {
		return filepath.Abs(flagPath)
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "wsc-agent")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("wsc-agent")
	if err != nil {
		return "", errors.New("wsc-agent not found next to wsc or in $PATH: build it (make build) or pass --agent")
	}
	return filepath.Abs(p)
}
