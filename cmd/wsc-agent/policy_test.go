package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsc-project/wsc/devices/agent"
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"github.com/wsc-project/wsc/devices/tpm"
	"github.com/wsc-project/wsc/wasmsign"
)

// TestSignWithPolicyCLI: `wsc-agent sign --policy` signs with a signing key
// bound to measured boot while the PCRs hold the fleet-approved values
// (exit 0, the module verifies under the device's chain), and refuses with
// exit 1 after a PCR extend.
func TestSignWithPolicyCLI(t *testing.T) {
	uri := startCLITPM(t)
	dir := t.TempDir()
	pki := newReleasePKI(t)
	fleet, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ref := []byte("gw-line")
	tr, err := tpm.OpenTransport(uri)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := tpm.New(tr, tpm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	be, err := agent.NewTPMBackend(dev, "DEV-PCR")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	nonce := make([]byte, 32)
	if _, err := be.CreateKeys(ctx, nonce, ""); err != nil {
		t.Fatal(err)
	}
	ev, err := be.CreateSigningKey(ctx, nonce, &fleet.PublicKey, ref)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(ev.CSR)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("CSR via the owner branch: %v", err)
	}
	lt := &x509.Certificate{SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: "dev", SerialNumber: "DEV-PCR"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	der, err := x509.CreateCertificate(rand.Reader, lt, pki.root, csr.PublicKey, pki.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := be.InstallSigningChain(ctx, [][]byte{der}, false); err != nil {
		t.Fatal(err)
	}
	vals, err := dev.PCRValues([]int{0, 7})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := tpm.SignPCRPolicy(func(d []byte) ([]byte, error) { return fleet.Sign(rand.Reader, d, crypto.SHA256) }, &fleet.PublicKey, vals, ref)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := tpm.MarshalSignedPCRPolicy(pol)
	if err != nil {
		t.Fatal(err)
	}
	polPath, in, out := filepath.Join(dir, "pcr.json"), filepath.Join(dir, "in.wasm"), filepath.Join(dir, "out.wasm")
	os.WriteFile(polPath, pb, 0o644)
	os.WriteFile(in, answerWasm, 0o644)
	tr.Close()

	args := []string{"sign", "--tpm", uri, "--device-serial", "DEV-PCR", "--policy", polPath, in, "-o", out}
	var so, se strings.Builder
	if code := run(args, &so, &se); code != 0 || !strings.Contains(so.String(), "measured boot") {
		t.Fatalf("sign --policy: exit %d\n%s%s", code, so.String(), se.String())
	}
	signed, _ := os.ReadFile(out)
	bundle := pki.bundle(t, 1)
	tp, err := wasmsign.LoadTrustBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := wasmsign.Verify(signed, tp); err != nil || res.DeviceSerial != "DEV-PCR" {
		t.Fatalf("module signed under the PCR policy: %v", err)
	}

	// Measured boot changes: PCR 7 extended by an independent tool
	// (tpm2_pcrextend); the same policy is refused.
	testenv.NeedTools(t, "tpm2_pcrextend")
	ext := exec.Command("tpm2_pcrextend", "7:sha256="+strings.Repeat("00", 32))
	ext.Env = append(os.Environ(), "TPM2TOOLS_TCTI=swtpm:path="+strings.TrimPrefix(uri, "swtpm:unix://"))
	if b, err := ext.CombinedOutput(); err != nil {
		t.Fatalf("tpm2_pcrextend: %v\n%s", err, b)
	}
	so.Reset()
	se.Reset()
	if code := run(args, &so, &se); code != 1 || !strings.Contains(se.String(), "measured boot changed") {
		t.Fatalf("sign --policy after a PCR extend: exit %d\n%s%s", code, so.String(), se.String())
	}
}
