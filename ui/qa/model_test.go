package qa

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
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/muesli/termenv"
	"github.com/wsc-project/wsc/station/untrusted"
	"github.com/wsc-project/wsc/wasmsign"
)

// verified returns a QA view that verified the fixture folder at w×h.
func verified(t *testing.T, w, h int) (Model, qaFixture) {
	t.Helper()
	f := newQAFixture(t)
	m := New(Options{Runner: f.runner(), Dir: f.dir, Now: fixedClock(t0)})
	m = update(t, m, tea.WindowSizeMsg{Width: w, Height: h}, keyType(tea.KeyEnter))
	if m.screen != ScreenResults || len(m.Results()) != 5 {
		t.Fatalf("screen %v, %d results; notice %q", m.screen, len(m.Results()), m.notice)
	}
	return m, f
}

func TestVerifiesFolder(t *testing.T) {
	m, _ := verified(t, 100, 30)
	v := m.View()
	mustContain(t, v, "Total 5", "Valid 2", "Invalid 3", "Pending 0", "Elapsed 0.00 s", "line-a/fw-0001.wasm", "5F3A01",
		"TPM-00A1B2C3D4E5F601", "module content does not mat")
	if lipgloss.Height(v) > 30 {
		t.Fatalf("view is %d lines on a 30-line terminal", lipgloss.Height(v))
	}
}

// TestStateWords: every row says its state in a word, whatever the colour.
func TestStateWords(t *testing.T) {
	m, _ := verified(t, 120, 30)
	want := map[string]string{"fw-0001.wasm": "valid", "fw-0002.wasm": "valid", "fw-0003.wasm": "invalid", "fw-0004.wasm": "invalid", "readme.wasm": "invalid"}
	for _, l := range strings.Split(m.View(), "\n") {
		for file, word := range want {
			if strings.Contains(l, file+" ") && !regexp.MustCompile(`\s`+word+`(\s|$)`).MatchString(l) {
				t.Errorf("row of %s does not say %q: %q", file, word, l)
			}
		}
	}
}

// TestStateColours renders with a colour profile: the state word of a
// valid row is green, of an invalid row red, of a pending row neither.
func TestStateColours(t *testing.T) {
	lipgloss.SetColorProfile(termenv.ANSI)
	t.Cleanup(func() { lipgloss.SetColorProfile(termenv.Ascii) })
	green := styleOK.Render("valid  ")
	red := styleFail.Render("invalid")
	if green == "valid  " || red == "invalid" || !strings.Contains(green, "32") || !strings.Contains(red, "31") {
		t.Fatalf("the profile gives no colour: %q %q", green, red)
	}
	m, _ := verified(t, 120, 30)
	v := m.View()
	rowOf := func(file string) string {
		for _, l := range strings.Split(v, "\n") {
			if strings.Contains(ansi.Strip(l), file+" ") {
				return l
			}
		}
		t.Fatalf("no row for %s:\n%s", file, v)
		return ""
	}
	if r := rowOf("fw-0001.wasm"); !strings.Contains(r, green) || strings.Contains(r, "\x1b[31") {
		t.Errorf("valid row not green: %q", r)
	}
	if r := rowOf("fw-0003.wasm"); !strings.Contains(r, red) || strings.Contains(r, "\x1b[32") {
		t.Errorf("invalid row not red: %q", r)
	}

	// Pending rows: neutral (the dim grey, neither green nor red).
	f := newQAFixture(t)
	g := &gatedRunner{inner: f.runner(), at: 2, release: make(chan struct{})}
	t.Cleanup(g.Release)
	pm, _ := running(t, New(Options{Runner: g, Dir: f.dir, Now: fixedClock(t0)}), 120, 30, 2)
	for _, l := range strings.Split(pm.View(), "\n") {
		if strings.Contains(ansi.Strip(l), " pending") && (strings.Contains(l, "\x1b[31") || strings.Contains(l, "\x1b[32")) {
			t.Errorf("pending row coloured as a verdict: %q", l)
		}
	}
}

