package pkcs11

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte("4321\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := ParseURI("pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=wsc%20line?pin-source=file:" + pinFile)
	if err != nil {
		t.Fatal(err)
	}
	if u.ModulePath != "/usr/lib/softhsm/libsofthsm2.so" || u.Token != "wsc line" || u.Object != DefaultObject {
		t.Fatalf("%+v", u)
	}
	if pin, err := u.PIN(); err != nil || pin != "4321" {
		t.Fatalf("PIN %q %v", pin, err)
	}
	u2, err := ParseURI("pkcs11:token=t;object=k1?module-path=/m.so&pin-value=1234")
	if err != nil {
		t.Fatal(err)
	}
	if pin, _ := u2.PIN(); pin != "1234" || u2.Object != "k1" {
		t.Fatal("pin-value / object")
	}
	if s := u2.String(); strings.Contains(s, "1234") || !strings.Contains(s, "REDACTED") {
		t.Fatalf("String leaks the PIN: %s", s)
	}
	for _, bad := range []string{"file:x", "pkcs11:token=t", "pkcs11:module-path=/m.so", "pkcs11:module-path=/m.so;token=t;bogus=1", "pkcs11:module-path=/m.so;token=%zz"} {
		if _, err := ParseURI(bad); err == nil {
			t.Fatalf("ParseURI(%q) accepted", bad)
		}
	}
	// A malformed URI is refused without repeating it: it may carry a PIN.
	if _, err := ParseURI("pkcs11:module-path=/m.so;token=%zz?pin-value=8642-secret"); err == nil || strings.Contains(err.Error(), "8642-secret") {
		t.Fatalf("malformed URI with a PIN: %v", err)
	}
	u3, err := ParseURI("pkcs11:token=t;id=%a1%00%ff;serial=S%3B1?module-path=/usr/lib/x%20y.so")
	if err != nil {
		t.Fatal(err)
	}
	if string(u3.ID) != "\xa1\x00\xff" || u3.Serial != "S;1" || u3.ModulePath != "/usr/lib/x y.so" {
		t.Fatalf("percent-decoding: %+v", u3)
	}
	if _, err := (&URI{}).PIN(); err == nil {
		t.Fatal("PIN without source")
	}
}
