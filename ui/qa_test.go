package ui

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/xml"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/wsc-project/wsc/wasmsign"
)

// qaUpdate applies msgs to a QA model, runs the commands and feeds their
// messages back until nothing is left. Commands here return promptly: the
// verification command waits for the runner's next report.
func qaUpdate(t *testing.T, m QAModel, msgs ...tea.Msg) QAModel {
	t.Helper()
	for len(msgs) > 0 {
		var cmds []tea.Cmd
		for _, msg := range msgs {
			nm, cmd := m.Update(msg)
			m = nm.(QAModel)
			cmds = append(cmds, cmd)
		}
		msgs = run(cmds...)
	}
	return m
}

// verifiedQA returns a QA view that verified the fixture folder.
func verifiedQA(t *testing.T) (QAModel, qaFixture) {
	t.Helper()
	f := newQAFixture(t)
	m := NewQAModel(QAOptions{Runner: f.runner(), Dir: f.dir, Now: fixedClock(t0)})
	m = qaUpdate(t, m, tea.WindowSizeMsg{Width: 100, Height: 30}, keyType(tea.KeyEnter))
	if m.phase != qaResults || len(m.results) != 5 {
		t.Fatalf("phase %v, %d results; notice %q", m.phase, len(m.results), m.notice)
	}
	return m, f
}

func TestQAVerifiesFolder(t *testing.T) {
	m, _ := verifiedQA(t)
	if m.done != 5 || m.total != 5 {
		t.Fatalf("progress %d/%d, want 5/5", m.done, m.total)
	}
	v := m.View()
	mustContain(t, v, "5 modules", "2 valid", "3 invalid", "line-a/fw-0001.wasm", "5F3A01", "TPM-00A1B2C3D4E5F601",
		"module content does not mat")
}

func TestQAFailuresFilter(t *testing.T) {
	m, _ := verifiedQA(t)
	m = qaUpdate(t, m, keyRunes("f"))
	if got := len(m.table.Rows()); got != 3 {
		t.Fatalf("failures only: %d rows, want 3", got)
	}
	for _, row := range m.table.Rows() {
		if row[3] == string(wasmsign.StatusValid) {
			t.Fatalf("valid row in failures only: %q", row)
		}
	}
	mustContain(t, m.View(), "failures only")
	m = qaUpdate(t, m, keyRunes("f"))
	if got := len(m.table.Rows()); got != 5 {
		t.Fatalf("all results: %d rows, want 5", got)
	}
}

func TestQAExport(t *testing.T) {
	for _, tt := range []struct {
		name, file, format string
		check              func(t *testing.T, b []byte)
	}{
		{"json", "report.json", "JSON", func(t *testing.T, b []byte) {
			var rep wasmsign.Report
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Total != 5 || rep.Valid != 2 {
				t.Fatalf("report %+v", rep)
			}
		}},
		{"junit", "report.xml", "JUnit", func(t *testing.T, b []byte) {
			var v struct {
				XMLName xml.Name
			}
			if err := xml.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "fw-0003.wasm") {
				t.Fatalf("JUnit report lacks a module:\n%s", b)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := verifiedQA(t)
			// Filtering does not change what is exported: every result.
			m = qaUpdate(t, m, keyRunes("f"), keyRunes("e"))
			if m.phase != qaExport {
				t.Fatal("e does not open the export field")
			}
			path := filepath.Join(t.TempDir(), tt.file)
			m.out.SetValue(path)
			m = qaUpdate(t, m, keyType(tea.KeyEnter))
			if m.noticeErr || m.phase != qaResults {
				t.Fatalf("export: %q", m.notice)
			}
			mustContain(t, m.View(), tt.format+" report written to")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, b)
		})
	}
}

func TestQAExportError(t *testing.T) {
	m, _ := verifiedQA(t)
	m = qaUpdate(t, m, keyRunes("e"))
	m.out.SetValue(filepath.Join(t.TempDir(), "missing", "r.json"))
	m = qaUpdate(t, m, keyType(tea.KeyEnter))
	if !m.noticeErr || !strings.Contains(m.notice, "Report not written: create report:") {
		t.Fatalf("notice %q", m.notice)
	}
}

