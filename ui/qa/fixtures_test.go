package qa

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wsc-project/wsc/wasmsign"
)

// qaFixture is a real throwaway PKI (root → device leaves with the
// code-signing profile) and a folder of modules signed with it by
// wasmsign: two valid, one tampered after signing, one unsigned and one
// that is not WebAssembly. Serial numbers are fixed so that the views are
// the same on every run; signatures differ but are never shown.
type qaFixture struct {
	dir    string
	policy *wasmsign.TrustPolicy
}

func newQAFixture(t *testing.T) qaFixture {
	t.Helper()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	root := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wsc test root"},
		NotBefore: t0.Add(-24 * time.Hour), NotAfter: t0.Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, root, root, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	rootCert, err := x509.ParseCertificate(rootDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, device string) (*ecdsa.PrivateKey, []*x509.Certificate) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "device " + device, SerialNumber: device},
			NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(30 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, rootCert, &key.PublicKey, rootKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return key, []*x509.Certificate{c}
	}
	// A small valid module: header and one custom section.
	module := append([]byte("\x00asm\x01\x00\x00\x00\x00\x0b\x04note"), "v1.2.3"...)
	sign := func(serial int64, device string) []byte {
		key, chain := leaf(serial, device)
		out, err := wasmsign.Sign(module, key, chain, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	dir := t.TempDir()
	files := map[string][]byte{
		"line-a/fw-0001.wasm": sign(0x5f3a01, "TPM-00A1B2C3D4E5F601"),
		"line-a/fw-0002.wasm": sign(0x5f3a02, "TPM-00A1B2C3D4E5F602"),
		"line-b/fw-0003.wasm": sign(0x5f3a03, "TPM-00A1B2C3D4E5F603"),
		"line-b/fw-0004.wasm": module,
		"line-b/readme.wasm":  []byte("this is not a module\n"),
	}
	tampered := files["line-b/fw-0003.wasm"]
	tampered[len(tampered)-1] ^= 0x01 // v1.2.3 → v1.2.2: the signed hash no longer matches
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The root's CRL: verification requires a fresh CRL of every CA on the
	// path.
	crlDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(7 * 24 * time.Hour)}, rootCert, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(crlDER)
	if err != nil {
		t.Fatal(err)
	}
	return qaFixture{dir: dir, policy: &wasmsign.TrustPolicy{Roots: []*x509.Certificate{rootCert},
		CRLs: []*x509.RevocationList{crl}, At: t0, AtExplicit: true}}
}

// runner is the real verifier with the fixture's policy, one worker so
// that results come in file order.
func (f qaFixture) runner() Runner { return PolicyRunner(f.policy, 1) }

// gatedRunner wraps the real verifier and holds it after `at` modules until
// release is closed: the running view can then be looked at mid-run.
type gatedRunner struct {
	inner   Runner
	at      int
	release chan struct{}
	once    sync.Once
}

func (g *gatedRunner) Verify(ctx context.Context, files []string, each func(int, wasmsign.Result)) error {
	n := 0
	return g.inner.Verify(ctx, files, func(i int, r wasmsign.Result) {
		each(i, r)
		n++
		if n == g.at {
			select {
			case <-g.release:
			case <-ctx.Done():
			}
		}
	})
}

func (g *gatedRunner) Release() { g.once.Do(func() { close(g.release) }) }
