package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Vendor is the simulated TPM manufacturer: a swtpm local CA that signs the
// EK certificate of every simulated TPM of a workspace. Its certificates are
// what the station is configured to trust as "TPM vendor roots".
type Vendor struct {
	// Dir holds the CA's certificates (and, until Seal, its keys).
	Dir string
	// RootCert and IssuerCert are the PEM files of the vendor root and of the
	// issuing CA that signed the EK certificates.
	RootCert, IssuerCert string
}

// NewVendor prepares a swtpm local CA in a private temporary folder and
// copies nothing yet: the CA is created by swtpm_localca on the first EK
// certificate. Call Publish to copy the vendor certificates to a workspace
// and Close to remove the CA's private keys.
func NewVendor() (*Vendor, error) {
	dir, err := os.MkdirTemp("", "wsc-tpm-vendor-")
	if err != nil {
		return nil, fmt.Errorf("tpm vendor folder: %w", err)
	}
	v := &Vendor{
		Dir:        dir,
		RootCert:   filepath.Join(dir, "swtpm-localca-rootca-cert.pem"),
		IssuerCert: filepath.Join(dir, "issuercert.pem"),
	}
	localca := fmt.Sprintf("statedir = %[1]s\nsigningkey = %[1]s/signkey.pem\nissuercert = %[1]s/issuercert.pem\ncertserial = %[1]s/certserial\n", dir)
	setup := fmt.Sprintf("create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = %[1]s/localca.conf\ncreate_certs_tool_options = /etc/swtpm-localca.options\nactive_pcr_banks = sha256\n", dir)
	if err := os.WriteFile(filepath.Join(dir, "localca.conf"), []byte(localca), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "setup.conf"), []byte(setup), 0o600); err != nil {
		return nil, err
	}
	return v, nil
}

// Manufacture runs swtpm_setup for a new TPM whose state lives in stateDir:
// it creates the endorsement keys (RSA-2048 and ECC) and their certificates
// signed by the vendor CA, and a platform certificate.
func (v *Vendor) Manufacture(ctx context.Context, stateDir string) error {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("tpm state folder: %w", err)
	}
	cmd := exec.CommandContext(ctx, "swtpm_setup", "--tpm2", "--tpmstate", stateDir,
		"--config", filepath.Join(v.Dir, "setup.conf"),
		"--create-ek-cert", "--create-platform-cert", "--overwrite")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("swtpm_setup in %s: %w: %s", stateDir, err, lastLines(string(out), 3))
	}
	return nil
}

// Publish copies the vendor's certificates (never its keys) into dir and
// returns the paths of the root and issuer certificates there.
func (v *Vendor) Publish(dir string) (root, issuer string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	root, issuer = filepath.Join(dir, "tpm-vendor-root.pem"), filepath.Join(dir, "tpm-vendor-issuer.pem")
	for src, dst := range map[string]string{v.RootCert: root, v.IssuerCert: issuer} {
		b, err := os.ReadFile(src)
		if err != nil {
			return "", "", fmt.Errorf("tpm vendor certificate: %w", err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return "", "", err
		}
	}
	return root, issuer, nil
}

// Close removes the vendor CA folder with its private keys. A real TPM
// vendor's keys never reach the factory either.
func (v *Vendor) Close() error { return os.RemoveAll(v.Dir) }

// SWTPM is a running swtpm process serving one simulated TPM on a unix socket.
type SWTPM struct {
	// Socket is the path of the TPM command socket.
	Socket string
	proc   *process
}

// URI returns the agent's --tpm argument for this TPM.
func (s *SWTPM) URI() string { return "swtpm:unix://" + s.Socket }

// StartSWTPM serves the TPM state in stateDir on a unix socket in that
// folder and waits until it accepts connections. The process dies with its
// parent (PR_SET_PDEATHSIG) so that a killed station leaves no swtpm behind.
func StartSWTPM(ctx context.Context, stateDir string) (*SWTPM, error) {
	sock := filepath.Join(stateDir, "tpm.sock")
	ctrl := filepath.Join(stateDir, "ctrl.sock")
	_ = os.Remove(sock)
	_ = os.Remove(ctrl)
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+stateDir,
		"--server", "type=unixio,path="+sock,
		"--ctrl", "type=unixio,path="+ctrl,
		"--flags", "not-need-init,startup-clear")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	proc, err := startProcess(cmd)
	if err != nil {
		return nil, fmt.Errorf("start swtpm: %w", err)
	}
	s := &SWTPM{Socket: sock, proc: proc}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			_ = c.Close()
			return s, nil
		}
		select {
		case <-proc.done:
			return nil, fmt.Errorf("swtpm exited before serving: %v: %s", proc.err, lastLines(stderr.String(), 3))
		case <-ctx.Done():
			_ = s.Close()
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.Close()
			return nil, errors.New("swtpm did not open its socket within 10 s")
		}
	}
}

// Close stops swtpm (SIGTERM, then SIGKILL after 2 s) and waits for it.
func (s *SWTPM) Close() error { return s.proc.stop() }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