// running starts a verification with a gated runner and follows it until
// `at` results are in.
func running(t *testing.T, m Model, w, h, at int) (Model, tea.Cmd) {
	t.Helper()
	nm, _ := m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	m = nm.(Model)
	nm, cmd := m.Update(keyType(tea.KeyEnter))
	m = nm.(Model)
	nm, cmd = m.Update(cmd()) // the listing
	m = nm.(Model)
	for {
		_, _, pending := m.counts()
		if len(m.files)-pending >= at {
			return m, cmd
		}
		nm, cmd = m.Update(cmd())
		m = nm.(Model)
	}
}

func TestPendingRows(t *testing.T) {
	f := newQAFixture(t)
	g := &gatedRunner{inner: f.runner(), at: 2, release: make(chan struct{})}
	t.Cleanup(g.Release)
	m, _ := running(t, New(Options{Runner: g, Dir: f.dir, Now: fixedClock(t0)}), 120, 30, 2)
	if m.screen != ScreenRunning {
		t.Fatalf("screen %v", m.screen)
	}
	v := m.View()
	mustContain(t, v, "Total 5", "Valid 2", "Invalid 0", "Pending 3", "2/5", "Esc cancels")
	if n := len(regexp.MustCompile(`(?m)\spending$`).FindAllString(v, -1)); n != 3 {
		t.Fatalf("%d pending rows, want 3:\n%s", n, v)
	}
}

func TestFailuresFilter(t *testing.T) {
	m, _ := verified(t, 100, 30)
	m = update(t, m, keyRunes("f"))
	if len(m.shown) != 3 {
		t.Fatalf("failures only: %d rows, want 3", len(m.shown))
	}
	for _, i := range m.shown {
		if !m.isFailure(i) {
			t.Fatalf("valid row %s in failures only", m.files[i])
		}
	}
	mustContain(t, m.View(), "failures only")
	m = update(t, m, keyRunes("f"))
	if len(m.shown) != 5 {
		t.Fatalf("all results: %d rows, want 5", len(m.shown))
	}
}

func TestExport(t *testing.T) {
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
			var v struct{ XMLName xml.Name }
			if err := xml.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "fw-0003.wasm") {
				t.Fatalf("JUnit report lacks a module:\n%s", b)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := verified(t, 100, 30)
			// Filtering does not change what is exported: every result.
			m = update(t, m, keyRunes("f"), keyRunes("e"))
			if m.screen != ScreenExport {
				t.Fatal("e does not open the export field")
			}
			path := filepath.Join(t.TempDir(), tt.file)
			m.out.SetValue(path)
			m = update(t, m, keyType(tea.KeyEnter))
			if m.noticeErr || m.screen != ScreenResults {
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

func TestExportError(t *testing.T) {
	m, _ := verified(t, 100, 30)
	m = update(t, m, keyRunes("e"))
	m.out.SetValue(filepath.Join(t.TempDir(), "missing", "r.json"))
	m = update(t, m, keyType(tea.KeyEnter))
	if !m.noticeErr || !strings.Contains(m.notice, "Report not written: create report:") {
		t.Fatalf("notice %q", m.notice)
	}
}

func TestEmptyFolder(t *testing.T) {
	f := newQAFixture(t)
	dir := t.TempDir()
	m := New(Options{Runner: f.runner(), Dir: dir, Now: fixedClock(t0)})
	m = update(t, m, keyType(tea.KeyEnter))
	if m.screen != ScreenEmpty {
		t.Fatalf("screen %v after an empty folder", m.screen)
	}
	mustContain(t, strings.Join(strings.Fields(m.View()), " "), "EMPTY", "No .wasm module found in "+dir, "press Esc")
}

// TestFolderErrors: a folder that does not exist, or a path that cannot
// be read as a folder, is an error screen with an instruction — never a
// table with one module in error.
func TestFolderErrors(t *testing.T) {
	f := newQAFixture(t)
	file := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, dir string
		want      []string
	}{
		{"missing", filepath.Join(f.dir, "no-such-folder"), []string{"ERROR", "does not exist", "Check the path", "press Esc"}},
		{"not a folder", filepath.Join(file, "sub"), []string{"ERROR", "cannot be read", "not a directory", "press Esc"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Options{Runner: f.runner(), Dir: tt.dir, Now: fixedClock(t0)})
			m = update(t, m, tea.WindowSizeMsg{Width: 80, Height: 24}, keyType(tea.KeyEnter))
			if m.screen != ScreenFolderError || len(m.files) != 0 || len(m.Results()) != 0 {
				t.Fatalf("screen %v, %d files", m.screen, len(m.files))
			}
			v := strings.Join(strings.Fields(m.View()), " ")
			mustContain(t, v, tt.want...)
			if strings.Contains(v, "Total") || strings.Contains(v, "Signer serial") {
				t.Fatalf("a folder error shows a result table:\n%s", m.View())
			}
		})
	}
}

