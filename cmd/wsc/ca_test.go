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
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"github.com/wsc-project/wsc/station"
	"github.com/wsc-project/wsc/ui"
)

// Passphrases of the two machines (both pass the strength rule).
const (
	ceremonyPass = "violet-anchor-tundra-87-quietly"
	rootPassword = "orbit-lantern-mosaic-quarry-thimble"
)

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

// runFDPass executes wsc with the passphrase pass on fd 3 (a pipe). While the
// process waits for it, its command line and environment are read from
// /proc and must not contain the passphrase.
func (c *ceremony) runFDPass(pass string, args ...string) string {
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
	if bytes.Contains(cmdline, []byte(pass)) || bytes.Contains(environ, []byte(pass)) {
		c.t.Errorf("passphrase visible in /proc/%d (cmdline %q)", cmd.Process.Pid, cmdline)
	}
	w.Write([]byte(pass + "\n"))
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

// fail runs wsc and expects a non-zero exit; it returns the output.
func (c *ceremony) fail(args ...string) string {
	c.t.Helper()
	cmd := exec.Command(c.wsc, args...)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	c.output.Write(out)
	if err == nil {
		c.t.Fatalf("wsc %s succeeded, want a failure:\n%s", strings.Join(args, " "), out)
	}
	return string(out)
}

// carry copies a documented ceremony file onto the medium.
func carry(t *testing.T, src, media string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(media, filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

func secretFile(t *testing.T, dir, name, pass string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(pass+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, mode)
	return p
}

func opensslCRLCheck(t *testing.T, dir string, b pemBundle, root, leaf *x509.Certificate) (string, error) {
	t.Helper()
	rp := writeFile(t, filepath.Join(dir, "v-root.pem"), certsPEM(root))
	ip := writeFile(t, filepath.Join(dir, "v-inters.pem"), certsPEM(b.inters...))
	var crls []byte
	for _, c := range b.crls {
		crls = append(crls, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: c.Raw})...)
	}
	cp := writeFile(t, filepath.Join(dir, "v-crls.pem"), crls)
	lp := writeFile(t, filepath.Join(dir, "v-leaf.pem"), certsPEM(leaf))
	return opensslRun("verify", "-x509_strict", "-crl_check_all", "-purpose", "sslclient", "-CAfile", rp, "-untrusted", ip, "-CRLfile", cp, lp)
}

// TestCACeremony drives the built binary through the two-machine ceremony
// of docs/ca-ceremony.md: a root machine folder and a station folder that
// exchange only the documented files through a medium folder; devices are
// issued before, between and after each step; openssl verifies every
// chain with -crl_check_all for verifiers trusting only the old and only
// the new root; errors, JSON output, passphrase rules, quorum custody,
// ledgers and the secret scans.
func TestCACeremony(t *testing.T) {
	testenv.NeedTools(t, "openssl")
	wsc, _ := buildBinaries(t)
	work := t.TempDir()
	rootDir := filepath.Join(work, "root-machine", "ca")
	stDir := filepath.Join(work, "station", "ca")
	media := filepath.Join(work, "usb")
	dbPath := filepath.Join(work, "station", "station.db")
	secrets := filepath.Join(work, "secrets")
	for _, d := range []string{media, secrets, filepath.Dir(dbPath)} {
		os.MkdirAll(d, 0o700)
	}
	rootPF := "file:" + secretFile(t, secrets, "root", rootPassword, 0o600)
	stPF := "file:" + secretFile(t, secrets, "station", ceremonyPass, 0o600)
	c := &ceremony{t: t, wsc: wsc, env: append(os.Environ(), "WSC_TEST_CA_PASS="+ceremonyPass)}

	// Passphrase rules: weak, world-readable.
	out := c.fail("ca", "init", "--ca-dir", filepath.Join(work, "weak"), "--passphrase-source", "file:"+secretFile(t, secrets, "weak", "a", 0o600))
	if !strings.Contains(out, "too weak") {
		t.Errorf("weak passphrase: %s", out)
	}
	out = c.fail("ca", "init", "--ca-dir", filepath.Join(work, "open"), "--passphrase-source", "file:"+secretFile(t, secrets, "open", rootPassword, 0o644))
	if !strings.Contains(out, "0600") {
		t.Errorf("0644 passphrase file: %s", out)
	}

	// 1. Root machine: root only.
	var res ca.Result
	if err := json.Unmarshal([]byte(c.run("ca", "init", "--ca-dir", rootDir, "--root-only", "--org", "wsc ceremony test", "--actor", "alice", "--passphrase-source", rootPF, "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Certificates) != 1 || res.Certificates[0].SHA256 == "" || res.Certificates[0].Role != "root" {
		t.Fatalf("init JSON: %+v", res)
	}
	// 2. Station: trust root.crt, make its key and CSR.
	c.run("ca", "import", "--ca-dir", stDir, "--roots", carry(t, filepath.Join(rootDir, ca.RootCertFile), media))
	csrPath := filepath.Join(media, "next.csr")
	c.run("ca", "intermediate", "csr", "--ca-dir", stDir, "-o", csrPath, "--cn", "ignored by the root", "--passphrase-source", stPF)
	// The station's audit key is made explicitly (never on first use): the
	// ceremonies below record into the station database's signed ledger.
	c.run("audit", "init-key", "--ca-dir", stDir, "--passphrase-source", stPF)
	// 3. Root machine: sign it (passphrase through a pipe, /proc checked) and the root CRL.
	chainPath := filepath.Join(media, "chain.pem")
	c.runFDPass(rootPassword, "ca", "intermediate", "sign", "--ca-dir", rootDir, "--csr", csrPath, "-o", chainPath, "--cn", "wsc Station 7 Intermediate", "--validity", "3y")
	out = c.run("ca", "crl", "--root", "--ca-dir", rootDir, "-o", media, "--passphrase-source", rootPF)
	if !strings.Contains(out, "SHA-256") {
		t.Errorf("root crl output: %s", out)
	}
	// 4. Station: install, import the root CRL, issue, CRLs, bundle.
	out = c.run("ca", "intermediate", "install", "--ca-dir", stDir, "--db", dbPath, "--chain", chainPath, "--passphrase-source", stPF)
	if !strings.Contains(out, "SHA-256") {
		t.Errorf("install output lacks fingerprints: %s", out)
	}
	crlFiles, _ := filepath.Glob(filepath.Join(media, "crl-*.pem"))
	c.run(append([]string{"ca", "import", "--ca-dir", stDir}, crlFiles...)...)
	dev1 := issueVia(t, stDir, dbPath, "DEV-1")
	if dev1[1].Subject.CommonName != "wsc Station 7 Intermediate" || len(dev1[1].Subject.Organization) != 1 || dev1[1].Subject.Organization[0] != "wsc ceremony test" {
		t.Errorf("intermediate subject %s", dev1[1].Subject)
	}
	bundlePath := filepath.Join(work, "bundle.pem")
	out = c.fail("ca", "bundle", "--ca-dir", stDir, "-o", bundlePath)
	if !strings.Contains(out, "has no CRL") || !strings.Contains(out, "wsc ca crl") {
		t.Errorf("bundle without the intermediate's CRL: %s", out)
	}
	c.run("ca", "crl", "--ca-dir", stDir, "--db", dbPath, "--passphrase-source", stPF)
	c.run("ca", "bundle", "--ca-dir", stDir, "-o", bundlePath)

	// Clear errors: unknown serial, bad reason.
	out = c.fail("ca", "revoke", "--ca-dir", stDir, "--db", dbPath, "--serial", "abc123", "--passphrase-source", stPF)
	if !strings.Contains(out, "never issued") || strings.Contains(out, "no rows") {
		t.Errorf("unknown serial: %s", out)
	}
	out = c.fail("ca", "revoke", "--ca-dir", stDir, "--db", dbPath, "--serial", dev1[0].SerialNumber.Text(16), "--reason", "stolen", "--passphrase-source", stPF)
	if !strings.Contains(out, "keyCompromise") || !strings.Contains(out, "cessationOfOperation") {
		t.Errorf("bad reason does not list the valid ones: %s", out)
	}
	var rv struct {
		Serial string `json:"serial"`
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal([]byte(c.run("ca", "revoke", "--ca-dir", stDir, "--db", dbPath, "--serial", dev1[0].SerialNumber.Text(16), "--reason", "keyCompromise", "--passphrase-source", "env:WSC_TEST_CA_PASS", "--json")), &rv); err != nil || rv.SHA256 == "" {
		t.Fatalf("revoke JSON: %+v %v", rv, err)
	}

	// 5. Rollover on the root machine; both roots sign their CRLs; the
	// station imports root.crt, the cross-certificates and the CRLs, then
	// installs the re-certified chain.
	c.run("ca", "root", "rollover", "--ca-dir", rootDir, "-o", chainPath, "--passphrase-source", rootPF)
	for _, f := range []string{"new-by-old.crt", "old-by-new.crt"} {
		carry(t, filepath.Join(rootDir, ca.CrossDir, f), media)
	}
	out = c.run("ca", "crl", "--root", "--ca-dir", rootDir, "-o", media, "--passphrase-source", rootPF)
	if strings.Count(out, "CRL:") != 2 || !strings.Contains(out, "(old root)") || !strings.Contains(out, "(new root)") {
		t.Errorf("root CRLs after rollover: %s", out)
	}
	crlFiles, _ = filepath.Glob(filepath.Join(media, "crl-*.pem"))
	c.run(append([]string{"ca", "import", "--ca-dir", stDir, "--roots", carry(t, filepath.Join(rootDir, ca.RootCertFile), media),
		filepath.Join(media, "new-by-old.crt"), filepath.Join(media, "old-by-new.crt")}, crlFiles...)...)
	c.run("ca", "intermediate", "install", "--ca-dir", stDir, "--db", dbPath, "--chain", chainPath, "--passphrase-source", stPF)
	dev2 := issueVia(t, stDir, dbPath, "DEV-2")
	c.run("ca", "crl", "--ca-dir", stDir, "--db", dbPath, "--passphrase-source", stPF)
	var st ca.Status
	if err := json.Unmarshal([]byte(c.run("ca", "status", "--ca-dir", stDir, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Roots) != 2 || st.Roots[0].Role != "new" || st.Roots[1].Role != "old" {
		t.Fatalf("status roots: %+v", st.Roots)
	}
	for _, w := range st.Warnings {
		if strings.Contains(w, "CRL") && !strings.Contains(w, "roots are trusted") {
			t.Errorf("status warns about a CRL: %s", w)
		}
	}
	c.run("ca", "bundle", "--ca-dir", stDir, "-o", bundlePath)
	b := readBundle(t, bundlePath)
	if len(b.roots) != 2 {
		t.Fatalf("bundle roots: %d", len(b.roots))
	}
	newRoot, oldRoot := b.roots[0], b.roots[1]
	for _, tc := range []struct {
		name    string
		leaf    *x509.Certificate
		revoked bool
	}{{"DEV-1", dev1[0], true}, {"DEV-2", dev2[0], false}} {
		for _, root := range []*x509.Certificate{oldRoot, newRoot} {
			o, err := opensslCRLCheck(t, work, b, root, tc.leaf)
			if tc.revoked != (err != nil) || (tc.revoked && !strings.Contains(o, "revoked")) {
				t.Errorf("%s trusting only %s: %v %s", tc.name, root.Subject.CommonName, err, o)
			}
		}
	}
	// Every CRL of the bundle verifies against its CA with openssl.
	for _, crl := range b.crls {
		var by *x509.Certificate
		for _, x := range append(append([]*x509.Certificate(nil), b.roots...), b.inters...) {
			if bytes.Equal(x.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(x) == nil {
				by = x
			}
		}
		if by == nil {
			t.Errorf("CRL of %s signed by no CA of the bundle", crl.Issuer)
			continue
		}
		cp := writeFile(t, filepath.Join(work, "c.pem"), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw}))
		ip := writeFile(t, filepath.Join(work, "i.pem"), certsPEM(by))
		if o, err := opensslRun("crl", "-in", cp, "-CAfile", ip, "-noout", "-verify"); err != nil || !strings.Contains(o, "verify OK") {
			t.Errorf("openssl crl -verify %s: %v %s", crl.Issuer, err, o)
		}
	}

	// 6. Retire the old root (root machine), import on the station.
	c.run("ca", "root", "retire", "--ca-dir", rootDir, "--root-key-id", hex.EncodeToString(oldRoot.SubjectKeyId), "--passphrase-source", rootPF)
	c.run("ca", "import", "--ca-dir", stDir, "--roots", carry(t, filepath.Join(rootDir, ca.RootCertFile), media))
	c.run("ca", "bundle", "--ca-dir", stDir, "-o", bundlePath)
	if b := readBundle(t, bundlePath); len(b.roots) != 1 || !bytes.Equal(b.roots[0].Raw, newRoot.Raw) {
		t.Errorf("bundle after retire: %d roots", len(b.roots))
	}

	// 7. inspect and ledgers.
	out = c.run("ca", "inspect", chainPath)
	if strings.Count(out, "SHA-256") != 2 {
		t.Errorf("inspect: %s", out)
	}
	out = c.run("ca", "ledger", "verify", "--ca-dir", rootDir)
	if !strings.Contains(out, "ledger OK") {
		t.Errorf("root ledger: %s", out)
	}
	raw, _ := os.ReadFile(filepath.Join(rootDir, ca.LedgerFile))
	for _, kind := range []string{"ca.init", "ca.intermediate.sign", "ca.crl", "ca.root.rollover", "ca.root.retire"} {
		if !bytes.Contains(raw, []byte(`"kind":"`+kind+`"`)) {
			t.Errorf("root ledger has no %s", kind)
		}
	}
	stdb, err := db.Open(dbPath, db.WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	ents, err := stdb.AuditEntries(context.Background(), 0, 1<<30)
	stdb.Close()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range ents {
		kinds[e.Kind]++
	}
	for _, k := range []string{"ca.intermediate.install", "ca.revoke", "ca.crl", "cert.issue", "cert.revoke"} {
		if kinds[k] == 0 {
			t.Errorf("no %s audit record in the station database (have %v)", k, kinds)
		}
	}

	// 8. Quorum custody through the CLI.
	qDir := filepath.Join(work, "quorum", "ca")
	shareDir := filepath.Join(work, "quorum", "shares")
	c.run("ca", "init", "--ca-dir", qDir, "--root-only", "--custodians", "5", "--quorum", "3", "--share-dir", shareDir)
	sh := func(i int) string { return "file:" + filepath.Join(shareDir, "custodian-"+strconv.Itoa(i)+".share") }
	out = c.fail("ca", "crl", "--root", "--ca-dir", qDir, "--share", sh(1), "--share", sh(4))
	if !strings.Contains(out, "not enough custodian shares") {
		t.Errorf("two shares: %s", out)
	}
	c.run("ca", "crl", "--root", "--ca-dir", qDir, "--share", sh(1), "--share", sh(3), "--share", sh(5))
	raw, _ = os.ReadFile(filepath.Join(qDir, ca.LedgerFile))
	if !bytes.Contains(raw, []byte(`"custodians":["custodian-1","custodian-3","custodian-5"]`)) {
		t.Errorf("quorum ledger does not name the custodians: %s", raw)
	}
	// Re-sharing to two new custodians (quorum 2): the old shares stop working.
	newShares := filepath.Join(work, "quorum", "new-shares")
	c.run("ca", "custody", "reshare", "--ca-dir", qDir, "--share", sh(2), "--share", sh(3), "--share", sh(4),
		"--custodian-name", "ann", "--custodian-name", "bob", "--quorum", "2", "--share-dir", newShares)
	out = c.fail("ca", "crl", "--root", "--ca-dir", qDir, "--share", sh(1), "--share", sh(3), "--share", sh(5))
	if !strings.Contains(out, "corrupted") {
		t.Errorf("old shares after reshare: %s", out)
	}
	c.run("ca", "crl", "--root", "--ca-dir", qDir, "--share", "file:"+filepath.Join(newShares, "ann.share"), "--share", "file:"+filepath.Join(newShares, "bob.share"))
	if out := c.run("ca", "ledger", "verify", "--ca-dir", qDir); !strings.Contains(out, "ledger OK") {
		t.Errorf("quorum ledger: %s", out)
	}

	// 9. No plaintext key and no passphrase on disk or in any output.
	var files []string
	for _, d := range []string{rootDir, stDir, media, filepath.Dir(dbPath), qDir} {
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				files = append(files, p)
			}
			return nil
		})
	}
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		for _, bad := range []string{"BEGIN PRIVATE KEY", "BEGIN EC PRIVATE KEY", "DEK-Info", ceremonyPass, rootPassword} {
			if bytes.Contains(raw, []byte(bad)) {
				t.Errorf("%s contains %q", f, bad)
			}
		}
	}
	for _, p := range []string{ceremonyPass, rootPassword} {
		if bytes.Contains(c.output.Bytes(), []byte(p)) {
			t.Error("a passphrase appeared in wsc output")
		}
	}
	wrong := exec.Command(wsc, "ca", "crl", "--ca-dir", stDir, "--db", dbPath, "--passphrase-source", "env:WSC_WRONG")
	wrong.Env = append(os.Environ(), "WSC_WRONG=not-the-passphrase-123")
	wo, err := wrong.CombinedOutput()
	if err == nil || strings.Contains(string(wo), "not-the-passphrase-123") || !strings.Contains(string(wo), "passphrase") {
		t.Errorf("wrong passphrase: %v %s", err, wo)
	}
	t.Logf("two-machine ceremony ok: %d files scanned; %d station audit rows", len(files), len(ents))
}

// guided drives a guided-ceremony model the way bubbletea does, but
// synchronously: each key goes through Update and the command it returns
// (a step's Run) is executed and its message fed back, so the verdicts do
// not depend on timing.
type guided struct {
	t *testing.T
	m *ui.CeremonyModel
}

func (g *guided) key(k tea.KeyMsg) {
	g.t.Helper()
	_, cmd := g.m.Update(k)
	for cmd != nil {
		msg := cmd()
		if _, ok := msg.(tea.QuitMsg); ok || msg == nil {
			return
		}
		_, cmd = g.m.Update(msg)
	}
}

func (g *guided) enter() { g.key(tea.KeyMsg{Type: tea.KeyEnter}) }

// secret types a secret and confirms it.
func (g *guided) secret(s string) {
	g.m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)})
	g.enter()
}

