package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/sim"
	"github.com/wsc-project/wsc/station"
)

// demoPassphraseFile is the name of the file in a simulated bench's folder
// that holds its throwaway CA's passphrase: on its first line (so that the
// station config can say passphrase: file:…), followed by a comment that
// says a real CA's passphrase is never kept beside it.
const demoPassphraseFile = "DEMO-ONLY-ca-passphrase.txt"

// Training operator that wsc sim creates in a new station database.
const (
	simOperator     = "trainer"
	simOperatorPIN  = "1234"
	simOperatorRole = "supervisor"
)

// simOptions describes a simulated bench and the station config written
// for it.
type simOptions struct {
	// Dir holds everything: devices, vendor certificates, CA (when one is
	// created), database, station.yaml, logs, the control socket.
	Dir string
	// Devices is the number of simulated devices.
	Devices int
	// Slots is the number of slots (0: one per device). With fewer slots
	// than devices, the slots are links in Dir/ports and a trainer puts
	// the next fresh device on a slot with "wsc sim next N".
	Slots int
	// Mix assigns device kinds round-robin (tpm, se).
	Mix []string
	// Profile is a TPM latency profile (slb9670, …); it also gives secure
	// elements the ATECC608 datasheet's times.
	Profile string
	// Baud paces every cable as a UART (0: as fast as the pty goes).
	Baud int
	// Agent is the wsc-agent executable.
	Agent string
	// CADir and CAPass point at an existing CA; empty CADir creates a
	// throwaway CA in Dir/ca with a passphrase in Dir/DEMO-ONLY-….
	CADir, CAPass string
	// Station names the station (the database actor).
	Station string
	// WorkOrder is written into the config (Proofs are set from the mix).
	WorkOrder station.WorkOrder
	// SecondWorkOrder also writes a work order <id>-2 of the same quantity
	// under work_orders, to practise choosing one on screen (w).
	SecondWorkOrder bool
	// Progress receives set-up messages.
	Progress func(string)
}

// simBench is a running simulated bench with its station config.
type simBench struct {
	dir, config string
	bench       *sim.Bench
	ctl         *sim.Control
	ports       []string // the station's port of each slot
	auditPin    string   // fingerprint of the CA folder's audit key (station.yaml pins it)
}

// Close stops the control socket and every simulated device.
func (s *simBench) Close() error {
	var errs []error
	if s.ctl != nil {
		errs = append(errs, s.ctl.Close())
	}
	if s.bench != nil {
		errs = append(errs, s.bench.Close())
	}
	return errors.Join(errs...)
}

