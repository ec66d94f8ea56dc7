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
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/wsc-project/wsc/cmd/internal/buildinfo"
	"github.com/wsc-project/wsc/devices/agent"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/tpm"
	"go.bug.st/serial"
)

const usage = `wsc-agent — the wsc device agent: the only program that touches the device's TPM or
secure element; it answers the station over a serial line.

Usage:
  wsc-agent serve --serial PORT [--tpm URI | --se URI | --pkcs11 URI] [flags]
  wsc-agent info [--tpm URI | --se URI | --pkcs11 URI] [--json]
  wsc-agent sign [--tpm URI | --se URI | --pkcs11 URI] [--key K] [--policy FILE] IN.wasm -o OUT.wasm
  wsc-agent verify [--tpm URI | --se URI] --bundle FILE [--json] IN.wasm
  wsc-agent install [--tpm URI | --se URI] --bundle FILE --slot-dir DIR [--json] IN.wasm
  wsc-agent commit [--tpm URI | --se URI] --bundle FILE --slot-dir DIR [--json]
  wsc-agent version [--json]        (also: wsc-agent --version)
  wsc-agent help [COMMAND]          (also: wsc-agent COMMAND --help)

TPM URIs: /dev/tpmrm0 (default), /dev/tpm0, swtpm:unix:///path/tpm.sock, swtpm:tcp://127.0.0.1:2321, tbs (Windows)
Secure element URIs: i2c:/dev/i2c-1@0x60, emulator:STATEFILE[?timings=datasheet]
PKCS#11 URIs (agents built with -tags pkcs11): pkcs11:module-path=...;token=...?pin-source=file:...
Latency profiles (real-chip timings, off by default): slb9670 slb9672 st33 npct750 attpm20

Exit codes: 0 success, 1 the thing checked is bad, 2 usage or configuration error
(unknown command or flag, missing argument, a path that does not exist), 3 internal or
environment error (a device or port that cannot be used).
`

// subcommand describes one wsc-agent command for its help text.
type subcommand struct {
	synopsis    string // after "wsc-agent "
	description string
	arguments   string // "" when the command takes none
}

var subcommands = map[string]subcommand{
	"serve": {
		synopsis: "serve --serial PORT [--tpm URI | --se URI | --pkcs11 URI] [flags]",
		description: `Answer the station's requests over a serial line until SIGTERM or Ctrl-C: Hello, the
endorsement key, key creation inside the chip with its proof, credential activation, writing
and reading the certificate chain, signing. Logs are JSON lines on standard error. The
backend is the TPM at /dev/tpmrm0 unless --tpm, --se or --pkcs11 names another.`,
	},
	"info": {
		synopsis: "info [--tpm URI | --se URI | --pkcs11 URI] [--json]",
		description: `Describe the device: serial, backend, the keys the agent created (role, handle or slot,
public key) and where the certificate chain is stored. Read-only.`,
	},
	"sign": {
		synopsis: "sign [--tpm URI | --se URI | --pkcs11 URI] [--key ldevid|idevid|auto] [--policy FILE] IN.wasm -o OUT.wasm",
		description: `Sign a WebAssembly module with the device's code-signing key (the LDevID, when the station
installed it; --key idevid or an older device: the identity key): the agent hashes the module,
the chip signs the digest, and the key's chain stored in the device is embedded after the
signature (docs/signature-format.md). --policy signs with a key bound to measured boot under a
fleet-signed PCR policy ('wsc policy sign'); exit 1 when the PCRs no longer match it. Flags and
IN.wasm may come in any order.`,
		arguments: "  IN.wasm    the module to sign",
	},
	"verify": {
		synopsis: "verify [--tpm URI | --se URI] --bundle FILE [--json] IN.wasm",
		description: `Decide, offline, whether this device may run IN.wasm: the signature chain must lead to a
root whose fingerprint is in the chip's trust anchors (the bundle on disk only supplies
certificates and CRLs), every CRL must be at least the chip's minimum CRL number for its
issuer, the manifest must name this device's class (and serial, if it lists serials), and its
version must be at least the chip's anti-rollback counter. Time comes from the newest CRL of an
anchored CA, never from the device's clock (docs/platforms.md, "Firmware acceptance").
Exit 0 accepted, 1 refused.`,
		arguments: "  IN.wasm    the signed module (streamed; any size)",
	},
	"install": {
		synopsis: "install [--tpm URI | --se URI] --bundle FILE --slot-dir DIR [--json] IN.wasm",
		description: `Verify IN.wasm as 'verify' does and install it into the inactive A/B slot of DIR as
pending. The active module is not touched: a crash or a refused module leaves it runnable.
Run the new module, then 'wsc-agent commit'. Exit 0 installed, 1 refused.`,
		arguments: "  IN.wasm    the signed module",
	},
	"commit": {
		synopsis: "commit [--tpm URI | --se URI] --bundle FILE --slot-dir DIR [--json]",
		description: `After the pending module ran successfully: verify it again, advance the chip's
anti-rollback counter to its minimum version, and make it the active slot. Running commit again
after an interruption finishes it. Exit 0 committed, 1 refused or nothing pending.`,
	},
	"version": {
		synopsis:    "version [--json]",
		description: `Print what this binary was built from: module version, VCS revision and its time, Go version, platform, build tags, and the agent version it reports to the station.`,
	},
}

