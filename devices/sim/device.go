// Package sim runs simulated devices for the demo and the tests: each is a
// real wsc-agent process on one end of a real pseudo-terminal pair, backed by
// its own swtpm instance with endorsement-key certificates or by its own
// emulated ATECC608 secure element (devices/se, byte-level). Nothing in it
// is a mock: the station talks to these devices exactly as to boards on a
// bench.
package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// Device kinds: what holds a simulated device's key.
const (
	// KindTPM is a device with a TPM 2.0 (swtpm with EK certificates).
	KindTPM = "tpm"
	// KindSE is a device with an ATECC608-class secure element (the
	// byte-level emulator in devices/se, state in Dir/se.state).
	KindSE = "se"
)

// DeviceConfig describes one simulated device.
type DeviceConfig struct {
	// Dir is the device's folder (TPM or secure-element state, sockets).
	Dir string
	// Kind is KindTPM (default) or KindSE.
	Kind string
	// AgentBinary is the path of the wsc-agent executable.
	AgentBinary string
	// Serial is the device serial the agent of a TPM device reports (its
	// "label"). A secure element reports its chip serial instead; for
	// KindSE it is ignored and Device.Serial is read from the chip.
	Serial string
	// SEDatasheetTimings makes a secure element take the datasheet's
	// maximum execution times (GenKey and Sign 115 ms, ...), as a real
	// ATECC608 would.
	SEDatasheetTimings bool
	// LatencyProfile, when set, makes the agent wait as a real TPM chip would
	// (e.g. "slb9670").
	LatencyProfile string
	// Relay joins the two pseudo-terminals; nil copies faithfully.
	Relay RelayFunc
	// Baud, when set, paces the cable as a UART at this speed.
	Baud int
	// AgentLog receives the agent's structured log; nil discards it.
	AgentLog io.Writer
	// ExtraArgs are appended to the agent's command line.
	ExtraArgs []string
}

// Device is a running simulated device.
type Device struct {
	// Serial is the device serial the agent reports (for a secure element,
	// the chip's serial number in hex, read from its config zone).
	Serial string
	// Kind is KindTPM or KindSE.
	Kind string
	// Port is the station's end of the cable (a pseudo-terminal path).
	Port string
	// TPM is the device's swtpm (nil for a secure element).
	TPM *SWTPM
	// SEState is the secure element's emulator state file (KindSE).
	SEState string
	// Link is the simulated cable.
	Link *Link
	// Faults injects faults on the cable at named steps (nil unless the
	// bench was started with BenchConfig.Faults).
	Faults *Injector

	cfg   DeviceConfig
	agent *process
}

// StartDevice starts swtpm on the already manufactured TPM state in
// cfg.Dir/tpm (or, for a secure element, opens the chip state in
// cfg.Dir/se.state, creating a blank chip if there is none), creates the
// cable and starts the agent on its far end.
func StartDevice(ctx context.Context, cfg DeviceConfig) (_ *Device, err error) {
	if cfg.Kind == "" {
		cfg.Kind = KindTPM
	}
	// d is not the named result, which is nil on the error paths: the
	// deferred clean-up must see what was started.
	d := &Device{Serial: cfg.Serial, Kind: cfg.Kind, cfg: cfg}
	defer func() {
		if err != nil {
			_ = d.Close()
		}
	}()
	switch cfg.Kind {
	case KindTPM:
		d.TPM, err = StartSWTPM(ctx, filepath.Join(cfg.Dir, "tpm"))
		if err != nil {
			return nil, err
		}
	case KindSE:
		d.SEState = filepath.Join(cfg.Dir, SEStateFile)
		if d.Serial, err = ManufactureSE(d.SEState); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("simulated device kind %q: want %q or %q", cfg.Kind, KindTPM, KindSE)
	}
	d.Link, err = NewLink(cfg.Relay, WithBaud(cfg.Baud))
	if err != nil {
		return nil, err
	}
	d.Port = d.Link.StationPath
	if err := d.StartAgent(); err != nil {
		return nil, err
	}
	return d, nil
}