// startSim starts the simulated devices, makes (or reuses) the CA, the
// database with a training operator and writes Dir/station.yaml.
func startSim(ctx context.Context, o simOptions) (_ *simBench, err error) {
	if o.Devices < 1 {
		return nil, usagef("a simulated bench needs at least one device, got %d", o.Devices)
	}
	for _, k := range o.Mix {
		if k != sim.KindTPM && k != sim.KindSE {
			return nil, usagef("--mix: unknown device kind %q (want tpm or se, e.g. --mix tpm,se)", k)
		}
	}
	progress := o.Progress
	if progress == nil {
		progress = func(string) {}
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("simulated bench folder: %w", err)
	}
	caDir, passSource := o.CADir, o.CAPass
	if caDir == "" {
		passFile := filepath.Join(dir, demoPassphraseFile)
		pass, err := demoPassphrase(passFile)
		if err != nil {
			return nil, err
		}
		caDir, passSource = filepath.Join(dir, "ca"), "file:"+passFile
		if _, err := os.Stat(filepath.Join(caDir, "root.crt")); errors.Is(err, os.ErrNotExist) {
			progress("creating the private CA (root + station intermediate, P-256, keys PKCS#8-encrypted)")
			if err := ca.Init(caDir, pass, ca.InitOptions{}); err != nil {
				return nil, fmt.Errorf("create CA: %w", err)
			}
		}
		// The station's audit key, created explicitly (never on first use);
		// station.yaml pins its fingerprint.
		if _, err := os.Stat(filepath.Join(caDir, ca.AuditKeyFile)); errors.Is(err, os.ErrNotExist) {
			if _, _, err := station.CreateAuditKey(caDir, pass); err != nil {
				return nil, fmt.Errorf("create the audit key: %w", err)
			}
		}
		clear(pass)
	} else if caDir, err = filepath.Abs(caDir); err != nil {
		return nil, err
	}
	if passSource == "" {
		passSource = "prompt"
	}
	s := &simBench{dir: dir, config: filepath.Join(dir, "station.yaml")}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	s.bench, err = sim.StartBench(ctx, sim.BenchConfig{
		Dir: dir, N: o.Devices, SerialPrefix: "SIM", AgentBinary: o.Agent, Mix: o.Mix,
		LatencyProfile: o.Profile, SEDatasheetTimings: o.Profile != "", Baud: o.Baud,
		AgentLogDir: filepath.Join(dir, "logs"), Progress: progress, Faults: true,
	})
	if err != nil {
		return nil, fmt.Errorf("start simulated devices: %w", err)
	}
	store, err := db.Open(filepath.Join(dir, "station.db"))
	if err != nil {
		return nil, fmt.Errorf("station database: %w", err)
	}
	if _, gerr := store.GetOperator(ctx, simOperator); errors.Is(gerr, db.ErrNotFound) {
		err = store.UpsertOperator(ctx, db.Operator{ID: simOperator, Name: "Trainer (simulated bench)", Role: simOperatorRole}, simOperatorPIN)
	} else {
		err = gerr
	}
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("training operator: %w", err)
	}
	var copts []sim.ControlOption
	if o.Slots > 0 && o.Slots < o.Devices {
		portDir := filepath.Join(dir, "ports")
		if err := os.MkdirAll(portDir, 0o700); err != nil {
			return nil, err
		}
		copts = append(copts, sim.WithSlots(portDir, o.Slots))
		for k := 1; k <= o.Slots; k++ {
			s.ports = append(s.ports, sim.SlotPort(portDir, k))
		}
	} else {
		for _, d := range s.bench.Devices {
			s.ports = append(s.ports, d.Port)
		}
	}
	s.ctl, err = sim.ServeControl(s.bench, filepath.Join(dir, sim.ControlSocket), copts...)
	if err != nil {
		return nil, err
	}
	// An existing CA brings its own audit key: `wsc audit init-key` made it.
	pub, err := ca.LoadPublicKey(filepath.Join(caDir, ca.AuditPubKeyFile))
	if err != nil {
		return nil, usagef("the CA in %s has no audit key: create it with `wsc audit init-key --dir %s` (%v)", caDir, caDir, err)
	}
	if s.auditPin, err = ca.AuditKeyFingerprint(pub); err != nil {
		return nil, err
	}
	if err := os.WriteFile(s.config, []byte(simConfig(s, o, caDir, passSource)), 0o600); err != nil {
		return nil, fmt.Errorf("write station config: %w", err)
	}
	return s, nil
}

