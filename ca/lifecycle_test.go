package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsc-project/wsc/devices/sim/testenv"
)

// memRevocations is the in-memory RevocationStore used by tests (the db
// package provides the real one).
type memRevocations struct {
	mu   sync.Mutex
	revs map[string][]Revocation
	nums map[string]int64
}

func newMemRevocations() *memRevocations {
	return &memRevocations{revs: map[string][]Revocation{}, nums: map[string]int64{}}
}

func (m *memRevocations) AddRevocation(_ context.Context, r Revocation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, x := range m.revs[string(r.IssuerKeyID)] {
		if x.SerialNumber.Cmp(r.SerialNumber) == 0 {
			return nil
		}
	}
	m.revs[string(r.IssuerKeyID)] = append(m.revs[string(r.IssuerKeyID)], r)
	return nil
}

func (m *memRevocations) Revocations(_ context.Context, id []byte) ([]Revocation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Revocation(nil), m.revs[string(id)]...), nil
}

func (m *memRevocations) NextCRLNumber(_ context.Context, id []byte) (*big.Int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nums[string(id)]++
	return big.NewInt(m.nums[string(id)]), nil
}

func issue(t testing.TB, c *CA, serial string) []*x509.Certificate {
	t.Helper()
	chain, err := c.Issue(context.Background(), makeCSR(t, p256(t), "ignored"), IssueRequest{DeviceSerial: serial, Validity: 48 * time.Hour})
	if err != nil {
		t.Fatalf("Issue %s: %v", serial, err)
	}
	return chain
}

func writeCRL(t testing.TB, path string, crl *x509.RevocationList) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func opensslCRLVerify(t testing.TB, dir string, crl *x509.RevocationList, issuer *x509.Certificate) {
	t.Helper()
	testenv.NeedTools(t, "openssl")
	cp := filepath.Join(dir, "crl-check.pem")
	ip := filepath.Join(dir, "crl-issuer.pem")
	writeCRL(t, cp, crl)
	writePEM(t, ip, issuer)
	out, err := exec.Command("openssl", "crl", "-in", cp, "-CAfile", ip, "-noout", "-verify").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verify OK") {
		t.Fatalf("openssl crl -verify: %v\n%s", err, out)
	}
}

func TestCRL(t *testing.T) {
	store := newMemRevocations()
	c, dir := newTestCA(t, WithRevocationStore(store))
	ctx := context.Background()
	good, bad := issue(t, c, "GOOD-1"), issue(t, c, "BAD-1")
	if err := c.Revoke(ctx, bad[0], ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	crl1, err := c.CRL(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	crl2, err := c.CRL(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if crl2.Number.Cmp(crl1.Number) <= 0 {
		t.Fatalf("CRL numbers %v then %v", crl1.Number, crl2.Number)
	}
	if len(crl2.RevokedCertificateEntries) != 1 || crl2.RevokedCertificateEntries[0].SerialNumber.Cmp(bad[0].SerialNumber) != 0 ||
		crl2.RevokedCertificateEntries[0].ReasonCode != ReasonKeyCompromise {
		t.Fatalf("entries %+v", crl2.RevokedCertificateEntries)
	}
	if err := crl2.CheckSignatureFrom(c.Issuer()); err != nil {
		t.Fatal(err)
	}
	if !crl2.NextUpdate.After(crl2.ThisUpdate) {
		t.Fatal("nextUpdate")
	}
	opensslCRLVerify(t, dir, crl2, c.Issuer())

	// openssl verify -crl_check_all with the bundle: revoked leaf refused, good leaf accepted.
	b, err := c.BuildBundle(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	rootCRL := rootCRLFor(t, dir, c)
	crlFile := filepath.Join(dir, "crls.pem")
	os.WriteFile(crlFile, append(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl2.Raw}), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: rootCRL})...), 0o644)
	if out, err := opensslVerify(t, dir, b.Roots, b.Intermediates, good[0], "-crl_check_all", "-CRLfile", crlFile); err != nil {
		t.Fatalf("good leaf with CRL: %v %s", err, out)
	}
	out, err := opensslVerify(t, dir, b.Roots, b.Intermediates, bad[0], "-crl_check_all", "-CRLfile", crlFile)
	if err == nil || !strings.Contains(out, "revoked") {
		t.Fatalf("revoked leaf accepted: %v %s", err, out)
	}

	if _, err := (&CA{}).CRL(ctx, nil); !errors.Is(err, ErrNoRevocationStore) {
		t.Fatalf("no store: %v", err)
	}
}

