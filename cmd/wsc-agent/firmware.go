package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/wsc-project/wsc/devices/agent"
)

// firmwareOptions are the flags of verify, install and commit.
type firmwareOptions struct {
	bf      backendFlags
	bundle  string
	slotDir string
	asJSON  bool
}

func firmwareFlags(name string) (*flag.FlagSet, *firmwareOptions) {
	fs := newFlagSet(name)
	o := &firmwareOptions{}
	o.bf.register(fs)
	fs.StringVar(&o.bundle, "bundle", "", "trust bundle (PEM certificates and CRLs, e.g. from 'wsc ca bundle'); required. Only roots whose fingerprint is in the chip count")
	fs.BoolVar(&o.asJSON, "json", false, "print the verdict as JSON")
	if name != "verify" {
		fs.StringVar(&o.slotDir, "slot-dir", "", "directory of the A/B firmware slots; required")
	}
	return fs, o
}

// parseFirmwareArgs parses flags and positional arguments in any order.
func parseFirmwareArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// openFirmware opens the backend and checks that it holds trust anchors.
func (o *firmwareOptions) openFirmware() (*agent.Firmware, io.Closer, []byte, error) {
	if o.bundle == "" {
		return nil, nil, nil, usageError(errors.New("--bundle is required (the certificates and current CRLs of the firmware-signing CA)"))
	}
	bundle, err := os.ReadFile(o.bundle)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--bundle: %w", err)
	}
	b, closer, err := o.bf.open()
	if err != nil {
		return nil, nil, nil, err
	}
	ts, ok := b.(agent.TrustStore)
	if !ok {
		_ = closer.Close()
		return nil, nil, nil, usageError(errors.New("this backend holds no firmware trust anchors (use --tpm or --se)"))
	}
	return &agent.Firmware{Store: ts, Serial: b.Identity().Serial}, closer, bundle, nil
}

// verdict prints a result and maps it to the exit code: 0 accepted, 1
// refused, otherwise the error's own code.
func (o *firmwareOptions) verdict(stdout io.Writer, what string, res *agent.FirmwareResult, err error) error {
	if res != nil {
		if o.asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if e := enc.Encode(res); e != nil {
				return e
			}
		} else if res.Accepted {
			fmt.Fprintf(stdout, "%s: accepted %s\n", what, res.Manifest.Summary())
		}
	}
	if errors.Is(err, agent.ErrRefused) {
		return &exitError{code: exitFailed, err: err}
	}
	return err
}

func firmwareVerify(args []string, stdout io.Writer) error {
	fs, o := firmwareFlags("verify")
	pos, err := parseFirmwareArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(errors.New("verify: want one IN.wasm (see 'wsc-agent verify --help')"))
	}
	fw, closer, bundle, err := o.openFirmware()
	if err != nil {
		return err
	}
	defer closer.Close()
	f, err := os.Open(pos[0])
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	res, err := fw.Verify(context.Background(), f, bundle)
	return o.verdict(stdout, "verify "+pos[0], res, err)
}

func firmwareInstall(args []string, stdout io.Writer) error {
	fs, o := firmwareFlags("install")
	pos, err := parseFirmwareArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || o.slotDir == "" {
		return usageError(errors.New("install: want one IN.wasm and --slot-dir DIR (see 'wsc-agent install --help')"))
	}
	fw, closer, bundle, err := o.openFirmware()
	if err != nil {
		return err
	}
	defer closer.Close()
	f, err := os.Open(pos[0])
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer f.Close()
	s := &agent.Slots{Dir: o.slotDir}
	res, err := s.Install(context.Background(), fw, f, bundle)
	return o.verdict(stdout, "install "+pos[0], res, err)
}

func firmwareCommit(args []string, stdout io.Writer) error {
	fs, o := firmwareFlags("commit")
	pos, err := parseFirmwareArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 || o.slotDir == "" {
		return usageError(errors.New("commit: want --slot-dir DIR and no argument (see 'wsc-agent commit --help')"))
	}
	fw, closer, bundle, err := o.openFirmware()
	if err != nil {
		return err
	}
	defer closer.Close()
	s := &agent.Slots{Dir: o.slotDir}
	res, err := s.Commit(context.Background(), fw, bundle)
	if errors.Is(err, agent.ErrNothingPending) {
		return &exitError{code: exitFailed, err: fmt.Errorf("commit: %w: run 'wsc-agent install' first", err)}
	}
	return o.verdict(stdout, "commit", res, err)
}
