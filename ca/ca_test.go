package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsc-project/wsc/devices/sim/testenv"
)

var testPass = []byte("correct horse battery staple 42!")

func newTestCA(t testing.TB, opts ...Option) (*CA, string) {
	t.Helper()
	dir := t.TempDir()
	if err := Init(dir, testPass, InitOptions{Organization: "wsc test"}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	c, err := Open(dir, testPass, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return c, dir
}

func makeCSR(t testing.TB, key crypto.Signer, cn string, dns ...string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: cn, Organization: []string{"evil corp"}},
		DNSNames: dns,
		ExtraExtensions: []pkix.Extension{{
			Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: []byte{0x30, 0x03, 0x01, 0x01, 0xff}, // CA:TRUE request
		}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func p256(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t testing.TB, path string, certs ...*x509.Certificate) {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func opensslVerify(t testing.TB, dir string, roots, untrusted []*x509.Certificate, leaf *x509.Certificate, extra ...string) (string, error) {
	t.Helper()
	testenv.NeedTools(t, "openssl")
	rp := filepath.Join(dir, "ov-roots.pem")
	up := filepath.Join(dir, "ov-untrusted.pem")
	lp := filepath.Join(dir, "ov-leaf.pem")
	writePEM(t, rp, roots...)
	writePEM(t, lp, leaf)
	args := []string{"verify", "-x509_strict", "-CAfile", rp}
	if len(untrusted) > 0 {
		writePEM(t, up, untrusted...)
		args = append(args, "-untrusted", up)
	}
	args = append(args, extra...)
	args = append(args, lp)
	out, err := exec.Command("openssl", args...).CombinedOutput()
	return string(out), err
}

func TestInitFiles(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, testPass, InitOptions{PermittedDNSDomains: []string{"line1.example"}}); err != nil {
		t.Fatal(err)
	}
	if err := Init(dir, testPass, InitOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Init: got %v, want ErrExists", err)
	}
	if err := Init(t.TempDir(), nil, InitOptions{}); !errors.Is(err, ErrEmptyPassphrase) {
		t.Fatalf("empty passphrase: %v", err)
	}
	roots, err := readCerts(filepath.Join(dir, RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	inter, err := readCerts(filepath.Join(dir, IntermediateCertFile))
	if err != nil {
		t.Fatal(err)
	}
	root, ic := roots[0], inter[0]
	if !root.IsCA || root.MaxPathLen != -1 || root.MaxPathLenZero {
		t.Errorf("root path length: MaxPathLen=%d zero=%v, want unlimited", root.MaxPathLen, root.MaxPathLenZero)
	}
	if !ic.IsCA || ic.MaxPathLen != 0 || !ic.MaxPathLenZero {
		t.Errorf("intermediate path length: %d/%v, want 0", ic.MaxPathLen, ic.MaxPathLenZero)
	}
	if !ic.PermittedDNSDomainsCritical || len(ic.PermittedDNSDomains) != 1 || ic.PermittedDNSDomains[0] != "line1.example" {
		t.Errorf("name constraints: %v critical=%v", ic.PermittedDNSDomains, ic.PermittedDNSDomainsCritical)
	}
	for _, c := range []*x509.Certificate{root, ic} {
		if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
			t.Errorf("%s: key %T, want P-256", c.Subject.CommonName, c.PublicKey)
		}
	}
	scanNoPlainKeys(t, dir)
	for _, f := range []string{RootKeyFile, IntermediateKeyFile} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if bytes.Contains(b, []byte("Proc-Type")) || bytes.Contains(b, []byte("DEK-Info")) {
			t.Errorf("%s uses legacy PEM encryption", f)
		}
		fi, _ := os.Stat(filepath.Join(dir, f))
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, fi.Mode())
		}
		// openssl must read it as PKCS#8 PBES2 with the passphrase.
		testenv.NeedTools(t, "openssl")
		out, err := exec.Command("openssl", "pkey", "-in", filepath.Join(dir, f), "-passin", "pass:"+string(testPass), "-noout").CombinedOutput()
		if err != nil {
			t.Errorf("openssl pkey %s: %v %s", f, err, out)
		}
	}
}

// scanNoPlainKeys fails if any file under dir holds an unencrypted private key PEM block.
func scanNoPlainKeys(t testing.TB, dir string) {
	t.Helper()
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				break
			}
			if strings.Contains(blk.Type, "PRIVATE KEY") && blk.Type != "ENCRYPTED PRIVATE KEY" {
				t.Errorf("%s holds an unencrypted %q block", path, blk.Type)
			}
			if _, ok := blk.Headers["DEK-Info"]; ok {
				t.Errorf("%s holds a legacy-encrypted block", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenWrongPassphrase(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, testPass, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	wrong := []byte("hunter2-wrong-passphrase")
	_, err := Open(dir, wrong)
	if !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("got %v, want ErrBadPassphrase", err)
	}
	if strings.Contains(err.Error(), string(wrong)) || strings.Contains(err.Error(), string(testPass)) {
		t.Fatalf("error leaks passphrase: %v", err)
	}
}

func TestIssue(t *testing.T) {
	c, dir := newTestCA(t)
	key := p256(t)
	csr := makeCSR(t, key, "attacker.example.com", "attacker.example.com")
	chain, err := c.Issue(context.Background(), csr, IssueRequest{
		DeviceSerial: "TPM-0123456789ABCDEF", Proof: ProofTPM,
		Names:    []string{"tpm-0123456789abcdef.devices.wsc.local"},
		Validity: 24 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 {
		t.Fatalf("chain length %d, want 2", len(chain))
	}
	leaf := chain[0]
	if !bytes.Equal(chain[1].Raw, c.Issuer().Raw) {
		t.Error("chain[1] is not the intermediate")
	}
	if leaf.Subject.SerialNumber != "TPM-0123456789ABCDEF" || leaf.Subject.CommonName != "TPM-0123456789ABCDEF" {
		t.Errorf("subject %v", leaf.Subject)
	}
	if len(leaf.Subject.Organization) != 0 {
		t.Errorf("organization copied from CSR: %v", leaf.Subject.Organization)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "tpm-0123456789abcdef.devices.wsc.local" {
		t.Errorf("DNS names %v (CSR names must not be copied)", leaf.DNSNames)
	}
	if leaf.IsCA {
		t.Error("leaf is CA: CSR extension copied")
	}
	if !leaf.NotAfter.After(leaf.NotBefore) || leaf.NotAfter.Sub(leaf.NotBefore) != 24*time.Hour+Backdate {
		t.Errorf("validity %v .. %v", leaf.NotBefore, leaf.NotAfter)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("key usage %v", leaf.KeyUsage)
	}
	if len(leaf.ExtKeyUsage) != 2 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageCodeSigning || leaf.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("EKU %v", leaf.ExtKeyUsage)
	}
	if len(leaf.SubjectKeyId) == 0 || !bytes.Equal(leaf.AuthorityKeyId, c.Issuer().SubjectKeyId) {
		t.Error("AKI/SKI missing or wrong")
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		t.Error("public key differs from CSR")
	}
	hw, err := HardwareModuleNames(leaf)
	if err != nil || len(hw) != 1 || !hw[0].Type.Equal(OIDTPM20HWType) || string(hw[0].Serial) != "TPM-0123456789ABCDEF" {
		t.Errorf("HardwareModuleName %+v %v", hw, err)
	}
	if p := CertificateProof(leaf, nil); p != ProofTPM {
		t.Errorf("certificate policy says proof %q, want tpm (policies %v)", p, leaf.Policies)
	}
	// crypto/x509 with code signing usage.
	roots := x509.NewCertPool()
	roots.AddCert(c.Roots()[0])
	inter := x509.NewCertPool()
	inter.AddCert(chain[1])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err != nil {
		t.Errorf("x509 verify: %v", err)
	}
	if out, err := opensslVerify(t, dir, c.Roots(), chain[1:], leaf, "-purpose", "sslclient"); err != nil {
		t.Errorf("openssl verify: %v\n%s", err, out)
	}
	// openssl parses the otherName.
	writePEM(t, filepath.Join(dir, "leaf.pem"), leaf)
	out, err := exec.Command("openssl", "x509", "-in", filepath.Join(dir, "leaf.pem"), "-noout", "-ext", "subjectAltName").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "othername") {
		t.Errorf("openssl SAN: %v %s", err, out)
	}
}

func TestIssueRefusals(t *testing.T) {
	c, _ := newTestCA(t)
	defer func() {
		c.Close()
		if _, err := c.Issue(context.Background(), makeCSR(t, p256(t), "x"), IssueRequest{DeviceSerial: "SN1"}); !errors.Is(err, ErrNotOpen) {
			t.Errorf("after Close: %v", err)
		}
	}()
	ctx := context.Background()
	good := makeCSR(t, p256(t), "x")
	req := IssueRequest{DeviceSerial: "SN1", Validity: time.Hour}

	bad := append([]byte(nil), good...)
	bad[len(bad)-5] ^= 0x55 // inside the signature
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1k, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)

	tests := []struct {
		name    string
		csr     []byte
		req     IssueRequest
		wantErr error
	}{
		{"garbage", []byte{1, 2, 3}, req, ErrCSRInvalid},
		{"bad signature", bad, req, ErrCSRSignature},
		{"P-224", makeCSR(t, p224, "x"), req, ErrCSRKeyType},
		{"RSA-1024", makeCSR(t, rsa1k, "x"), req, ErrCSRKeyType},
		{"no serial", good, IssueRequest{Validity: time.Hour}, ErrIssueRequest},
		{"bad dns", good, IssueRequest{DeviceSerial: "SN1", Names: []string{"a b"}}, ErrIssueRequest},
		{"outside name constraints", good, IssueRequest{DeviceSerial: "SN1", Names: []string{"evil.example.com"}}, ErrNameNotPermitted},
		{"suffix trick", good, IssueRequest{DeviceSerial: "SN1", Names: []string{"xdevices.wsc.local"}}, ErrNameNotPermitted},
		{"P-384 ok", makeCSR(t, p384, "x"), req, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Issue(ctx, tt.csr, tt.req)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestSecretsNotPrinted(t *testing.T) {
	c, dir := newTestCA(t)
	for _, s := range []string{c.String(), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
		if strings.Contains(s, string(testPass)) || strings.Contains(s, "PRIVATE") || strings.Contains(s, "D:") {
			t.Errorf("CA string leaks: %s", s)
		}
	}
	// Errors around passphrase handling never echo it.
	pf := filepath.Join(dir, "pass.txt")
	os.WriteFile(pf, append(testPass, '\n'), 0o600)
	p, err := ReadPassphrase("file:" + pf)
	if err != nil || !bytes.Equal(p, testPass) {
		t.Fatalf("file: %q %v", p, err)
	}
	t.Setenv("WSC_TEST_PASS", string(testPass))
	p, err = ReadPassphrase("env:WSC_TEST_PASS")
	if err != nil || !bytes.Equal(p, testPass) {
		t.Fatalf("env: %q %v", p, err)
	}
	testReadPassphraseFD(t)
	for _, src := range []string{string(testPass), "pass:" + string(testPass), "env:WSC_UNSET_VAR_X", "fd:x"} {
		_, err := ReadPassphrase(src)
		if err == nil {
			t.Errorf("%q accepted", src)
			continue
		}
		if strings.Contains(err.Error(), string(testPass)) {
			t.Errorf("error leaks passphrase: %v", err)
		}
	}
}
