package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"github.com/wsc-project/wsc/station"
)

const ceremonyPass = "violet-anchor-tundra-87-quietly"

// ceremony runs the built wsc binary and collects every output for the
// passphrase scan.
type ceremony struct {
	t      *testing.T
	wsc    string
	env    []string
	output bytes.Buffer
}

// run executes wsc with args; it fails the test on a non-zero exit.
func (c *ceremony) run(args ...string) string {
	c.t.Helper()
	cmd := exec.Command(c.wsc, args...)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	c.output.Write(out)
	if err != nil {
		c.t.Fatalf("wsc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// runFD executes wsc with the passphrase on fd 3 (a pipe). While the
// process waits for it, its command line and environment are read from
// /proc and must not contain the passphrase.
func (c *ceremony) runFD(args ...string) string {
	c.t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.wsc, append(args, "--passphrase-source", "fd:3")...)
	// Not c.env: that one carries the passphrase for the env: source test,
	// and an environment is visible in /proc/<pid>/environ (to the same user).
	cmd.Env = os.Environ()
	cmd.ExtraFiles = []*os.File{r}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	r.Close()
	// The process blocks reading fd 3 until we write: look at it now.
	deadline := time.Now().Add(5 * time.Second)
	var cmdline []byte
	for len(cmdline) == 0 && time.Now().Before(deadline) {
		cmdline, _ = os.ReadFile("/proc/" + itoa(cmd.Process.Pid) + "/cmdline")
		time.Sleep(5 * time.Millisecond)
	}
	if len(cmdline) == 0 {
		c.t.Fatal("could not read /proc/<pid>/cmdline")
	}
	environ, _ := os.ReadFile("/proc/" + itoa(cmd.Process.Pid) + "/environ")
	if bytes.Contains(cmdline, []byte(ceremonyPass)) || bytes.Contains(environ, []byte(ceremonyPass)) {
		c.t.Errorf("passphrase visible in /proc/%d (cmdline %q)", cmd.Process.Pid, cmdline)
	}
	w.Write([]byte(ceremonyPass + "\n"))
	w.Close()
	err = cmd.Wait()
	c.output.Write(out.Bytes())
	if err != nil {
		c.t.Fatalf("wsc %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

func certsPEM(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// issueVia issues a device certificate through the ca package on the
// station database, as the station does.
func issueVia(t *testing.T, caDir, dbPath, serial string) []*x509.Certificate {
	t.Helper()
	st, err := db.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := ca.Open(caDir, []byte(ceremonyPass), ca.WithStore(station.CAStore(st)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := c.Issue(context.Background(), csr, ca.IssueRequest{DeviceSerial: serial, Validity: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return chain
}

type pemBundle struct {
	roots, inters []*x509.Certificate
	crls          []*x509.RevocationList
}

func readBundle(t *testing.T, path string) pemBundle {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var b pemBundle
	for {
		var blk *pem.Block
		blk, raw = pem.Decode(raw)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
				b.roots = append(b.roots, c)
			} else {
				b.inters = append(b.inters, c)
			}
		case "X509 CRL":
			crl, err := x509.ParseRevocationList(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			b.crls = append(b.crls, crl)
		}
	}
	return b
}

func opensslRun(args ...string) (string, error) {
	out, err := exec.Command("openssl", args...).CombinedOutput()
	return string(out), err
}

// TestCACeremony drives the built binary through the whole ceremony of
// issue 4: init, issuance, intermediate rotation via csr/sign/install on
// two folders, revocation, per-issuer CRLs, bundle, status, root rollover
// with the verification matrix, audit records, and the secret scans.
func TestCACeremony(t *testing.T) {
	testenv.NeedTools(t, "openssl")
	wsc, _ := buildBinaries(t)
	work := t.TempDir()
	caDir := filepath.Join(work, "station", "ca")
	rootDir := filepath.Join(work, "ceremony-machine")
	dbPath := filepath.Join(work, "station", "station.db")
	passFile := filepath.Join(work, "secrets", "pass")
	os.MkdirAll(filepath.Dir(passFile), 0o700)
	if err := os.WriteFile(passFile, []byte(ceremonyPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(dbPath), 0o700)
	c := &ceremony{t: t, wsc: wsc, env: append(os.Environ(), "WSC_TEST_CA_PASS="+ceremonyPass)}
	pf := "file:" + passFile

	// 1. init (audit into the station database).
	out := c.run("ca", "init", "--dir", caDir, "--db", dbPath, "--org", "wsc ceremony test", "--actor", "alice", "--passphrase-source", pf)
	if !strings.Contains(out, "CA created") {
		t.Fatalf("init: %s", out)
	}
	// 2. a device certificate through the ca package, recorded in the database.
	dev1 := issueVia(t, caDir, dbPath, "DEV-1")
	oldIssuer := dev1[1]

	// 3. rotation: csr on the station, sign on the ceremony machine (root
	// only, its own audit log), install on the station.
	os.MkdirAll(rootDir, 0o700)
	for _, f := range []string{ca.RootCertFile, ca.RootKeyFile} {
		b, _ := os.ReadFile(filepath.Join(caDir, f))
		os.WriteFile(filepath.Join(rootDir, f), b, 0o600)
	}
	csrPath := filepath.Join(work, "next.csr")
	c.runFD("ca", "intermediate", "csr", "--dir", caDir, "--db", dbPath, "--cn", "wsc Station 7 Intermediate 2", "-o", csrPath)
	chainPath := filepath.Join(work, "next-chain.pem")
	c.runFD("ca", "intermediate", "sign", "--dir", rootDir, "--csr", csrPath, "-o", chainPath, "--domain", "devices.wsc.local", "--validity", "3y")
	c.run("ca", "intermediate", "install", "--dir", caDir, "--db", dbPath, "--chain", chainPath, "--passphrase-source", pf)
	dev2 := issueVia(t, caDir, dbPath, "DEV-2")
	newIssuer := dev2[1]
	if bytes.Equal(newIssuer.SubjectKeyId, oldIssuer.SubjectKeyId) || newIssuer.Subject.CommonName != "wsc Station 7 Intermediate 2" {
		t.Fatalf("rotation did not take: %s", newIssuer.Subject)
	}

	// 4. revoke the old issuer's leaf after the rotation (passphrase from env).
	out = c.run("ca", "revoke", "--dir", caDir, "--db", dbPath, "--serial", dev1[0].SerialNumber.Text(16), "--reason", "keyCompromise", "--passphrase-source", "env:WSC_TEST_CA_PASS")
	if !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %s", out)
	}

	// ... and the retired intermediate itself (by certificate file): it goes on the root's CRL.
	oldIssuerFile := writeFile(t, filepath.Join(work, "old-intermediate.pem"), certsPEM(oldIssuer))
	c.run("ca", "revoke", "--dir", caDir, "--db", dbPath, "--cert", oldIssuerFile, "--reason", "superseded", "--passphrase-source", pf)

	// 5. CRLs: one per issuer, each verified by openssl against its own issuer;
	// numbers increase from one run to the next.
	crlDir := filepath.Join(work, "crls")
	c.run("ca", "crl", "--dir", caDir, "--db", dbPath, "-o", crlDir, "--passphrase-source", pf)
	out = c.run("ca", "crl", "--dir", caDir, "--db", dbPath, "-o", crlDir, "--root", "--passphrase-source", pf)
	if strings.Count(out, "CRL of issuer key") != 3 {
		t.Fatalf("crl output: %s", out)
	}
	for _, is := range []*x509.Certificate{oldIssuer, newIssuer} {
		p := filepath.Join(crlDir, "crl-"+hex.EncodeToString(is.SubjectKeyId)+".pem")
		iss := writeFile(t, filepath.Join(work, "iss.pem"), certsPEM(is))
		o, err := opensslRun("crl", "-in", p, "-CAfile", iss, "-noout", "-verify")
		if err != nil || !strings.Contains(o, "verify OK") {
			t.Errorf("openssl crl -verify %s: %v %s", p, err, o)
		}
		raw, _ := os.ReadFile(p)
		blk, _ := pem.Decode(raw)
		crl, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if crl.Number.Int64() != 2 {
			t.Errorf("CRL number %v after two runs, want 2", crl.Number)
		}
		listed := false
		for _, e := range crl.RevokedCertificateEntries {
			listed = listed || e.SerialNumber.Cmp(dev1[0].SerialNumber) == 0
		}
		if listed != bytes.Equal(is.SubjectKeyId, oldIssuer.SubjectKeyId) {
			t.Errorf("issuer %s: DEV-1 listed=%v", is.Subject.CommonName, listed)
		}
	}

	rootCRLRaw, err := os.ReadFile(filepath.Join(crlDir, "crl-"+hex.EncodeToString(oldIssuer.AuthorityKeyId)+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(rootCRLRaw)
	rootCRL, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil || len(rootCRL.RevokedCertificateEntries) != 1 || rootCRL.RevokedCertificateEntries[0].SerialNumber.Cmp(oldIssuer.SerialNumber) != 0 {
		t.Errorf("root CRL does not list the revoked intermediate: %v", err)
	}

	// 6. bundle (no --db: read from the folder, no passphrase) and openssl
	// verify with CRL checks: DEV-1 refused as revoked, DEV-2 accepted.
	bundlePath := filepath.Join(work, "bundle.pem")
	c.run("ca", "bundle", "--dir", caDir, "-o", bundlePath)
	b := readBundle(t, bundlePath)
	if len(b.roots) != 1 || len(b.inters) != 2 || len(b.crls) != 3 {
		t.Fatalf("bundle: %d roots, %d intermediates, %d CRLs", len(b.roots), len(b.inters), len(b.crls))
	}
	roots := writeFile(t, filepath.Join(work, "roots.pem"), certsPEM(b.roots...))
	inters := writeFile(t, filepath.Join(work, "inters.pem"), certsPEM(b.inters...))
	var crlPEM []byte
	for _, crl := range b.crls {
		crlPEM = append(crlPEM, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw})...)
	}
	crls := writeFile(t, filepath.Join(work, "crls.pem"), crlPEM)
	o, err := opensslRun("verify", "-crl_check_all", "-CAfile", roots, "-untrusted", inters, "-CRLfile", crls, writeFile(t, filepath.Join(work, "dev1.pem"), certsPEM(dev1[0])))
	if err == nil || !strings.Contains(o, "revoked") {
		t.Errorf("revoked DEV-1 accepted: %s", o)
	}
	o, err = opensslRun("verify", "-crl_check_all", "-CAfile", roots, "-untrusted", inters, "-CRLfile", crls, writeFile(t, filepath.Join(work, "dev2.pem"), certsPEM(dev2[0])))
	if err != nil {
		t.Errorf("DEV-2 refused: %v %s", err, o)
	}

	// 7. status, text and JSON.
	out = c.run("ca", "status", "--dir", caDir)
	if !strings.Contains(out, "next CRL due") || !strings.Contains(out, "retired:") {
		t.Errorf("status: %s", out)
	}
	var st ca.Status
	if err := json.Unmarshal([]byte(c.run("ca", "status", "--dir", caDir, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.RetiredIssuers) != 1 || len(st.CRLs) != 3 || st.NextCRLDue.IsZero() || st.IssuerKey != "encrypted file" || len(st.Warnings) != 0 {
		t.Errorf("status JSON: %+v", st)
	}
	// A CA whose intermediate expires within 90 days is flagged.
	shortDir := filepath.Join(work, "short-ca")
	c.run("ca", "init", "--dir", shortDir, "--intermediate-validity", "60d", "--passphrase-source", pf)
	if err := json.Unmarshal([]byte(c.run("ca", "status", "--dir", shortDir, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(st.Warnings, "\n"), "rotate it") || st.Issuer.DaysLeft > 60 {
		t.Errorf("short CA status: %+v", st)
	}

	// 8. root rollover, then the matrix: certificates from before and after,
	// verifiers trusting only the old or only the new root, with the bundle.
	oldRoot := b.roots[0]
	c.runFD("ca", "root", "rollover", "--dir", caDir, "--db", dbPath)
	dev3 := issueVia(t, caDir, dbPath, "DEV-3")
	bundle2 := filepath.Join(work, "bundle2.pem")
	c.run("ca", "bundle", "--dir", caDir, "--db", dbPath, "-o", bundle2, "--passphrase-source", pf)
	b2 := readBundle(t, bundle2)
	if len(b2.roots) != 2 {
		t.Fatalf("bundle after rollover has %d roots, want 2", len(b2.roots))
	}
	newRoot := b2.roots[0]
	if bytes.Equal(newRoot.Raw, oldRoot.Raw) {
		t.Fatal("new root is listed second")
	}
	inters2 := writeFile(t, filepath.Join(work, "inters2.pem"), certsPEM(b2.inters...))
	for _, tc := range []struct {
		name string
		leaf *x509.Certificate
		root *x509.Certificate
	}{
		{"before rollover, old root", dev2[0], oldRoot},
		{"before rollover, new root", dev2[0], newRoot},
		{"after rollover, old root", dev3[0], oldRoot},
		{"after rollover, new root", dev3[0], newRoot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			rp := writeFile(t, filepath.Join(tmp, "root.pem"), certsPEM(tc.root))
			lp := writeFile(t, filepath.Join(tmp, "leaf.pem"), certsPEM(tc.leaf))
			if o, err := opensslRun("verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", rp, "-untrusted", inters2, lp); err != nil {
				t.Errorf("openssl verify: %v %s", err, o)
			}
			pool, ipool := x509.NewCertPool(), x509.NewCertPool()
			pool.AddCert(tc.root)
			for _, x := range b2.inters {
				ipool.AddCert(x)
			}
			if _, err := tc.leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: ipool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err != nil {
				t.Errorf("crypto/x509: %v", err)
			}
		})
	}
	// The chain a device gets after the rollover carries the cross certificate.
	if len(dev3) != 3 {
		t.Errorf("post-rollover chain length %d, want 3 (leaf, intermediate, new-by-old)", len(dev3))
	}

	// 9. audit: every ceremony left a record, in the database or the root
	// machine's own log.
	st2, err := db.Open(dbPath, db.WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	ents, err := st2.AuditEntries(context.Background(), 0, 1<<30)
	st2.Close()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range ents {
		kinds[e.Kind]++
		if e.Kind == "ca.init" && e.Actor != "alice" {
			t.Errorf("ca.init actor %q", e.Actor)
		}
	}
	for _, k := range []string{"ca.init", "ca.intermediate.csr", "ca.intermediate.install", "ca.revoke", "ca.crl", "ca.root.rollover", "ca.bundle", "cert.issue", "cert.revoke"} {
		if kinds[k] == 0 {
			t.Errorf("no %s audit record in the database (have %v)", k, kinds)
		}
	}
	logs := map[string]string{}
	for _, d := range []string{rootDir, caDir} {
		b, _ := os.ReadFile(filepath.Join(d, CAAuditLog))
		logs[d] = string(b)
	}
	if !strings.Contains(logs[rootDir], `"kind":"ca.intermediate.sign"`) {
		t.Errorf("ceremony machine audit log: %q", logs[rootDir])
	}
	if !strings.Contains(logs[caDir], `"kind":"ca.bundle"`) {
		t.Errorf("station CA audit log (bundle without --db): %q", logs[caDir])
	}

	// 10. no plaintext key and no passphrase anywhere on disk or in output.
	var files []string
	for _, d := range []string{caDir, rootDir, filepath.Dir(dbPath), shortDir} {
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				files = append(files, p)
			}
			return nil
		})
	}
	var scalars [][]byte
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		if bytes.Contains(raw, []byte("BEGIN ENCRYPTED PRIVATE KEY")) {
			k, err := ca.LoadEncryptedKey(f, []byte(ceremonyPass))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if ek, ok := k.(*ecdsa.PrivateKey); ok {
				d, err := ek.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				scalars = append(scalars, d)
			}
		}
	}
	if len(scalars) < 5 {
		t.Fatalf("found only %d encrypted keys", len(scalars))
	}
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		for _, bad := range []string{"BEGIN PRIVATE KEY", "BEGIN EC PRIVATE KEY", "DEK-Info", ceremonyPass} {
			if bytes.Contains(raw, []byte(bad)) {
				t.Errorf("%s contains %q", f, bad)
			}
		}
		for _, d := range scalars {
			if bytes.Contains(raw, d) {
				t.Errorf("%s contains a private key in the clear", f)
			}
		}
	}
	if bytes.Contains(c.output.Bytes(), []byte(ceremonyPass)) {
		t.Error("the passphrase appeared in wsc output")
	}
	// A wrong passphrase fails without echoing anything secret.
	wrong := exec.Command(wsc, "ca", "crl", "--dir", caDir, "--db", dbPath, "--passphrase-source", "env:WSC_WRONG")
	wrong.Env = append(os.Environ(), "WSC_WRONG=not-the-passphrase-123")
	wo, err := wrong.CombinedOutput()
	if err == nil || strings.Contains(string(wo), "not-the-passphrase-123") || !strings.Contains(string(wo), "passphrase") {
		t.Errorf("wrong passphrase: %v %s", err, wo)
	}
	t.Logf("ceremony ok: %d files scanned for %d keys; %d audit rows", len(files), len(scalars), len(ents))
}
