package ca

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/wsc-project/wsc/devices/sim/testenv"
)

// rawTPM is the raw swtpm transport: command bytes out, 10-byte header in,
// then the rest of the response.
type rawTPM struct {
	mu   sync.Mutex
	conn net.Conn
}

func (r *rawTPM) Send(cmd []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 0; ; i++ {
		rsp, err := r.send(cmd)
		if err != nil || i == 50 {
			return rsp, err
		}
		switch binary.BigEndian.Uint32(rsp[6:10]) {
		case 0x922, 0x908, 0x90a: // TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING
			time.Sleep(time.Millisecond)
			continue
		}
		return rsp, nil
	}
}

func (r *rawTPM) send(cmd []byte) ([]byte, error) {
	if _, err := r.conn.Write(cmd); err != nil {
		return nil, err
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(r.conn, hdr); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > 1<<20 {
		return nil, fmt.Errorf("bad response size %d", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(r.conn, rsp[10:]); err != nil {
		return nil, err
	}
	return rsp, nil
}

var _ transport.TPM = (*rawTPM)(nil)

// vendorCA is a swtpm_localca folder shared by simulated TPMs.
type vendorCA struct {
	dir string
}

func newVendorCA(t testing.TB) *vendorCA {
	t.Helper()
	testenv.NeedTools(t, "swtpm", "swtpm_setup", "swtpm_localca")
	v := t.TempDir()
	conf := fmt.Sprintf("statedir = %s\nsigningkey = %s/signkey.pem\nissuercert = %s/issuercert.pem\ncertserial = %s/certserial\n", v, v, v, v)
	if err := os.WriteFile(filepath.Join(v, "localca.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	setup := fmt.Sprintf("create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = %s/localca.conf\ncreate_certs_tool_options = /etc/swtpm-localca.options\nactive_pcr_banks = sha256\n", v)
	if err := os.WriteFile(filepath.Join(v, "setup.conf"), []byte(setup), 0o600); err != nil {
		t.Fatal(err)
	}
	return &vendorCA{dir: v}
}

// startSwtpm manufactures a TPM with EK certificates from vendor v and serves it.
func startSwtpm(t testing.TB, v *vendorCA) transport.TPM {
	t.Helper()
	// Unix socket paths are limited to ~108 bytes; t.TempDir can be long.
	s, err := os.MkdirTemp("", "wsc-swtpm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(s) })
	out, err := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", s, "--config", filepath.Join(v.dir, "setup.conf"),
		"--create-ek-cert", "--create-platform-cert", "--overwrite").CombinedOutput()
	if err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	sock := filepath.Join(s, "tpm.sock")
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+s,
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+filepath.Join(s, "ctrl.sock"),
		"--flags", "not-need-init,startup-clear")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("swtpm: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("swtpm stderr:\n%s", stderr.String())
		}
	})
	var conn net.Conn
	for i := 0; i < 200; i++ {
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("connect swtpm: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawTPM{conn: conn}
}

func (v *vendorCA) roots(t testing.TB) []byte {
	b, err := os.ReadFile(filepath.Join(v.dir, "swtpm-localca-rootca-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (v *vendorCA) intermediate(t testing.TB) []byte {
	b, err := os.ReadFile(filepath.Join(v.dir, "issuercert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nvReadAll reads a whole NV index in chunks.
func nvReadAll(t testing.TB, tpm transport.TPM, index uint32) []byte {
	t.Helper()
	rp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(index)}.Execute(tpm)
	if err != nil {
		t.Fatalf("NVReadPublic %#x: %v", index, err)
	}
	pub, err := rp.NVPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for off := 0; off < int(pub.DataSize); {
		n := min(1024, int(pub.DataSize)-off)
		r, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: rp.NVName},
			Size:       uint16(n),
			Offset:     uint16(off),
		}.Execute(tpm)
		if err != nil {
			t.Fatalf("NVRead %#x: %v", index, err)
		}
		out = append(out, r.Data.Buffer...)
		off += n
	}
	return out
}
