package simtest

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/wsc-project/wsc/devices/sim"
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"github.com/wsc-project/wsc/devices/tpm"
)

// ekName reads the Name of the RSA EK that swtpm_setup persists at
// 0x81010001 (an error when the TPM was never manufactured).
func ekName(t *testing.T, sw *sim.SWTPM) ([]byte, error) {
	t.Helper()
	tr, err := tpm.OpenTransport(sw.URI())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	rp, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(0x81010001)}.Execute(tr)
	if err != nil {
		return nil, err
	}
	return rp.Name.Buffer, nil
}

// TestTemplate: two instances of one template are the same TPM (same EK)
// in different folders, reachable by tpm2-tools through TCTI; a blank TPM
// has no EK.
func TestTemplate(t *testing.T) {
	testenv.NeedTools(t, "swtpm", "swtpm_setup", "swtpm_localca", "tpm2_getcap")
	tp, err := NewTemplate()
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	a, b := tp.Start(t), tp.Start(t)
	if a.Socket == b.Socket {
		t.Fatal("two instances share a socket")
	}
	na, err := ekName(t, a)
	if err != nil {
		t.Fatal(err)
	}
	nb, err := ekName(t, b)
	if err != nil || !bytes.Equal(na, nb) {
		t.Fatalf("instances differ: %x %x %v", na, nb, err)
	}
	out, err := exec.Command("tpm2_getcap", "-T", TCTI(a), "handles-persistent").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "0x81010001") {
		t.Fatalf("tpm2_getcap through %s: %v\n%s", TCTI(a), err, out)
	}
	if _, err := ekName(t, Blank(t)); err == nil {
		t.Fatal("a blank TPM has an EK")
	}
	for _, f := range []string{tp.Vendor.RootCert, tp.Vendor.IssuerCert} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("vendor certificate: %v", err)
		}
	}
}

// TestSoftHSMToken: the token exists in the private folder and the PIN
// file holds the PIN.
func TestSoftHSMToken(t *testing.T) {
	pinFile := SoftHSMToken(t, "wsc-simtest", "2468")
	out, err := exec.Command("softhsm2-util", "--show-slots").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "wsc-simtest") {
		t.Fatalf("softhsm2-util --show-slots: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(pinFile); err != nil || string(b) != "2468\n" {
		t.Fatalf("pin file %q %v", b, err)
	}
}