func TestQAEmptyFolder(t *testing.T) {
	f := newQAFixture(t)
	m := NewQAModel(QAOptions{Runner: f.runner(), Dir: t.TempDir(), Now: fixedClock(t0)})
	m = qaUpdate(t, m, keyType(tea.KeyEnter))
	if m.phase != qaPick {
		t.Fatalf("phase %v after an empty folder", m.phase)
	}
	mustContain(t, m.View(), "No .wasm module found in")
}

func TestQACancel(t *testing.T) {
	f := newQAFixture(t)
	g := &gatedRunner{inner: f.runner(), at: 2, release: make(chan struct{})}
	t.Cleanup(g.Release)
	m := NewQAModel(QAOptions{Runner: g, Dir: f.dir, Now: fixedClock(t0)})
	nm, cmd := m.Update(keyType(tea.KeyEnter))
	m = nm.(QAModel)
	// Follow the run until it holds at 2 of 5.
	for m.done < 2 {
		nm, cmd = m.Update(cmd())
		m = nm.(QAModel)
	}
	mustContain(t, m.View(), "2/5")
	nm, ccmd := m.Update(keyType(tea.KeyEsc))
	m = nm.(QAModel)
	run(ccmd) // cancels the run's context
	for m.phase == qaRunning {
		nm, cmd = m.Update(cmd())
		m = nm.(QAModel)
	}
	if !strings.Contains(m.notice, "Verification cancelled after 2 of 5 modules") {
		t.Fatalf("notice %q", m.notice)
	}
}

func TestQAStaleRunIgnored(t *testing.T) {
	m := NewQAModel(QAOptions{Runner: VerifyFunc(func(context.Context, []string, func(int, int)) ([]wasmsign.Result, error) {
		return nil, nil
	})})
	m.run, m.phase = 2, qaRunning
	nm, _ := m.Update(QAProgressMsg{Run: 1, Done: 3, Total: 4})
	nm, _ = nm.Update(QADoneMsg{Run: 1, Results: []wasmsign.Result{{File: "x.wasm"}}})
	m = nm.(QAModel)
	if m.done != 0 || m.phase != qaRunning || len(m.results) != 0 {
		t.Fatal("a message of an older run changed the view")
	}
}

// hostilePKI is a real throwaway PKI (root → device leaf) whose leaf
// subject is chosen by an attacker: an escape sequence and a newline in
// the serialNumber, a right-to-left override and 12 KB in the CN (wasmsign
// refuses certificates over 16 KiB; 200 KB strings are in TestUntrusted).
type hostilePKI struct {
	root    *x509.Certificate
	rootKey *ecdsa.PrivateKey
	leafKey *ecdsa.PrivateKey
	leaf    *x509.Certificate
}

const hostileSerial = "SIM\x1b[2J\nFORGED 0 failed"

func newHostilePKI(t *testing.T) hostilePKI {
	t.Helper()
	var p hostilePKI
	var err error
	if p.rootKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root \u202eevil"},
		NotBefore: t0.Add(-24 * time.Hour), NotAfter: t0.Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, rt, rt, &p.rootKey.PublicKey, p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	if p.root, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	if p.leafKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	lt := &x509.Certificate{SerialNumber: big.NewInt(0x5f3a99),
		Subject:   pkix.Name{CommonName: "\u202egnp.exe " + strings.Repeat("A", 12<<10), SerialNumber: hostileSerial},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	if der, err = x509.CreateCertificate(rand.Reader, lt, p.root, &p.leafKey.PublicKey, p.rootKey); err != nil {
		t.Fatal(err)
	}
	if p.leaf, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	if p.leaf.Subject.SerialNumber != hostileSerial {
		t.Fatalf("the certificate does not carry the hostile serial: %q", p.leaf.Subject.SerialNumber)
	}
	return p
}

func (p hostilePKI) crl(t *testing.T) *x509.RevocationList {
	t.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(time.Hour)}, p.root, p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

// writeSigned signs a small module with the hostile leaf into dir/name.
func (p hostilePKI) writeSigned(t *testing.T, dir, name string) {
	t.Helper()
	module := append([]byte("\x00asm\x01\x00\x00\x00\x00\x0b\x04note"), "v1.2.3"...)
	signed, err := wasmsign.Sign(module, p.leafKey, []*x509.Certificate{p.leaf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), signed, 0o644); err != nil {
		t.Fatal(err)
	}
}

// mustBeDisplaySafe asserts on the bytes of a rendered view: no escape
// character, no C1 control, no bidi override, no invalid UTF-8, no line
// that a device string started.
func mustBeDisplaySafe(t *testing.T, view string) {
	t.Helper()
	for _, bad := range []string{"\x1b", "\u009b", "\u202e", "\r", "\x00"} {
		if strings.Contains(view, bad) {
			t.Fatalf("view holds raw %q:\n%s", bad, view)
		}
	}
	if !utf8.ValidString(view) {
		t.Fatalf("view is not valid UTF-8:\n%q", view)
	}
	for _, l := range strings.Split(view, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "FORGED") {
			t.Fatalf("a device string started a line: %q", l)
		}
	}
}