// TestEscLeavesEveryScreen: Esc leaves each screen, to the screen before.
func TestEscLeavesEveryScreen(t *testing.T) {
	f := newQAFixture(t)
	esc := keyType(tea.KeyEsc)
	press := func(m Model, k tea.KeyMsg) (Model, tea.Cmd) {
		nm, cmd := m.Update(k)
		return nm.(Model), cmd
	}
	t.Run("pick without results quits", func(t *testing.T) {
		m := New(Options{Runner: f.runner(), Dir: f.dir, Now: fixedClock(t0)})
		if _, cmd := press(m, esc); !isQuit(cmd) {
			t.Fatal("Esc on the first screen does not quit")
		}
	})
	t.Run("listing", func(t *testing.T) {
		m := New(Options{Runner: f.runner(), Dir: f.dir, Now: fixedClock(t0)})
		m, list := press(m, keyType(tea.KeyEnter))
		if m.screen != ScreenListing {
			t.Fatalf("screen %v", m.screen)
		}
		m, _ = press(m, esc)
		if m.screen != ScreenPick {
			t.Fatalf("Esc while listing: screen %v", m.screen)
		}
		m = update(t, m, list()) // the late listing is ignored
		if m.screen != ScreenPick {
			t.Fatalf("a listing after Esc changed the screen to %v", m.screen)
		}
	})
	t.Run("running", func(t *testing.T) {
		g := &gatedRunner{inner: f.runner(), at: 2, release: make(chan struct{})}
		t.Cleanup(g.Release)
		m, cmd := running(t, New(Options{Runner: g, Dir: f.dir, Now: fixedClock(t0)}), 100, 30, 2)
		nm, ccmd := m.Update(esc)
		m = nm.(Model)
		run(ccmd) // cancels the run's context
		for m.screen == ScreenRunning {
			nm, cmd = m.Update(cmd())
			m = nm.(Model)
		}
		if m.screen != ScreenResults {
			t.Fatalf("Esc while running: screen %v", m.screen)
		}
	})
	t.Run("results to pick and back", func(t *testing.T) {
		m, _ := verified(t, 100, 30)
		m, _ = press(m, esc)
		if m.screen != ScreenPick {
			t.Fatalf("Esc on results: screen %v", m.screen)
		}
		m, _ = press(m, esc)
		if m.screen != ScreenResults {
			t.Fatalf("Esc on the folder field after results: screen %v", m.screen)
		}
	})
	t.Run("export", func(t *testing.T) {
		m, _ := verified(t, 100, 30)
		m, _ = press(m, keyRunes("e"))
		m, _ = press(m, esc)
		if m.screen != ScreenResults {
			t.Fatalf("Esc on export: screen %v", m.screen)
		}
	})
	t.Run("help", func(t *testing.T) {
		m, _ := verified(t, 100, 30)
		m, _ = press(m, keyRunes("?"))
		m, _ = press(m, esc)
		if m.screen != ScreenResults || m.showHelp {
			t.Fatalf("Esc on help: screen %v, help %v", m.screen, m.showHelp)
		}
	})
	for _, tt := range []struct {
		name, dir string
		screen    Screen
	}{
		{"empty", t.TempDir(), ScreenEmpty},
		{"folder error", filepath.Join(f.dir, "missing"), ScreenFolderError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Options{Runner: f.runner(), Dir: tt.dir, Now: fixedClock(t0)})
			m = update(t, m, keyType(tea.KeyEnter))
			if m.screen != tt.screen {
				t.Fatalf("screen %v, want %v", m.screen, tt.screen)
			}
			m, _ = press(m, esc)
			if m.screen != ScreenPick || !m.dir.Focused() {
				t.Fatalf("Esc: screen %v, field focused %v", m.screen, m.dir.Focused())
			}
		})
	}
}

