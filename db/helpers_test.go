package db

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// testPKI is a real throwaway root + intermediate that signs device leaves.
type testPKI struct {
	root, inter *x509.Certificate
	interKey    *ecdsa.PrivateKey
	mu          sync.Mutex
	next        int64
}

var (
	pkiOnce   sync.Once
	sharedPKI *testPKI
)

func getPKI() *testPKI {
	pkiOnce.Do(func() { sharedPKI = newPKI() })
	return sharedPKI
}

func newPKI() *testPKI {
	now := time.Now()
	rk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	rder, err := x509.CreateCertificate(rand.Reader, rt, rt, &rk.PublicKey, rk)
	if err != nil {
		panic(err)
	}
	root, _ := x509.ParseCertificate(rder)
	ik, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	it := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "test intermediate"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	ider, err := x509.CreateCertificate(rand.Reader, it, root, &ik.PublicKey, rk)
	if err != nil {
		panic(err)
	}
	inter, _ := x509.ParseCertificate(ider)
	return &testPKI{root: root, inter: inter, interKey: ik, next: time.Now().UnixNano()}
}

// leaf signs a device certificate for pub and returns its DER and chain (leaf first).
func (p *testPKI) leaf(pub crypto.PublicKey, serial string) ([]byte, [][]byte) {
	p.mu.Lock()
	p.next++
	sn := big.NewInt(p.next)
	p.mu.Unlock()
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{SerialNumber: serial}, NotBefore: now.Add(-time.Minute),
		NotAfter: now.Add(365 * 24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.inter, pub, p.interKey)
	if err != nil {
		panic(err)
	}
	return der, [][]byte{der, p.inter.Raw}
}

// newDeviceKey returns a fresh P-256 key's PKIX DER and public key.
func newDeviceKey() ([]byte, crypto.PublicKey) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return der, &k.PublicKey
}

func newAuditKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openTest(t testing.TB, path string, opts ...Option) *Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "wsc.db")
	}
	s, err := Open(path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// issue runs BeginIssue and, when a signature is needed, CompleteIssue with a fresh leaf.
func issue(ctx context.Context, s *Store, p *testPKI, serial string, keyDER []byte, pub crypto.PublicKey, wo string, run int64) (*Certificate, error) {
	id, existing, err := s.BeginIssue(ctx, IssueIntent{DeviceSerial: serial, KeyPublicDER: keyDER, WorkOrder: wo, RunID: run})
	if err != nil {
		return nil, err
	}
	if existing != nil {
		return existing, nil
	}
	der, chain := p.leaf(pub, serial)
	if err := s.CompleteIssue(ctx, id, Certificate{DeviceSerial: serial, DER: der, Chain: chain}); err != nil {
		return nil, err
	}
	return s.LiveCertificate(ctx, serial)
}

// provision runs the whole station flow for one device with a new key.
func provision(ctx context.Context, s *Store, p *testPKI, serial, wo string) (*Certificate, error) {
	if err := s.EnsureDevice(ctx, Device{Serial: serial, Backend: "tpm", Model: "m1", EKPublicHash: KeyHash([]byte(serial))}); err != nil {
		return nil, err
	}
	run, err := s.StartRun(ctx, RunStart{DeviceSerial: serial, Slot: 1, Station: "st1", Operator: "op1", WorkOrder: wo})
	if err != nil {
		return nil, err
	}
	kd, pub := newDeviceKey()
	c, err := issue(ctx, s, p, serial, kd, pub, wo, run)
	if err != nil {
		_ = s.FinishRun(ctx, run, RunFailed, err.Error(), nil)
		return nil, err
	}
	if err := s.MarkDelivered(ctx, c.SerialHex); err != nil {
		return nil, err
	}
	if err := s.MarkConfirmed(ctx, c.SerialHex); err != nil {
		return nil, err
	}
	return c, s.FinishRun(ctx, run, RunOK, "", map[string]time.Duration{"issue": time.Millisecond, "deliver": 2 * time.Millisecond})
}
