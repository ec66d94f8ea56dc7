package ca

import (
	"bytes"
	"context"
	"errors"
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProfileValidity: a device validity the intermediate cannot cover is
// refused when the CA opens (never capped); until-issuer-expiry ends with
// the intermediate; notAfter 99991231235959Z is encoded as that
// GeneralizedTime and verifies.
func TestProfileValidity(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, testPass, InitOptions{IntermediateValidity: 5 * 365 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	long, err := ParseProfileYAML([]byte("name: long\nvalidity: 15y\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, testPass, WithProfile(long)); !errors.Is(err, ErrValidity) || !strings.Contains(err.Error(), "until-issuer-expiry") {
		t.Fatalf("15y profile under a 5y intermediate: %v", err)
	}
	until, err := ParseProfileYAML([]byte("name: until\nvalidity: until-issuer-expiry\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(dir, testPass, WithProfile(until))
	if err != nil {
		t.Fatal(err)
	}
	chain, err := c.Issue(context.Background(), makeCSR(t, p256(t), "x"), IssueRequest{DeviceSerial: "V-1"})
	if err != nil {
		t.Fatal(err)
	}
	if !chain[0].NotAfter.Equal(c.Issuer().NotAfter) {
		t.Errorf("until-issuer-expiry: %s, issuer %s", chain[0].NotAfter, c.Issuer().NotAfter)
	}
	// A request asking beyond the issuer is refused, not shortened.
	if _, err := c.Issue(context.Background(), makeCSR(t, p256(t), "x"), IssueRequest{DeviceSerial: "V-2", Validity: 6 * 365 * 24 * time.Hour}); !errors.Is(err, ErrValidity) {
		t.Errorf("6y request under a 5y intermediate: %v", err)
	}
	c.Close()

	forever, err := ParseProfileYAML([]byte("name: devid\nnotAfter: 99991231235959Z\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, err = Open(dir, testPass, WithProfile(forever))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	chain, err = c.Issue(context.Background(), makeCSR(t, p256(t), "x"), IssueRequest{DeviceSerial: "V-3"})
	if err != nil {
		t.Fatal(err)
	}
	if chain[0].NotAfter.Year() != 9999 || !bytes.Contains(chain[0].RawTBSCertificate, []byte("99991231235959Z")) {
		t.Errorf("802.1AR notAfter: %s", chain[0].NotAfter)
	}
	tmp := t.TempDir()
	if out, err := opensslVerify(t, tmp, c.Roots(), c.Intermediates(), chain[0]); err != nil {
		t.Errorf("openssl verify of a 99991231235959Z leaf: %v %s", err, out)
	}
	for _, bad := range []string{"name: b\nnotAfter: 20991231235959Z\n", "name: b\nnotAfter: 99991231235959Z\nvalidity: 1y\n", "name: b\n"} {
		if _, err := ParseProfileYAML([]byte(bad)); !errors.Is(err, ErrProfile) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestInspect(t *testing.T) {
	testenv.NeedTools(t, "openssl")
	c, dir := newTestCA(t, WithRevocationStore(newMemRevocations()))
	defer c.Close()
	crl, err := c.CRL(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	csr := makeCSR(t, p256(t), "evil\x1b[2Jname")
	for name, raw := range map[string][]byte{
		"certificate": certsPEM(c.Issuer()),
		"crl":         crlPEM(crl),
		"csr":         pemBytes("CERTIFICATE REQUEST", csr),
		"csr-der":     csr,
	} {
		items, err := Inspect(raw)
		if err != nil || len(items) != 1 {
			t.Fatalf("%s: %v", name, err)
		}
		s := items[0].String()
		if !strings.Contains(s, "SHA-256") || strings.ContainsRune(s, 0x1b) {
			t.Errorf("%s: %q", name, s)
		}
	}
	items, _ := Inspect(certsPEM(c.Roots()[0]))
	if items[0].SHA256 != Fingerprint(c.Roots()[0].Raw) || !items[0].SelfSigned {
		t.Errorf("root: %+v", items[0])
	}
	if _, err := Inspect([]byte("hello")); !errors.Is(err, ErrInspect) {
		t.Errorf("garbage: %v", err)
	}
	// The fingerprint matches openssl's.
	p := filepath.Join(dir, "root-fp.pem")
	os.WriteFile(p, certsPEM(c.Roots()[0]), 0o644)
	out, err := exec.Command("openssl", "x509", "-in", p, "-noout", "-fingerprint", "-sha256").CombinedOutput()
	if err != nil || !strings.Contains(string(out), Fingerprint(c.Roots()[0].Raw)) {
		t.Errorf("openssl fingerprint %s vs %s", out, Fingerprint(c.Roots()[0].Raw))
	}
}
