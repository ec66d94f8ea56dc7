package db

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestSigningCertificateRole: a device holds one live identity and one
// live signing certificate; a new signing certificate supersedes only the
// previous signing one; listings and LiveCertificate keep to their role;
// the ledger row names the role; a rework supersedes both.
func TestSigningCertificateRole(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	p := getPKI()
	id, err := provision(ctx, s, p, "DEV-R1", "")
	if err != nil {
		t.Fatal(err)
	}
	sign := func() *Certificate {
		t.Helper()
		kd, pub := newDeviceKey()
		intent, existing, err := s.BeginIssue(ctx, IssueIntent{DeviceSerial: "DEV-R1", KeyPublicDER: kd, Role: RoleLDevID})
		if err != nil || existing != nil {
			t.Fatalf("begin signing issue: %v, existing %v", err, existing)
		}
		der, chain := p.leaf(pub, "DEV-R1")
		if err := s.CompleteIssue(ctx, intent, Certificate{DeviceSerial: "DEV-R1", DER: der, Chain: chain}); err != nil {
			t.Fatal(err)
		}
		c, err := s.LiveSigningCertificate(ctx, "DEV-R1")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	s1 := sign()
	if live, err := s.LiveCertificate(ctx, "DEV-R1"); err != nil || live.SerialHex != id.SerialHex {
		t.Fatalf("identity certificate after the signing one: %v", err)
	}
	s2 := sign()
	if s2.SerialHex == s1.SerialHex {
		t.Fatal("second signing certificate has the first one's serial")
	}
	ids, _ := s.Certificates(ctx, "DEV-R1")
	sigs, _ := s.SigningCertificates(ctx, "DEV-R1")
	if len(ids) != 1 || ids[0].RevokedAt != nil || len(sigs) != 2 || sigs[0].RevokedAt == nil || sigs[0].RevokeReason != "superseded" || sigs[1].RevokedAt != nil {
		t.Fatalf("identity %d, signing %d (first revoked %v)", len(ids), len(sigs), sigs[0].RevokedAt != nil)
	}
	if _, _, err := s.BeginIssue(ctx, IssueIntent{DeviceSerial: "DEV-R1", KeyPublicDER: []byte{1}, Role: "other"}); err == nil {
		t.Fatal("unknown role accepted")
	}
	entries, _ := s.AuditEntries(ctx, 0, 0)
	roles := 0
	for _, e := range entries {
		if e.Kind == "cert.issue" && strings.Contains(string(e.Detail), `"role":"ldevid"`) {
			roles++
		}
	}
	if roles != 2 {
		t.Fatalf("%d cert.issue rows with role ldevid, want 2", roles)
	}
	if err := s.Rebind(ctx, "DEV-R1", KeyHash([]byte("new chip")), "tpm", "sup", "DEV-R1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LiveSigningCertificate(ctx, "DEV-R1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("signing certificate live after a rework: %v", err)
	}
	if _, err := s.LiveCertificate(ctx, "DEV-R1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("identity certificate live after a rework: %v", err)
	}
}

// TestOwnerAuthRecords: a sealed record goes pending → set with ledger
// rows carrying the ciphertext (for the plant, through the outbox), never
// twice; policy none carries none; malformed records are refused.
func TestOwnerAuthRecords(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	if err := s.EnsureDevice(ctx, Device{Serial: "DEV-O1", Backend: "tpm"}); err != nil {
		t.Fatal(err)
	}
	chip := KeyHash([]byte("chip"))
	sealed := OwnerAuthRecord{DeviceSerial: "DEV-O1", ChipID: chip, WorkOrder: "WO-1", Policy: OwnerAuthSealed,
		EscrowKeyID: KeyHash([]byte("escrow")), Suite: "suite", Enc: []byte("enc"), Sealed: []byte("ciphertext")}
	for name, r := range map[string]OwnerAuthRecord{
		"no ciphertext":    {DeviceSerial: "DEV-O1", ChipID: chip, Policy: OwnerAuthSealed},
		"none with a blob": {DeviceSerial: "DEV-O1", ChipID: chip, Policy: OwnerAuthNone, Sealed: []byte("x"), Enc: []byte("y")},
		"unknown policy":   {DeviceSerial: "DEV-O1", ChipID: chip, Policy: "maybe"},
		"no chip":          {DeviceSerial: "DEV-O1", Policy: OwnerAuthNone},
		"unknown device":   func() OwnerAuthRecord { r := sealed; r.DeviceSerial = "NOPE"; return r }(),
	} {
		if _, err := s.RecordOwnerAuth(ctx, r); err == nil {
			t.Errorf("%s: recorded", name)
		}
	}
	id, err := s.RecordOwnerAuth(ctx, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MarkOwnerAuthSet(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkOwnerAuthSet(ctx, id); err == nil {
		t.Fatal("set twice")
	}
	if _, err := s.RecordOwnerAuth(ctx, OwnerAuthRecord{DeviceSerial: "DEV-O1", ChipID: chip, Policy: OwnerAuthNone}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.OwnerAuths(ctx, "DEV-O1")
	if err != nil || len(recs) != 2 || recs[0].State != OwnerAuthSet || recs[0].SetAt == nil || !bytes.Equal(recs[0].Sealed, []byte("ciphertext")) ||
		recs[1].Policy != OwnerAuthNone || recs[1].Sealed != nil {
		t.Fatalf("records %+v, %v", recs, err)
	}
	entries, _ := s.AuditEntries(ctx, 0, 0)
	kinds := map[string]int{}
	for _, e := range entries {
		kinds[e.Kind]++
		if e.Kind == "owner_auth.seal" {
			var d struct {
				Sealed string `json:"sealed"`
			}
			if err := json.Unmarshal(e.Detail, &d); err != nil || d.Sealed != "63697068657274657874" {
				t.Errorf("seal row without its ciphertext: %s", e.Detail)
			}
		}
	}
	if kinds["owner_auth.seal"] != 1 || kinds["owner_auth.set"] != 1 || kinds["owner_auth.policy"] != 1 {
		t.Fatalf("ledger kinds %v", kinds)
	}
	var pending int
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox o JOIN audit a ON a.id = o.audit_seq WHERE a.kind LIKE 'owner_auth.%'`).Scan(&pending); err != nil || pending != 3 {
		t.Fatalf("outbox rows of owner_auth ledger rows: %d, %v", pending, err)
	}
}
