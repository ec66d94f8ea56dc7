package ca_test

// These tests use the real station database (db.Store on a SQLite file)
// through the station's adapter, from the external test package, so that
// package ca itself still imports neither db nor station.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/provisioner"
	sdb "github.com/smallstep/certificates/db"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"github.com/wsc-project/wsc/station"
)

var storePass = []byte("tr0ub4dor & 3 -- station store test")

type stationCA struct {
	ca    *ca.CA
	store *db.Store
	dir   string
	dbf   string
}

func openStationCA(t testing.TB, opts ...ca.Option) *stationCA {
	t.Helper()
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if err := ca.Init(caDir, storePass, ca.InitOptions{Organization: "wsc store test"}); err != nil {
		t.Fatal(err)
	}
	dbf := filepath.Join(dir, "station.db")
	st, err := db.Open(dbf, db.WithActor("test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts = append([]ca.Option{ca.WithStore(station.CAStore(st)), ca.WithAuditor(st, "alice")}, opts...)
	c, err := ca.Open(caDir, storePass, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &stationCA{ca: c, store: st, dir: caDir, dbf: dbf}
}

// memStore is an in-memory ca.RevocationStore for tests that need no database.
type memStore struct {
	mu   sync.Mutex
	revs map[string][]ca.Revocation
	nums map[string]int64
}

func newMemStore() *memStore {
	return &memStore{revs: map[string][]ca.Revocation{}, nums: map[string]int64{}}
}

func (m *memStore) AddRevocation(_ context.Context, r ca.Revocation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.revs[string(r.IssuerKeyID)] = append(m.revs[string(r.IssuerKeyID)], r)
	return nil
}

func (m *memStore) Revocations(_ context.Context, id []byte) ([]ca.Revocation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]ca.Revocation(nil), m.revs[string(id)]...), nil
}

func (m *memStore) NextCRLNumber(_ context.Context, id []byte) (*big.Int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nums[string(id)]++
	return big.NewInt(m.nums[string(id)]), nil
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// csrFor makes a CSR that asks for more than it may get: its own CN and
// organisation, DNS names and a CA:TRUE basic constraint.
func csrFor(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "evil.example.com", Organization: []string{"evil corp"}},
		DNSNames: []string{"evil.example.com", "www.evil.example.com"},
		ExtraExtensions: []pkix.Extension{{
			Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: []byte{0x30, 0x03, 0x01, 0x01, 0xff},
		}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemFile(t testing.TB, path string, certs ...*x509.Certificate) string {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func crlFile(t testing.TB, path string, crls ...*x509.RevocationList) string {
	t.Helper()
	var b []byte
	for _, c := range crls {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func openssl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	testenv.NeedTools(t, "openssl")
	out, err := exec.Command("openssl", args...).CombinedOutput()
	return string(out), err
}

// TestStoreIssueRevokeCRL runs issuance, revocation and CRLs through
// smallstep's authority with the station database as its AuthDB, across an
// intermediate rotation.
func TestStoreIssueRevokeCRL(t *testing.T) {
	ctx := context.Background()
	s := openStationCA(t)
	tmp := t.TempDir()

	chain1, err := s.ca.Issue(ctx, csrFor(t, newKey(t)), ca.IssueRequest{DeviceSerial: "SN-OLD-1", Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.store.GetCertificate(ctx, db.SerialHex(chain1[0].SerialNumber))
	if err != nil {
		t.Fatalf("issued certificate not recorded by the authority's AuthDB: %v", err)
	}
	if rec.DeviceSerial != "SN-OLD-1" || !bytes.Equal(rec.DER, chain1[0].Raw) || len(rec.Chain) != 2 {
		t.Fatalf("recorded %+v", rec)
	}
	// smallstep's authority reads through the same database.
	if got, err := s.ca.Authority().GetDatabase().GetCertificate(chain1[0].SerialNumber.String()); err != nil || !bytes.Equal(got.Raw, chain1[0].Raw) {
		t.Fatalf("authority GetCertificate: %v", err)
	}
	oldIssuer := s.ca.Issuer()

	// Rotation, hot-swapped: the next certificate comes from the new intermediate.
	newInt, err := s.ca.RotateIntermediate(ctx, storePass, ca.IntermediateTemplate{})
	if err != nil {
		t.Fatal(err)
	}
	chain2, err := s.ca.Issue(ctx, csrFor(t, newKey(t)), ca.IssueRequest{DeviceSerial: "SN-NEW-1", Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(chain2[0].AuthorityKeyId, newInt.SubjectKeyId) {
		t.Fatal("not issued by the new intermediate after the swap")
	}
	chain3, err := s.ca.Issue(ctx, csrFor(t, newKey(t)), ca.IssueRequest{DeviceSerial: "SN-NEW-2", Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	// Revoke the old-intermediate leaf after the rotation (by serial, from
	// the database) and one new leaf (by certificate).
	if _, err := s.ca.RevokeSerial(ctx, chain1[0].SerialNumber, ca.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	if err := s.ca.Revoke(ctx, chain2[0], ca.ReasonCessationOfOperation); err != nil {
		t.Fatal(err)
	}
	if err := s.ca.Revoke(ctx, chain2[0], ca.ReasonCessationOfOperation); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	for _, c := range []*x509.Certificate{chain1[0], chain2[0]} {
		if ok, err := s.ca.Authority().IsRevoked(c.SerialNumber.String()); err != nil || !ok {
			t.Errorf("authority IsRevoked(%x) = %v, %v", c.SerialNumber, ok, err)
		}
		if ok, _ := s.store.IsRevoked(ctx, db.SerialHex(c.SerialNumber)); !ok {
			t.Errorf("database: %x not revoked", c.SerialNumber)
		}
	}
	if ok, _ := s.ca.Authority().IsRevoked(chain3[0].SerialNumber.String()); ok {
		t.Error("unrevoked certificate reported revoked")
	}
	if _, err := s.ca.RevokeSerial(ctx, big.NewInt(12345), 0); !errors.Is(err, ca.ErrCertificateNotFound) {
		t.Errorf("unknown serial: %v", err)
	}

	// One CRL per issuer; each signed by its own issuer; numbers increase.
	crls, err := s.ca.CRLs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(crls) != 2 {
		t.Fatalf("%d CRLs, want 2", len(crls))
	}
	byIssuer := map[string]*x509.RevocationList{}
	for _, c := range crls {
		byIssuer[string(c.AuthorityKeyId)] = c
	}
	oldCRL, newCRL := byIssuer[string(oldIssuer.SubjectKeyId)], byIssuer[string(newInt.SubjectKeyId)]
	if oldCRL == nil || newCRL == nil {
		t.Fatal("missing CRL of an issuer")
	}
	listed := func(crl *x509.RevocationList, c *x509.Certificate) bool {
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
				return true
			}
		}
		return false
	}
	if !listed(oldCRL, chain1[0]) || listed(oldCRL, chain2[0]) || len(oldCRL.RevokedCertificateEntries) != 1 {
		t.Errorf("old issuer CRL entries %d", len(oldCRL.RevokedCertificateEntries))
	}
	if !listed(newCRL, chain2[0]) || listed(newCRL, chain1[0]) || listed(newCRL, chain3[0]) {
		t.Error("new issuer CRL wrong")
	}
	for _, tc := range []struct {
		crl    *x509.RevocationList
		issuer *x509.Certificate
	}{{oldCRL, oldIssuer}, {newCRL, newInt}} {
		out, err := openssl(t, "crl", "-in", crlFile(t, filepath.Join(tmp, "crl.pem"), tc.crl), "-CAfile", pemFile(t, filepath.Join(tmp, "issuer.pem"), tc.issuer), "-noout", "-verify")
		if err != nil || !strings.Contains(out, "verify OK") {
			t.Errorf("openssl crl -verify: %v %s", err, out)
		}
	}
	again, err := s.ca.CRL(ctx, oldIssuer.SubjectKeyId)
	if err != nil {
		t.Fatal(err)
	}
	if again.Number.Cmp(oldCRL.Number) <= 0 {
		t.Errorf("CRL number %v after %v", again.Number, oldCRL.Number)
	}
	// openssl verify with CRL checking: revoked leaf of the old issuer refused, live leaf accepted.
	rootCRL, err := ca.RootCRL(s.dir, storePass, nil, big.NewInt(1), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := pemFile(t, filepath.Join(tmp, "roots.pem"), s.ca.Roots()...)
	inters := pemFile(t, filepath.Join(tmp, "inters.pem"), oldIssuer, newInt)
	crlAll := crlFile(t, filepath.Join(tmp, "crls.pem"), oldCRL, newCRL, rootCRL)
	out, err := openssl(t, "verify", "-crl_check_all", "-CAfile", roots, "-untrusted", inters, "-CRLfile", crlAll, pemFile(t, filepath.Join(tmp, "l1.pem"), chain1[0]))
	if err == nil || !strings.Contains(out, "revoked") {
		t.Errorf("revoked old-issuer leaf accepted: %s", out)
	}
	out, err = openssl(t, "verify", "-crl_check_all", "-CAfile", roots, "-untrusted", inters, "-CRLfile", crlAll, pemFile(t, filepath.Join(tmp, "l3.pem"), chain3[0]))
	if err != nil {
		t.Errorf("live leaf refused: %v %s", err, out)
	}

	// smallstep's CRL database view: the current issuer's revocations only.
	crlDB, ok := s.ca.Authority().GetDatabase().(sdb.CertificateRevocationListDB)
	if !ok {
		t.Fatal("AuthDB does not implement CertificateRevocationListDB")
	}
	revs, err := crlDB.GetRevokedCertificates()
	if err != nil || len(*revs) != 1 || (*revs)[0].Serial != chain2[0].SerialNumber.String() {
		t.Errorf("GetRevokedCertificates = %v, %v", revs, err)
	}
	if info, err := crlDB.GetCRL(); err != nil || info.Number != newCRL.Number.Int64() {
		t.Errorf("GetCRL: %v", err)
	}

	// smallstep's Revoke called directly (no CA bookkeeping): the adapter
	// finds the issuer in the database and files it under the right issuer.
	rctx := provisioner.NewContextWithMethod(ctx, provisioner.RevokeMethod)
	if err := s.ca.Authority().Revoke(rctx, &authority.RevokeOptions{Serial: chain3[0].SerialNumber.String(), ReasonCode: ca.ReasonSuperseded, MTLS: true, Crt: chain3[0]}); err != nil {
		t.Fatalf("authority.Revoke: %v", err)
	}
	revs3, err := station.CAStore(s.store).Revocations(ctx, newInt.SubjectKeyId)
	if err != nil || len(revs3) != 2 {
		t.Errorf("new issuer revocations after authority.Revoke: %d %v", len(revs3), err)
	}

	// The database's audit ledger holds the ceremony steps.
	ents, err := s.store.AuditEntries(ctx, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range ents {
		kinds[e.Kind]++
	}
	for _, k := range []string{"ca.intermediate.install", "ca.revoke", "ca.crl", "cert.issue", "cert.revoke"} {
		if kinds[k] == 0 {
			t.Errorf("no %s audit row (have %v)", k, kinds)
		}
	}
}

// TestReloadAfterExternalInstall: the station runs while `wsc ca
// intermediate install` (another process) rotates the intermediate; Reload
// hot-swaps it without a restart.
func TestReloadAfterExternalInstall(t *testing.T) {
	ctx := context.Background()
	s := openStationCA(t)
	oldIssuer := s.ca.Issuer()
	if changed, err := s.ca.Reload(ctx, storePass); err != nil || changed {
		t.Fatalf("reload without change: %v %v", changed, err)
	}
	// The "other process".
	csr, err := ca.GenerateIntermediateCSR(s.dir, storePass, "wsc Intermediate via CLI")
	if err != nil {
		t.Fatal(err)
	}
	inter, err := ca.SignIntermediate(s.dir, storePass, csr, ca.IntermediateTemplate{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.Open(s.dir, storePass)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.InstallIntermediate(ctx, []*x509.Certificate{inter}, storePass); err != nil {
		t.Fatal(err)
	}
	other.Close()

	before, err := s.ca.Issue(ctx, csrFor(t, newKey(t)), ca.IssueRequest{DeviceSerial: "RL-1", Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before[0].AuthorityKeyId, oldIssuer.SubjectKeyId) {
		t.Fatal("issuer changed before Reload")
	}
	if changed, err := s.ca.Reload(ctx, storePass); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	after, err := s.ca.Issue(ctx, csrFor(t, newKey(t)), ca.IssueRequest{DeviceSerial: "RL-2", Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after[0].AuthorityKeyId, inter.SubjectKeyId) {
		t.Fatal("not hot-swapped by Reload")
	}
	if err := s.ca.Revoke(ctx, before[0], ca.ReasonSuperseded); err != nil {
		t.Fatal(err)
	}
	crls, err := s.ca.CRLs(ctx)
	if err != nil || len(crls) != 2 {
		t.Fatalf("CRLs after reload: %d %v", len(crls), err)
	}
	for _, crl := range crls {
		want := bytes.Equal(crl.AuthorityKeyId, oldIssuer.SubjectKeyId)
		if got := len(crl.RevokedCertificateEntries) == 1; got != want {
			t.Errorf("CRL of %x: %d entries", crl.AuthorityKeyId, len(crl.RevokedCertificateEntries))
		}
	}
	// The retired intermediate itself, revoked on the root's CRL.
	if err := s.ca.Revoke(ctx, oldIssuer, ca.ReasonCACompromise); err != nil {
		t.Fatal(err)
	}
	rootCRL, err := s.ca.CurrentRootCRL(ctx, storePass)
	if err != nil {
		t.Fatal(err)
	}
	if len(rootCRL.RevokedCertificateEntries) != 1 || rootCRL.RevokedCertificateEntries[0].SerialNumber.Cmp(oldIssuer.SerialNumber) != 0 {
		t.Errorf("root CRL entries %v", rootCRL.RevokedCertificateEntries)
	}
	tmp := t.TempDir()
	out, err := openssl(t, "crl", "-in", crlFile(t, filepath.Join(tmp, "root.crl"), rootCRL), "-CAfile", pemFile(t, filepath.Join(tmp, "root.pem"), s.ca.Roots()...), "-noout", "-verify")
	if err != nil || !strings.Contains(out, "verify OK") {
		t.Errorf("openssl crl -verify (root): %v %s", err, out)
	}
}

// TestStoreConcurrentIssue issues from several goroutines through the
// authority and the database while the intermediate rotates; every
// certificate is recorded with its own issuer.
func TestStoreConcurrentIssue(t *testing.T) {
	ctx := context.Background()
	s := openStationCA(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	chains := make(chan []*x509.Certificate, 64)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 8; i++ {
				ch, err := s.ca.Issue(ctx, csrFor(t, newKey(t)), ca.IssueRequest{DeviceSerial: "C-" + strconv.Itoa(g) + "-" + strconv.Itoa(i), Validity: time.Hour})
				if err != nil {
					errs <- err
					return
				}
				chains <- ch
			}
		}(g)
	}
	if _, err := s.ca.RotateIntermediate(ctx, storePass, ca.IntermediateTemplate{}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	close(chains)
	for err := range errs {
		t.Error(err)
	}
	n := 0
	for ch := range chains {
		n++
		rec, err := s.store.GetCertificate(ctx, db.SerialHex(ch[0].SerialNumber))
		if err != nil || !bytes.Equal(rec.IssuerKeyID, ch[0].AuthorityKeyId) || !bytes.Equal(rec.Chain[1], ch[1].Raw) {
			t.Errorf("certificate %x not recorded with its issuer: %v", ch[0].SerialNumber, err)
		}
	}
	if n != 32 {
		t.Errorf("%d certificates", n)
	}
}

// TestStoreRefusals: names never come from the CSR; bad CSRs, weak keys, a
// key of another device and a full work order are refused with clear errors.
func TestStoreRefusals(t *testing.T) {
	ctx := context.Background()
	s := openStationCA(t)
	if err := s.store.CreateWorkOrder(ctx, db.WorkOrder{ID: "WO-1", Product: "gateway", Quantity: 2}); err != nil {
		t.Fatal(err)
	}
	keyA := newKey(t)
	chainA, err := s.ca.Issue(ctx, csrFor(t, keyA), ca.IssueRequest{DeviceSerial: "DEV-A", WorkOrder: "WO-1", Validity: time.Hour,
		Names: []string{"dev-a.devices.wsc.local"}})
	if err != nil {
		t.Fatal(err)
	}
	leaf := chainA[0]
	if leaf.Subject.CommonName != "DEV-A" || leaf.Subject.SerialNumber != "DEV-A" || len(leaf.Subject.Organization) != 0 ||
		len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "dev-a.devices.wsc.local" || leaf.IsCA {
		t.Errorf("CSR content leaked into the certificate: %v %v CA=%v", leaf.Subject, leaf.DNSNames, leaf.IsCA)
	}
	// Same device, same key again: the recorded certificate is re-delivered, nothing signed.
	again, err := s.ca.Issue(ctx, csrFor(t, keyA), ca.IssueRequest{DeviceSerial: "DEV-A", WorkOrder: "WO-1", Validity: time.Hour})
	if err != nil || !bytes.Equal(again[0].Raw, leaf.Raw) {
		t.Fatalf("re-issue: %v", err)
	}

	bad := csrFor(t, newKey(t))
	bad[len(bad)-4] ^= 0x5a
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		csr     []byte
		serial  string
		wantErr error
		wantMsg string
	}{
		{"bad signature", bad, "DEV-B", ca.ErrCSRSignature, "signature"},
		{"RSA-1024", csrFor(t, rsaKey), "DEV-B", ca.ErrCSRKeyType, "RSA 1024 bits"},
		{"key of another device", csrFor(t, keyA), "DEV-B", ca.ErrKeyConflict, "another device"},
		{"second device fits the quota", csrFor(t, newKey(t)), "DEV-B", nil, ""},
		{"quota reached", csrFor(t, newKey(t)), "DEV-C", ca.ErrQuotaExceeded, "quota"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.ca.Issue(ctx, tt.csr, ca.IssueRequest{DeviceSerial: tt.serial, WorkOrder: "WO-1", Validity: time.Hour})
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			t.Logf("refused: %v", err)
		})
	}
	stats, err := s.store.Stats(ctx, "WO-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("work order stats: %+v", stats)
	certs, _ := s.store.Certificates(ctx, "DEV-C")
	if len(certs) != 0 {
		t.Error("a certificate was recorded beyond the quota")
	}
}

// TestProfileOpenSSLText checks the device certificate profile as openssl
// prints it.
func TestProfileOpenSSLText(t *testing.T) {
	prof, err := ca.ParseProfileYAML([]byte(`name: line-a
validity: 2y
extKeyUsages: [codeSigning, clientAuth]
crlDistributionPoints: ["http://pki.plant.example/wsc-line-a.crl"]
organization: Example Devices Ltd
commonName: "{{.Serial}}"
dnsNames: ["{{.Serial | lower}}.devices.wsc.local"]
`))
	if err != nil {
		t.Fatal(err)
	}
	s := openStationCA(t, ca.WithProfile(prof))
	chain, err := s.ca.Issue(context.Background(), csrFor(t, newKey(t)), ca.IssueRequest{DeviceSerial: "TPM-00AB12CD34EF5678", Proof: ca.ProofTPM})
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	leafPEM := pemFile(t, filepath.Join(tmp, "leaf.pem"), chain[0])
	out, err := openssl(t, "x509", "-in", leafPEM, "-noout", "-text")
	if err != nil {
		t.Fatalf("openssl x509: %v %s", err, out)
	}
	want := []string{
		"Subject: O = Example Devices Ltd, CN = TPM-00AB12CD34EF5678, serialNumber = TPM-00AB12CD34EF5678",
		"X509v3 Key Usage: critical\n                Digital Signature\n",
		"X509v3 Extended Key Usage: \n                Code Signing, TLS Web Client Authentication\n",
		"DNS:tpm-00ab12cd34ef5678.devices.wsc.local",
		// OpenSSL 3.0 names the RFC 4108 otherName by its OID
		// (id-on-hardwareModuleName); its content is checked below.
		"othername: 1.3.6.1.5.5.7.8.4::",
		"X509v3 Subject Key Identifier",
		"X509v3 Authority Key Identifier",
		"X509v3 CRL Distribution Points",
		"URI:http://pki.plant.example/wsc-line-a.crl",
		"CA:FALSE",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("openssl x509 -text lacks %q", w)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
	// Validity is explicit (2 years from the profile, plus the backdate).
	if d := chain[0].NotAfter.Sub(chain[0].NotBefore); d != 2*365*24*time.Hour+ca.Backdate {
		t.Errorf("validity %v", d)
	}
	hw, err := ca.HardwareModuleNames(chain[0])
	if err != nil || len(hw) != 1 || !hw[0].Type.Equal(ca.OIDTPM20HWType) || string(hw[0].Serial) != "TPM-00AB12CD34EF5678" {
		t.Errorf("HardwareModuleName %+v %v", hw, err)
	}
	roots := pemFile(t, filepath.Join(tmp, "roots.pem"), s.ca.Roots()...)
	inter := pemFile(t, filepath.Join(tmp, "inter.pem"), chain[1:]...)
	if out, err := openssl(t, "verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", roots, "-untrusted", inter, leafPEM); err != nil {
		t.Errorf("openssl verify: %v %s", err, out)
	}
}

// TestNoPlaintextKeyOnDisk decrypts the CA keys in memory and searches the
// CA folder and the station database files for their private scalars, for
// unencrypted PEM key blocks and for the passphrase.
func TestNoPlaintextKeyOnDisk(t *testing.T) {
	ctx := context.Background()
	s := openStationCA(t)
	for i := 0; i < 3; i++ {
		if _, err := s.ca.Issue(ctx, csrFor(t, newKey(t)), ca.IssueRequest{DeviceSerial: "SCAN-" + string(rune('A'+i)), Validity: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ca.RotateIntermediate(ctx, storePass, ca.IntermediateTemplate{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ca.RolloverRoot(ctx, storePass, ca.RolloverOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ca.CRLs(ctx); err != nil {
		t.Fatal(err)
	}
	s.store.Close()
	scanNoPlaintextKeys(t, storePass, s.dir, filepath.Dir(s.dbf))
}

// scanNoPlaintextKeys fails t if any file under dirs holds an unencrypted PEM
// private key, a legacy-encrypted one, the passphrase, or the private
// scalar of any encrypted key found under dirs.
func scanNoPlaintextKeys(t testing.TB, pass []byte, dirs ...string) {
	t.Helper()
	var files []string
	var scalars [][]byte
	for _, d := range dirs {
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				files = append(files, p)
			}
			return nil
		})
	}
	sort.Strings(files)
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte("BEGIN ENCRYPTED PRIVATE KEY")) {
			k, err := ca.LoadEncryptedKey(f, pass)
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
	if len(scalars) == 0 {
		t.Fatal("no encrypted key found to scan for")
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, bad := range []string{"BEGIN PRIVATE KEY", "BEGIN EC PRIVATE KEY", "BEGIN RSA PRIVATE KEY", "DEK-Info"} {
			if bytes.Contains(b, []byte(bad)) {
				t.Errorf("%s contains %q", f, bad)
			}
		}
		if bytes.Contains(b, pass) {
			t.Errorf("%s contains the passphrase", f)
		}
		for _, d := range scalars {
			if bytes.Contains(b, d) {
				t.Errorf("%s contains a private key in the clear", f)
			}
		}
	}
	t.Logf("scanned %d files for %d private keys", len(files), len(scalars))
}

// timedStore times the two database calls of an issuance.
type timedStore struct {
	ca.Store
	begin, complete []time.Duration
}

func (s *timedStore) BeginIssue(ctx context.Context, in ca.IssueIntent) (int64, []*x509.Certificate, error) {
	t := time.Now()
	id, ex, err := s.Store.BeginIssue(ctx, in)
	s.begin = append(s.begin, time.Since(t))
	return id, ex, err
}

func (s *timedStore) CompleteIssue(ctx context.Context, id int64, dev string, chain []*x509.Certificate) error {
	t := time.Now()
	err := s.Store.CompleteIssue(ctx, id, dev, chain)
	s.complete = append(s.complete, time.Since(t))
	return err
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

// BenchmarkIssueWithRecord measures one device certificate as the station
// issues it: Issue through smallstep's authority with the station database
// as its AuthDB, i.e. BeginIssue (intent, quota, key binding) and
// CompleteIssue (certificate row, audit rows) on a real SQLite file with
// synchronous=FULL. In the same run it measures Issue without a database
// and a bare x509.CreateCertificate with the same issuer key, and reports
// p50/p90/p99 and the ratios. Key and CSR generation and the device row are
// outside the measured span. WSC_BENCH_DIR puts the database elsewhere
// than the test's temporary folder; WSC_BENCH_SYNC overrides
// synchronous=FULL (e.g. NORMAL, for comparison only).
func BenchmarkIssueWithRecord(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	if d := os.Getenv("WSC_BENCH_DIR"); d != "" {
		var err error
		if dir, err = os.MkdirTemp(d, "wsc-bench-"); err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
	}
	caDir := filepath.Join(dir, "ca")
	if err := ca.Init(caDir, storePass, ca.InitOptions{}); err != nil {
		b.Fatal(err)
	}
	sync := "FULL"
	if v := os.Getenv("WSC_BENCH_SYNC"); v != "" {
		sync = v
	}
	st, err := db.Open(filepath.Join(dir, "station.db"), db.WithSynchronous(sync))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ts := &timedStore{Store: station.CAStore(st)}
	t0 := time.Now()
	c, err := ca.Open(caDir, storePass, ca.WithStore(ts))
	if err != nil {
		b.Fatal(err)
	}
	unlock := time.Since(t0)
	defer c.Close()
	plain, err := ca.Open(caDir, storePass)
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Close()
	signer, err := ca.LoadEncryptedKey(filepath.Join(caDir, ca.IntermediateKeyFile), storePass)
	if err != nil {
		b.Fatal(err)
	}
	issuer := c.Issuer()
	names := []string{"bench.devices.wsc.local"}

	const n = 300
	bare := make([]time.Duration, 0, n)
	noDB := make([]time.Duration, 0, n)
	csr := csrFor(b, newKey(b))
	for i := 0; i < n; i++ {
		key := newKey(b)
		serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		now := time.Now()
		tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "BENCH", SerialNumber: "BENCH"},
			NotBefore: now, NotAfter: now.Add(time.Hour), DNSNames: names,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning, x509.ExtKeyUsageClientAuth}}
		start := time.Now()
		if _, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer); err != nil {
			b.Fatal(err)
		}
		bare = append(bare, time.Since(start))
		start = time.Now()
		if _, err := plain.Issue(ctx, csr, ca.IssueRequest{DeviceSerial: "BENCH", Names: names, Validity: time.Hour}); err != nil {
			b.Fatal(err)
		}
		noDB = append(noDB, time.Since(start))
	}

	var withDB []time.Duration
	i := 0
	for b.Loop() {
		i++
		serial := "BENCH-" + strconv.Itoa(i)
		csr := csrFor(b, newKey(b))
		if err := st.EnsureDevice(ctx, db.Device{Serial: serial}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := c.Issue(ctx, csr, ca.IssueRequest{DeviceSerial: serial, Names: names, Validity: time.Hour}); err != nil {
			b.Fatal(err)
		}
		withDB = append(withDB, time.Since(start))
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	p50 := percentile(withDB, 0.5)
	b.ReportMetric(us(p50), "p50-µs")
	b.ReportMetric(us(percentile(withDB, 0.9)), "p90-µs")
	b.ReportMetric(us(percentile(withDB, 0.99)), "p99-µs")
	b.ReportMetric(us(percentile(noDB, 0.5)), "issue-nodb-p50-µs")
	b.ReportMetric(us(percentile(ts.begin, 0.5)), "begin-p50-µs")
	b.ReportMetric(us(percentile(ts.complete, 0.5)), "complete-p50-µs")
	b.ReportMetric(us(percentile(bare, 0.5)), "bare-p50-µs")
	b.ReportMetric(float64(p50)/float64(percentile(bare, 0.5)), "x-bare")
	b.ReportMetric(float64(p50)/float64(percentile(noDB, 0.5)), "x-nodb")
	b.ReportMetric(float64(unlock.Microseconds())/1e3, "unlock-ms")
}
