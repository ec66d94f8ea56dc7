package main

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/station"
	"github.com/wsc-project/wsc/ui"
	"github.com/wsc-project/wsc/wasmsign"
	"golang.org/x/term"
)

// demoWorkOrder is the work order the demo's devices count against.
const demoWorkOrder = "DEMO"

// exitInterrupted is the exit status of a demo stopped by ctrl+c (128 +
// SIGINT, as a shell reports it).
const exitInterrupted = 130

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
		Long: `demo is wsc sim and wsc station in one command: it creates a private CA (root + station
intermediate) in WORKSPACE/ca, starts N simulated devices — each a wsc-agent process on a real
pseudo-terminal backed by its own swtpm with EK certificates — writes WORKSPACE/station.yaml and runs
the station's bench on it with the work order running: attestation, CSR, issuance, chain into TPM NV,
read-back, end-of-line signature, records in WORKSPACE/station.db. With --mix tpm,se every second
device has an ATECC608 secure element (emulated) instead. When every slot has finished, QA verifies
the modules the devices signed. Exit status 0 only if every device passed; ctrl+c stops the devices,
leaves consistent records and exits 130.`,
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
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			out := cmd.OutOrStdout()
			o := simOptions{Dir: abs, Devices: n, Mix: mix, Profile: profile, Agent: agent, Station: "demo-station",
				WorkOrder: station.WorkOrder{ID: demoWorkOrder, Product: "demo-board", Quantity: max(n, 1000)},
				Progress:  func(s string) { fmt.Fprintln(out, "setup:", s) }}
			tui := !headless && term.IsTerminal(int(os.Stdout.Fd()))
			rep, err := runDemo(ctx, o, tui, out)
			if err != nil {
				return err
			}
			if rep.Interrupted {
				fmt.Fprintln(out, rep.interruptedLine())
				return &exitError{code: exitInterrupted, err: errors.New("demo interrupted")}
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

// demoReport is what a demo run produced.
type demoReport struct {
	Workspace string
	Certs     []string // WORKSPACE/certs/SERIAL.pem of each passed device
	// Outcomes holds one entry per slot: its last finished run, or
	// errUnfinished.
	Outcomes []station.Outcome
	Wall     time.Duration
	// SetUp is the time spent creating the CA and the devices.
	SetUp time.Duration
	// QA holds the verification of every module signed at end of line.
	QA []wasmsign.Result
	// Interrupted is set when the demo was stopped before every slot
	// finished (ctrl+c, or the operator view was quit).
	Interrupted bool
}

// errUnfinished marks a slot whose device had not finished when the demo
// was stopped.
var errUnfinished = errors.New("not finished: the demo was stopped")

// Failed counts the devices that were not provisioned, or whose signed
// module did not pass QA verification.
func (r *demoReport) Failed() int {
	n := 0
	for _, o := range r.Outcomes {
		if o.Err != nil {
			n++
		}
	}
	for _, q := range r.QA {
		if q.Status != wasmsign.StatusValid {
			n++
		}
	}
	return n
}

// interruptedLine is the one-line summary of a stopped demo.
func (r *demoReport) interruptedLine() string {
	var ok, bad, open int
	for _, o := range r.Outcomes {
		switch {
		case errors.Is(o.Err, errUnfinished):
			open++
		case o.Err != nil:
			bad++
		default:
			ok++
		}
	}
	return fmt.Sprintf("demo interrupted: %d of %d devices provisioned, %d failed, %d unfinished; devices stopped, records in %s",
		ok, len(r.Outcomes), bad, open, filepath.Join(r.Workspace, "station.db"))
}

// demoTracker follows the bench's events and tells when every slot has
// finished a run.
type demoTracker struct {
	mu    sync.Mutex
	last  map[int]station.Outcome
	slots []station.SlotSpec
	once  sync.Once
	done  chan struct{}
}

func newDemoTracker(slots []station.SlotSpec) *demoTracker {
	return &demoTracker{last: map[int]station.Outcome{}, slots: slots, done: make(chan struct{})}
}

// observe records the end of a run and closes done when every slot has one.
func (t *demoTracker) observe(e station.Event) {
	if e.Slot <= 0 {
		return
	}
	var o station.Outcome
	switch e.State {
	case station.StatePassed:
		if e.Result == nil {
			return
		}
		o = station.Outcome{Job: station.Job{Slot: e.Slot, Port: e.Port}, Result: e.Result}
	case station.StateFailed, station.StateQuarantined:
		if errors.Is(e.Err, context.Canceled) {
			return // stopped by the demo's end, not finished
		}
		err := e.Err
		if err == nil {
			err = errors.New(e.Detail)
		}
		o = station.Outcome{Job: station.Job{Slot: e.Slot, Port: e.Port}, Err: err}
	default:
		return
	}
	t.mu.Lock()
	t.last[e.Slot] = o
	all := len(t.last) == len(t.slots)
	t.mu.Unlock()
	if all {
		t.once.Do(func() { close(t.done) })
	}
}

// outcomes returns one outcome per slot, in slot order.
func (t *demoTracker) outcomes() []station.Outcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]station.Outcome, len(t.slots))
	for i, s := range t.slots {
		o, ok := t.last[s.Slot]
		if !ok {
			o = station.Outcome{Job: station.Job{Slot: s.Slot, Port: s.Port}, Err: errUnfinished}
		}
		out[i] = o
	}
	return out
}

