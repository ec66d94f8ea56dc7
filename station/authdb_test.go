package station

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
)

// countingStore counts the certificates the station records itself.
type countingStore struct {
	Store
	completes atomic.Int32
}

func (s *countingStore) CompleteIssue(ctx context.Context, id int64, c db.Certificate) error {
	s.completes.Add(1)
	return s.Store.CompleteIssue(ctx, id, c)
}

// TestIssuanceThroughAuthDB: with the CA on the station database, the
// certificate is recorded by smallstep's authority (AuthDB) under the
// station's own intent and run, once; the station does not record it a
// second time; revocation and the CRL see it.
func TestIssuanceThroughAuthDB(t *testing.T) {
	l := newTestLine(t, 1, "")
	// A CA that does not record what it signs is refused: there is one
	// issuance path.
	dir := t.TempDir()
	if err := ca.Init(filepath.Join(dir, "ca"), []byte("test passphrase"), ca.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	bare, err := ca.Open(filepath.Join(dir, "ca"), []byte("test passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	pc := l.prov.cfg
	pc.Issuer = bare
	if _, err := NewProvisioner(pc); err == nil || !strings.Contains(err.Error(), "ca.WithStore") {
		t.Fatalf("a provisioner on a CA that records nothing: %v", err)
	}
	cs := &countingStore{Store: l.store}
	l.prov.cfg.Store = cs
	ctx := context.Background()
	d := l.bench.Devices[0]
	res, err := l.prov.Provision(ctx, Job{Slot: 1, Port: d.Port})
	if err != nil {
		t.Fatal(err)
	}
	if n := cs.completes.Load(); n != 0 {
		t.Fatalf("station recorded the certificate %d times itself; the CA records it", n)
	}
	certs, err := l.store.Certificates(ctx, d.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 1 {
		t.Fatalf("%s has %d certificates, want 1", d.Serial, len(certs))
	}
	if certs[0].SerialHex != db.NormalizeSerial(res.CertSerial) || certs[0].Status != db.CertConfirmed {
		t.Fatalf("certificate of %s: serial %s status %s (want %s, confirmed)", d.Serial, certs[0].SerialHex, certs[0].Status, res.CertSerial)
	}
	entries, err := l.store.AuditEntries(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	issues, signing := 0, 0
	for _, e := range entries {
		if e.Kind != "cert.issue" {
			continue
		}
		var det struct {
			Run    int64  `json:"run"`
			Intent int64  `json:"intent"`
			Role   string `json:"role"`
		}
		if err := json.Unmarshal(e.Detail, &det); err != nil {
			t.Fatal(err)
		}
		// The TPM device also gets its code-signing certificate (issue 15),
		// recorded the same way with role ldevid.
		if det.Role == db.RoleLDevID {
			signing++
		} else {
			issues++
		}
		if det.Run == 0 || det.Intent == 0 {
			t.Errorf("issuance not tied to the station's run and intent: %s", e.Detail)
		}
	}
	if issues != 1 || signing != 1 {
		t.Fatalf("%d identity and %d signing cert.issue audit rows, want 1 each", issues, signing)
	}

	// A second run on the same key re-delivers: still one certificate.
	res2, err := l.prov.Provision(ctx, Job{Slot: 1, Port: d.Port})
	if err != nil {
		t.Fatal(err)
	}
	if !res2.Redelivered || res2.CertSerial != res.CertSerial {
		t.Fatalf("second run: redelivered=%v serial %s (first %s)", res2.Redelivered, res2.CertSerial, res.CertSerial)
	}

	// Revocation through the CA (smallstep's Revoke on the AuthDB) and the CRL.
	leaf := res.Chain[0]
	if err := l.ca.Revoke(ctx, leaf, 1); err != nil {
		t.Fatal(err)
	}
	if rev, err := l.store.IsRevoked(ctx, res.CertSerial); err != nil || !rev {
		t.Fatalf("IsRevoked = %v, %v", rev, err)
	}
	crl, err := l.ca.CRL(ctx, leaf.AuthorityKeyId)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range crl.RevokedCertificateEntries {
		found = found || e.SerialNumber.Cmp(leaf.SerialNumber) == 0
	}
	if !found {
		t.Fatal("the CRL does not list the revoked station certificate")
	}
}