func TestCancel(t *testing.T) {
	f := newQAFixture(t)
	g := &gatedRunner{inner: f.runner(), at: 2, release: make(chan struct{})}
	t.Cleanup(g.Release)
	m := New(Options{Runner: g, Dir: f.dir, Now: fixedClock(t0)})
	nm, _ := m.Update(tea.WindowSizeMsg{Width: 100, Height: 30})
	m = nm.(Model)
	nm, cmd := m.Update(keyType(tea.KeyEnter))
	m = nm.(Model)
	nm, cmd = m.Update(cmd())
	m = nm.(Model)
	for len(m.Results()) < 2 {
		nm, cmd = m.Update(cmd())
		m = nm.(Model)
	}
	mustContain(t, m.View(), "2/5")
	nm, ccmd := m.Update(keyType(tea.KeyEsc))
	m = nm.(Model)
	run(ccmd) // cancels the run's context
	for m.screen == ScreenRunning {
		nm, cmd = m.Update(cmd())
		m = nm.(Model)
	}
	if m.screen != ScreenResults || !strings.Contains(m.notice, "Verification cancelled after 2 of 5 modules") {
		t.Fatalf("screen %v, notice %q", m.screen, m.notice)
	}
	v := m.View()
	mustContain(t, v, "Skipped 3")
	if n := len(regexp.MustCompile(`(?m)\sskipped$`).FindAllString(v, -1)); n != 3 {
		t.Fatalf("%d skipped rows, want 3:\n%s", n, v)
	}
}

func TestStaleRunIgnored(t *testing.T) {
	m := New(Options{Runner: RunnerFunc(func(context.Context, []string, func(int, wasmsign.Result)) error { return nil })})
	m.run, m.screen = 2, ScreenRunning
	m.files, m.results = []string{"a.wasm"}, make([]*wasmsign.Result, 1)
	nm, _ := m.Update(ResultMsg{Run: 1, Index: 0, Result: wasmsign.Result{File: "x.wasm"}})
	nm, _ = nm.Update(DoneMsg{Run: 1})
	nm, _ = nm.Update(ListedMsg{Run: 1, Files: []string{"b.wasm", "c.wasm"}})
	m = nm.(Model)
	if m.screen != ScreenRunning || len(m.Results()) != 0 || len(m.files) != 1 {
		t.Fatal("a message of an older run changed the view")
	}
}

// TestDetailsWrapped: the whole reason of the selected row is shown,
// wrapped to the width — at 80 columns a long one takes more than two
// lines and is never cut.
func TestDetailsWrapped(t *testing.T) {
	p := newHostilePKI(t)
	dir := t.TempDir()
	p.writeSigned(t, dir, "fw.wasm")
	// No CRL: refused, with a reason naming the root and the whole signer.
	pol := &wasmsign.TrustPolicy{Roots: []*x509.Certificate{p.root}, At: t0, AtExplicit: true}
	m := New(Options{Runner: PolicyRunner(pol, 1), Dir: dir, Now: fixedClock(t0)})
	m = update(t, m, tea.WindowSizeMsg{Width: 80, Height: 40}, keyType(tea.KeyEnter))
	res := m.Results()
	if len(res) != 1 || res[0].Status != wasmsign.StatusInvalid {
		t.Fatalf("results %+v", res)
	}
	det := m.details()
	if len(det) <= 2 {
		t.Fatalf("details in %d lines: %q", len(det), det)
	}
	for _, l := range det {
		if w := ansi.StringWidth(l); w > 80 {
			t.Fatalf("detail line of %d cells: %q", w, l)
		}
	}
	joined := strings.Join(det, "")
	for _, want := range []string{untrusted.String(res[0].Reason), untrusted.String(res[0].Signer)} {
		if !strings.Contains(strings.ReplaceAll(joined, " ", ""), strings.ReplaceAll(want, " ", "")) {
			t.Fatalf("details cut: %q lacks %q", joined, want)
		}
	}
	v := m.View()
	for _, l := range det {
		if !strings.Contains(v, l) {
			t.Fatalf("the view lacks detail line %q", l)
		}
	}
}

