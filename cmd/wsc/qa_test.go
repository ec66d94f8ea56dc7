package main

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"github.com/wsc-project/wsc/station"
	"github.com/wsc-project/wsc/wasmsign"
)

// demoPass writes the demo CA's passphrase (the last non-comment line of
// the demo's DEMO-ONLY file) to a file a passphrase source can read.
func demoPassFile(t *testing.T, ws string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ws, "DEMO-ONLY-ca-passphrase.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var pass string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			pass = l
		}
	}
	p := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(p, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// TestQARevocationAndAudit follows a plant's records after the demo:
// security revokes one device's certificate (keyCompromise), publishes the
// trust bundle with per-issuer CRLs, and QA's `wsc verify` now rejects that
// device's firmware while the other device's still verifies; the audit
// ledger verifies, and after a row is edited with the sqlite3 tool
// `wsc audit verify` fails with exit status 1.
func TestQARevocationAndAudit(t *testing.T) {
	testenv.NeedTools(t, "swtpm", "swtpm_setup", "swtpm_localca", "sqlite3")
	wsc, agent := buildBinaries(t)
	ws := t.TempDir()
	if b, err := exec.Command(wsc, "demo", "--devices", "2", "--workspace", ws, "--headless", "--agent", agent).CombinedOutput(); err != nil {
		t.Fatalf("demo: %v\n%s", err, b)
	}
	dbPath := filepath.Join(ws, "station.db")
	pass := demoPassFile(t, ws)
	// The certificate that signed the device's firmware: its code-signing
	// certificate (role ldevid) when it has one (issue 15), else its only one.
	serial, err := exec.Command("sqlite3", dbPath, "SELECT c.serial_hex FROM certificates c JOIN devices d ON d.id = c.device_id WHERE d.serial = 'SIM-0002' ORDER BY c.role = 'ldevid' DESC LIMIT 1").Output()
	if err != nil || len(bytes.TrimSpace(serial)) == 0 {
		t.Fatalf("certificate of SIM-0002: %v %q", err, serial)
	}
	caDir := filepath.Join(ws, "ca")
	run := func(args ...string) string {
		t.Helper()
		b, err := exec.Command(wsc, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("wsc %v: %v\n%s", args, err, b)
		}
		return string(b)
	}
	run("ca", "revoke", "--dir", caDir, "--db", dbPath, "--serial", string(bytes.TrimSpace(serial)), "--reason", "keyCompromise", "--passphrase-source", "file:"+pass)
	// Every CA of the bundle needs a CRL (the bundle fails closed): the
	// demo's root signs its own on this single-machine folder.
	run("ca", "crl", "--root", "--dir", caDir, "--passphrase-source", "file:"+pass)
	bundle := filepath.Join(ws, "bundle-with-crls.pem")
	run("ca", "bundle", "--dir", caDir, "--db", dbPath, "-o", bundle, "--passphrase-source", "file:"+pass)
	if b, _ := os.ReadFile(bundle); !bytes.Contains(b, []byte("BEGIN X509 CRL")) {
		t.Fatal("trust bundle has no CRL")
	}

	b, err := exec.Command(wsc, "verify", "--trust", bundle, filepath.Join(ws, "firmware")).CombinedOutput()
	if exitCode(err) != 1 {
		t.Fatalf("verify with a revoked signer: exit %d, want 1\n%s", exitCode(err), b)
	}
	if !strings.Contains(string(b), "SIM-0001.wasm") || !strings.Contains(string(b), "SIM-0002.wasm") {
		t.Fatalf("verify output lacks a device's module:\n%s", b)
	}
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.Contains(line, "SIM-0001.wasm") && !strings.Contains(line, " valid "):
			t.Errorf("SIM-0001's firmware should still verify: %s", line)
		case strings.Contains(line, "SIM-0002.wasm") && !strings.Contains(line, "revoked"):
			t.Errorf("SIM-0002's firmware should be rejected as revoked: %s", line)
		}
	}

	// A bundle with the demo CA's certificates but no CRLs: the revoked
	// device's firmware is refused by default, with an instruction; with
	// --allow-missing-crl it passes, and the report says revocation was
	// not checked.
	noCRL := filepath.Join(t.TempDir(), "no-crl-bundle.pem")
	var certsOnly []byte
	for _, f := range []string{"root.crt", "intermediate.crt"} {
		b, err := os.ReadFile(filepath.Join(caDir, f))
		if err != nil {
			t.Fatal(err)
		}
		certsOnly = append(certsOnly, b...)
	}
	if err := os.WriteFile(noCRL, certsOnly, 0o644); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(certsOnly, []byte("X509 CRL")) {
		t.Fatal("the certificates-only bundle has CRLs")
	}
	r := runVerify(t, wsc, "--trust", noCRL, filepath.Join(ws, "firmware", "SIM-0002.wasm"))
	if r.code != 1 || !strings.Contains(r.stdout, "revocation list missing") || !strings.Contains(r.stderr, "--allow-missing-crl to accept the risk") {
		t.Errorf("revoked device, bundle without CRLs: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runVerify(t, wsc, "--trust", noCRL, "--allow-missing-crl", filepath.Join(ws, "firmware", "SIM-0002.wasm"))
	if row := tableRow(r.stdout, "SIM-0002.wasm"); r.code != 0 || !strings.Contains(row, "valid!") || !strings.Contains(row, "revocation not checked") ||
		!strings.Contains(r.stdout, "WITHOUT a CRL check") {
		t.Errorf("revoked device, bundle without CRLs, --allow-missing-crl: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// The ledger verifies, then an edited row is found.
	fp := strings.TrimSpace(run("audit", "fingerprint", "--pub", filepath.Join(caDir, "audit.pub")))
	run("audit", "verify", "--db", dbPath, "--audit-key-fingerprint", fp)
	if b, err := exec.Command("sqlite3", dbPath, `DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'mallory' WHERE id = 3;`).CombinedOutput(); err != nil {
		t.Fatalf("sqlite3 tamper: %v\n%s", err, b)
	}
	b, err = exec.Command(wsc, "audit", "verify", "--db", dbPath, "--audit-key-fingerprint", fp).CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(b), "edited") {
		t.Fatalf("audit verify after an edit: exit %d\n%s", exitCode(err), b)
	}
}

// qaPKI is a real CA made by the ca package (encrypted keys in a folder),
// device certificates it issues for software keys, and CRLs signed with
// its real root and intermediate keys by x509.CreateRevocationList.
type qaPKI struct {
	dir               string
	authority         *ca.CA
	root, inter       *x509.Certificate
	rootKey, interKey crypto.Signer
}

func newQAPKI(t *testing.T) *qaPKI {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	pass := []byte("qa test passphrase")
	if err := ca.Init(dir, pass, ca.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	authority, err := ca.Open(dir, pass)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { authority.Close() })
	p := &qaPKI{dir: dir, authority: authority, root: authority.Roots()[0], inter: authority.Intermediates()[0]}
	if p.rootKey, err = ca.LoadEncryptedKey(filepath.Join(dir, ca.RootKeyFile), pass); err != nil {
		t.Fatal(err)
	}
	if p.interKey, err = ca.LoadEncryptedKey(filepath.Join(dir, ca.IntermediateKeyFile), pass); err != nil {
		t.Fatal(err)
	}
	return p
}

// signModule issues a certificate for a fresh device key and writes
// testModule signed by it (wasmsign) to path.
func (p *qaPKI) signModule(t *testing.T, device, path string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := p.authority.Issue(t.Context(), csr, ca.IssueRequest{DeviceSerial: device})
	if err != nil {
		t.Fatal(err)
	}
	writeSignedModule(t, path, key, chain)
	return chain[0]
}

func writeSignedModule(t *testing.T, path string, key crypto.Signer, chain []*x509.Certificate) {
	t.Helper()
	signed, err := wasmsign.Sign(testModule, key, chain, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, signed, 0o644); err != nil {
		t.Fatal(err)
	}
}

// crl signs a CRL of issuer with key, valid from thisUpdate to nextUpdate,
// listing revoked. key need not be issuer's (a forged CRL).
func crlOf(t *testing.T, issuer *x509.Certificate, key crypto.Signer, thisUpdate, nextUpdate time.Time, revoked ...*x509.Certificate) *x509.RevocationList {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: thisUpdate, ReasonCode: ca.ReasonKeyCompromise})
	}
	signer := *issuer
	signer.PublicKey = key.Public() // CreateRevocationList checks the key against the issuer
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, &signer, key)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

