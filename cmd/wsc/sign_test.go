package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/station"
)

// testModule is a small valid WebAssembly module: (func (export "answer")
// (result i32) i32.const 42).
var testModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f,
	0x03, 0x02, 0x01, 0x00,
	0x07, 0x0a, 0x01, 0x06, 'a', 'n', 's', 'w', 'e', 'r', 0x00, 0x00,
	0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x2a, 0x0b,
}

func writePEMCerts(t *testing.T, path string, certs ...*x509.Certificate) {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSignAndVerifyCLI: `wsc sign` with an encrypted software key and its
// chain from the CA, then `wsc verify` (table, --json, --junit) accepts the
// module and rejects a tampered copy with exit status 1.
func TestSignAndVerifyCLI(t *testing.T) {
	wsc, _ := buildBinaries(t)
	dir := t.TempDir()
	pass := []byte("signing passphrase")
	if err := ca.Init(filepath.Join(dir, "ca"), pass, ca.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	authority, err := ca.Open(filepath.Join(dir, "ca"), pass)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := authority.Issue(t.Context(), csr, ca.IssueRequest{DeviceSerial: "BUILD-01"})
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "signer.key")
	if err := ca.SaveEncryptedKey(keyPath, key, pass); err != nil {
		t.Fatal(err)
	}
	writePEMCerts(t, filepath.Join(dir, "chain.pem"), chain...)
	writePEMCerts(t, filepath.Join(dir, "bundle.pem"), append(authority.Roots(), authority.Intermediates()...)...)
	appendCAcrls(t, filepath.Join(dir, "bundle.pem"), filepath.Join(dir, "ca"), pass)
	in, out := filepath.Join(dir, "in.wasm"), filepath.Join(dir, "fw", "out.wasm")
	if err := os.WriteFile(in, testModule, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(wsc, "sign", "--key", keyPath, "--passphrase-source", "env:WSC_SIGN_PASS", "--chain", filepath.Join(dir, "chain.pem"), in, "-o", out)
	cmd.Env = append(os.Environ(), "WSC_SIGN_PASS="+string(pass))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wsc sign: %v\n%s", err, b)
	}
	junit := filepath.Join(dir, "report.xml")
	b, err := exec.Command(wsc, "verify", "--trust", filepath.Join(dir, "bundle.pem"), "--junit", junit, filepath.Join(dir, "fw")).CombinedOutput()
	if err != nil || !strings.Contains(string(b), "1 valid") || !strings.Contains(string(b), "BUILD-01") {
		t.Fatalf("wsc verify of a good module: %v\n%s", err, b)
	}
	// --manifest: the manifest travels inside the signed content and the
	// report shows it; a manifest file with an unknown field is refused.
	mf := filepath.Join(dir, "manifest.json")
	if err := os.WriteFile(mf, []byte(`{"component":"sensor-fw","version":7,"device_class":"gw-1","serials":["BUILD-01"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	mout := filepath.Join(dir, "fwm", "m.wasm")
	if err := os.MkdirAll(filepath.Dir(mout), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(wsc, "sign", "--key", keyPath, "--passphrase-source", "env:WSC_SIGN_PASS", "--chain", filepath.Join(dir, "chain.pem"), "--manifest", mf, in, "-o", mout)
	cmd.Env = append(os.Environ(), "WSC_SIGN_PASS="+string(pass))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wsc sign --manifest: %v\n%s", err, b)
	}
	b, err = exec.Command(wsc, "verify", "--trust", filepath.Join(dir, "bundle.pem"), filepath.Dir(mout)).CombinedOutput()
	if err != nil || !strings.Contains(string(b), "manifest: sensor-fw v7 (min 7) class gw-1, 1 allowed serials") {
		t.Fatalf("wsc verify of a module with a manifest: %v\n%s", err, b)
	}
	if err := os.WriteFile(mf, []byte(`{"component":"c","version":1,"device_class":"k","colour":"red"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(wsc, "sign", "--key", keyPath, "--passphrase-source", "env:WSC_SIGN_PASS", "--chain", filepath.Join(dir, "chain.pem"), "--manifest", mf, in, "-o", mout)
	cmd.Env = append(os.Environ(), "WSC_SIGN_PASS="+string(pass))
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "colour") {
		t.Fatalf("wsc sign with an unknown manifest field: %v\n%s", err, b)
	}
	x, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(x, new(struct{})); err != nil {
		t.Fatalf("JUnit report is not XML: %v", err)
	}

	// One flipped byte in the code section: rejected, exit status 1.
	signed, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(signed)
	bad[len(bad)-2] ^= 0x01
	if err := os.WriteFile(filepath.Join(dir, "fw", "tampered.wasm"), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(wsc, "verify", "--trust", filepath.Join(dir, "bundle.pem"), "--json", filepath.Join(dir, "fw"))
	b, err = cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("wsc verify with a tampered module: %v, want exit status 1", err)
	}
	var rep struct {
		Total, Valid int
		Results      []struct {
			File   string `json:"file"`
			Result string `json:"result"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, b)
	}
	if len(rep.Results) != 2 {
		t.Fatalf("report has %d results, want 2:\n%s", len(rep.Results), b)
	}
	for _, r := range rep.Results {
		want := "valid"
		if strings.HasSuffix(r.File, "tampered.wasm") {
			want = "invalid"
		}
		if r.Result != want {
			t.Errorf("%s: %s, want %s", r.File, r.Result, want)
		}
	}
}

// TestAgentSignOnDevice: a device provisioned by `wsc provision` signs a
// module with its TPM key through `wsc-agent sign` (the chain comes from its
// NV), and QA's `wsc verify` accepts it against the CA's certificates.
func TestAgentSignOnDevice(t *testing.T) {
	f := newStationFixture(t, 1, "")
	wsc, agent := buildBinaries(t)
	d := f.bench.Devices[0]
	cmd := exec.Command(wsc, "provision", "--config", f.config, "--port", d.Port, "--operator", "ana", "--pin-source", "env:WSC_TEST_PIN")
	cmd.Env = append(os.Environ(), "WSC_TEST_PIN=2468")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wsc provision: %v\n%s", err, b)
	}
	if err := d.StopAgent(); err != nil { // one TPM client at a time
		t.Fatal(err)
	}
	in, out := filepath.Join(f.dir, "fw.wasm"), filepath.Join(f.dir, "signed", "fw.wasm")
	if err := os.WriteFile(in, testModule, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(agent, "sign", "--tpm", d.TPM.URI(), in, "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("wsc-agent sign: %v\n%s", err, b)
	}
	root, err := os.ReadFile(filepath.Join(f.dir, "ca", "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	inter, err := os.ReadFile(filepath.Join(f.dir, "ca", "intermediate.crt"))
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(f.dir, "bundle.pem")
	if err := os.WriteFile(bundle, append(root, inter...), 0o644); err != nil {
		t.Fatal(err)
	}
	appendCAcrls(t, bundle, filepath.Join(f.dir, "ca"), []byte("correct horse battery staple"))
	b, err := exec.Command(wsc, "verify", "--trust", bundle, out).CombinedOutput()
	if err != nil || !strings.Contains(string(b), d.Serial) || !strings.Contains(string(b), "1 valid") {
		t.Fatalf("wsc verify of the device-signed module: %v\n%s", err, b)
	}
}

// TestProvisionJSON: `wsc provision --json` prints one JSON object on
// stdout (event lines on stderr): ok with the certificate serial in the
// canonical spelling, and for a device the work order refuses (a label
// that does not match), exit 1 with reason_code label-mismatch.
func TestProvisionJSON(t *testing.T) {
	f := newStationFixture(t, 1, "")
	wsc, _ := buildBinaries(t)
	d := f.bench.Devices[0]
	run := func(extra ...string) (provisionResult, int, string) {
		args := append([]string{"provision", "--json", "--config", f.config, "--port", d.Port, "--operator", "ana", "--pin-source", "env:WSC_TEST_PIN"}, extra...)
		cmd := exec.Command(wsc, args...)
		cmd.Env = append(os.Environ(), "WSC_TEST_PIN=2468")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var r provisionResult
		if jerr := json.Unmarshal(stdout.Bytes(), &r); jerr != nil {
			t.Fatalf("stdout is not one JSON object: %v\n%s\nstderr:\n%s", jerr, stdout.Bytes(), stderr.Bytes())
		}
		return r, exitCode(err), stderr.String()
	}
	r, code, stderr := run("--label", "NOT-"+d.Serial)
	if code != 1 || r.Result != "failed" || r.ReasonCode != station.ReasonLabelMismatch || r.Step != "hello" {
		t.Fatalf("refused device: exit %d %+v\n%s", code, r, stderr)
	}
	r, code, stderr = run()
	if code != 0 || r.Result != "ok" || r.Serial != d.Serial || r.Proof != "tpm" || r.CertSerial == "" || r.CertSerial != strings.ToUpper(r.CertSerial) {
		t.Fatalf("provisioned device: exit %d %+v\n%s", code, r, stderr)
	}
	if !strings.Contains(stderr, "state=passed") {
		t.Errorf("event lines are not on stderr:\n%s", stderr)
	}
}