// rootCRLFor signs an empty CRL with the root (openssl -crl_check_all needs
// one per CA in the path; root CRLs are a ceremony product).
func rootCRLFor(t testing.TB, dir string, c *CA) []byte {
	t.Helper()
	der, err := RootCRL(dir, testPass, nil, big.NewInt(1), 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return der.Raw
}

type memAudit struct {
	mu    sync.Mutex
	kinds []string
}

func (m *memAudit) Audit(_ context.Context, kind, actor string, detail any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if actor != "alice" {
		return fmt.Errorf("actor %q", actor)
	}
	m.kinds = append(m.kinds, kind)
	return nil
}

func TestRotateIntermediate(t *testing.T) {
	store := newMemRevocations()
	aud := &memAudit{}
	c, dir := newTestCA(t, WithRevocationStore(store), WithAuditor(aud, "alice"))
	ctx := context.Background()
	before := issue(t, c, "DEV-A")
	oldIssuer := c.Issuer()

	newCert, err := c.RotateIntermediate(context.Background(), testPass, IntermediateTemplate{})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(newCert.SubjectKeyId, oldIssuer.SubjectKeyId) || !newCert.PermittedDNSDomainsCritical || newCert.MaxPathLen != 0 {
		t.Fatalf("new intermediate %x constraints %v", newCert.SubjectKeyId, newCert.PermittedDNSDomains)
	}
	after := issue(t, c, "DEV-B") // hot swap: same *CA, no reopen
	if !bytes.Equal(after[0].AuthorityKeyId, newCert.SubjectKeyId) || !bytes.Equal(after[1].Raw, newCert.Raw) {
		t.Fatal("Issue did not use the new intermediate")
	}
	if err := c.Revoke(ctx, before[0], ReasonSuperseded); err != nil {
		t.Fatalf("revoke cert of retired issuer: %v", err)
	}
	scanNoPlainKeys(t, dir)
	if strings.Join(aud.kinds, ",") != "ca.intermediate.install,ca.revoke" {
		t.Errorf("audit events %v", aud.kinds)
	}

	// Reopen: retired issuer is loaded for its CRL.
	c2, err := Open(dir, testPass, WithRevocationStore(store))
	if err != nil {
		t.Fatal(err)
	}
	crls, err := c2.CRLs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(crls) != 2 {
		t.Fatalf("%d CRLs, want 2 (per issuer)", len(crls))
	}
	oldCRL := crls[1]
	if err := oldCRL.CheckSignatureFrom(oldIssuer); err != nil || len(oldCRL.RevokedCertificateEntries) != 1 {
		t.Fatalf("old issuer CRL: %v, %d entries", err, len(oldCRL.RevokedCertificateEntries))
	}
	opensslCRLVerify(t, dir, crls[0], newCert)
	opensslCRLVerify(t, dir, oldCRL, oldIssuer)

	b, err := c2.BuildBundle(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, leaf := range []*x509.Certificate{before[0], after[0]} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.RootPool(), Intermediates: b.IntermediatePool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err != nil {
			t.Errorf("bundle verify %s: %v", leaf.Subject.SerialNumber, err)
		}
	}
	if n := bytes.Count(b.PEM(), []byte("BEGIN X509 CRL")); n != 2 {
		t.Errorf("bundle has %d CRLs", n)
	}
	if err := b.WriteFiles(filepath.Join(dir, "bundle")); err != nil {
		t.Fatal(err)
	}
	if err := c2.InstallIntermediate(ctx, []*x509.Certificate{newCert}, testPass); !errors.Is(err, ErrNoPendingKey) {
		t.Fatalf("install without pending key: %v", err)
	}
}

func TestRolloverMatrix(t *testing.T) {
	c, dir := newTestCA(t)
	oldChain := issue(t, c, "LEGACY-1")
	oldRoot := c.Roots()[0]
	ro, err := c.RolloverRoot(context.Background(), testPass, RolloverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	newChain := issue(t, c, "NEW-1")
	if len(newChain) != 3 || !bytes.Equal(newChain[2].Raw, ro.NewByOld.Raw) {
		t.Fatalf("new chain should carry the new-by-old cross certificate, len %d", len(newChain))
	}
	b, err := c.BuildBundle(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	// Reopen works with the rolled-over folder.
	if _, err := Open(dir, testPass); err != nil {
		t.Fatalf("reopen after rollover: %v", err)
	}
	scanNoPlainKeys(t, dir)

	cases := []struct {
		name      string
		leaf      *x509.Certificate
		root      *x509.Certificate
		untrusted []*x509.Certificate
	}{
		{"legacy leaf, old root", oldChain[0], oldRoot, oldChain[1:]},
		{"legacy leaf, new root", oldChain[0], ro.NewRoot, append(oldChain[1:], ro.OldByNew)},
		{"legacy leaf, new root, bundle", oldChain[0], ro.NewRoot, b.Intermediates},
		{"new leaf, new root", newChain[0], ro.NewRoot, newChain[1:]},
		{"new leaf, old root", newChain[0], oldRoot, newChain[1:]},
		{"new leaf, old root, bundle", newChain[0], oldRoot, b.Intermediates},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			roots := x509.NewCertPool()
			roots.AddCert(tc.root)
			inter := x509.NewCertPool()
			for _, x := range tc.untrusted {
				inter.AddCert(x)
			}
			if _, err := tc.leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err != nil {
				t.Errorf("crypto/x509: %v", err)
			}
			if out, err := opensslVerify(t, t.TempDir(), []*x509.Certificate{tc.root}, tc.untrusted, tc.leaf); err != nil {
				t.Errorf("openssl: %v %s", err, out)
			}
		})
	}
	// Without the cross certificate an old-root-only verifier cannot reach the new chain.
	roots := x509.NewCertPool()
	roots.AddCert(oldRoot)
	inter := x509.NewCertPool()
	inter.AddCert(newChain[1])
	if _, err := newChain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Error("new chain verified against old root without cross certificate")
	}
}