// runDemo runs the simulated bench, the station's real bench on its
// station.yaml (behind the operator view when tui is set, else one line per
// event on out) until every slot has finished or ctx ends, then QA.
func runDemo(ctx context.Context, o simOptions, tui bool, out io.Writer) (rep *demoReport, err error) {
	t0 := time.Now()
	s, err := startSim(ctx, o)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, s.Close()) }()
	l, err := openLine(ctx, s.config)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, l.Close()) }()
	l.prov.SetOperator("demo")
	slots, err := l.cfg.BenchSlots()
	if err != nil {
		return nil, err
	}
	tr := newDemoTracker(slots)
	var (
		sink  func(station.Event)
		bench *station.Bench
	)
	ap, err := afterPass(l)
	if err != nil {
		return nil, err
	}
	bench, err = station.NewBench(station.BenchConfig{Provisioner: l.prov, Slots: slots, MaxFailures: l.cfg.MaxFailures, Running: true, AfterPass: ap,
		Events: func(e station.Event) {
			sink(e)
			tr.observe(e)
		}})
	if err != nil {
		return nil, err
	}
	rep = &demoReport{Workspace: s.dir, SetUp: time.Since(t0)}
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	if tui {
		title := "wsc demo — simulated devices"
		if len(o.Mix) > 0 {
			title += " (" + strings.Join(o.Mix, ", ") + ")"
		}
		m := ui.NewBenchModel(ui.BenchOptions{Control: bench, Title: title, WorkOrder: o.WorkOrder.ID, Station: o.Station, Operator: "demo"})
		p := tea.NewProgram(m, tea.WithContext(ctx))
		// The station never waits for the screen (ui.Feed).
		feed := ui.NewFeed(p.Send)
		defer feed.Close()
		sink = feed.Event
		go func() { runErr <- bench.Run(bctx) }()
		go func() {
			select {
			case <-tr.done:
				feed.Close() // every event is on screen before the summary
				p.Send(ui.DoneMsg{})
			case <-bctx.Done():
			}
		}()
		if _, perr := p.Run(); perr != nil && !errors.Is(perr, tea.ErrProgramKilled) && !errors.Is(perr, context.Canceled) {
			err = fmt.Errorf("operator view: %w", perr)
		}
	} else {
		var mu sync.Mutex
		sink = func(e station.Event) {
			select {
			case <-tr.done:
				return // the demo is over: slots going idle as it stops are not news
			default:
			}
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(e.Err, context.Canceled) {
				fmt.Fprintf(out, "%s slot=%d stopped: the demo is ending\n", e.Time.Format("15:04:05.000"), e.Slot)
				return
			}
			fmt.Fprintln(out, headlessLine(e))
		}
		fmt.Fprintf(out, "demo: %d slots, work order %s running; ctrl+c stops the demo\n", len(slots), o.WorkOrder.ID)
		go func() { runErr <- bench.Run(bctx) }()
		select {
		case <-tr.done:
		case <-ctx.Done():
		}
	}
	cancel()
	// Run ends once every slot has stopped; it revokes the certificates
	// of runs that never confirmed theirs, so the records are consistent.
	if rerr := <-runErr; rerr != nil && !errors.Is(rerr, context.Canceled) {
		err = errors.Join(err, rerr)
	}
	rep.Outcomes = tr.outcomes()
	select {
	case <-tr.done:
		rep.Interrupted = ctx.Err() != nil
	default:
		rep.Interrupted = true
	}
	if err != nil || rep.Interrupted {
		return rep, err
	}
	// Each passed device's certificate as a file, for openssl and the
	// after-demo steps (README): WORKSPACE/certs/SERIAL.pem.
	if rep.Certs, err = writeDemoCerts(filepath.Join(s.dir, "certs"), rep.Outcomes); err != nil {
		return nil, err
	}
	// QA: verify every module the devices signed at end of line, as QA
	// verifies firmware, against a trust bundle written from the CA.
	bundle := filepath.Join(s.dir, "trust-bundle.pem")
	policy, err := writeDemoBundle(ctx, l, bundle)
	if err != nil {
		return nil, err
	}
	if l.cfg.EOLModules != "" {
		if _, serr := os.Stat(l.cfg.EOLModules); serr == nil {
			fmt.Fprintln(out, "QA: verifying the modules the devices signed against "+bundle)
			rep.QA, err = wasmsign.BatchVerify(ctx, []string{l.cfg.EOLModules}, policy, 0, nil)
			if err != nil {
				return nil, fmt.Errorf("QA verification: %w", err)
			}
		}
	}
	rep.Wall = time.Since(t0)
	return rep, nil
}