func (g *guided) expect(s string) {
	g.t.Helper()
	if v := g.m.View(); !strings.Contains(v, s) {
		g.t.Fatalf("guided view lacks %q:\n%s", s, v)
	}
}

// TestGuidedCeremony runs the guided ceremony (the same Update/View the
// terminal shows) through a set-up and a full rotation on two folders: the
// root machine's init and sign, the station's setup and rotate; a wrong
// passphrase fails a step without changing anything and r retries it. The
// result is checked like the plain commands' (chain, CRLs, bundle).
func TestGuidedCeremony(t *testing.T) {
	work := t.TempDir()
	rootDir, stDir, media := filepath.Join(work, "root"), filepath.Join(work, "station"), filepath.Join(work, "usb")
	os.MkdirAll(media, 0o700)
	run := func(role, flow string, drive func(g *guided)) *guided {
		t.Helper()
		steps, err := ceremonyFlow(role, flow, map[string]string{"root": rootDir, "station": stDir}[role], media, "tester")
		if err != nil {
			t.Fatal(err)
		}
		var saved string
		g := &guided{t: t, m: ui.NewCeremonyModel(ui.CeremonyOptions{Steps: steps, Transcript: func(s string) error { saved = s; return nil }})}
		drive(g)
		if !g.m.Finished() {
			t.Fatalf("%s %s did not finish: %v\n%s", role, flow, g.m.Err(), g.m.View())
		}
		if saved == "" || !strings.Contains(saved, "SHA-256") {
			t.Errorf("%s %s transcript: %q", role, flow, saved)
		}
		for _, p := range []string{rootPassword, ceremonyPass} {
			if strings.Contains(g.m.View(), p) || strings.Contains(saved, p) {
				t.Errorf("%s %s shows a passphrase", role, flow)
			}
		}
		return g
	}
	run("root", "init", func(g *guided) {
		g.expect("Create the root")
		g.enter()
		g.secret(rootPassword)
		g.secret(rootPassword)
		g.expect("Sign the CRL of every trusted root")
		g.enter()
		g.secret(rootPassword)
		g.enter() // copy root.crt
	})
	station := func(flow string) func(g *guided) {
		return func(g *guided) {
			if flow == "setup" {
				g.expect("root.crt (from the root machine)")
				g.enter()
			}
			g.enter()
			g.secret(ceremonyPass)
			if flow == "setup" {
				g.secret(ceremonyPass)
			}
			g.expect("Install the signed intermediate")
			// The security officer carries next.csr to the root machine.
			run("root", "sign", func(r *guided) {
				r.expect("next.csr (from the station)")
				r.enter()
				r.secret("a wrong root passphrase, long enough")
				r.expect("The step failed")
				r.key(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("r")})
				r.enter()
				r.secret(rootPassword)
				r.enter()
				r.secret(rootPassword)
			})
			g.enter()
			g.secret(ceremonyPass)
			g.expect("Ceremony complete")
			g.enter()
		}
	}
	run("station", "setup", station("setup"))
	first, err := ca.ReadStatus(stDir, time.Now())
	if err != nil || first.Issuer == nil {
		t.Fatalf("after guided setup: %+v %v", first, err)
	}
	run("station", "rotate", station("rotate"))
	st, err := ca.ReadStatus(stDir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st.Issuer.KeyID == first.Issuer.KeyID || len(st.RetiredIssuers) != 1 {
		t.Fatalf("guided rotation did not rotate: %+v", st)
	}
	// Rollover: root machine, then station.
	run("root", "rollover", func(g *guided) {
		g.expect("Roll the root over")
		g.enter()
		g.secret(rootPassword)
		g.enter()
		g.secret(rootPassword)
		g.enter() // copy root.crt and the cross-certificates
	})
	run("station", "rollover", func(g *guided) {
		g.expect("new-by-old.crt")
		g.enter()
		g.enter()
		g.secret(ceremonyPass)
		g.expect("Ceremony complete")
		g.enter()
	})
	st, err = ca.ReadStatus(stDir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Roots) != 2 || st.Roots[0].Role != "new" || st.Issuer.KeyID == "" {
		t.Fatalf("after the guided rollover: %+v", st.Roots)
	}
	chain, err := readCertFile(filepath.Join(stDir, ca.IntermediateCertFile))
	if err != nil || len(chain) != 2 || chain[0].CheckSignatureFrom(chain[1]) != nil {
		t.Fatalf("station chain after the guided rollover: %d %v", len(chain), err)
	}
	// The root machine's ledger records both signatures.
	raw, _ := os.ReadFile(filepath.Join(rootDir, ca.LedgerFile))
	if n := bytes.Count(raw, []byte(`"kind":"ca.intermediate.sign"`)); n != 2 {
		t.Errorf("root ledger has %d intermediate.sign records", n)
	}
}

