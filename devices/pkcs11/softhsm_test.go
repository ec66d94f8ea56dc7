//go:build cgo && pkcs11

package pkcs11

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// SoftHSMModule is Debian's SoftHSM2 PKCS#11 module.
const softHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// newSoftHSM initialises a fresh SoftHSM2 token labelled "wsc" in a
// temporary token directory (SOFTHSM2_CONF points at it for this test) and
// returns its URI with the user PIN in a pin-source file.
func newSoftHSM(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", "wsc", "--pin", "1234", "--so-pin", "5678").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	pin := filepath.Join(dir, "pin")
	if err := os.WriteFile(pin, []byte("1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return "pkcs11:module-path=" + softHSMModule + ";token=wsc?pin-source=file:" + pin
}