// StartAgent (re)starts the agent process on the device's end of the cable,
// as a device would after a power cycle. The TPM keeps its state.
func (d *Device) StartAgent() error {
	if d.agent != nil && !d.agent.exited() {
		return errors.New("agent already running")
	}
	var args []string
	if d.Kind == KindSE {
		args = []string{"serve", "--serial", d.Link.AgentPath, "--se", d.SEURI()}
	} else {
		args = []string{"serve", "--serial", d.Link.AgentPath, "--tpm", d.TPM.URI(), "--device-serial", d.cfg.Serial}
		if d.cfg.LatencyProfile != "" {
			args = append(args, "--latency-profile", d.cfg.LatencyProfile)
		}
	}
	args = append(args, d.cfg.ExtraArgs...)
	cmd := exec.Command(d.cfg.AgentBinary, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Stdout = d.cfg.AgentLog
	cmd.Stderr = d.cfg.AgentLog
	p, err := startProcess(cmd)
	if err != nil {
		return fmt.Errorf("start agent for %s: %w", d.Serial, err)
	}
	d.agent = p
	return nil
}

// StopAgent stops the agent (SIGTERM), as a device being powered off.
func (d *Device) StopAgent() error {
	if d.agent == nil {
		return nil
	}
	return d.agent.stop()
}

// AgentExited reports whether the agent process has ended, with its error.
func (d *Device) AgentExited() (bool, error) {
	if d.agent == nil || !d.agent.exited() {
		return false, nil
	}
	return true, d.agent.err
}

// Close stops the agent and swtpm and removes the cable.
func (d *Device) Close() error {
	var errs []error
	if d.agent != nil {
		errs = append(errs, d.agent.stop())
	}
	if d.Link != nil {
		errs = append(errs, d.Link.Close())
	}
	if d.TPM != nil {
		errs = append(errs, d.TPM.Close())
	}
	return errors.Join(errs...)
}

// BenchConfig describes a bench of simulated devices.
type BenchConfig struct {
	// Dir is the workspace; each device gets Dir/devices/<prefix>-000N (for
	// a TPM device also its serial), and the TPM and secure-element vendor
	// certificates are published in Dir/tpm-vendor and Dir/se-vendor.
	Dir string
	// N is the number of devices.
	N int
	// SerialPrefix names the devices: <prefix>-0001, <prefix>-0002, ...
	// (TPM devices report these serials; secure elements their chip's).
	SerialPrefix string
	// Mix assigns device kinds round-robin: ["tpm", "se"] makes devices 1,
	// 3, 5... TPM devices and 2, 4, 6... secure-element devices. Empty:
	// all TPM.
	Mix []string
	// SEDatasheetTimings makes every secure element as slow as the
	// ATECC608 datasheet's maximum execution times.
	SEDatasheetTimings bool
	// AgentBinary is the path of the wsc-agent executable.
	AgentBinary string
	// LatencyProfile is passed to every agent.
	LatencyProfile string
	// Relay is used for every cable; nil copies faithfully.
	Relay RelayFunc
	// Baud, when set, paces every cable as a UART at this speed.
	Baud int
	// AgentLogDir, when set, receives one log file per agent.
	AgentLogDir string
	// Faults puts an Injector on every cable (Device.Faults), so that a
	// trainer can make a step fail on a running bench (wsc sim fail).
	Faults bool
	// Progress, when set, is told what is being done.
	Progress func(msg string)
}

// Bench is a set of running simulated devices.
type Bench struct {
	Devices []*Device
	// VendorRoot and VendorIssuer are the TPM vendor's CA certificates (PEM
	// paths) that verify every device's EK certificate; empty when the
	// bench has no TPM device.
	VendorRoot, VendorIssuer string
	// SEVendorRoot and SEVendorIssuer are the secure-element vendor's root
	// and signer certificates (PEM paths, in Dir/se-vendor) that verify the
	// manufacturer chain of every secure element's attestation key
	// (ca.VerifySEAttestation); empty when the bench has no SE device.
	SEVendorRoot, SEVendorIssuer string

	logs []*os.File
}

// StartBench manufactures N devices — TPMs (each with its own EK
// certificate from one simulated vendor CA) and, as cfg.Mix says, secure
// elements (emulated chips as the simulated SE vendor ships them: an
// attestation key with its compressed manufacturer certificates, zones
// locked; see SEVendor) — and starts a device on each. The TPM vendor CA's
// private keys live in a temporary folder outside the workspace and are
// removed, and the SE vendor's in-memory keys forgotten, before StartBench
// returns.
func StartBench(ctx context.Context, cfg BenchConfig) (_ *Bench, err error) {
	if cfg.N < 1 {
		return nil, fmt.Errorf("bench needs at least one device, got %d", cfg.N)
	}
	if cfg.SerialPrefix == "" {
		cfg.SerialPrefix = "SIM"
	}
	progress := cfg.Progress
	if progress == nil {
		progress = func(string) {}
	}
	kinds := make([]string, cfg.N)
	tpms, ses := 0, 0
	for i := range kinds {
		kinds[i] = KindTPM
		if len(cfg.Mix) > 0 {
			kinds[i] = cfg.Mix[i%len(cfg.Mix)]
		}
		switch kinds[i] {
		case KindTPM:
			tpms++
		case KindSE:
			ses++
		default:
			return nil, fmt.Errorf("bench mix: unknown device kind %q (want %q or %q)", kinds[i], KindTPM, KindSE)
		}
	}
	b := &Bench{} // not the named result: see StartDevice
	defer func() {
		if err != nil {
			_ = b.Close()
		}
	}()
	serials := make([]string, cfg.N)
	for i := range cfg.N {
		serials[i] = fmt.Sprintf("%s-%04d", cfg.SerialPrefix, i+1)
	}
	if tpms > 0 {
		vendor, err := NewVendor()
		if err != nil {
			return nil, err
		}
		defer vendor.Close()
		for i, serial := range serials {
			if kinds[i] != KindTPM {
				continue
			}
			progress(fmt.Sprintf("manufacturing TPM for %s (swtpm_setup, EK certificates)", serial))
			if err := vendor.Manufacture(ctx, filepath.Join(cfg.Dir, "devices", serial, "tpm")); err != nil {
				return nil, err
			}
		}
		b.VendorRoot, b.VendorIssuer, err = vendor.Publish(filepath.Join(cfg.Dir, "tpm-vendor"))
		if err != nil {
			return nil, err
		}
	}
	if ses > 0 {
		vendor, err := NewSEVendor()
		if err != nil {
			return nil, err
		}
		defer vendor.Close()
		for i, serial := range serials {
			if kinds[i] != KindSE {
				continue
			}
			progress(fmt.Sprintf("manufacturing secure element for %s (attestation key, vendor certificates)", serial))
			if _, err := vendor.Manufacture(filepath.Join(cfg.Dir, "devices", serial, SEStateFile)); err != nil {
				return nil, err
			}
		}
		b.SEVendorRoot, b.SEVendorIssuer, err = vendor.Publish(filepath.Join(cfg.Dir, "se-vendor"))
		if err != nil {
			return nil, err
		}
	}
	for i, serial := range serials {
		var log io.Writer
		if cfg.AgentLogDir != "" {
			if err := os.MkdirAll(cfg.AgentLogDir, 0o755); err != nil {
				return nil, err
			}
			f, err := os.Create(filepath.Join(cfg.AgentLogDir, serial+".log"))
			if err != nil {
				return nil, err
			}
			b.logs = append(b.logs, f)
			log = f
		}
		if kinds[i] == KindSE {
			progress(fmt.Sprintf("starting secure element (ATECC608 emulator) and agent for %s", serial))
		} else {
			progress(fmt.Sprintf("starting swtpm and agent for %s", serial))
		}
		relay := cfg.Relay
		var inj *Injector
		if cfg.Faults {
			inj = NewInjector()
			relay = inj.Wrap(cfg.Relay)
		}
		d, err := StartDevice(ctx, DeviceConfig{
			Dir:                filepath.Join(cfg.Dir, "devices", serial),
			Kind:               kinds[i],
			AgentBinary:        cfg.AgentBinary,
			Serial:             serial,
			LatencyProfile:     cfg.LatencyProfile,
			SEDatasheetTimings: cfg.SEDatasheetTimings,
			Relay:              relay,
			Baud:               cfg.Baud,
			AgentLog:           log,
		})
		if err != nil {
			return nil, err
		}
		d.Faults = inj
		b.Devices = append(b.Devices, d)
	}
	return b, nil
}

// Close stops every device of the bench.
func (b *Bench) Close() error {
	var errs []error
	for _, d := range b.Devices {
		errs = append(errs, d.Close())
	}
	for _, f := range b.logs {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