// hostilePKI is a real throwaway PKI (root → device leaf) whose leaf
// subject is chosen by an attacker: an escape sequence and a newline in
// the serialNumber, a right-to-left override and 12 KB in the CN (wasmsign
// refuses certificates over 16 KiB).
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

// TestEscapesUntrustedText: a module signed by a certificate with a
// hostile subject, in a file whose name holds an escape, a newline and
// invalid UTF-8, is shown with every such character escaped.
func TestEscapesUntrustedText(t *testing.T) {
	p := newHostilePKI(t)
	dir := t.TempDir()
	p.writeSigned(t, dir, "fw-\x1b]0;owned\x07\n\xff.wasm")
	pol := &wasmsign.TrustPolicy{Roots: []*x509.Certificate{p.root}, CRLs: []*x509.RevocationList{p.crl(t)}, At: t0, AtExplicit: true}
	m := New(Options{Runner: PolicyRunner(pol, 1), Dir: dir, Now: fixedClock(t0)})
	m = update(t, m, tea.WindowSizeMsg{Width: 200, Height: 30}, keyType(tea.KeyEnter))
	res := m.Results()
	if len(res) != 1 || res[0].Status != wasmsign.StatusValid || res[0].DeviceSerial != hostileSerial {
		t.Fatalf("results %+v; notice %q", res, m.notice)
	}
	v := m.View()
	mustBeDisplaySafe(t, v)
	mustContain(t, v, `fw-\x1b]0;owned\x07\n\xff.wasm`, `SIM\x1b[2J\nFOR`, `CN=\u202egnp.exe`)
	if len(v) > 8<<10 {
		t.Fatalf("the 12 KB subject reached the view: %d bytes", len(v))
	}
}

// TestMissingCRL: without a CRL of the root, the module is refused and
// the view names the CA and says what to do; with AllowMissingCRL it is
// accepted and its row and the summary say revocation was not checked.
func TestMissingCRL(t *testing.T) {
	p := newHostilePKI(t)
	dir := t.TempDir()
	p.writeSigned(t, dir, "fw.wasm")
	pol := &wasmsign.TrustPolicy{Roots: []*x509.Certificate{p.root}, At: t0, AtExplicit: true}
	m := New(Options{Runner: PolicyRunner(pol, 1), Dir: dir, Now: fixedClock(t0)})
	m = update(t, m, tea.WindowSizeMsg{Width: 120, Height: 30}, keyType(tea.KeyEnter))
	if res := m.Results(); len(res) != 1 || res[0].Status != wasmsign.StatusInvalid {
		t.Fatalf("results %+v", res)
	}
	v := m.View()
	mustBeDisplaySafe(t, v)
	mustContain(t, strings.Join(strings.Fields(v), " "), `No CRL for CN=root \u202eevil in the trust bundle`, "wsc ca bundle", "--allow-missing-crl", "the report will say so")

	allow := *pol
	allow.AllowMissingCRL = true
	m = New(Options{Runner: PolicyRunner(&allow, 1), Dir: dir, Now: fixedClock(t0)})
	m = update(t, m, tea.WindowSizeMsg{Width: 200, Height: 30}, keyType(tea.KeyEnter))
	if res := m.Results(); len(res) != 1 || res[0].Status != wasmsign.StatusValid || !res[0].RevocationUnchecked {
		t.Fatalf("results %+v", res)
	}
	if word, _ := m.state(0); word != "valid!" {
		t.Fatalf("row state %q, want valid!", word)
	}
	mustContain(t, m.View(), "1 accepted WITHOUT CRL CHECK", "revocation not checked")
}
