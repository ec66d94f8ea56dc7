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
	"strconv"
	"syscall"

	"github.com/wsc-project/wsc/devices/agent"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/tpm"
	"go.bug.st/serial"
)

const usage = `wsc-agent — the wsc device agent

Usage:
  wsc-agent serve --serial PORT (--tpm URI | --se URI | --pkcs11 URI) [--device-serial S] [--latency-profile P]
  wsc-agent info (--tpm URI | --se URI | --pkcs11 URI) [--json]
  wsc-agent sign (--tpm URI | --se URI | --pkcs11 URI) IN.wasm -o OUT.wasm
  wsc-agent version

TPM URIs: /dev/tpmrm0, /dev/tpm0, swtpm:unix:///path/tpm.sock, swtpm:tcp://127.0.0.1:2321, tbs (Windows)
Secure element URIs: i2c:/dev/i2c-1@0x60, emulator:STATEFILE[?timings=datasheet]
PKCS#11 URIs (agents built with -tags pkcs11): pkcs11:module-path=...;token=...?pin-source=file:...
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
	case "sign":
		err = sign(args[1:], stdout)
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

// backendFlags selects the device's key store.
type backendFlags struct {
	tpmURI, seURI, p11URI, certDef, profile, serial string
	cfg                                             tpm.Config
}

func (f *backendFlags) register(fs *flag.FlagSet) {
	f.cfg = tpm.DefaultConfig()
	fs.StringVar(&f.tpmURI, "tpm", "", "TPM to use (URI; default /dev/tpmrm0 when no other backend is given)")
	fs.StringVar(&f.seURI, "se", "", "ATECC608 secure element to use (i2c:/dev/i2c-N@0x60 or emulator:STATEFILE)")
	fs.StringVar(&f.p11URI, "pkcs11", "", "PKCS#11 token to use (agents built with -tags pkcs11)")
	fs.StringVar(&f.certDef, "se-cert-def", "", "secure element: file for the certificate definitions (default beside the state file, or /var/lib/wsc-agent)")
	fs.StringVar(&f.profile, "latency-profile", "", "TPM: wait as this real chip would (slb9670, slb9672, st33, npct750, attpm20)")
	fs.StringVar(&f.serial, "device-serial", "", "TPM: device serial to report (default: derived from the endorsement key)")
	fs.Func("srk-handle", fmt.Sprintf("TPM: persistent handle of the storage root key (default %#x)", f.cfg.SRKHandle), hexFlag(&f.cfg.SRKHandle))
	fs.Func("iak-handle", fmt.Sprintf("TPM: persistent handle of the attestation key (default %#x)", f.cfg.IAKHandle), hexFlag(&f.cfg.IAKHandle))
	fs.Func("idevid-handle", fmt.Sprintf("TPM: persistent handle of the device identity key (default %#x)", f.cfg.IDevIDHandle), hexFlag(&f.cfg.IDevIDHandle))
	fs.Func("nv-base", fmt.Sprintf("TPM: first owner NV index of the certificate chain (default %#x)", f.cfg.NVBase), hexFlag(&f.cfg.NVBase))
	fs.IntVar(&f.cfg.NVMaxIndices, "nv-max-indices", f.cfg.NVMaxIndices, "TPM: NV indices the chain may use")
}

// hexFlag parses a handle or NV index given in hex (0x…) or decimal.
func hexFlag(dst *uint32) func(string) error {
	return func(s string) error {
		v, err := strconv.ParseUint(s, 0, 32)
		if err != nil {
			return fmt.Errorf("want a 32-bit number such as 0x81000011: %w", err)
		}
		*dst = uint32(v)
		return nil
	}
}

// openPKCS11 is set by the pkcs11 build (pkcs11.go).
var openPKCS11 func(uri string) (agent.Backend, io.Closer, error)

// open returns the selected backend and what to close when done.
func (f *backendFlags) open() (agent.Backend, io.Closer, error) {
	n := 0
	for _, u := range []string{f.tpmURI, f.seURI, f.p11URI} {
		if u != "" {
			n++
		}
	}
	if n > 1 {
		return nil, nil, errors.New("give only one of --tpm, --se, --pkcs11")
	}
	switch {
	case f.seURI != "":
		chip, closer, err := agent.OpenSE(f.seURI)
		if err != nil {
			return nil, nil, err
		}
		def := f.certDef
		if def == "" {
			def = agent.DefaultCertDefPath(f.seURI)
		}
		b, err := agent.NewSEBackend(chip, agent.WithCertDefPath(def))
		if err != nil {
			_ = closer.Close()
			return nil, nil, err
		}
		return b, closer, nil
	case f.p11URI != "":
		if openPKCS11 == nil {
			return nil, nil, errors.New("this agent was built without PKCS#11 support (build with CGO_ENABLED=1 -tags pkcs11)")
		}
		return openPKCS11(f.p11URI)
	default:
		dev, err := f.openTPM()
		if err != nil {
			return nil, nil, err
		}
		b, err := agent.NewTPMBackend(dev, f.serial)
		if err != nil {
			_ = dev.Close()
			return nil, nil, err
		}
		return b, dev, nil
	}
}

func (f *backendFlags) openTPM() (*tpm.Device, error) {
	uri := f.tpmURI
	if uri == "" {
		uri = "/dev/tpmrm0"
	}
	t, err := tpm.OpenTransport(uri)
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
	var bf backendFlags
	bf.register(fs)
	port := fs.String("serial", "", "serial port to the station (e.g. /dev/ttyGS0)")
	baud := fs.Int("baud", 115200, "serial line speed")
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

	backend, closer, err := bf.open()
	if err != nil {
		return err
	}
	defer closer.Close()
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
	log.Info("agent serving", "port", *port, "serial", id.Serial, "backend", id.Backend, "latency_profile", bf.profile, "version", agent.Version)
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
	var bf backendFlags
	bf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var in *agent.DeviceInfo
	if bf.seURI != "" || bf.p11URI != "" {
		b, closer, err := bf.open()
		if err != nil {
			return err
		}
		defer closer.Close()
		d, ok := b.(interface {
			Describe() (*agent.DeviceInfo, error)
		})
		if !ok {
			return errors.New("this backend cannot describe itself")
		}
		if in, err = d.Describe(); err != nil {
			return err
		}
	} else {
		dev, err := bf.openTPM()
		if err != nil {
			return err
		}
		defer dev.Close()
		if in, err = agent.Describe(dev, bf.serial); err != nil {
			return err
		}
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
	fmt.Fprintf(stdout, "chain at: %v\n", in.ChainNVIndices)
	return nil
}
