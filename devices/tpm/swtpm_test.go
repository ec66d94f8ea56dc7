package tpm

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/wsc-project/wsc/devices/sim/testenv"
)

// The swtpm state is manufactured once per test binary (swtpm_setup with a
// private local CA, about 1 s) and copied for every swtpm instance: each
// instance is then the same TPM (same EKs and certificates) in its own
// state directory.
var swtpmTemplate struct {
	vendorDir string // local CA: swtpm-localca-rootca-cert.pem, issuercert.pem
	permall   []byte // tpm2-00.permall after manufacturing
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// The quick suite: tests that need swtpm skip in startSWTPM.
		os.Exit(m.Run())
	}
	root, err := os.MkdirTemp("", "wsctpm")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tempdir:", err)
		os.Exit(1)
	}
	if err := manufactureSWTPM(root); err != nil {
		fmt.Fprintln(os.Stderr, "swtpm_setup (install swtpm and swtpm-tools):", err)
		os.RemoveAll(root)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(root)
	os.Exit(code)
}

func manufactureSWTPM(root string) error {
	v := filepath.Join(root, "vendor")
	s := filepath.Join(root, "state")
	for _, d := range []string{v, s} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	localca := fmt.Sprintf("statedir = %s\nsigningkey = %s/signkey.pem\nissuercert = %s/issuercert.pem\ncertserial = %s/certserial\n", v, v, v, v)
	setup := fmt.Sprintf("create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = %s/localca.conf\ncreate_certs_tool_options = /etc/swtpm-localca.options\nactive_pcr_banks = sha256\n", v)
	if err := os.WriteFile(filepath.Join(v, "localca.conf"), []byte(localca), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(v, "setup.conf"), []byte(setup), 0o600); err != nil {
		return err
	}
	cmd := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", s, "--config", filepath.Join(v, "setup.conf"),
		"--create-ek-cert", "--create-platform-cert", "--overwrite")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w\n%s", err, out.String())
	}
	b, err := os.ReadFile(filepath.Join(s, "tpm2-00.permall"))
	if err != nil {
		return err
	}
	swtpmTemplate.vendorDir = v
	swtpmTemplate.permall = b
	return nil
}

// swtpmInstance is one running swtpm process.
type swtpmInstance struct {
	dir  string
	sock string
	cmd  *exec.Cmd
}

// startSWTPM runs a fresh swtpm (copy of the manufactured state) on a unix
// socket; it is killed when the test ends.
func startSWTPM(tb testing.TB) *swtpmInstance {
	tb.Helper()
	testenv.NeedTools(tb, "swtpm", "swtpm_setup")
	// Short path: unix socket paths are limited to ~108 bytes.
	dir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "tpm2-00.permall"), swtpmTemplate.permall, 0o600); err != nil {
		tb.Fatal(err)
	}
	sock := filepath.Join(dir, "tpm.sock")
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"),
		"--flags", "not-need-init,startup-clear")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start swtpm: %v", err)
	}
	inst := &swtpmInstance{dir: dir, sock: sock, cmd: cmd}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("swtpm did not listen on %s: %v\n%s", sock, err, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return inst
}

// open connects a new client (swtpm serves one at a time).
func (s *swtpmInstance) open(tb testing.TB) transport.TPMCloser {
	tb.Helper()
	var t transport.TPMCloser
	var err error
	// swtpm accepts the next client only after the previous one has gone.
	for range 100 {
		t, err = OpenTransport("swtpm:unix://" + s.sock)
		if err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("open swtpm: %v", err)
	}
	tb.Cleanup(func() { t.Close() })
	return t
}

// newDevice starts swtpm and returns a Device on it.
func newDevice(tb testing.TB, cfg Config) (*Device, *swtpmInstance) {
	tb.Helper()
	s := startSWTPM(tb)
	d, err := New(s.open(tb), cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { d.Close() })
	return d, s
}
