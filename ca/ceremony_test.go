package ca

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	rootPass    = []byte("lantern-ribbon-orchard-velvet-comet")
	stationPass = []byte("station seven passphrase of forty chars")
)

// machines is the two-machine set-up: a root machine folder and a station
// folder that exchange files only through media (the removable medium),
// and only the files docs/ca-ceremony.md lists.
type machines struct {
	t                    *testing.T
	root, station, media string
	ctx                  context.Context
}

func newMachines(t *testing.T) *machines {
	base := t.TempDir()
	m := &machines{t: t, root: filepath.Join(base, "root-machine"), station: filepath.Join(base, "station", "ca"), media: filepath.Join(base, "usb"), ctx: context.Background()}
	for _, d := range []string{m.root, m.station, m.media} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// documented lists the files that may cross between the machines.
var documented = []string{"root.crt", "next.csr", "chain.pem", "crl-*.pem", "new-by-old.crt", "old-by-new.crt", RecertifiedFile}

// carry copies a file from one machine onto the medium, refusing any file
// the ceremony document does not list.
func (m *machines) carry(src string) string {
	m.t.Helper()
	name := filepath.Base(src)
	ok := false
	for _, pat := range documented {
		if match, _ := filepath.Match(pat, name); match {
			ok = true
		}
	}
	if !ok {
		m.t.Fatalf("%s is not a documented ceremony file", name)
	}
	if filepath.Dir(src) == m.media {
		return src
	}
	b, err := os.ReadFile(src)
	if err != nil {
		m.t.Fatal(err)
	}
	dst := filepath.Join(m.media, name)
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		m.t.Fatal(err)
	}
	return dst
}

func (m *machines) rootCer() Ceremony    { return Ceremony{Dir: m.root, Actor: "root-officer"} }
func (m *machines) stationCer() Ceremony { return Ceremony{Dir: m.station, Actor: "station-officer"} }

// rotate runs csr (station) → sign (root) → install (station).
func (m *machines) rotate(cn string) *x509.Certificate {
	m.t.Helper()
	csrPath := filepath.Join(m.media, "next.csr")
	der, _, err := IntermediateCSR(m.ctx, m.stationCer(), stationPass, cn, csrPath)
	if err != nil {
		m.t.Fatalf("intermediate csr: %v", err)
	}
	chainPath := filepath.Join(m.media, "chain.pem")
	cert, _, err := SignIntermediateCSR(m.ctx, m.rootCer(), rootPass, der, IntermediateTemplate{CommonName: cn, Organization: "wsc test"}, chainPath)
	if err != nil {
		m.t.Fatalf("intermediate sign: %v", err)
	}
	chain, err := readCerts(m.carry(chainPath))
	if err != nil {
		m.t.Fatal(err)
	}
	if _, err := InstallIntermediate(m.ctx, m.stationCer(), stationPass, chain); err != nil {
		m.t.Fatalf("intermediate install: %v", err)
	}
	return cert
}

// rootCRLs signs every root's CRL on the root machine and imports them on the station.
func (m *machines) rootCRLs() []*x509.RevocationList {
	m.t.Helper()
	crls, _, err := RootCRLs(m.ctx, m.rootCer(), rootPass, 30*24*time.Hour, m.media)
	if err != nil {
		m.t.Fatalf("root CRLs: %v", err)
	}
	var files []string
	for _, c := range crls {
		files = append(files, m.carry(filepath.Join(m.media, "crl-"+hex.EncodeToString(c.AuthorityKeyId)+".pem")))
	}
	if _, err := Import(m.ctx, m.stationCer(), ImportOptions{Files: files}); err != nil {
		m.t.Fatalf("import root CRLs: %v", err)
	}
	return crls
}

