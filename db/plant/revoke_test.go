package plant

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"math/big"
	"testing"
	"time"
)

func TestPlantRevocationAppliedByIssuingStation(t *testing.T) {
	ctx := context.Background()
	p := newPlant(t)
	a, b := newStation(t, p, "st-a"), newStation(t, p, "st-b")
	a.provision(t, 3)
	b.provision(t, 3)
	pki := sharedPKI()
	issuerID := pki.inter.SubjectKeyId
	revokeCalls := map[string]int{}
	crlNumber := int64(0)
	syncer := func(s *station) *Syncer {
		sy := s.syncer()
		// The station's CA: revoke in its database (as ca.RevokeSerial does), publish its
		// intermediate and a CRL it signs.
		sy.Revoke = func(ctx context.Context, serial string, reason int) error {
			revokeCalls[s.id+"/"+serial]++
			return s.store.RecordRevocation(ctx, serial, issuerID, reason, time.Now())
		}
		sy.Trust = func(ctx context.Context) ([]*x509.Certificate, []*x509.RevocationList, error) {
			revs, err := s.store.Revocations(ctx, issuerID)
			if err != nil {
				return nil, nil, err
			}
			var entries []x509.RevocationListEntry
			for _, r := range revs {
				n, _ := new(big.Int).SetString(r.SerialHex, 16)
				entries = append(entries, x509.RevocationListEntry{SerialNumber: n, RevocationTime: time.Now()})
			}
			crlNumber++
			der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(crlNumber), ThisUpdate: time.Now(),
				NextUpdate: time.Now().Add(time.Hour), RevokedCertificateEntries: entries}, pki.inter, pki.interKey)
			if err != nil {
				return nil, nil, err
			}
			crl, err := x509.ParseRevocationList(der)
			return []*x509.Certificate{pki.inter}, []*x509.RevocationList{crl}, err
		}
		return sy
	}
	sa, sb := syncer(a), syncer(b)
	for _, sy := range []*Syncer{sa, sb} {
		if _, err := sy.SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Revoke b's second device's certificate from the plant.
	ls, err := p.admin.Find(ctx, "st-b-D000002")
	if err != nil || len(ls) != 1 {
		t.Fatalf("find: %v %+v", err, ls)
	}
	serial := ls[0].CertSerial
	if _, err := p.admin.RequestRevocation(ctx, serial, "bogus"); err == nil {
		t.Fatal("unknown reason accepted")
	}
	if _, err := p.admin.RequestRevocation(ctx, "deadbeef", "keyCompromise"); err == nil {
		t.Fatal("unknown certificate accepted")
	}
	req, err := p.admin.RequestRevocation(ctx, serial, "keyCompromise")
	if err != nil || req.Station != "st-b" || !req.AppliedAt.IsZero() {
		t.Fatalf("request: %v %+v", err, req)
	}
	// a's sync does not touch it (not its certificate); b's applies it once.
	for _, sy := range []*Syncer{sa, sb, sa, sb} {
		if _, err := sy.SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(revokeCalls) != 1 || revokeCalls["st-b/"+serial] != 1 {
		t.Fatalf("revoke calls %v", revokeCalls)
	}
	reqs, err := p.admin.RevocationRequests(ctx, "")
	if err != nil || len(reqs) != 1 || reqs[0].AppliedAt.IsZero() {
		t.Fatalf("requests after sync: %v %+v", err, reqs)
	}
	if n := p.count(t, "SELECT count(*) FROM revocations WHERE serial_hex = $1 AND station_id = 'st-b' AND reason = 'keyCompromise'", serial); n != 1 {
		t.Fatalf("%d witnessed revocations", n)
	}
	if ls, _ := p.admin.Find(ctx, serial); len(ls) != 1 || !ls[0].Revoked {
		t.Fatalf("lookup after revocation: %+v", ls)
	}
	bundle, err := p.admin.Bundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bundle.Issuers) != 2 || len(bundle.CRLs) != 2 {
		t.Fatalf("bundle: %s", bundle.Summary())
	}
	found := false
	for _, crl := range bundle.CRLs {
		for _, e := range crl.RevokedCertificateEntries {
			if hex.EncodeToString(e.SerialNumber.Bytes()) == serial || e.SerialNumber.Text(16) == serial {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("the revoked serial %s is in no CRL of the bundle", serial)
	}
}