// Exit codes: the same scheme as wsc (wsc help exit-codes).
const (
	exitOK       = 0
	exitFailed   = 1 // the thing checked is bad
	exitUsage    = 2 // usage or configuration error
	exitInternal = 3 // internal or environment error
)

// exitError carries an exit code with an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks err as a usage or configuration error (exit 2).
func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

// exitStatus is the exit code for err: the code it carries; 2 for a path
// that does not exist; otherwise 3 (a device, port or file that cannot be
// used is an environment error, not a verdict).
func exitStatus(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, fs.ErrNotExist):
		return exitUsage
	default:
		return exitInternal
	}
}

// newFlagSet returns the flag set of a subcommand; parse reports errors and
// help through parseFlags, never through the flag package's own printing.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args; a bad flag is a usage error that names the
// command's help, and -h/--help returns flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError(fmt.Errorf("%s: %w (see 'wsc-agent %s --help')", fs.Name(), err, fs.Name()))
}

// printHelp writes a subcommand's complete help: synopsis, description,
// arguments and every flag with its default.
func printHelp(w io.Writer, name string, fs *flag.FlagSet) {
	sc := subcommands[name]
	fmt.Fprintf(w, "Usage:\n  wsc-agent %s\n\n%s\n", sc.synopsis, sc.description)
	if sc.arguments != "" {
		fmt.Fprintf(w, "\nArguments:\n%s\n", sc.arguments)
	}
	fmt.Fprintf(w, "\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		arg, text := flag.UnquoteUsage(f)
		if arg != "" {
			arg = " " + strings.ToUpper(arg)
		}
		if d := f.DefValue; d != "" && d != "false" && d != "0" && !strings.Contains(text, "(default") {
			text += fmt.Sprintf(" (default %s)", d)
		}
		fmt.Fprintf(w, "  --%s%s\n      %s\n", f.Name, arg, text)
	})
	fmt.Fprintf(w, "\nExit codes: 0 success, 2 usage or configuration error, 3 device or environment error.\n")
}

// flagSets builds each subcommand's flags without running it (for help).
var flagSets = map[string]func() *flag.FlagSet{
	"serve":   func() *flag.FlagSet { fs, _ := serveFlags(); return fs },
	"info":    func() *flag.FlagSet { fs, _, _ := infoFlags(); return fs },
	"sign":    func() *flag.FlagSet { fs, _, _ := signFlags(); return fs },
	"verify":  func() *flag.FlagSet { fs, _ := firmwareFlags("verify"); return fs },
	"install": func() *flag.FlagSet { fs, _ := firmwareFlags("install"); return fs },
	"commit":  func() *flag.FlagSet { fs, _ := firmwareFlags("commit"); return fs },
	"version": func() *flag.FlagSet { fs, _ := versionFlags(); return fs },
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	name := args[0]
	var err error
	switch name {
	case "serve":
		err = serve(args[1:], stderr)
	case "info":
		err = info(args[1:], stdout)
	case "sign":
		err = sign(args[1:], stdout)
	case "verify":
		err = firmwareVerify(args[1:], stdout)
	case "install":
		err = firmwareInstall(args[1:], stdout)
	case "commit":
		err = firmwareCommit(args[1:], stdout)
	case "version":
		err = version(args[1:], stdout)
	case "--version":
		fmt.Fprintln(stdout, buildinfo.Read("wsc-agent").Short())
	case "-h", "--help":
		fmt.Fprint(stdout, usage)
	case "help":
		if len(args) == 1 {
			fmt.Fprint(stdout, usage)
			return exitOK
		}
		mk, ok := flagSets[args[1]]
		if !ok {
			fmt.Fprintf(stderr, "wsc-agent: no help for unknown command %q\n\n%s", args[1], usage)
			return exitUsage
		}
		printHelp(stdout, args[1], mk())
	default:
		fmt.Fprintf(stderr, "wsc-agent: unknown command %q\n\n%s", name, usage)
		return exitUsage
	}
	if errors.Is(err, flag.ErrHelp) {
		printHelp(stdout, name, flagSets[name]())
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "wsc-agent: %v\n", err)
	}
	return exitStatus(err)
}

