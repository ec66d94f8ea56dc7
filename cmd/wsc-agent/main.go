// Command wsc-agent runs on the device: it is the only program that touches
// the device's TPM (or secure element) and answers the station over a serial
// line. It is pure Go (CGO_ENABLED=0) and cross-compiles to the boards of the
// line: linux/amd64, arm64, arm (v7), riscv64, and windows/amd64.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/wsc-project/wsc/devices/agent"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/tpm"
	"go.bug.st/serial"
)

const usage = `wsc-agent — the wsc device agent

Usage:
  wsc-agent serve --serial PORT --tpm URI [--device-serial S] [--latency-profile P]
  wsc-agent info --tpm URI [--json]
  wsc-agent version

TPM URIs: /dev/tpmrm0, /dev/tpm0, swtpm:unix:///path/tpm.sock, swtpm:tcp://127.0.0.1:2321, tbs (Windows)
Latency profiles (real-chip timings, off by default): slb9670 slb9672 st33 npct750 attpm20
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], stderr)
	case "info":
		err = info(args[1:], stdout)
	case "version":
		fmt.Fprintln(stdout, agent.Version)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "wsc-agent: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "wsc-agent: %v\n", err)
		return 1
	}
	return 0
}

type tpmFlags struct {
	uri, profile string
	cfg          tpm.Config
}

func (f *tpmFlags) register(fs *flag.FlagSet) {
	f.cfg = tpm.DefaultConfig()
	fs.StringVar(&f.uri, "tpm", "/dev/tpmrm0", "TPM to use (URI)")
	fs.StringVar(&f.profile, "latency-profile", "", "wait as this real TPM chip would (slb9670, slb9672, st33, npct750, attpm20)")
}

func (f *tpmFlags) open() (*tpm.Device, error) {
	t, err := tpm.OpenTransport(f.uri)
	if err != nil {
		return nil, err
	}
	cfg := f.cfg
	cfg.LatencyProfile = f.profile
	d, err := tpm.New(t, cfg)
	if err != nil {
		_ = t.Close()
		return nil, err
	}
	return d, nil
}

func serve(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var tf tpmFlags
	tf.register(fs)
	port := fs.String("serial", "", "serial port to the station (e.g. /dev/ttyGS0)")
	baud := fs.Int("baud", 115200, "serial line speed")
	devSerial := fs.String("device-serial", "", "device serial to report (default: derived from the TPM's endorsement key)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *port == "" {
		return errors.New("serve: --serial is required")
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("serve: --log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lv}))

	dev, err := tf.open()
	if err != nil {
		return err
	}
	defer dev.Close()
	backend, err := agent.NewTPMBackend(dev, *devSerial)
	if err != nil {
		return err
	}
	p, err := serial.Open(*port, &serial.Mode{BaudRate: *baud})
	if err != nil {
		return fmt.Errorf("open serial port %s: %w", *port, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = p.Close() // unblocks the reader
	}()
	id := backend.Identity()
	log.Info("agent serving", "port", *port, "serial", id.Serial, "backend", id.Backend, "latency_profile", tf.profile, "version", agent.Version)
	srv := proto.NewServer(p, agent.NewHandler(backend, log), proto.WithLogger(log))
	err = srv.Serve(ctx)
	if ctx.Err() != nil {
		log.Info("agent stopped", "reason", "signal")
		return nil
	}
	return err
}

func info(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("info", flag.ContinueOnError)
	var tf tpmFlags
	tf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	devSerial := fs.String("device-serial", "", "device serial (default: derived from the endorsement key)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dev, err := tf.open()
	if err != nil {
		return err
	}
	defer dev.Close()
	in, err := agent.Describe(dev, *devSerial)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(in)
	}
	fmt.Fprintf(stdout, "serial:   %s\nbackend:  %s\n", in.Serial, in.Backend)
	for _, k := range in.Keys {
		fmt.Fprintf(stdout, "key:      %s at 0x%08x\n%s", k.Role, k.Handle, k.PublicKeyPEM)
	}
	fmt.Fprintf(stdout, "chain NV: %v\n", in.ChainNVIndices)
	return nil
}