// simConfig is the station.yaml of a simulated bench: its proof policy
// accepts what the simulated vendors can prove, against their published
// roots.
func simConfig(s *simBench, o simOptions, caDir, passSource string) string {
	rel := func(p string) string {
		if r, err := filepath.Rel(s.dir, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by wsc sim for a simulated bench of %d devices (see docs/station-config.md).\n", len(s.bench.Devices))
	fmt.Fprintf(&b, "# The ports below are pseudo-terminals that exist only while wsc sim runs.\n")
	fmt.Fprintf(&b, "station: %s\n", strconv.Quote(o.Station))
	fmt.Fprintf(&b, "database: station.db\n")
	fmt.Fprintf(&b, "ca:\n  dir: %s\n  passphrase: %s\n", strconv.Quote(rel(caDir)), strconv.Quote(passSource))
	fmt.Fprintf(&b, "audit:\n  key_fingerprints: [%s]   # the audit key in the CA folder; the witness file is beside it\n", s.auditPin)
	var proofs []string
	if s.bench.VendorRoot != "" {
		proofs = append(proofs, "tpm")
		fmt.Fprintf(&b, "tpm_vendor_roots: [%s]\ntpm_vendor_intermediates: [%s]\n", strconv.Quote(rel(s.bench.VendorRoot)), strconv.Quote(rel(s.bench.VendorIssuer)))
	}
	if s.bench.SEVendorRoot != "" {
		proofs = append(proofs, "atecc608")
		fmt.Fprintf(&b, "se_vendor_roots: [%s]\nse_vendor_intermediates: [%s]\n", strconv.Quote(rel(s.bench.SEVendorRoot)), strconv.Quote(rel(s.bench.SEVendorIssuer)))
	}
	wo := o.WorkOrder
	fmt.Fprintf(&b, "work_order:\n  id: %s\n  product: %s\n  quantity: %d\n  lock: none\n  proofs: [%s]\n",
		strconv.Quote(wo.ID), strconv.Quote(wo.Product), wo.Quantity, strings.Join(proofs, ", "))
	if o.SecondWorkOrder {
		fmt.Fprintf(&b, "work_orders:\n  - id: %s\n    product: %s\n    quantity: %d\n    lock: none\n    proofs: [%s]\n",
			strconv.Quote(wo.ID+"-2"), strconv.Quote(wo.Product), wo.Quantity, strings.Join(proofs, ", "))
	}
	fmt.Fprintf(&b, "eol_modules: firmware\n")
	if o.Baud > 0 {
		fmt.Fprintf(&b, "baud: %d\n", o.Baud)
	}
	fmt.Fprintf(&b, "slots:\n")
	for i, p := range s.ports {
		d := s.bench.Devices[i]
		fmt.Fprintf(&b, "  - {slot: %d, port: %s}   # first device: %s (%s)\n", i+1, strconv.Quote(p), d.Serial, d.Kind)
	}
	return b.String()
}

// demoPassphrase reads the throwaway CA's passphrase file, creating it with
// a fresh random passphrase when it does not exist. A file in the older
// layout (comment first, passphrase on the last line) is rewritten with the
// passphrase first, where a file: passphrase source reads it.
func demoPassphrase(path string) ([]byte, error) {
	write := func(pass string) error {
		body := pass + "\n" +
			"# DEMO ONLY: the first line is the passphrase of the throwaway CA in ./ca. A real CA passphrase is\n" +
			"# typed at a prompt or passed through a file descriptor, and never kept next to the CA.\n"
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			return fmt.Errorf("write demo passphrase: %w", err)
		}
		return nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		raw := make([]byte, 24)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		pass := base64.RawURLEncoding.EncodeToString(raw)
		if err := write(pass); err != nil {
			return nil, err
		}
		return []byte(pass), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read demo passphrase: %w", err)
	}
	var last []byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 && line[0] != '#' {
			last = append([]byte(nil), line...)
		}
	}
	if len(last) == 0 {
		return nil, fmt.Errorf("demo passphrase file %s holds no passphrase", path)
	}
	if !bytes.HasPrefix(b, last) {
		if err := write(string(last)); err != nil {
			return nil, err
		}
	}
	return last, nil
}