func openStation(t *testing.T, dir string, revs *memRevocations) *CA {
	t.Helper()
	c, err := Open(dir, stationPass, WithRevocationStore(revs))
	if err != nil {
		t.Fatalf("open station CA: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// opensslCheck verifies leaf with -crl_check_all for a verifier trusting
// only root, with the bundle's intermediates and CRLs.
func opensslCheck(t *testing.T, dir string, b *Bundle, root, leaf *x509.Certificate) (string, error) {
	t.Helper()
	tmp := t.TempDir()
	rp, up, cp, lp := filepath.Join(tmp, "root.pem"), filepath.Join(tmp, "untrusted.pem"), filepath.Join(tmp, "crls.pem"), filepath.Join(tmp, "leaf.pem")
	os.WriteFile(rp, certsPEM(root), 0o644)
	os.WriteFile(up, certsPEM(b.Intermediates...), 0o644)
	var crls []byte
	for _, c := range b.CRLs {
		crls = append(crls, crlPEM(c)...)
	}
	os.WriteFile(cp, crls, 0o644)
	os.WriteFile(lp, certsPEM(leaf), 0o644)
	out, err := exec.Command("openssl", "verify", "-x509_strict", "-crl_check_all", "-purpose", "sslclient", "-CAfile", rp, "-untrusted", up, "-CRLfile", cp, lp).CombinedOutput()
	return string(out), err
}

// opensslCRLs checks every CRL of the bundle with openssl against its CA.
func opensslCRLs(t *testing.T, b *Bundle) {
	t.Helper()
	for _, x := range b.CAs() {
		crl := b.CRLFor(x)
		if crl == nil {
			t.Errorf("no CRL for %s", x.Subject)
			continue
		}
		tmp := t.TempDir()
		os.WriteFile(filepath.Join(tmp, "crl.pem"), crlPEM(crl), 0o644)
		os.WriteFile(filepath.Join(tmp, "ca.pem"), certsPEM(x), 0o644)
		out, err := exec.Command("openssl", "crl", "-in", filepath.Join(tmp, "crl.pem"), "-CAfile", filepath.Join(tmp, "ca.pem"), "-noout", "-verify").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "verify OK") {
			t.Errorf("openssl crl -verify for %s: %v %s", x.Subject, err, out)
		}
	}
}

func bundleOf(t *testing.T, m *machines) *Bundle {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bundle.pem")
	b, _, err := WriteBundle(m.ctx, m.stationCer(), out)
	if err != nil {
		t.Fatalf("bundle: %v", err)
	}
	return b
}

// TestTwoMachineCeremony runs every ceremony on two folders that exchange
// only the documented files, issuing devices before, between and after
// each step, and checks every chain and every CRL with openssl
// (-crl_check_all) for verifiers trusting only the old and only the new root.
func TestTwoMachineCeremony(t *testing.T) {
	testenv.NeedTools(t, "openssl")
	m := newMachines(t)
	ctx := m.ctx
	// Root machine: the root only.
	res, err := InitCA(ctx, m.rootCer(), rootPass, InitOptions{Organization: "wsc test", RootOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Certificates) != 1 || res.Certificates[0].Role != "root" || !strings.Contains(res.String(), "SHA-256") {
		t.Fatalf("init result: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(m.root, IntermediateKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("root-only init made an intermediate key")
	}
	// Station: trust the root, then make its own intermediate key.
	if _, err := Import(ctx, m.stationCer(), ImportOptions{Roots: m.carry(filepath.Join(m.root, RootCertFile))}); err != nil {
		t.Fatal(err)
	}
	// The station's intermediate CSR before the root CRL: installs fine, but
	// the bundle fails closed until every CA has a CRL.
	inter1 := m.rotate("wsc Station 7 Intermediate")
	if inter1.Subject.Organization[0] != "wsc test" {
		t.Errorf("intermediate subject %s", inter1.Subject)
	}
	if _, _, err := WriteBundle(ctx, m.stationCer(), filepath.Join(t.TempDir(), "b.pem")); !errors.Is(err, ErrMissingCRL) {
		t.Fatalf("bundle without CRLs: %v", err)
	}
	m.rootCRLs()
	revs := newMemRevocations()
	c := openStation(t, m.station, revs)
	dev1 := issue(t, c, "DEV-1")
	if _, err := c.CRLs(ctx); err != nil {
		t.Fatal(err)
	}
	b := bundleOf(t, m)
	oldRoot := b.Roots[0]
	if out, err := opensslCheck(t, m.media, b, oldRoot, dev1[0]); err != nil {
		t.Fatalf("DEV-1 before rotation: %v %s", err, out)
	}

	// Rotation on two machines; the running station reloads.
	inter2 := m.rotate("wsc Station 7 Intermediate 2")
	if changed, err := c.Reload(ctx, stationPass); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	dev2 := issue(t, c, "DEV-2")
	if !bytes.Equal(dev2[0].AuthorityKeyId, inter2.SubjectKeyId) {
		t.Fatal("DEV-2 not issued by the new intermediate")
	}

	// Rollover on the root machine; the station imports root.crt with the
	// cross-certificates and installs the re-certified intermediate.
	chainPath := filepath.Join(m.media, "chain.pem")
	ro, _, err := RolloverFolder(ctx, m.rootCer(), rootPass, RolloverOptions{}, chainPath)
	if err != nil {
		t.Fatal(err)
	}
	if ro.Intermediate == nil || !bytes.Equal(ro.Intermediate.SubjectKeyId, inter2.SubjectKeyId) {
		t.Fatal("rollover did not re-certify the newest intermediate")
	}
	// Both roots sign their CRLs.
	crls, _, err := RootCRLs(ctx, m.rootCer(), rootPass, 30*24*time.Hour, m.media)
	if err != nil || len(crls) != 2 {
		t.Fatalf("root CRLs after rollover: %d %v", len(crls), err)
	}
	if len(ro.Earlier) != 1 || !bytes.Equal(ro.Earlier[0].SubjectKeyId, inter1.SubjectKeyId) {
		t.Fatalf("rollover re-certified %d earlier intermediates, want the first one", len(ro.Earlier))
	}
	files := []string{m.carry(filepath.Join(m.root, CrossDir, "new-by-old.crt")), m.carry(filepath.Join(m.root, CrossDir, "old-by-new.crt")), m.carry(filepath.Join(m.media, RecertifiedFile))}
	for _, crl := range crls {
		files = append(files, m.carry(filepath.Join(m.media, "crl-"+hex.EncodeToString(crl.AuthorityKeyId)+".pem")))
	}
	// A new root without its cross-certificate is refused.
	if _, err := Import(ctx, m.stationCer(), ImportOptions{Roots: m.carry(filepath.Join(m.root, RootCertFile))}); !errors.Is(err, ErrReceived) {
		t.Fatalf("new root without cross-certificate: %v", err)
	}
	if _, err := Import(ctx, m.stationCer(), ImportOptions{Roots: m.carry(filepath.Join(m.root, RootCertFile)), Files: files}); err != nil {
		t.Fatal(err)
	}
	chain, _ := readCerts(m.carry(chainPath))
	if _, err := InstallIntermediate(ctx, m.stationCer(), stationPass, chain); err != nil {
		t.Fatalf("install re-certified chain: %v", err)
	}
	if changed, err := c.Reload(ctx, stationPass); err != nil || !changed {
		t.Fatalf("reload after rollover: %v %v", changed, err)
	}
	dev3 := issue(t, c, "DEV-3")
	if len(dev3) != 3 {
		t.Errorf("post-rollover chain has %d certificates, want leaf, intermediate, new-by-old", len(dev3))
	}
	st, err := ReadStatus(m.station, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Roots) != 2 || st.Roots[0].Role != "new" || st.Roots[1].Role != "old" {
		t.Fatalf("status roles: %+v", st.Roots)
	}
	if !strings.Contains(strings.Join(st.Warnings, "\n"), "no CRL for wsc Station 7 Intermediate 2") &&
		!strings.Contains(strings.Join(st.Warnings, "\n"), "Intermediate 2") {
		t.Errorf("status does not warn about the intermediate without CRL: %v", st.Warnings)
	}

	// Revocations: DEV-1 (old intermediate) by the station; the first
	// intermediate (issued by the old root) on the root machine.
	if err := c.Revoke(ctx, dev1[0], ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	if _, err := RevokeByRoot(ctx, m.rootCer(), inter1, ReasonSuperseded); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CRLs(ctx); err != nil {
		t.Fatal(err)
	}
	rcrls := m.rootCRLs()
	listed := map[string]bool{}
	for _, crl := range rcrls {
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(inter1.SerialNumber) == 0 {
				listed[hex.EncodeToString(crl.AuthorityKeyId)] = true
			}
		}
	}
	// Both certificates of that key are revoked, each on its own root's CRL.
	var reListed bool
	for _, crl := range rcrls {
		for _, e := range crl.RevokedCertificateEntries {
			reListed = reListed || (e.SerialNumber.Cmp(ro.Earlier[0].SerialNumber) == 0 && bytes.Equal(crl.AuthorityKeyId, ro.NewRoot.SubjectKeyId))
		}
	}
	if !listed[hex.EncodeToString(oldRoot.SubjectKeyId)] || len(listed) != 1 || !reListed {
		t.Errorf("revoked intermediate: old-root copy listed in %v (want only the old root's CRL); re-certified copy on the new root's CRL: %v", listed, reListed)
	}
	b = bundleOf(t, m)
	if len(b.Roots) != 2 {
		t.Fatalf("bundle roots %d", len(b.Roots))
	}
	opensslCRLs(t, b)
	newRoot := b.Roots[0]
	for _, tc := range []struct {
		name    string
		leaf    *x509.Certificate
		revoked bool
	}{{"DEV-1", dev1[0], true}, {"DEV-2", dev2[0], false}, {"DEV-3", dev3[0], false}} {
		for _, root := range []*x509.Certificate{oldRoot, newRoot} {
			out, err := opensslCheck(t, m.media, b, root, tc.leaf)
			if tc.revoked {
				if err == nil || !strings.Contains(out, "revoked") {
					t.Errorf("%s trusting %s: revoked certificate accepted: %s", tc.name, root.Subject.CommonName, out)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s trusting only %s: %v %s", tc.name, root.Subject.CommonName, err, out)
			}
		}
	}

	// Retire the old root: root.crt keeps the new root only; the station
	// imports it; the bundle drops the old root, its CRL and its crosses.
	if _, err := RetireRoot(ctx, m.rootCer(), rootPass, hex.EncodeToString(newRoot.SubjectKeyId)); !errors.Is(err, ErrRootRole) {
		t.Fatalf("retiring the newest root: %v", err)
	}
	if _, err := RetireRoot(ctx, m.rootCer(), rootPass, hex.EncodeToString(oldRoot.SubjectKeyId)); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(ctx, m.stationCer(), ImportOptions{Roots: m.carry(filepath.Join(m.root, RootCertFile))}); err != nil {
		t.Fatal(err)
	}
	crls, _, err = RootCRLs(ctx, m.rootCer(), rootPass, 30*24*time.Hour, m.media)
	if err != nil || len(crls) != 1 {
		t.Fatalf("root CRLs after retire: %d %v", len(crls), err)
	}
	b = bundleOf(t, m)
	if len(b.Roots) != 1 || !bytes.Equal(b.Roots[0].Raw, newRoot.Raw) {
		t.Fatalf("bundle after retire: %d roots", len(b.Roots))
	}
	for _, x := range b.Intermediates {
		if bytes.Equal(x.AuthorityKeyId, oldRoot.SubjectKeyId) || bytes.Equal(x.SubjectKeyId, oldRoot.SubjectKeyId) {
			t.Errorf("bundle still ships %s (issuer %s)", x.Subject, x.Issuer)
		}
	}
	opensslCRLs(t, b)
	// The running station picks up the single root and keeps issuing.
	if changed, err := c.Reload(ctx, stationPass); err != nil || !changed {
		t.Fatalf("reload after retire: %v %v", changed, err)
	}
	dev4 := issue(t, c, "DEV-4")
	if len(dev4) != 2 {
		t.Errorf("after retirement devices get %d certificates, want leaf and intermediate (no cross-certificate to the retired root)", len(dev4))
	}
	if _, err := c.CRLs(ctx); err != nil {
		t.Fatal(err)
	}
	b = bundleOf(t, m)
	for _, leaf := range []*x509.Certificate{dev2[0], dev3[0], dev4[0]} {
		if out, err := opensslCheck(t, m.media, b, newRoot, leaf); err != nil {
			t.Errorf("%s after retire: %v %s", leaf.Subject.SerialNumber, err, out)
		}
	}
	// Both ledgers verify and are signed.
	for _, d := range []string{m.root, m.station} {
		rep, err := VerifyLedger(d, "")
		if err != nil {
			t.Fatalf("ledger %s: %v", d, err)
		}
		if rep.Records < 3 || rep.Signed == 0 {
			t.Errorf("ledger %s: %+v", d, rep)
		}
	}
	// The medium holds only documented files.
	ents, _ := os.ReadDir(m.media)
	for _, e := range ents {
		ok := false
		for _, pat := range documented {
			if match, _ := filepath.Match(pat, e.Name()); match {
				ok = true
			}
		}
		if !ok {
			t.Errorf("undocumented file on the medium: %s", e.Name())
		}
	}
}

// TestReceivedFilesChecked: the station refuses what does not fit before
// touching anything: a chain for another key, a CRL signed by a stranger,
// a wrong passphrase for the pending key.
func TestReceivedFilesChecked(t *testing.T) {
	m := newMachines(t)
	ctx := m.ctx
	if _, err := InitCA(ctx, m.rootCer(), rootPass, InitOptions{RootOnly: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(ctx, m.stationCer(), ImportOptions{Roots: m.carry(filepath.Join(m.root, RootCertFile))}); err != nil {
		t.Fatal(err)
	}
	// A CSR made elsewhere, signed by the root: not this station's key.
	other := newMachines(t)
	other.root = m.root
	if _, err := Import(ctx, other.stationCer(), ImportOptions{Roots: filepath.Join(m.root, RootCertFile)}); err != nil {
		t.Fatal(err)
	}
	der, _, err := IntermediateCSR(ctx, other.stationCer(), stationPass, "other", filepath.Join(other.media, "next.csr"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := IntermediateCSR(ctx, m.stationCer(), stationPass, "mine", filepath.Join(m.media, "next.csr")); err != nil {
		t.Fatal(err)
	}
	// Wrong root passphrase: nothing written on the root machine.
	before := folderHash(t, m.root)
	if _, _, err := SignIntermediateCSR(ctx, m.rootCer(), []byte("wrong passphrase of some length"), der, IntermediateTemplate{}, filepath.Join(m.media, "chain.pem")); !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("wrong root passphrase: %v", err)
	}
	if folderHash(t, m.root) != before {
		t.Error("a failed sign changed the root folder")
	}
	cert, _, err := SignIntermediateCSR(ctx, m.rootCer(), rootPass, der, IntermediateTemplate{}, filepath.Join(m.media, "chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	// A CA certificate is revoked on the root machine, not on a station.
	if _, err := RevokeByRoot(ctx, m.stationCer(), cert, ReasonSuperseded); err == nil || !strings.Contains(err.Error(), "root machine") {
		t.Errorf("revoking an intermediate on the station: %v", err)
	}
	before = folderHash(t, m.station)
	if _, err := InstallIntermediate(ctx, m.stationCer(), stationPass, []*x509.Certificate{cert}); !errors.Is(err, ErrReceived) {
		t.Fatalf("chain for another station's key: %v", err)
	}
	if folderHash(t, m.station) != before {
		t.Error("a refused install changed the station folder")
	}
	// A failed CSR (wrong passphrase for the current key) leaves nothing.
	m2 := newMachines(t)
	if err := Init(m2.station, stationPass, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	before = folderHash(t, m2.station)
	if _, _, err := IntermediateCSR(ctx, m2.stationCer(), []byte("not the station passphrase at all"), "x", filepath.Join(m2.media, "next.csr")); !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("csr with a wrong passphrase: %v", err)
	}
	if folderHash(t, m2.station) != before {
		t.Error("failed intermediate csr left files behind")
	}
	if _, err := os.Stat(filepath.Join(m2.media, "next.csr")); !errors.Is(err, os.ErrNotExist) {
		t.Error("failed intermediate csr wrote the CSR")
	}
	// A CRL from a stranger CA is refused.
	stranger := newMachines(t)
	if _, err := InitCA(ctx, stranger.rootCer(), rootPass, InitOptions{RootOnly: true}); err != nil {
		t.Fatal(err)
	}
	scrls, _, err := RootCRLs(ctx, stranger.rootCer(), rootPass, time.Hour, stranger.media)
	if err != nil {
		t.Fatal(err)
	}
	sp := filepath.Join(stranger.media, "crl-"+hex.EncodeToString(scrls[0].AuthorityKeyId)+".pem")
	if _, err := Import(ctx, m.stationCer(), ImportOptions{Files: []string{sp}}); !errors.Is(err, ErrReceived) {
		t.Fatalf("stranger CRL: %v", err)
	}
}

// folderHash hashes every file (name, mode, content) under dir, and the
// set of folders.
func folderHash(t testing.TB, dirs ...string) string {
	t.Helper()
	var b bytes.Buffer
	for _, dir := range dirs {
		filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			info, _ := e.Info()
			b.WriteString(rel + "|" + info.Mode().String() + "\n")
			if !e.IsDir() {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				io.Copy(&b, f)
				f.Close()
			}
			return nil
		})
	}
	return hex.EncodeToString(sha256Sum(b.Bytes()))
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func pemBody(raw []byte) []byte {
	if blk, _ := pem.Decode(raw); blk != nil {
		return blk.Bytes
	}
	return raw
}

func keyIDHex(x *x509.Certificate) string { return hex.EncodeToString(x.SubjectKeyId) }

// TestRetireNeedsRecertification: a root cannot be retired while one of
// its live intermediates is certified by no other root.
func TestRetireNeedsRecertification(t *testing.T) {
	m := newMachines(t)
	ctx := m.ctx
	if _, err := InitCA(ctx, m.rootCer(), rootPass, InitOptions{RootOnly: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(ctx, m.stationCer(), ImportOptions{Roots: filepath.Join(m.root, RootCertFile)}); err != nil {
		t.Fatal(err)
	}
	m.rotate("wsc Station A")
	ro, _, err := RolloverFolder(ctx, m.rootCer(), rootPass, RolloverOptions{}, filepath.Join(m.media, "chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	// Lose the re-certified copy: the old root must stay.
	if err := os.Remove(issuedPath(m.root, ro.Intermediate)); err != nil {
		t.Fatal(err)
	}
	before := folderHash(t, m.root)
	if _, err := RetireRoot(ctx, m.rootCer(), rootPass, keyIDHex(ro.OldRoot)); !errors.Is(err, ErrRootRole) || !strings.Contains(err.Error(), "certified only by the root being retired") {
		t.Fatalf("retire with an intermediate not re-certified: %v", err)
	}
	if folderHash(t, m.root) != before {
		t.Error("refused retire changed the folder")
	}
}