// writeBundle writes the CA's root and intermediate and the given CRLs as
// a PEM trust bundle.
func (p *qaPKI) writeBundle(t *testing.T, path string, crls ...*x509.RevocationList) string {
	t.Helper()
	var b []byte
	for _, c := range []*x509.Certificate{p.root, p.inter} {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	for _, crl := range crls {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type verifyRun struct {
	code           int
	stdout, stderr string
}

func runVerify(t *testing.T, wsc string, args ...string) verifyRun {
	t.Helper()
	cmd := exec.Command(wsc, append([]string{"verify"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return verifyRun{code: exitCode(err), stdout: out.String(), stderr: errb.String()}
}

// tableRow returns the table line of the module file name, or "".
func tableRow(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, name) {
			return l
		}
	}
	return ""
}

// TestVerifyCRLRules drives `wsc verify` with a real CA, real signed
// modules (one of a device whose certificate is revoked) and bundles
// with and without CRLs.
func TestVerifyCRLRules(t *testing.T) {
	wsc, _ := buildBinaries(t)
	p := newQAPKI(t)
	work := t.TempDir()
	fw := filepath.Join(work, "fw")
	p.signModule(t, "SIM-GOOD", filepath.Join(fw, "good.wasm"))
	revoked := p.signModule(t, "SIM-REVOKED", filepath.Join(fw, "revoked.wasm"))
	now := time.Now()
	rootCRL := crlOf(t, p.root, p.rootKey, now.Add(-time.Hour), now.Add(24*time.Hour))
	interCRL := crlOf(t, p.inter, p.interKey, now.Add(-time.Hour), now.Add(24*time.Hour), revoked)
	rootName, interName := p.root.Subject.String(), p.inter.Subject.String()

	t.Run("complete bundle: revoked device refused, other accepted", func(t *testing.T) {
		bundle := p.writeBundle(t, filepath.Join(work, "full.pem"), rootCRL, interCRL)
		for _, extra := range [][]string{nil, {"--allow-missing-crl"}} {
			r := runVerify(t, wsc, append(append([]string{"--trust", bundle}, extra...), fw)...)
			if r.code != 1 {
				t.Fatalf("%v: exit %d, want 1\n%s%s", extra, r.code, r.stdout, r.stderr)
			}
			if row := tableRow(r.stdout, "good.wasm"); !strings.Contains(row, " valid ") || strings.Contains(row, "!") {
				t.Errorf("%v: good module: %q", extra, row)
			}
			if row := tableRow(r.stdout, "revoked.wasm"); !strings.Contains(row, "invalid") || !strings.Contains(row, "certificate revoked") {
				t.Errorf("%v: revoked device's module: %q", extra, row)
			}
			if strings.Contains(r.stdout, "WITHOUT a CRL check") || strings.Contains(r.stderr, "No CRL for") {
				t.Errorf("%v: complete bundle reported as lacking CRLs:\n%s%s", extra, r.stdout, r.stderr)
			}
		}
	})

	t.Run("revoked intermediate: every module under it refused", func(t *testing.T) {
		bundle := p.writeBundle(t, filepath.Join(work, "inter-revoked.pem"),
			crlOf(t, p.root, p.rootKey, now.Add(-time.Hour), now.Add(24*time.Hour), p.inter), interCRL)
		r := runVerify(t, wsc, "--trust", bundle, "--allow-missing-crl", fw)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, name := range []string{"good.wasm", "revoked.wasm"} {
			if row := tableRow(r.stdout, name); !strings.Contains(row, "invalid") || !strings.Contains(row, "certificate revoked") {
				t.Errorf("%s: %q", name, row)
			}
		}
		if !strings.Contains(tableRow(r.stdout, "good.wasm"), "serial "+strings.ToUpper(hex.EncodeToString(p.inter.SerialNumber.Bytes()))) {
			t.Errorf("good.wasm is not refused for the intermediate's revocation:\n%s", r.stdout)
		}
	})

	t.Run("bundle without CRLs: refused with an instruction", func(t *testing.T) {
		bundle := p.writeBundle(t, filepath.Join(work, "nocrl.pem"))
		r := runVerify(t, wsc, "--trust", bundle, fw)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, name := range []string{"good.wasm", "revoked.wasm"} {
			if row := tableRow(r.stdout, name); !strings.Contains(row, "invalid") || !strings.Contains(row, "revocation list missing") {
				t.Errorf("%s: %q", name, row)
			}
		}
		// The instruction names every CA without CRL and says what to do.
		for _, want := range []string{"No CRL for " + interName + "; " + rootName + " in the trust bundle", "ask security staff for a bundle made by `wsc ca bundle`",
			"--allow-missing-crl to accept the risk; the report will say so"} {
			if !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(want)) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
	})

	t.Run("bundle without CRLs, --allow-missing-crl: accepted and flagged everywhere", func(t *testing.T) {
		bundle := p.writeBundle(t, filepath.Join(work, "nocrl.pem"))
		junit := filepath.Join(work, "nocrl.xml")
		r := runVerify(t, wsc, "--trust", bundle, "--allow-missing-crl", "--junit", junit, fw)
		if r.code != 0 {
			t.Fatalf("exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
		}
		// The revoked device's module passes: nothing could tell. Every
		// row and the summary say so.
		for _, name := range []string{"good.wasm", "revoked.wasm"} {
			row := tableRow(r.stdout, name)
			if !strings.Contains(row, "valid!") || !strings.Contains(row, "revocation not checked") || !strings.Contains(row, rootName) {
				t.Errorf("%s: %q", name, row)
			}
		}
		if !strings.Contains(r.stdout, "WARNING: 2 modules (marked !) were accepted WITHOUT a CRL check (--allow-missing-crl)") {
			t.Errorf("no summary warning:\n%s", r.stdout)
		}
		r = runVerify(t, wsc, "--trust", bundle, "--allow-missing-crl", "--json", fw)
		var rep wasmsign.Report
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 {
			t.Fatalf("exit %d, %v\n%s", r.code, err, r.stdout)
		}
		if rep.RevocationUnchecked != 2 {
			t.Errorf("revocation_unchecked = %d, want 2", rep.RevocationUnchecked)
		}
		for _, res := range rep.Results {
			if !res.RevocationUnchecked || len(res.NoCRLFor) != 2 || res.NoCRLFor[0] != interName || res.NoCRLFor[1] != rootName || res.Warning == "" {
				t.Errorf("%s: %+v", res.File, res)
			}
		}
		x, err := os.ReadFile(junit)
		if err != nil {
			t.Fatal(err)
		}
		var suites struct {
			Suites []struct {
				Props []struct {
					Name  string `xml:"name,attr"`
					Value string `xml:"value,attr"`
				} `xml:"properties>property"`
				Cases []struct {
					Name string `xml:"name,attr"`
					Out  string `xml:"system-out"`
				} `xml:"testcase"`
			} `xml:"testsuite"`
		}
		if err := xml.Unmarshal(x, &suites); err != nil || len(suites.Suites) != 1 {
			t.Fatalf("JUnit: %v\n%s", err, x)
		}
		prop := ""
		for _, pr := range suites.Suites[0].Props {
			if pr.Name == "revocation_unchecked" {
				prop = pr.Value
			}
		}
		if prop != "2" {
			t.Errorf("JUnit property revocation_unchecked = %q", prop)
		}
		for _, c := range suites.Suites[0].Cases {
			if !strings.Contains(c.Out, "revocation_unchecked=true") || !strings.Contains(c.Out, "WARNING: revocation not checked") {
				t.Errorf("JUnit case %s: %q", c.Name, c.Out)
			}
		}
	})

	refused := []struct {
		name        string
		crls        []*x509.RevocationList
		want, instr string
	}{
		{"intermediate's CRL but not the root's", []*x509.RevocationList{interCRL}, "revocation list missing: CA " + rootName,
			"No CRL for " + rootName + " in the trust bundle"},
		{"root's CRL but not the intermediate's", []*x509.RevocationList{rootCRL}, "revocation list missing: CA " + interName,
			"No CRL for " + interName + " in the trust bundle"},
		{"stale intermediate CRL", []*x509.RevocationList{rootCRL, crlOf(t, p.inter, p.interKey, now.Add(-48*time.Hour), now.Add(-time.Hour), revoked)},
			"revocation list is stale: CA " + interName, "The CRL of " + interName + " is not valid at the verification time"},
		{"stale root CRL", []*x509.RevocationList{crlOf(t, p.root, p.rootKey, now.Add(-48*time.Hour), now.Add(-time.Minute)), interCRL},
			"revocation list is stale: CA " + rootName, "Ask security staff for a fresh bundle made by `wsc ca bundle`"},
		{"intermediate CRL signed by the wrong key", []*x509.RevocationList{rootCRL, crlOf(t, p.inter, p.rootKey, now.Add(-time.Hour), now.Add(time.Hour))},
			"revocation list signature invalid: CA " + interName, "names " + interName + " but is not signed by it: the bundle was edited or mixed up"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			bundle := p.writeBundle(t, filepath.Join(t.TempDir(), "bundle.pem"), tt.crls...)
			// Refused by default; --allow-missing-crl excuses only a CA
			// without any CRL, never a stale or forged one.
			for _, extra := range [][]string{nil, {"--allow-missing-crl"}} {
				r := runVerify(t, wsc, append(append([]string{"--trust", bundle}, extra...), filepath.Join(fw, "good.wasm"))...)
				missingAllowed := extra != nil && strings.Contains(tt.want, "missing")
				switch {
				case missingAllowed:
					if r.code != 0 || !strings.Contains(tableRow(r.stdout, "good.wasm"), "valid!") {
						t.Errorf("%v: exit %d\n%s%s", extra, r.code, r.stdout, r.stderr)
					}
				case r.code != 1 || !strings.Contains(tableRow(r.stdout, "good.wasm"), tt.want) || !strings.Contains(r.stderr, tt.instr):
					t.Errorf("%v: exit %d, want 1, %q and the instruction %q\n%s%s", extra, r.code, tt.want, tt.instr, r.stdout, r.stderr)
				}
			}
		})
	}

	t.Run("damaged bundle is an error", func(t *testing.T) {
		full, err := os.ReadFile(p.writeBundle(t, filepath.Join(t.TempDir(), "full.pem"), rootCRL, interCRL))
		if err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string][]byte{
			"truncated":    full[:len(full)-30],
			"stray text":   append([]byte("see attached\n"), full...),
			"bad CRL body": bytes.Replace(full, []byte("-----BEGIN X509 CRL-----\n"), []byte("-----BEGIN X509 CRL-----\n****"), 1),
		} {
			path := filepath.Join(t.TempDir(), "bundle.pem")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			r := runVerify(t, wsc, "--trust", path, "--allow-missing-crl", fw)
			if r.code == 0 || !strings.Contains(r.stderr, "trust bundle") || tableRow(r.stdout, "good.wasm") != "" {
				t.Errorf("%s: exit %d\n%s%s", name, r.code, r.stdout, r.stderr)
			}
		}
	})
}

// TestVerifyEscapesUntrustedText: a module whose certificate (issued
// under the real CA's intermediate key) carries an escape sequence and a
// newline in its serialNumber and a bidi override in its CN, stored under
// a file name with control characters, prints as one escaped table row;
// the JSON report keeps the exact serial; the JUnit report is well-formed
// XML without control characters.
func TestVerifyEscapesUntrustedText(t *testing.T) {
	wsc, _ := buildBinaries(t)
	p := newQAPKI(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const serial = "SIM\x1b[2J\nFORGED 0 failed"
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0x7e57),
		Subject:   pkix.Name{CommonName: "\u202egnp.exe", SerialNumber: serial},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.inter, &key.PublicKey, p.interKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	fw := filepath.Join(t.TempDir(), "fw")
	writeSignedModule(t, filepath.Join(fw, "fw\x1b[31m\n\t\xff.wasm"), key, []*x509.Certificate{leaf, p.inter})
	// A tampered copy: its reason quotes the hostile subject too.
	signed, err := os.ReadFile(filepath.Join(fw, "fw\x1b[31m\n\t\xff.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	signed[len(signed)-2] ^= 1
	if err := os.WriteFile(filepath.Join(fw, "tampered.wasm"), signed, 0o644); err != nil {
		t.Fatal(err)
	}
	// A revoked certificate with the same subject: its reason quotes the
	// subject, bidi override and escape sequence included.
	tmpl.SerialNumber = big.NewInt(0x7e58)
	der, err = x509.CreateCertificate(rand.Reader, tmpl, p.inter, &key.PublicKey, p.interKey)
	if err != nil {
		t.Fatal(err)
	}
	revokedLeaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	writeSignedModule(t, filepath.Join(fw, "revoked.wasm"), key, []*x509.Certificate{revokedLeaf, p.inter})
	now := time.Now()
	bundle := p.writeBundle(t, filepath.Join(t.TempDir(), "bundle.pem"),
		crlOf(t, p.root, p.rootKey, now.Add(-time.Hour), now.Add(time.Hour)), crlOf(t, p.inter, p.interKey, now.Add(-time.Hour), now.Add(time.Hour), revokedLeaf))
	junit := filepath.Join(t.TempDir(), "r.xml")
	r := runVerify(t, wsc, "--trust", bundle, "--junit", junit, fw)
	if r.code != 1 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	out := []byte(r.stdout)
	for _, bad := range []string{"\x1b", "\t", "\r", "\xff", "\u202e"} {
		if bytes.Contains(out, []byte(bad)) {
			t.Fatalf("table holds raw %q:\n%q", bad, out)
		}
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 5 { // header, 3 rows, summary
		t.Fatalf("table has %d lines, want 5:\n%s", len(lines), r.stdout)
	}
	if row := tableRow(r.stdout, "revoked.wasm"); !strings.Contains(row, "certificate revoked") || !strings.Contains(row, `CN=\u202egnp.exe`) ||
		!strings.Contains(row, `SERIALNUMBER=SIM\x1b[2J\nFORGED 0 failed`) {
		t.Fatalf("revoked row does not show the escaped subject: %q", row)
	}
	if row := tableRow(r.stdout, `fw\x1b[31m\n\t\xff.wasm`); !strings.Contains(row, `SIM\x1b[2J\nFORGED 0 failed`) || !strings.Contains(row, " valid ") {
		t.Fatalf("escaped row missing:\n%s", r.stdout)
	}

	r = runVerify(t, wsc, "--trust", bundle, "--json", fw)
	var rep wasmsign.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 3 || rep.Results[0].DeviceSerial != serial || !strings.Contains(rep.Results[0].Signer, "\u202egnp.exe") {
		t.Fatalf("JSON does not keep the exact text: %+v", rep.Results[0])
	}

	x, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(x, new(struct{})); err != nil {
		t.Fatalf("JUnit report is not well-formed XML: %v", err)
	}
	for i, c := range x {
		if (c < 0x20 && c != '\n' && c != '\t' && c != '\r') || c == 0x7f {
			t.Fatalf("JUnit report holds control byte %#x at %d", c, i)
		}
	}
}

// TestHeadlessLineEscapes: a station event carrying a device's serial,
// detail and error prints as one line with every control character
// escaped.
func TestHeadlessLineEscapes(t *testing.T) {
	e := station.Event{Time: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC), Slot: 2, Serial: "SIM\x1b[2J\nFORGED 0 failed",
		Step: station.StepConnect, State: station.StateFailed, Detail: "model \u202eX\xff",
		Err: errors.New(`device said "` + strings.Repeat("A", 200<<10) + "\x1b]0;t\x07\"")}
	l := headlessLine(e)
	for _, bad := range []string{"\x1b", "\n", "\r", "\xff", "\u202e", "\x07"} {
		if strings.Contains(l, bad) {
			t.Fatalf("line holds raw %q: %q", bad, l)
		}
	}
	for _, want := range []string{`08:00:00.000 slot=2 device=SIM\x1b[2J\nFORGED 0 failed step=connect state=failed model \u202eX\xff error="device said \"AAA`, `…[+`} {
		if !strings.Contains(l, want) {
			t.Fatalf("line lacks %q: %q", want, l[:min(len(l), 300)])
		}
	}
	if len(l) > 2<<10 {
		t.Fatalf("a 200 KB error reached the line: %d bytes", len(l))
	}
	// Plain events print as station.Event.String does.
	plain := station.Event{Time: e.Time, Slot: 1, Serial: "SIM-0001", Step: station.StepDone, State: station.StatePassed, Detail: "certificate 5f3a", Err: errors.New("x")}
	if headlessLine(plain) != plain.String() {
		t.Fatalf("plain event: %q, want %q", headlessLine(plain), plain.String())
	}
}

// appendCAcrls appends to the bundle at path an empty CRL of the root and
// of the current intermediate of the CA in caDir, fresh for a day and
// signed with the CA's real keys: a bundle with a CRL for every CA, as
// verification requires.
func appendCAcrls(t *testing.T, path, caDir string, pass []byte) {
	t.Helper()
	var b []byte
	for _, f := range []struct{ cert, key string }{{ca.RootCertFile, ca.RootKeyFile}, {ca.IntermediateCertFile, ca.IntermediateKeyFile}} {
		raw, err := os.ReadFile(filepath.Join(caDir, f.cert))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(raw)
		if blk == nil {
			t.Fatalf("%s: no PEM", f.cert)
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		key, err := ca.LoadEncryptedKey(filepath.Join(caDir, f.key), pass)
		if err != nil {
			t.Fatal(err)
		}
		crl := crlOf(t, cert, key, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw})...)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}