func versionFlags() (*flag.FlagSet, *bool) {
	fs := newFlagSet("version")
	return fs, fs.Bool("json", false, "print JSON")
}

// version prints the build information and the agent version the station sees.
func version(args []string, stdout io.Writer) error {
	fs, asJSON := versionFlags()
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Errorf("version: unexpected argument %q", fs.Arg(0)))
	}
	in := buildinfo.Read("wsc-agent")
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			buildinfo.Info
			AgentVersion string `json:"agent_version"`
		}{in, agent.Version})
	}
	if err := in.Write(stdout, false); err != nil {
		return err
	}
	_, err := fmt.Fprintf(stdout, "  agent version: %s (reported to the station)\n", agent.Version)
	return err
}

// backendFlags selects the device's key store.
type backendFlags struct {
	tpmURI, seURI, p11URI, certDef, profile, serial string
	cfg                                             tpm.Config
	// transport is the TPM connection openTPM made (a Device does not own
	// its transport); closed by the closer open returns.
	transport io.Closer
	// signKey and policy are sign's --key and --policy.
	signKey, policy string
}

// closers closes several things in order.
type closers []io.Closer

func (c closers) Close() error {
	var first error
	for _, x := range c {
		if x == nil {
			continue
		}
		if err := x.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
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
		return nil, nil, usageError(errors.New("give only one of --tpm, --se, --pkcs11"))
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
			return nil, nil, usageError(errors.New("this agent was built without PKCS#11 support (build with CGO_ENABLED=1 -tags pkcs11)"))
		}
		return openPKCS11(f.p11URI)
	default:
		dev, err := f.openTPM()
		if err != nil {
			return nil, nil, err
		}
		b, err := agent.NewTPMBackend(dev, f.serial)
		if err != nil {
			_ = closers{dev, f.transport}.Close()
			return nil, nil, err
		}
		return b, closers{dev, f.transport}, nil
	}
}

func (f *backendFlags) openTPM() (*tpm.Device, error) {
	uri := f.tpmURI
	if uri == "" {
		uri = "/dev/tpmrm0"
	}
	if p := strings.ToLower(strings.TrimSpace(f.profile)); p != "" && p != "none" && p != "off" {
		if _, ok := tpm.LatencyProfiles[p]; !ok {
			return nil, usageError(fmt.Errorf("--latency-profile: unknown profile %q (see 'wsc-agent help serve')", f.profile))
		}
	}
	t, err := tpm.OpenTransport(uri)
	if errors.Is(err, tpm.ErrUnsupportedTransport) {
		return nil, usageError(fmt.Errorf("--tpm: %w", err))
	}
	if err != nil {
		return nil, err
	}
	lt, err := tpm.WithLatencyProfile(t, f.profile) // profile checked above
	if err != nil {
		_ = t.Close()
		return nil, usageError(fmt.Errorf("--latency-profile: %w", err))
	}
	d, err := tpm.New(lt, f.cfg)
	if err != nil {
		_ = t.Close()
		return nil, err
	}
	f.transport = t
	return d, nil
}

func serveFlags() (*flag.FlagSet, *serveOptions) {
	fs := newFlagSet("serve")
	o := &serveOptions{}
	o.bf.register(fs)
	fs.StringVar(&o.port, "serial", "", "serial port to the station (e.g. /dev/ttyGS0); required")
	fs.IntVar(&o.baud, "baud", 115200, "serial line speed")
	fs.StringVar(&o.level, "log-level", "info", "log level: debug, info, warn, error")
	return fs, o
}

type serveOptions struct {
	bf          backendFlags
	port, level string
	baud        int
}

func serve(args []string, stderr io.Writer) error {
	fs, o := serveFlags()
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Errorf("serve: unexpected argument %q (see 'wsc-agent serve --help')", fs.Arg(0)))
	}
	bf, port, baud, level := &o.bf, &o.port, &o.baud, &o.level
	if *port == "" {
		return usageError(errors.New("serve: --serial is required (see 'wsc-agent serve --help')"))
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return usageError(fmt.Errorf("serve: --log-level: %w", err))
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

func infoFlags() (*flag.FlagSet, *backendFlags, *bool) {
	fs := newFlagSet("info")
	var bf backendFlags
	bf.register(fs)
	return fs, &bf, fs.Bool("json", false, "print JSON")
}

func info(args []string, stdout io.Writer) error {
	fs, bf, asJSON := infoFlags()
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Errorf("info: unexpected argument %q (see 'wsc-agent info --help')", fs.Arg(0)))
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