// TestQAEscapesUntrustedText: a module signed by a certificate with a
// hostile subject, in a file whose name holds an escape, a newline and
// invalid UTF-8, is shown with every such character escaped.
func TestQAEscapesUntrustedText(t *testing.T) {
	p := newHostilePKI(t)
	dir := t.TempDir()
	p.writeSigned(t, dir, "fw-\x1b]0;owned\x07\n\xff.wasm")
	pol := &wasmsign.TrustPolicy{Roots: []*x509.Certificate{p.root}, CRLs: []*x509.RevocationList{p.crl(t)}, At: t0, AtExplicit: true}
	runner := VerifyFunc(func(ctx context.Context, paths []string, progress func(done, total int)) ([]wasmsign.Result, error) {
		return wasmsign.BatchVerify(ctx, paths, pol, 1, progress)
	})
	m := NewQAModel(QAOptions{Runner: runner, Dir: dir, Now: fixedClock(t0)})
	m = qaUpdate(t, m, tea.WindowSizeMsg{Width: 200, Height: 30}, keyType(tea.KeyEnter))
	if len(m.results) != 1 || m.results[0].Status != wasmsign.StatusValid || m.results[0].DeviceSerial != hostileSerial {
		t.Fatalf("results %+v; notice %q", m.results, m.notice)
	}
	v := m.View()
	mustBeDisplaySafe(t, v)
	mustContain(t, v, `fw-\x1b]0;owned\x07\n\xff.wasm`, `SIM\x1b[2J\nFOR`, `CN=\u202egnp.exe`)
	if len(v) > 8<<10 {
		t.Fatalf("the 12 KB subject reached the view: %d bytes", len(v))
	}
}

// TestQAMissingCRL: without a CRL of the root, the module is refused and
// the view names the CA and says what to do; with AllowMissingCRL it is
// accepted and every row and the summary say revocation was not checked.
func TestQAMissingCRL(t *testing.T) {
	p := newHostilePKI(t)
	dir := t.TempDir()
	p.writeSigned(t, dir, "fw.wasm")
	pol := &wasmsign.TrustPolicy{Roots: []*x509.Certificate{p.root}, At: t0, AtExplicit: true}
	runner := VerifyFunc(func(ctx context.Context, paths []string, progress func(done, total int)) ([]wasmsign.Result, error) {
		return wasmsign.BatchVerify(ctx, paths, pol, 1, progress)
	})
	m := NewQAModel(QAOptions{Runner: runner, Dir: dir, Now: fixedClock(t0)})
	m = qaUpdate(t, m, tea.WindowSizeMsg{Width: 120, Height: 30}, keyType(tea.KeyEnter))
	if len(m.results) != 1 || m.results[0].Status != wasmsign.StatusInvalid {
		t.Fatalf("results %+v", m.results)
	}
	v := m.View()
	mustBeDisplaySafe(t, v)
	mustContain(t, strings.Join(strings.Fields(v), " "), `No CRL for CN=root \u202eevil in the trust bundle`, "wsc ca bundle", "--allow-missing-crl", "the report will say so")

	pol.AllowMissingCRL = true
	m = NewQAModel(QAOptions{Runner: runner, Dir: dir, Now: fixedClock(t0)})
	m = qaUpdate(t, m, tea.WindowSizeMsg{Width: 200, Height: 30}, keyType(tea.KeyEnter))
	if len(m.results) != 1 || m.results[0].Status != wasmsign.StatusValid || !m.results[0].RevocationUnchecked {
		t.Fatalf("results %+v", m.results)
	}
	if row := m.table.Rows()[0]; row[3] != "valid!" || !strings.Contains(row[4], "revocation not checked") {
		t.Fatalf("row does not say revocation was not checked: %q", row)
	}
	mustContain(t, m.View(), "1 accepted WITHOUT CRL CHECK")
}