func TestProfile(t *testing.T) {
	dir := t.TempDir()
	pf := filepath.Join(dir, "profile.json")
	os.WriteFile(pf, []byte(`{
  "name": "line-a",
  "validity": "730d",
  "extKeyUsages": ["codeSigning", "serverAuth"],
  "crlDistributionPoints": ["http://pki.wsc.local/int.crl"],
  "organization": "WSC Devices",
  "commonName": "{{.Model}} {{.Serial}}",
  "dnsNames": ["{{.Serial | lower}}.devices.wsc.local"]
}`), 0o644)
	p, err := LoadProfile(pf)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := newTestCA(t, WithProfile(p))
	chain, err := c.Issue(context.Background(), makeCSR(t, p256(t), "x"), IssueRequest{DeviceSerial: "SN-77", Model: "Gate"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	if leaf.Subject.CommonName != "Gate SN-77" || leaf.Subject.Organization[0] != "WSC Devices" || leaf.DNSNames[0] != "sn-77.devices.wsc.local" {
		t.Errorf("names: %v %v", leaf.Subject, leaf.DNSNames)
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got != 730*24*time.Hour+Backdate {
		t.Errorf("validity %v", got)
	}
	if len(leaf.CRLDistributionPoints) != 1 || leaf.ExtKeyUsage[1] != x509.ExtKeyUsageServerAuth {
		t.Errorf("CRL DP %v EKU %v", leaf.CRLDistributionPoints, leaf.ExtKeyUsage)
	}
	yp := filepath.Join(dir, "profile.yaml")
	os.WriteFile(yp, []byte("name: yaml-line\nvalidity: 10y\nextKeyUsages: [clientAuth]\ndnsNames:\n  - \"{{.Serial | lower}}.devices.wsc.local\"\n"), 0o644)
	py, err := LoadProfile(yp)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(py.Validity) != 3650*24*time.Hour || py.ExtKeyUsages[0] != "clientAuth" || len(py.DNSNames) != 1 {
		t.Fatalf("yaml profile %+v", py)
	}
	if _, err := ParseProfileYAML([]byte("validity: 1y\nbogus: 1\n")); !errors.Is(err, ErrProfile) {
		t.Fatalf("yaml unknown key: %v", err)
	}
	for _, bad := range []string{
		`{"validity": "1y", "extKeyUsages": ["anything"]}`,
		`{"validity": "0s"}`,
		`{"validity": "1y", "unknownField": 1}`,
		`{"validity": "1y", "commonName": "{{.Nope"}`,
		`{"validity": "1y", "crlDistributionPoints": ["not a url"]}`,
	} {
		if _, err := ParseProfile([]byte(bad)); !errors.Is(err, ErrProfile) {
			t.Errorf("%s: got %v", bad, err)
		}
	}
}

func TestStatusAndStrings(t *testing.T) {
	c, _ := newTestCA(t, WithClock(func() time.Time { return time.Now().Add(5*365*24*time.Hour - 30*24*time.Hour) }))
	s := c.Status()
	if len(s.Roots) != 1 || s.Issuer.KeyID == "" || len(s.Warnings) == 0 {
		t.Fatalf("status %+v", s)
	}
	text := s.String() + fmt.Sprintf("%+v %#v", s, s)
	if strings.Contains(text, string(testPass)) || !strings.Contains(text, "rotate") {
		t.Fatalf("status text: %s", text)
	}
	ch := &Challenge{secret: []byte("topsecret")}
	if strings.Contains(fmt.Sprintf("%v %+v %#v %s", ch, ch, ch, ch), "topsecret") {
		t.Fatal("challenge leaks secret")
	}
}

func TestConcurrentIssueDuringRotation(t *testing.T) {
	c, _ := newTestCA(t)
	csr := makeCSR(t, p256(t), "x")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				chain, err := c.Issue(context.Background(), csr, IssueRequest{DeviceSerial: fmt.Sprintf("C-%d-%d", i, j), Validity: time.Hour})
				if err == nil {
					err = chain[0].CheckSignatureFrom(chain[1])
				}
				if err != nil {
					errs <- err
				}
			}
		}(i)
	}
	if _, err := c.RotateIntermediate(context.Background(), testPass, IntermediateTemplate{}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkIssue reports Issue p50 and its ratio to a bare
// x509.CreateCertificate of a similar leaf, measured in the same run.
func BenchmarkIssue(b *testing.B) {
	c, _ := newTestCA(b)
	csr := makeCSR(b, p256(b), "x")
	req := IssueRequest{DeviceSerial: "BENCH-1", Names: []string{"bench.devices.wsc.local"}, Validity: time.Hour}
	ctx := context.Background()
	issuer := c.Issuer()
	_, signer, _ := c.currentSigner()
	key := p256(b)
	const n = 400
	bare := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		start := time.Now()
		serial, _ := randomSerial()
		tmpl := &x509.Certificate{SerialNumber: serial, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), DNSNames: req.Names,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
		if _, err := x509.CreateCertificate(nil, tmpl, issuer, &key.PublicKey, signer); err != nil {
			b.Fatal(err)
		}
		bare = append(bare, time.Since(start))
	}
	durs := make([]time.Duration, 0, 4096)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if _, err := c.Issue(ctx, csr, req); err != nil {
			b.Fatal(err)
		}
		if len(durs) < cap(durs) {
			durs = append(durs, time.Since(start))
		}
	}
	b.StopTimer()
	reportPercentiles(b, durs)
	sortDur(bare)
	sortDur(durs)
	b.ReportMetric(float64(bare[len(bare)/2].Microseconds()), "bare-p50-µs")
	b.ReportMetric(float64(durs[len(durs)/2])/float64(bare[len(bare)/2]), "ratio")
}
