package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsc-project/wsc/devices/agent"
	"github.com/wsc-project/wsc/devices/anchors"
	"github.com/wsc-project/wsc/devices/sim/simtest"
	"github.com/wsc-project/wsc/devices/tpm"
	"github.com/wsc-project/wsc/wasmsign"
)

var answerWasm = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f,
	0x03, 0x02, 0x01, 0x00,
	0x07, 0x0a, 0x01, 0x06, 'a', 'n', 's', 'w', 'e', 'r', 0x00, 0x00,
	0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x2a, 0x0b,
}

type releasePKI struct {
	root, leaf *x509.Certificate
	rootKey    *ecdsa.PrivateKey
	leafKey    *ecdsa.PrivateKey
}

func newReleasePKI(t *testing.T) *releasePKI {
	p := &releasePKI{}
	p.rootKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.leafKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "release root"}, NotBefore: now.Add(-time.Hour * 24),
		NotAfter: now.AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, rt, rt, &p.rootKey.PublicKey, p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	p.root, _ = x509.ParseCertificate(der)
	lt := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "release signer"}, NotBefore: now.Add(-time.Hour * 24),
		NotAfter: now.AddDate(1, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	der, err = x509.CreateCertificate(rand.Reader, lt, p.root, &p.leafKey.PublicKey, p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	p.leaf, _ = x509.ParseCertificate(der)
	return p
}

func (p *releasePKI) bundle(t *testing.T, crlNumber int64) []byte {
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: p.root.Raw})
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(crlNumber),
		ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().AddDate(0, 1, 0)}, p.root, p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	_ = pem.Encode(&b, &pem.Block{Type: "X509 CRL", Bytes: der})
	return b.Bytes()
}

func (p *releasePKI) module(t *testing.T, version uint64) []byte {
	m, err := wasmsign.AddManifest(answerWasm, &wasmsign.Manifest{Format: 1, Component: "fw", Version: version, MinVersion: version, DeviceClass: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := wasmsign.Sign(m, p.leafKey, []*x509.Certificate{p.leaf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestFirmwareCLI drives verify, install and commit on swtpm: exit 0 for
// an accepted module, 1 for a refused one (another root, a rollback, a CRL
// below the chip's floor), 2 for usage errors; --json carries the verdict.
func TestFirmwareCLI(t *testing.T) {
	dir := t.TempDir()
	uri := startCLITPM(t)
	good, evil := newReleasePKI(t), newReleasePKI(t)

	// End of line, as the station does it (the agent's backend directly).
	tr, err := tpm.OpenTransport(uri)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := tpm.New(tr, tpm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	be, err := agent.NewTPMBackend(dev, "DEV-9")
	if err != nil {
		t.Fatal(err)
	}
	if err := be.SetOwnerAuth(ctx, bytes.Repeat([]byte{7}, 32)); err != nil {
		t.Fatal(err)
	}
	base, err := be.SetupCounter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := (&anchors.Policy{Version: 1, CounterBase: base, DeviceClass: "gw-1", Roots: []anchors.Fingerprint{anchors.RootFingerprint(good.root)},
		CRLFloors: []anchors.CRLFloor{{Issuer: anchors.IssuerID(good.root.RawSubject), MinNumber: 3}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := be.WriteAnchors(ctx, enc); err != nil {
		t.Fatal(err)
	}
	if err := be.LockAnchors(ctx); err != nil {
		t.Fatal(err)
	}
	tr.Close()

	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bundle := file("bundle.pem", good.bundle(t, 3))
	oldCRL := file("old.pem", good.bundle(t, 2))
	swapped := file("swapped.pem", evil.bundle(t, 3))
	v2, v1, ev := file("v2.wasm", good.module(t, 2)), file("v1.wasm", good.module(t, 1)), file("evil.wasm", evil.module(t, 5))
	slots := filepath.Join(dir, "slots")
	base0 := []string{"--tpm", uri, "--device-serial", "DEV-9"}
	cases := []struct {
		name string
		args []string
		want int
		out  string
	}{
		{"verify accepted", []string{"verify", "--bundle", bundle, "--json", v2}, 0, `"accepted": true`},
		{"verify other root", []string{"verify", "--bundle", bundle, ev}, 1, "not anchored in the chip"},
		{"verify swapped bundle", []string{"verify", "--bundle", swapped, "--json", ev}, 1, `"accepted": false`},
		{"verify CRL below floor", []string{"verify", "--bundle", oldCRL, v2}, 1, "older than the chip's minimum"},
		{"verify without bundle", []string{"verify", v2}, 2, "--bundle is required"},
		{"commit with nothing pending", []string{"commit", "--bundle", bundle, "--slot-dir", slots}, 1, "install' first"},
		{"install v2", []string{"install", "--bundle", bundle, "--slot-dir", slots, v2}, 0, "accepted manifest: fw v2"},
		{"commit v2", []string{"commit", "--bundle", bundle, "--slot-dir", slots}, 0, "commit: accepted"},
		{"install v1 after v2", []string{"install", "--bundle", bundle, "--slot-dir", slots, "--json", v1}, 1, "below the anti-rollback counter"},
		{"install without slot dir", []string{"install", "--bundle", bundle, v2}, 2, "--slot-dir"},
	}
	for _, tc := range cases {
		var out, errOut strings.Builder
		code := run(append(append([]string{tc.args[0]}, base0...), tc.args[1:]...), &out, &errOut)
		if code != tc.want || !strings.Contains(out.String()+errOut.String(), tc.out) {
			t.Fatalf("%s: exit %d (want %d)\nstdout: %s\nstderr: %s", tc.name, code, tc.want, out.String(), errOut.String())
		}
		if strings.Contains(strings.Join(tc.args, " "), "--json") && tc.want != 2 {
			var v map[string]any
			if err := json.Unmarshal([]byte(out.String()), &v); err != nil {
				t.Fatalf("%s: --json output: %v\n%s", tc.name, err, out.String())
			}
		}
	}
}

// startCLITPM runs a fresh swtpm for the test and returns its URI.
func startCLITPM(t *testing.T) string {
	t.Helper()
	return simtest.Blank(t).URI()
}