func simCmd() *cobra.Command {
	var (
		o        simOptions
		agentBin string
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run a simulated bench (TPM and secure-element devices on pseudo-terminals) with a ready station.yaml",
		Long: `sim starts N simulated devices — each a wsc-agent process on a real pseudo-terminal, backed by its
own swtpm with EK certificates or by an emulated ATECC608 secure element — creates a throwaway CA
(or uses --ca), a station database with the training operator "trainer" (PIN 1234, supervisor), and
writes DIR/station.yaml. It keeps running until ctrl+c. In another terminal:

  wsc station --config DIR/station.yaml

A trainer changes the running bench with wsc sim pull N, plug N, fail N --at STEP, status.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			agent, err := findAgent(agentBin)
			if err != nil {
				return err
			}
			o.Agent = agent
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			out := cmd.OutOrStdout()
			o.Progress = func(s string) { fmt.Fprintln(out, "setup:", s) }
			o.WorkOrder.Product = "sim-board"
			o.SecondWorkOrder = true
			s, err := startSim(ctx, o)
			if err != nil {
				return err
			}
			defer s.Close()
			fmt.Fprintf(out, "simulated bench ready: %d devices on %d slots in %s\n", len(s.bench.Devices), len(s.ports), s.dir)
			for i, p := range s.ports {
				d := s.bench.Devices[i]
				fmt.Fprintf(out, "  slot %d  %s  %s  %s\n", i+1, d.Serial, d.Kind, p)
			}
			fmt.Fprintf(out, "station config: %s (work order %s, %d devices)\n", s.config, o.WorkOrder.ID, o.WorkOrder.Quantity)
			fmt.Fprintf(out, "run the station:  wsc station --config %s\n", s.config)
			fmt.Fprintf(out, "sign in as %s, PIN %s (%s); trainer commands: wsc sim pull N | plug N | fail N --at STEP | status --dir %s\n",
				simOperator, simOperatorPIN, simOperatorRole, s.dir)
			fmt.Fprintln(out, "ctrl+c stops the simulated devices")
			<-ctx.Done()
			err = s.Close()
			fmt.Fprintln(out, "simulated bench stopped")
			return err
		},
	}
	cmd.PersistentFlags().StringVar(&o.Dir, "dir", "wsc-sim", "folder of the simulated bench (devices, CA, database, station.yaml, control socket)")
	f := cmd.Flags()
	f.IntVar(&o.Devices, "devices", 4, "number of simulated devices")
	f.IntVar(&o.Slots, "slots", 0, "number of slots (default: one per device); with fewer slots than devices, wsc sim next N puts the next fresh device on slot N")
	f.StringSliceVar(&o.Mix, "mix", nil, "device kinds assigned round-robin: tpm, se (ATECC608 secure element), e.g. --mix tpm,se (default all tpm)")
	f.StringVar(&o.Profile, "latency-profile", "", "make TPMs as slow as a real chip (slb9670, slb9672, st33, npct750, attpm20); secure elements then take the ATECC608 datasheet's times")
	f.IntVar(&o.Baud, "baud", 0, "pace every cable as a UART at this speed, e.g. 115200 (default: unpaced)")
	f.StringVar(&agentBin, "agent", "", "wsc-agent executable (default: next to wsc, then $PATH)")
	f.StringVar(&o.CADir, "ca", "", "use this existing CA folder instead of creating a throwaway one")
	f.StringVar(&o.CAPass, "ca-passphrase", "prompt", "with --ca: where the station reads the CA passphrase (prompt, file:PATH, fd:N, env:NAME)")
	f.StringVar(&o.Station, "station", "sim-bench", "station name written into station.yaml")
	f.StringVar(&o.WorkOrder.ID, "work-order", "SIM-WO-1", "work order id written into station.yaml")
	f.IntVar(&o.WorkOrder.Quantity, "quantity", 12, "work order quantity")
	cmd.AddCommand(simControlCmd("pull", "Pull the cable of the device on slot N (bytes are lost; the port stays)", &o.Dir),
		simControlCmd("plug", "Plug the cable of the device on slot N back in", &o.Dir),
		simControlCmd("next", "Replace the device on slot N by the next fresh device (with --slots fewer than --devices)", &o.Dir),
		simControlCmd("status", "List the simulated devices, their cables and armed faults", &o.Dir),
		simFailCmd(&o.Dir))
	return cmd
}

// simControlCmd is a trainer command sent to a running wsc sim.
func simControlCmd(verb, short string, dir *string) *cobra.Command {
	args := cobra.ExactArgs(1)
	use := verb + " N"
	if verb == "status" {
		args, use = cobra.NoArgs, verb
	}
	return &cobra.Command{
		Use: use, Short: short, Args: args,
		RunE: func(cmd *cobra.Command, a []string) error {
			return simSend(cmd, *dir, strings.Join(append([]string{verb}, a...), " "))
		},
	}
}

func simFailCmd(dir *string) *cobra.Command {
	var at string
	cmd := &cobra.Command{
		Use:   "fail N --at STEP",
		Short: "Make the next request at STEP of the device on slot N fail once (" + strings.Join(sim.FaultPoints(), ", ") + ")",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			return simSend(cmd, *dir, "fail "+a[0]+" "+at)
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "step whose next request fails: "+strings.Join(sim.FaultPoints(), ", "))
	_ = cmd.MarkFlagRequired("at")
	return cmd
}

func simSend(cmd *cobra.Command, dir, req string) error {
	reply, err := sim.SendControl(cmd.Context(), filepath.Join(dir, sim.ControlSocket), req)
	if err != nil {
		if errors.Is(err, sim.ErrNoBench) {
			return usageError(err)
		}
		return failed(err)
	}
	if reply != "" {
		fmt.Fprintln(cmd.OutOrStdout(), reply)
	}
	return nil
}
