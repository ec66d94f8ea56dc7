package plant

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/db/plant/pgtest"
)

// testPlant is a real PostgreSQL cluster with a migrated registry database.
type testPlant struct {
	srv   *pgtest.Server
	admin *Registry
	db    string
}

func newPlant(t testing.TB) *testPlant {
	t.Helper()
	srv := pgtest.Start(t)
	if err := srv.CreateDatabase("plant"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	admin, err := Open(ctx, srv.AdminDSNFor("plant"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	if _, err := admin.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return &testPlant{srv: srv, admin: admin, db: "plant"}
}

// stationDSN is the TLS client-certificate connection string of a station's role.
func (p *testPlant) stationDSN(role string) string { return p.srv.ClientDSN(role, p.db, "") }

// station is a real station database with its audit key, registered in the plant, and a
// connection to the registry as its own role.
type station struct {
	id    string
	role  string
	store *db.Store
	key   *ecdsa.PrivateKey
	reg   *Registry
	pki   *testPKI
	n     int
}

func newStation(t testing.TB, p *testPlant, id string) *station {
	t.Helper()
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	role := "station_" + strings.ReplaceAll(strings.ToLower(id), "-", "_")
	if err := p.admin.AddStation(ctx, id, role, &key.PublicKey); err != nil {
		t.Fatal(err)
	}
	return openStation(t, p, id, role, key, filepath.Join(t.TempDir(), "wsc.db"))
}

func openStation(t testing.TB, p *testPlant, id, role string, key *ecdsa.PrivateKey, path string, opts ...db.Option) *station {
	t.Helper()
	ctx := context.Background()
	store, err := db.Open(path, append([]db.Option{db.WithAuditSigner(key, 10), db.WithActor(id)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.CreateWorkOrder(ctx, db.WorkOrder{ID: "WO-" + id, Product: "board", Quantity: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	reg, err := Open(ctx, p.stationDSN(role))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	return &station{id: id, role: role, store: store, key: key, reg: reg, pki: sharedPKI()}
}

func (s *station) syncer() *Syncer {
	return &Syncer{Store: s.store, Registry: s.reg, Station: s.id, BatchSize: 200}
}

// provision records n devices through the station's database API: device, run,
// intent, certificate, delivery, confirmation and finished run (db-level, no device I/O).
// Every fifth device first has a failed run.
func (s *station) provision(t testing.TB, n int) {
	t.Helper()
	ctx := context.Background()
	for range n {
		s.n++
		serial := fmt.Sprintf("%s-D%06d", s.id, s.n)
		if err := s.provisionOne(ctx, serial); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *station) provisionOne(ctx context.Context, serial string) error {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return s.provisionWith(ctx, serial, db.KeyHash([]byte("ek:"+serial)), k, true)
}

// provisionWith provisions serial with a given chip identity hash and key; without a run
// when withRun is false.
func (s *station) provisionWith(ctx context.Context, serial string, ek []byte, k *ecdsa.PrivateKey, withRun bool) error {
	if err := s.store.EnsureDevice(ctx, db.Device{Serial: serial, Backend: "tpm", Model: "m1", EKPublicHash: ek}); err != nil {
		return err
	}
	wo := "WO-" + s.id
	if withRun && (strings.HasSuffix(serial, "5") || strings.HasSuffix(serial, "0")) {
		run, err := s.store.StartRun(ctx, db.RunStart{DeviceSerial: serial, Slot: 1, Station: s.id, Operator: "op", WorkOrder: wo})
		if err != nil {
			return err
		}
		if err := s.store.FinishRun(ctx, run, db.RunFailed, "credential activation failed", map[string]time.Duration{"activate": time.Millisecond}); err != nil {
			return err
		}
	}
	var run int64
	if withRun {
		var err error
		if run, err = s.store.StartRun(ctx, db.RunStart{DeviceSerial: serial, Slot: 1, Station: s.id, Operator: "op", WorkOrder: wo}); err != nil {
			return err
		}
	}
	kder, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	id, _, err := s.store.BeginIssue(ctx, db.IssueIntent{DeviceSerial: serial, KeyPublicDER: kder, WorkOrder: wo, RunID: run})
	if err != nil {
		return err
	}
	der := s.pki.leaf(&k.PublicKey, serial)
	if err := s.store.CompleteIssue(ctx, id, db.Certificate{DeviceSerial: serial, DER: der, Chain: [][]byte{der, s.pki.inter.Raw}}); err != nil {
		return err
	}
	c, err := s.store.LiveCertificate(ctx, serial)
	if err != nil {
		return err
	}
	if err := s.store.MarkDelivered(ctx, c.SerialHex); err != nil {
		return err
	}
	if !withRun {
		return s.store.MarkConfirmed(ctx, c.SerialHex)
	}
	return s.store.ConfirmAndFinish(ctx, c.SerialHex, run, map[string]time.Duration{"issue": 2 * time.Millisecond, "deliver": 3 * time.Millisecond})
}

// testPKI is a real throwaway root and intermediate that sign device leaves.
type testPKI struct {
	inter    *x509.Certificate
	interKey *ecdsa.PrivateKey
	mu       sync.Mutex
	next     int64
}

var (
	pkiOnce sync.Once
	thePKI  *testPKI
)

func sharedPKI() *testPKI {
	pkiOnce.Do(func() {
		now := time.Now()
		rk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"}, NotBefore: now.Add(-time.Hour),
			NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
		rder, _ := x509.CreateCertificate(rand.Reader, rt, rt, &rk.PublicKey, rk)
		root, _ := x509.ParseCertificate(rder)
		ik, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		it := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "test intermediate"}, NotBefore: now.Add(-time.Hour),
			NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			SubjectKeyId: []byte("test-intermediate-key-id")}
		ider, _ := x509.CreateCertificate(rand.Reader, it, root, &ik.PublicKey, rk)
		inter, _ := x509.ParseCertificate(ider)
		thePKI = &testPKI{inter: inter, interKey: ik, next: now.UnixNano()}
	})
	return thePKI
}

func (p *testPKI) leaf(pub any, serial string) []byte {
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
	return der
}

// count returns a count(*) as the administrator.
func (p *testPlant) count(t testing.TB, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := p.admin.pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func dbRowHash(r Record) []byte { return db.AuditRowHash(r.entry()) }

func openDBStore(path string) (*db.Store, error) { return db.Open(path) }