// writeDemoCerts writes the leaf certificate of every passed device to
// dir/SERIAL.pem and returns the paths in outcome order. Serials passed
// station.ValidSerial (letters, digits, - _ .; no separator), so they are
// safe file names; one that is not is refused rather than written.
func writeDemoCerts(dir string, outs []station.Outcome) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, o := range outs {
		if o.Err != nil || o.Result == nil || len(o.Result.Chain) == 0 {
			continue
		}
		if err := station.ValidSerial(o.Result.Serial); err != nil {
			return nil, fmt.Errorf("certificate file for %s: %w", ui.Untrusted(o.Result.Serial), err)
		}
		path := filepath.Join(dir, o.Result.Serial+".pem")
		leaf := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: o.Result.Chain[0].Raw})
		if err := os.WriteFile(path, leaf, 0o644); err != nil {
			return nil, fmt.Errorf("certificate file: %w", err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// writeDemoBundle is the bundle ceremony on the demo's single-machine CA
// folder: the roots sign their CRLs (the demo keeps the root key beside the
// intermediate, which a real plant does not), the station's intermediates
// sign theirs from the database, and `wsc ca bundle`'s code writes the bundle,
// refusing it unless every CA has a fresh CRL. QA then reads it as QA does
// (wasmsign.LoadTrustBundle), with every check on.
func writeDemoBundle(ctx context.Context, l *line, path string) (*wasmsign.TrustPolicy, error) {
	pass, err := ca.ReadPassphrase(l.cfg.CA.Passphrase)
	if err != nil {
		return nil, fmt.Errorf("demo CA passphrase: %w", err)
	}
	defer clear(pass)
	cer := ca.Ceremony{Dir: l.cfg.CA.Dir, Auditor: l.store, Actor: "demo"}
	if _, _, err := ca.RootCRLs(ctx, cer, pass, 0, ""); err != nil {
		return nil, fmt.Errorf("root CRLs: %w", err)
	}
	if _, err := l.ca.CRLs(ctx); err != nil {
		return nil, fmt.Errorf("intermediate CRLs: %w", err)
	}
	if _, _, err := ca.WriteBundle(ctx, cer, path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return wasmsign.LoadTrustBundle(b)
}

func printSummary(w io.Writer, rep *demoReport) {
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
	fmt.Fprintf(w, "station config: %s (its ports existed only while the demo ran; wsc sim makes a bench that stays)\n", filepath.Join(rep.Workspace, "station.yaml"))
	fmt.Fprintf(w, "records: wsc db export --db %s --format json\n", filepath.Join(rep.Workspace, "station.db"))
	if len(rep.Certs) > 0 {
		fmt.Fprintf(w, "certificates: %s (one per device); check one with openssl:\n  openssl verify -CAfile %s -untrusted %s %s\n",
			filepath.Dir(rep.Certs[0]), filepath.Join(rep.Workspace, "ca", "root.crt"), filepath.Join(rep.Workspace, "ca", "intermediate.crt"), rep.Certs[0])
	}
	fmt.Fprintf(w, "firmware QA: wsc verify --trust %s %s\n", filepath.Join(rep.Workspace, "trust-bundle.pem"), filepath.Join(rep.Workspace, "firmware"))
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
