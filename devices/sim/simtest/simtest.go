// Package simtest starts the real parts that tests need — a manufactured
// swtpm with EK certificates, a SoftHSM2 token — in one way for every
// package's tests. Each helper first asks testenv for its programs (skipped
// under -short with the reason, a failure with an instruction otherwise)
// and stops what it started when the test ends.
//
// It is for tests only; product code starts devices through package sim.
package simtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/wsc-project/wsc/devices/sim"
	"github.com/wsc-project/wsc/devices/sim/testenv"
)

// SoftHSMModule is Debian's SoftHSM2 PKCS#11 module (package softhsm2).
const SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// Vendor returns a simulated TPM vendor (a private swtpm local CA) for tb;
// its folder, keys included, is removed when tb ends.
func Vendor(tb testing.TB) *sim.Vendor {
	tb.Helper()
	testenv.NeedTools(tb, "swtpm", "swtpm_setup", "swtpm_localca")
	v, err := sim.NewVendor()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = v.Close() })
	return v
}

// SWTPM manufactures a TPM with v's EK certificates in a fresh folder and
// serves it on a unix socket (the folder also holds ctrl.sock). swtpm is
// stopped and the folder removed when tb ends.
func SWTPM(tb testing.TB, v *sim.Vendor) *sim.SWTPM {
	tb.Helper()
	dir := stateDir(tb)
	if err := v.Manufacture(context.Background(), dir); err != nil {
		tb.Fatal(err)
	}
	return serve(tb, dir)
}

// A Template is a TPM manufactured once (about a second of swtpm_setup)
// whose state is copied for every swtpm started from it: each instance is
// then the same TPM, with the same EKs and certificates, in its own folder.
// A test binary makes one in TestMain and closes it after the run.
type Template struct {
	// Vendor is the simulated vendor that signed the EK certificates.
	Vendor  *sim.Vendor
	permall []byte
}

// NewTemplate makes the vendor and manufactures the template TPM. Under
// -short, or when swtpm is missing, it returns an error: TestMain should
// then keep the error and let the tests that need a TPM ask Start, which
// skips or fails through testenv.
func NewTemplate() (*Template, error) {
	for _, p := range []string{"swtpm", "swtpm_setup", "swtpm_localca"} {
		if _, err := exec.LookPath(p); err != nil {
			return nil, fmt.Errorf("template tpm: %w", err)
		}
	}
	v, err := sim.NewVendor()
	if err != nil {
		return nil, fmt.Errorf("template tpm: %w", err)
	}
	dir, err := os.MkdirTemp("", "wsc-tpm-template-")
	if err != nil {
		_ = v.Close()
		return nil, fmt.Errorf("template tpm: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := v.Manufacture(context.Background(), dir); err != nil {
		_ = v.Close()
		return nil, fmt.Errorf("template tpm: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "tpm2-00.permall"))
	if err != nil {
		_ = v.Close()
		return nil, fmt.Errorf("template tpm: %w", err)
	}
	return &Template{Vendor: v, permall: b}, nil
}

// Close removes the vendor's folder.
func (tp *Template) Close() error {
	if tp == nil {
		return nil
	}
	return tp.Vendor.Close()
}

// WriteState writes the template's TPM state into dir, for a test that
// serves it itself (over TCP, for instance).
func (tp *Template) WriteState(dir string) error {
	if tp == nil {
		return errors.New("the template TPM was not made (see the TestMain output); run scripts/deps (as root) to install swtpm")
	}
	return os.WriteFile(filepath.Join(dir, "tpm2-00.permall"), tp.permall, 0o600)
}

// Start serves a copy of the template TPM for tb. tp may be nil (TestMain
// could not make it): Start then skips under -short or fails with an
// instruction, as testenv does.
func (tp *Template) Start(tb testing.TB) *sim.SWTPM {
	tb.Helper()
	testenv.NeedTools(tb, "swtpm", "swtpm_setup", "swtpm_localca")
	if tp == nil {
		tb.Fatal("the template TPM was not made (see the TestMain output); run scripts/deps (as root) to install swtpm")
	}
	dir := stateDir(tb)
	if err := tp.WriteState(dir); err != nil {
		tb.Fatal(err)
	}
	return serve(tb, dir)
}

// Blank serves a TPM that was never manufactured (no EK certificates),
// for tests that need only a TPM.
func Blank(tb testing.TB) *sim.SWTPM {
	tb.Helper()
	testenv.NeedTools(tb, "swtpm")
	return serve(tb, stateDir(tb))
}

// stateDir is a fresh folder with a short path (unix socket paths are
// limited to about 108 bytes; t.TempDir can be longer).
func stateDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "wsc-swtpm-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// serve starts swtpm on the state in dir. tpm2-tools' swtpm TCTI
// ("swtpm:path=SOCKET") looks for the control channel at SOCKET.ctrl: a
// link to ctrl.sock is made there so that an independent client can check
// what the code under test wrote.
func serve(tb testing.TB, dir string) *sim.SWTPM {
	tb.Helper()
	sw, err := sim.StartSWTPM(context.Background(), dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sw.Close() })
	if err := os.Symlink(filepath.Join(dir, "ctrl.sock"), sw.Socket+".ctrl"); err != nil {
		tb.Fatal(err)
	}
	return sw
}

// TCTI returns the tpm2-tools TCTI string of sw ("swtpm:path=…").
func TCTI(sw *sim.SWTPM) string { return "swtpm:path=" + sw.Socket }

// SoftHSMToken initialises a SoftHSM2 token labelled label with user PIN
// pin in a private token folder, points SOFTHSM2_CONF at it for tb (so tb
// must not be parallel) and returns the path of a file holding the PIN,
// for a URI's pin-source. A PKCS#11 module reads SOFTHSM2_CONF when it is
// first initialised in a process: the tokens of one test binary should
// therefore be made before the module is first loaded, or share a folder.
func SoftHSMToken(tb testing.TB, label, pin string) (pinFile string) {
	tb.Helper()
	testenv.NeedTools(tb, "softhsm2-util")
	testenv.NeedFile(tb, SoftHSMModule, "the SoftHSM2 PKCS#11 module (package softhsm2)")
	dir := tb.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		tb.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	tb.Setenv("SOFTHSM2_CONF", conf)
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", "5791-so", "--pin", pin).CombinedOutput()
	if err != nil {
		tb.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	pinFile = filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return pinFile
}