// TestGuidedCeremonyInTmux drives `wsc ca ceremony` in real terminals
// (tmux) through a set-up and a full rotation: the root machine's init,
// the station's setup (its install step waits while the root machine signs
// in another terminal), then a rotation; each run leaves its transcript.
func TestGuidedCeremonyInTmux(t *testing.T) {
	testenv.NeedTools(t, "tmux")
	wsc, _ := buildBinaries(t)
	work := t.TempDir()
	rootDir, stDir, media := filepath.Join(work, "root"), filepath.Join(work, "station"), filepath.Join(work, "usb")
	os.MkdirAll(media, 0o700)
	n := 0
	open := func(role, flow string) (*tmux, string) {
		n++
		tr := filepath.Join(work, fmt.Sprintf("transcript-%d-%s-%s.txt", n, role, flow))
		dir := map[string]string{"root": rootDir, "station": stDir}[role]
		m := &tmux{t: t, session: fmt.Sprintf("wsc-cer-%d-%d", time.Now().UnixNano(), n)}
		m.run("new-session", "-d", "-s", m.session, "-x", "120", "-y", "40",
			fmt.Sprintf("%s ca ceremony --role %s --flow %s --dir %s --media %s --transcript %s; sleep 60", wsc, role, flow, dir, media, tr))
		t.Cleanup(func() { _ = exec.Command("tmux", "kill-session", "-t", m.session).Run() })
		return m, tr
	}
	secret := func(m *tmux, prompt, s string) {
		m.waitFor(prompt, 30*time.Second, prompt+":")
		m.literal(s)
		m.keys("Enter")
	}
	done := func(m *tmux, tr string) {
		m.waitFor("the end of the ceremony", 60*time.Second, "Ceremony complete")
		m.keys("Enter")
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if b, err := os.ReadFile(tr); err == nil && bytes.Contains(b, []byte("SHA-256")) {
				if bytes.Contains(b, []byte(rootPassword)) || bytes.Contains(b, []byte(ceremonyPass)) {
					t.Errorf("%s shows a passphrase", tr)
				}
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("no transcript in %s", tr)
	}
	rootSign := func() {
		r, tr := open("root", "sign")
		r.waitFor("the sign step", 30*time.Second, "next.csr (from the station)")
		r.keys("Enter")
		secret(r, "root key passphrase", rootPassword)
		r.waitFor("the root CRL step", 60*time.Second, "Step 2 on the root machine")
		r.keys("Enter")
		secret(r, "root key passphrase", rootPassword)
		done(r, tr)
	}

	r, tr := open("root", "init")
	r.waitFor("the first step", 30*time.Second, "Create the root")
	r.keys("Enter")
	secret(r, "new root key passphrase", rootPassword)
	secret(r, "repeat the new root key passphrase", rootPassword)
	r.waitFor("the root CRL step", 60*time.Second, "Step 2 on the root machine")
	r.keys("Enter")
	secret(r, "root key passphrase", rootPassword)
	r.waitFor("the copy step", 60*time.Second, "Step 3 on the root machine")
	r.keys("Enter")
	done(r, tr)

	for _, flow := range []string{"setup", "rotate"} {
		s, str := open("station", flow)
		if flow == "setup" {
			s.waitFor("the trust step", 30*time.Second, "root.crt (from the root machine)")
			s.keys("Enter")
			s.waitFor("the CSR step", 30*time.Second, "Step 2 on the station")
			s.keys("Enter")
			secret(s, "new intermediate key passphrase", ceremonyPass)
			secret(s, "repeat the new intermediate key passphrase", ceremonyPass)
		} else {
			s.waitFor("the CSR step", 30*time.Second, "Make the next intermediate key")
			s.keys("Enter")
			secret(s, "intermediate key passphrase", ceremonyPass)
		}
		s.waitFor("the install step", 60*time.Second, "chain.pem and crl-")
		rootSign()
		s.keys("Enter")
		secret(s, "intermediate key passphrase", ceremonyPass)
		done(s, str)
	}
	st, err := ca.ReadStatus(stDir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st.Issuer == nil || len(st.RetiredIssuers) != 1 {
		t.Fatalf("after the guided rotation: %+v", st)
	}
}

// TestInitPromptsTwice runs `wsc ca init` at a real terminal (tmux): the
// prompt names the key, a new passphrase is asked twice, entries that
// differ are refused and nothing is created; matching ones create the root.
func TestInitPromptsTwice(t *testing.T) {
	testenv.NeedTools(t, "tmux")
	wsc, _ := buildBinaries(t)
	work := t.TempDir()
	for i, second := range []string{"not the same passphrase at all", rootPassword} {
		dir := filepath.Join(work, fmt.Sprintf("root-%d", i))
		log := filepath.Join(work, fmt.Sprintf("out-%d.txt", i))
		m := &tmux{t: t, session: fmt.Sprintf("wsc-init-%d-%d", time.Now().UnixNano(), i)}
		m.run("new-session", "-d", "-s", m.session, "-x", "120", "-y", "20",
			fmt.Sprintf("%s ca init --ca-dir %s --root-only > %s 2>&1; echo exit=$? >> %s; sleep 60", wsc, dir, log, log))
		t.Cleanup(func() { _ = exec.Command("tmux", "kill-session", "-t", m.session).Run() })
		m.waitFor("the first prompt", 30*time.Second, "new root key passphrase:")
		m.literal(rootPassword)
		m.keys("Enter")
		m.waitFor("the second prompt", 30*time.Second, "repeat the new root key passphrase:")
		m.literal(second)
		m.keys("Enter")
		var out []byte
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if out, _ = os.ReadFile(log); bytes.Contains(out, []byte("exit=")) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, statErr := os.Stat(filepath.Join(dir, ca.RootKeyFile))
		if i == 0 {
			if !bytes.Contains(out, []byte("differ")) || !bytes.Contains(out, []byte("exit=2")) || statErr == nil { // a usage error (wsc help exit-codes)
				t.Errorf("different entries: %s (root key: %v)", out, statErr)
			}
			continue
		}
		if !bytes.Contains(out, []byte("exit=0")) || statErr != nil {
			t.Errorf("matching entries: %s (root key: %v)", out, statErr)
		}
		if k, err := ca.LoadEncryptedKey(filepath.Join(dir, ca.RootKeyFile), []byte(rootPassword)); err != nil || k == nil {
			t.Errorf("root key does not open with the passphrase typed: %v", err)
		}
	}
}

// TestTwoMachineCeremonyWithStation runs the two-machine ceremonies with a
// running `wsc station` provisioning simulated TPM devices before, between
// and after each step: the root key lives only in the root machine's
// folder; rotation, rollover and retirement reach the station through the
// documented files; the station reloads by itself; openssl verifies every
// device's chain with -crl_check_all for verifiers trusting the old or the
// new root.
func TestTwoMachineCeremonyWithStation(t *testing.T) {
	f := newStationFixture(t, 4, "")
	wsc, _ := buildBinaries(t)
	for _, d := range f.bench.Devices[1:] {
		d.Link.SetConnected(false)
	}
	stDir := filepath.Join(f.dir, "ca")
	rootDir := filepath.Join(f.dir, "root-machine")
	media := filepath.Join(f.dir, "usb")
	os.MkdirAll(filepath.Join(rootDir, ca.IssuedDir), 0o700)
	os.MkdirAll(media, 0o700)
	// The root key leaves the station: the root machine gets root.crt,
	// root.key and the copy of the intermediate it signed.
	for _, p := range []string{ca.RootCertFile, ca.RootKeyFile} {
		b, _ := os.ReadFile(filepath.Join(stDir, p))
		os.WriteFile(filepath.Join(rootDir, p), b, 0o600)
	}
	issued, _ := filepath.Glob(filepath.Join(stDir, ca.IssuedDir, "*.crt"))
	for _, p := range issued {
		b, _ := os.ReadFile(p)
		os.WriteFile(filepath.Join(rootDir, ca.IssuedDir, filepath.Base(p)), b, 0o644)
	}
	os.Remove(filepath.Join(stDir, ca.RootKeyFile))
	pf := "file:" + filepath.Join(f.dir, "pass")
	c := &ceremony{t: t, wsc: wsc, env: os.Environ()}

	p := startStation(t, f)
	passed := func(n int, what string) {
		t.Helper()
		p.wait(t, what, 90*time.Second, func(l []string) bool { return len(countPassed(l)) == n })
	}
	reloaded := func(n int) {
		t.Helper()
		p.wait(t, "the station reloading the CA", 30*time.Second, func(l []string) bool {
			return strings.Count(strings.Join(l, "\n"), "ca: CA reloaded") >= n
		})
	}
	rootCRLs := func() []string {
		for _, old := range must(filepath.Glob(filepath.Join(media, "crl-*.pem"))) {
			os.Remove(old)
		}
		c.run("ca", "crl", "--root", "--ca-dir", rootDir, "-o", media, "--passphrase-source", pf)
		return must(filepath.Glob(filepath.Join(media, "crl-*.pem")))
	}
	passed(1, "device 1 (before any ceremony)")

	// Rotation.
	c.run("ca", "intermediate", "csr", "--ca-dir", stDir, "-o", filepath.Join(media, "next.csr"), "--passphrase-source", pf)
	c.run("ca", "intermediate", "sign", "--ca-dir", rootDir, "--csr", filepath.Join(media, "next.csr"), "--cn", "wsc Station Intermediate 2", "-o", filepath.Join(media, "chain.pem"), "--passphrase-source", pf)
	crls := rootCRLs()
	c.run("ca", "intermediate", "install", "--ca-dir", stDir, "--chain", filepath.Join(media, "chain.pem"), "--passphrase-source", pf)
	c.run(append([]string{"ca", "import", "--ca-dir", stDir}, crls...)...)
	reloaded(1)
	f.bench.Devices[1].Link.SetConnected(true)
	passed(2, "device 2 (after the rotation)")

	// Rollover.
	c.run("ca", "root", "rollover", "--ca-dir", rootDir, "-o", filepath.Join(media, "chain.pem"), "--passphrase-source", pf)
	crls = rootCRLs()
	cross := []string{carry(t, filepath.Join(rootDir, ca.CrossDir, "new-by-old.crt"), media), carry(t, filepath.Join(rootDir, ca.CrossDir, "old-by-new.crt"), media),
		filepath.Join(media, ca.RecertifiedFile)}
	c.run(append(append([]string{"ca", "import", "--ca-dir", stDir, "--roots", carry(t, filepath.Join(rootDir, ca.RootCertFile), media)}, cross...), crls...)...)
	c.run("ca", "intermediate", "install", "--ca-dir", stDir, "--chain", filepath.Join(media, "chain.pem"), "--passphrase-source", pf)
	reloaded(2)
	f.bench.Devices[2].Link.SetConnected(true)
	passed(3, "device 3 (after the rollover)")

	dbPath := filepath.Join(f.dir, "station.db")
	leafOf := func(serial string) *x509.Certificate {
		s, err := db.Open(dbPath, db.WithReadOnly())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		cert, err := s.LiveCertificate(context.Background(), serial)
		if err != nil {
			t.Fatal(err)
		}
		x, err := x509.ParseCertificate(cert.DER)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	bundle := filepath.Join(f.dir, "bundle.pem")
	c.run("ca", "crl", "--ca-dir", stDir, "--db", dbPath, "--passphrase-source", pf)
	c.run("ca", "bundle", "--ca-dir", stDir, "-o", bundle)
	b := readBundle(t, bundle)
	if len(b.roots) != 2 {
		t.Fatalf("bundle roots: %d", len(b.roots))
	}
	for _, d := range f.bench.Devices[:3] {
		for _, root := range b.roots {
			if o, err := opensslCRLCheck(t, t.TempDir(), b, root, leafOf(d.Serial)); err != nil {
				t.Errorf("%s trusting only %s: %v %s", d.Serial, root.Subject.CommonName, err, o)
			}
		}
	}

	// Retire the old root.
	c.run("ca", "root", "retire", "--ca-dir", rootDir, "--root-key-id", hex.EncodeToString(b.roots[1].SubjectKeyId), "--passphrase-source", pf)
	crls = rootCRLs()
	c.run(append([]string{"ca", "import", "--ca-dir", stDir, "--roots", carry(t, filepath.Join(rootDir, ca.RootCertFile), media)}, crls...)...)
	reloaded(3)
	f.bench.Devices[3].Link.SetConnected(true)
	passed(4, "device 4 (after the old root's retirement)")
	c.run("ca", "crl", "--ca-dir", stDir, "--db", dbPath, "--passphrase-source", pf)
	c.run("ca", "bundle", "--ca-dir", stDir, "-o", bundle)
	b = readBundle(t, bundle)
	if len(b.roots) != 1 {
		t.Fatalf("bundle roots after retire: %d", len(b.roots))
	}
	for _, d := range f.bench.Devices {
		if o, err := opensslCRLCheck(t, t.TempDir(), b, b.roots[0], leafOf(d.Serial)); err != nil {
			t.Errorf("%s after retire: %v %s", d.Serial, err, o)
		}
	}
	if _, err := os.Stat(filepath.Join(stDir, ca.RootKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("a root key appeared in the station folder")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
