package db

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMigrationsIdempotent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "wsc.db")
	for i := 0; i < 3; i++ {
		s, err := Open(path)
		if err != nil {
			t.Fatalf("open #%d: %v", i, err)
		}
		v, err := s.Version(ctx)
		if err != nil || v != SchemaVersion() || v < 1 {
			t.Fatalf("open #%d: version %d (want %d), %v", i, v, SchemaVersion(), err)
		}
		if err := s.IntegrityCheck(ctx); err != nil {
			t.Fatal(err)
		}
		var jm, fk, sync string
		s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&jm)
		s.db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk)
		s.db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync)
		if jm != "wal" || fk != "1" || sync != "2" {
			t.Fatalf("pragmas: journal_mode=%s foreign_keys=%s synchronous=%s", jm, fk, sync)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// A file from the future is refused.
	s := openTest(t, path)
	if _, err := s.db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(path); !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("open newer schema: %v, want ErrSchemaTooNew", err)
	}
}

func TestConcurrentOpenMigrates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wsc.db")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(path)
			if err != nil {
				errs <- err
				return
			}
			errs <- s.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestExactlyOnceIssue(t *testing.T) {
	ctx := context.Background()
	p := getPKI()
	s := openTest(t, "")
	if err := s.CreateWorkOrder(ctx, WorkOrder{ID: "WO-1", Product: "gw", Quantity: 10, LockPolicy: LockPolicyLock}); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureDevice(ctx, Device{Serial: "D1", Backend: "tpm", EKPublicHash: []byte("ek1")}); err != nil {
		t.Fatal(err)
	}
	kd, pub := newDeviceKey()
	in := IssueIntent{DeviceSerial: "D1", KeyPublicDER: kd, WorkOrder: "WO-1"}
	id, existing, err := s.BeginIssue(ctx, in)
	if err != nil || existing != nil || id == 0 {
		t.Fatalf("BeginIssue: %d %v %v", id, existing, err)
	}
	// A crash before CompleteIssue: the retry gets the same intent.
	id2, existing, err := s.BeginIssue(ctx, in)
	if err != nil || existing != nil || id2 != id {
		t.Fatalf("BeginIssue retry: %d (want %d) %v %v", id2, id, existing, err)
	}
	der, chain := p.leaf(pub, "D1")
	if err := s.CompleteIssue(ctx, id, Certificate{DER: der, Chain: chain}); err != nil {
		t.Fatal(err)
	}
	// Idempotent completion with the same certificate; refused with another.
	if err := s.CompleteIssue(ctx, id, Certificate{DER: der, Chain: chain}); err != nil {
		t.Fatalf("CompleteIssue again: %v", err)
	}
	other, _ := p.leaf(pub, "D1")
	if err := s.CompleteIssue(ctx, id, Certificate{DER: other}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("CompleteIssue other cert: %v, want ErrDuplicate", err)
	}
	live, err := s.LiveCertificate(ctx, "D1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(live.DER, der) || len(live.Chain) != 2 || !bytes.Equal(live.Chain[1], p.inter.Raw) || live.Status != CertIssued {
		t.Fatalf("live certificate: %+v", live)
	}
	if !bytes.Equal(live.IssuerKeyID, p.inter.SubjectKeyId) {
		t.Fatalf("issuer key id %x, want %x", live.IssuerKeyID, p.inter.SubjectKeyId)
	}
	// Resume: same key -> the existing certificate, no new intent, no new quota unit.
	id3, existing, err := s.BeginIssue(ctx, in)
	if err != nil || id3 != 0 || existing == nil || existing.SerialHex != live.SerialHex {
		t.Fatalf("resume: %d %v %v", id3, existing, err)
	}
	if err := s.MarkDelivered(ctx, live.SerialHex); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDelivered(ctx, strings.ToUpper(live.SerialHex)); err != nil { // re-delivery, any case
		t.Fatal(err)
	}
	if err := s.MarkConfirmed(ctx, live.SerialHex); err != nil {
		t.Fatal(err)
	}
	d, err := s.GetDevice(ctx, "D1")
	if err != nil || d.Status != DeviceProvisioned || d.ProvisionedAt == nil || d.WorkOrder != "WO-1" {
		t.Fatalf("device after confirm: %+v %v", d, err)
	}

	// Re-provisioning with a new key supersedes and revokes the old certificate.
	kd2, pub2 := newDeviceKey()
	c2, err := issue(ctx, s, p, "D1", kd2, pub2, "WO-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := s.Certificates(ctx, "D1")
	if err != nil || len(certs) != 2 {
		t.Fatalf("certificates: %d %v", len(certs), err)
	}
	if certs[0].Status != CertRevoked || certs[0].RevokeReason != "superseded" || certs[0].RevokedAt == nil {
		t.Fatalf("old certificate not superseded: %+v", certs[0])
	}
	if certs[1].SerialHex != c2.SerialHex || certs[1].RevokedAt != nil {
		t.Fatalf("new certificate: %+v", certs[1])
	}
	if ok, err := s.IsRevoked(ctx, live.SerialHex); !ok || err != nil {
		t.Fatalf("IsRevoked(old) = %v, %v", ok, err)
	}
	revs, err := s.Revocations(ctx, p.inter.SubjectKeyId)
	if err != nil || len(revs) != 1 || revs[0].Reason != ReasonSuperseded || revs[0].SerialHex != live.SerialHex {
		t.Fatalf("revocations: %+v %v", revs, err)
	}
	// The old key cannot come back.
	if _, _, err := s.BeginIssue(ctx, in); !errors.Is(err, ErrKeyRevoked) {
		t.Fatalf("old key: %v, want ErrKeyRevoked", err)
	}
	if err := s.MarkDelivered(ctx, live.SerialHex); !errors.Is(err, ErrRevoked) {
		t.Fatalf("deliver revoked: %v, want ErrRevoked", err)
	}
	// A newer key abandons an older pending intent.
	kd3, _ := newDeviceKey()
	kd4, pub4 := newDeviceKey()
	idA, _, err := s.BeginIssue(ctx, IssueIntent{DeviceSerial: "D1", KeyPublicDER: kd3})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.BeginIssue(ctx, IssueIntent{DeviceSerial: "D1", KeyPublicDER: kd4}); err != nil {
		t.Fatal(err)
	}
	derA, _ := p.leaf(pub4, "D1")
	if err := s.CompleteIssue(ctx, idA, Certificate{DER: derA}); !errors.Is(err, ErrStaleIntent) {
		t.Fatalf("complete abandoned intent: %v, want ErrStaleIntent", err)
	}
	st, err := s.Stats(ctx, "WO-1")
	if err != nil || len(st) != 1 || st[0].Assigned != 1 || st[0].Done != 1 {
		t.Fatalf("stats: %+v %v", st, err)
	}
	if _, err := s.VerifyAudit(ctx, AuditVerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestCompleteIssueWrongKey(t *testing.T) {
	ctx := context.Background()
	p := getPKI()
	s := openTest(t, "")
	s.EnsureDevice(ctx, Device{Serial: "D1"})
	kd, _ := newDeviceKey()
	_, otherPub := newDeviceKey()
	id, _, err := s.BeginIssue(ctx, IssueIntent{DeviceSerial: "D1", KeyPublicDER: kd})
	if err != nil {
		t.Fatal(err)
	}
	der, _ := p.leaf(otherPub, "D1")
	if err := s.CompleteIssue(ctx, id, Certificate{DER: der}); !errors.Is(err, ErrStaleIntent) {
		t.Fatalf("certificate for another key: %v, want ErrStaleIntent", err)
	}
	if _, err := s.LiveCertificate(ctx, "D1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("live certificate after refusal: %v", err)
	}
	if _, _, err := s.BeginIssue(ctx, IssueIntent{DeviceSerial: "nope", KeyPublicDER: kd}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown device: %v", err)
	}
}

func TestNeverTwoLiveCertificates(t *testing.T) {
	ctx := context.Background()
	p := getPKI()
	s := openTest(t, "")
	c, err := provision(ctx, s, p, "D1", "")
	if err != nil {
		t.Fatal(err)
	}
	// Bypass the API: a second live certificate for the device violates the partial unique index.
	kd, pub := newDeviceKey()
	der, _ := p.leaf(pub, "D1")
	err = s.withTx(ctx, "forge", func(tx *sql.Tx) error {
		res, err := tx.Exec(`INSERT INTO keys (device_id, pub_hash, public_der, created_at) SELECT id, ?, ?, 0 FROM devices WHERE serial = 'D1'`, KeyHash(kd), kd)
		if err != nil {
			return err
		}
		kid, _ := res.LastInsertId()
		_, err = tx.Exec(`INSERT INTO certificates (serial_hex, device_id, key_id, issuer_key_id, der, not_before, not_after, issued_at)
			SELECT 'abc', id, ?, x'01', ?, 0, 0, 0 FROM devices WHERE serial = 'D1'`, kid, der)
		return err
	})
	if !errors.Is(err, ErrDuplicate) || !strings.Contains(err.Error(), "certificates.device_id") {
		t.Fatalf("second live certificate: %v, want unique violation", err)
	}
	if live, err := s.LiveCertificate(ctx, "D1"); err != nil || live.SerialHex != c.SerialHex {
		t.Fatalf("live: %v %v", live, err)
	}
}

func TestKeyConflictAcrossDevices(t *testing.T) {
	ctx := context.Background()
	p := getPKI()
	s := openTest(t, "")
	for _, d := range []string{"D1", "D2", "D3"} {
		if err := s.EnsureDevice(ctx, Device{Serial: d}); err != nil {
			t.Fatal(err)
		}
	}
	kd, pub := newDeviceKey()
	// Pending on D1: D2 may not claim the key.
	if _, _, err := s.BeginIssue(ctx, IssueIntent{DeviceSerial: "D1", KeyPublicDER: kd}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.BeginIssue(ctx, IssueIntent{DeviceSerial: "D2", KeyPublicDER: kd}); !errors.Is(err, ErrKeyConflict) {
		t.Fatalf("pending key on another device: %v, want ErrKeyConflict", err)
	}
	if _, err := issue(ctx, s, p, "D1", kd, pub, "", 0); err != nil {
		t.Fatal(err)
	}
	// Certified for D1: D3 may not claim it either.
	if _, _, err := s.BeginIssue(ctx, IssueIntent{DeviceSerial: "D3", KeyPublicDER: kd}); !errors.Is(err, ErrKeyConflict) {
		t.Fatalf("certified key on another device: %v, want ErrKeyConflict", err)
	}
	// Device identity: another EK under the same serial is refused.
	if err := s.EnsureDevice(ctx, Device{Serial: "D9", EKPublicHash: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureDevice(ctx, Device{Serial: "D9", EKPublicHash: []byte("b")}); !errors.Is(err, ErrDeviceMismatch) {
		t.Fatalf("EK mismatch: %v", err)
	}
}

func TestQuota(t *testing.T) {
	ctx := context.Background()
	p := getPKI()
	s := openTest(t, "")
	if err := s.CreateWorkOrder(ctx, WorkOrder{ID: "WO-Q", Product: "gw", Quantity: 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateWorkOrder(ctx, WorkOrder{ID: "WO-Q", Product: "gw", Quantity: 2}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate work order: %v", err)
	}
	if _, err := s.GetWorkOrder(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing work order: %v", err)
	}
	for _, d := range []string{"D1", "D2"} {
		if _, err := provision(ctx, s, p, d, "WO-Q"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := provision(ctx, s, p, "D3", "WO-Q"); !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("third device: %v, want ErrQuotaExceeded", err)
	}
	// Re-provisioning a device of the order does not take another unit.
	if _, err := provision(ctx, s, p, "D1", "WO-Q"); err != nil {
		t.Fatalf("re-provision within quota: %v", err)
	}
	st, err := s.Stats(ctx, "WO-Q")
	if err != nil {
		t.Fatal(err)
	}
	if g := st[0]; g.Assigned != 2 || g.Done != 2 || g.RunsOK != 3 || g.Failed != 1 || g.Yield != 0.75 {
		t.Fatalf("stats: %+v", g)
	}
	wo, err := s.GetWorkOrder(ctx, "WO-Q")
	if err != nil || wo.Quantity != 2 || wo.Product != "gw" {
		t.Fatalf("GetWorkOrder: %+v %v", wo, err)
	}
}

func TestOperators(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	if err := s.UpsertOperator(ctx, Operator{ID: "op1", Name: "Ann", Role: "line"}, "4711"); err != nil {
		t.Fatal(err)
	}
	var stored string
	s.rdb.QueryRow("SELECT pin_hash FROM operators WHERE id = 'op1'").Scan(&stored)
	if strings.Contains(stored, "4711") || !strings.HasPrefix(stored, "pbkdf2-sha256$") {
		t.Fatalf("pin stored as %q", stored)
	}
	if _, err := s.VerifyOperator(ctx, "op1", "0000"); !errors.Is(err, ErrBadPIN) || strings.Contains(err.Error(), "0000") {
		t.Fatalf("wrong pin: %v", err)
	}
	op, err := s.VerifyOperator(ctx, "op1", "4711")
	if err != nil || op.Name != "Ann" {
		t.Fatalf("right pin: %+v %v", op, err)
	}
	// Update without a PIN keeps it.
	if err := s.UpsertOperator(ctx, Operator{ID: "op1", Name: "Ann B", Role: "lead"}, ""); err != nil {
		t.Fatal(err)
	}
	if op, err := s.VerifyOperator(ctx, "op1", "4711"); err != nil || op.Role != "lead" {
		t.Fatalf("after update: %+v %v", op, err)
	}
	if err := s.UpsertOperator(ctx, Operator{ID: "op2"}, ""); err == nil {
		t.Fatal("new operator without PIN accepted")
	}
	// The PIN never reaches the audit ledger.
	es, _ := s.AuditEntries(ctx, 0, 0)
	for _, e := range es {
		if strings.Contains(string(e.Detail), "4711") {
			t.Fatalf("PIN in audit row %d", e.Seq)
		}
	}
}

func TestRevocationsForCA(t *testing.T) {
	ctx := context.Background()
	p := getPKI()
	s := openTest(t, "")
	c, err := provision(ctx, s, p, "D1", "")
	if err != nil {
		t.Fatal(err)
	}
	iss := p.inter.SubjectKeyId
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.RecordRevocation(ctx, "00"+strings.ToUpper(c.SerialHex), iss, ReasonKeyCompromise, at); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordRevocation(ctx, c.SerialHex, iss, ReasonKeyCompromise, at); !errors.Is(err, ErrAlreadyRevoked) || !errors.Is(err, ErrDuplicate) {
		t.Fatalf("revoke twice: %v", err)
	}
	if err := s.RecordRevocation(ctx, "beef", []byte("other-ca"), ReasonCessationOfOperation, at); err != nil {
		t.Fatalf("revoke unknown serial: %v", err)
	}
	if _, err := s.LiveCertificate(ctx, "D1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("live after revoke: %v", err)
	}
	revs, err := s.Revocations(ctx, iss)
	if err != nil || len(revs) != 1 || revs[0].SerialHex != c.SerialHex || revs[0].Reason != 1 || !revs[0].RevokedAt.Equal(at) {
		t.Fatalf("revocations: %+v %v", revs, err)
	}
	for _, sn := range []string{c.SerialHex, "BEEF"} {
		if ok, err := s.IsRevoked(ctx, sn); !ok || err != nil {
			t.Fatalf("IsRevoked(%s) = %v %v", sn, ok, err)
		}
	}
	if ok, _ := s.IsRevoked(ctx, "1234"); ok {
		t.Fatal("IsRevoked(unknown) = true")
	}
	for want := int64(1); want <= 3; want++ {
		n, err := s.NextCRLNumber(ctx, iss)
		if err != nil || n != want {
			t.Fatalf("NextCRLNumber = %d, %v; want %d", n, err, want)
		}
	}
	// Persisted across reopen, per issuer.
	path := s.Path()
	s.Close()
	s = openTest(t, path)
	if n, _ := s.NextCRLNumber(ctx, iss); n != 4 {
		t.Fatalf("after reopen: %d, want 4", n)
	}
	if n, _ := s.NextCRLNumber(ctx, []byte("other-ca")); n != 1 {
		t.Fatalf("other issuer: %d, want 1", n)
	}
}

func TestExport(t *testing.T) {
	ctx := context.Background()
	p := getPKI()
	clock := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	s := openTest(t, "", WithClock(func() time.Time { mu.Lock(); defer mu.Unlock(); clock = clock.Add(time.Minute); return clock }))
	s.CreateWorkOrder(ctx, WorkOrder{ID: "A", Product: "x", Quantity: 5})
	s.CreateWorkOrder(ctx, WorkOrder{ID: "B", Product: "x", Quantity: 5})
	for i, wo := range []string{"A", "A", "B"} {
		if _, err := provision(ctx, s, p, fmt.Sprintf("D%d", i), wo); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Export(ctx, ExportFilter{})
	if err != nil || len(all) != 3 {
		t.Fatalf("export all: %d %v", len(all), err)
	}
	r := all[0]
	if r.Serial != "D0" || r.Backend != "tpm" || r.Status != DeviceProvisioned || !strings.HasPrefix(r.Certificate, "-----BEGIN CERTIFICATE-----") ||
		strings.Count(r.Chain, "BEGIN CERTIFICATE") != 2 || r.ProvisionedAt.IsZero() {
		t.Fatalf("record: %+v", r)
	}
	a, _ := s.Export(ctx, ExportFilter{WorkOrder: "A"})
	since, _ := s.Export(ctx, ExportFilter{Since: all[1].ProvisionedAt})
	if len(a) != 2 || len(since) != 2 || since[0].Serial != "D1" {
		t.Fatalf("filters: wo=%d since=%d", len(a), len(since))
	}
	var jb bytes.Buffer
	if err := WriteJSON(&jb, a); err != nil {
		t.Fatal(err)
	}
	var back []map[string]any
	if err := json.Unmarshal(jb.Bytes(), &back); err != nil || len(back) != 2 {
		t.Fatal(err)
	}
	for _, k := range []string{"serial", "backend", "status", "certificate", "chain", "provisioned_at"} {
		if _, ok := back[0][k]; !ok {
			t.Fatalf("json key %q missing: %v", k, back[0])
		}
	}
	var cb bytes.Buffer
	if err := WriteCSV(&cb, a); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&cb).ReadAll()
	if err != nil || len(recs) != 3 || recs[0][0] != "serial" || recs[1][3] != a[0].Certificate {
		t.Fatalf("csv: %v %v", err, recs)
	}
}

func TestRunsAndVerifications(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	s.CreateWorkOrder(ctx, WorkOrder{ID: "W", Product: "x", Quantity: 1})
	run, err := s.StartRun(ctx, RunStart{Slot: 3, Station: "st", Operator: "op", WorkOrder: "W"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartRun(ctx, RunStart{DeviceSerial: "ghost"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("run for unknown device: %v", err)
	}
	s.EnsureDevice(ctx, Device{Serial: "D1"})
	if err := s.AttachRunDevice(ctx, run, "D1"); err != nil {
		t.Fatal(err)
	}
	if err := s.StepRun(ctx, run, "get-ek"); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishRun(ctx, run, RunFailed, "device timeout", map[string]time.Duration{"hello": 3 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := s.StepRun(ctx, run, "late"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("step after finish: %v", err)
	}
	r, err := s.GetRun(ctx, run)
	if err != nil || r.Step != "get-ek" || r.Result != RunFailed || r.Error != "device timeout" || r.Durations["hello"] != 3*time.Millisecond ||
		r.DeviceSerial != "D1" || r.Slot != 3 || r.FinishedAt == nil {
		t.Fatalf("run: %+v %v", r, err)
	}
	if d, _ := s.GetDevice(ctx, "D1"); d.Status != DeviceFailed {
		t.Fatalf("device status %q", d.Status)
	}
	if _, err := s.RecordVerification(ctx, Verification{DeviceSerial: "D1", Verifier: "qa1", Result: VerifyFail, Detail: "no chain"}); err != nil {
		t.Fatal(err)
	}
	vs, err := s.Verifications(ctx, "D1")
	if err != nil || len(vs) != 1 || vs[0].Result != VerifyFail {
		t.Fatalf("verifications: %+v %v", vs, err)
	}
	st, _ := s.Stats(ctx, "")
	if len(st) != 1 || st[0].Failed != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	p := getPKI()
	path := filepath.Join(t.TempDir(), "wsc.db")
	w := openTest(t, path)
	if _, err := provision(ctx, w, p, "D1", ""); err != nil {
		t.Fatal(err)
	}
	// File modes do not stop root (the tests run as root), so the read-only case is mode=ro.
	r := openTest(t, path, WithReadOnly())
	if _, err := r.LiveCertificate(ctx, "D1"); err != nil {
		t.Fatalf("read from read-only store: %v", err)
	}
	if err := r.EnsureDevice(ctx, Device{Serial: "D2"}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write to read-only store: %v, want ErrReadOnly", err)
	}
	// Even a raw write through the read-only connection maps to ErrReadOnly.
	_, err := r.db.Exec("INSERT INTO work_orders (id, product, quantity, created_at) VALUES ('x', 'y', 1, 0)")
	if err = mapErr(err); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("raw write: %v, want ErrReadOnly", err)
	}
	if _, err := r.VerifyAudit(ctx, AuditVerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentReaderWhileWriting(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := getPKI()
	path := filepath.Join(t.TempDir(), "wsc.db")
	w := openTest(t, path, WithSynchronous("NORMAL"))
	w.CreateWorkOrder(ctx, WorkOrder{ID: "W", Product: "x", Quantity: 1000})
	r := openTest(t, path) // a second Store, as wsc verify would open it
	done := make(chan error, 1)
	// The writer waits for a reader round before each of its first devices, so that reads
	// overlap the writes whatever the machine's speed.
	rounds := make(chan struct{}, 8)
	go func() {
		for i := 0; i < 60; i++ {
			if i < 5 {
				select {
				case <-rounds:
				case <-ctx.Done():
					done <- ctx.Err()
					return
				}
			}
			if _, err := provision(ctx, w, p, fmt.Sprintf("D%03d", i), "W"); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	last, reads := 0, 0
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if reads < 5 {
				t.Fatalf("only %d reads overlapped the writes", reads)
			}
			st, _ := r.Stats(ctx, "W")
			if st[0].Done != 60 {
				t.Fatalf("reader sees %d done", st[0].Done)
			}
			if _, err := r.VerifyAudit(ctx, AuditVerifyOptions{}); err != nil {
				t.Fatal(err)
			}
			return
		default:
		}
		st, err := r.Stats(ctx, "W")
		if err != nil {
			t.Fatalf("concurrent Stats: %v", err)
		}
		if st[0].Done < last {
			t.Fatalf("done went backwards: %d < %d", st[0].Done, last)
		}
		last = st[0].Done
		if _, err := r.Export(ctx, ExportFilter{WorkOrder: "W"}); err != nil {
			t.Fatalf("concurrent Export: %v", err)
		}
		if _, err := r.VerifyAudit(ctx, AuditVerifyOptions{}); err != nil {
			t.Fatalf("concurrent VerifyAudit: %v", err)
		}
		// The reader also writes (a QA verdict) while the station writes.
		if last > 0 {
			if _, err := r.RecordVerification(ctx, Verification{DeviceSerial: "D000", Verifier: "qa", Result: VerifyPass}); err != nil {
				t.Fatalf("concurrent write from second store: %v", err)
			}
		}
		reads++
		select {
		case rounds <- struct{}{}:
		default:
		}
	}
}

// TestRunRefused: a run turned away because the work order is complete is
// recorded as refused: the device keeps its status, the order counts no failure
// and the plant still receives the finished run (an outbox row).
func TestRunRefused(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	if err := s.CreateWorkOrder(ctx, WorkOrder{ID: "W", Product: "x", Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureDevice(ctx, Device{Serial: "D9"}); err != nil {
		t.Fatal(err)
	}
	run, err := s.StartRun(ctx, RunStart{DeviceSerial: "D9", Slot: 1, WorkOrder: "W"})
	if err != nil {
		t.Fatal(err)
	}
	var outboxBefore int
	if err := s.rdb.QueryRowContext(ctx, "SELECT count(*) FROM outbox WHERE run_id IS NOT NULL").Scan(&outboxBefore); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishRun(ctx, run, RunRefused, "work order complete", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishRun(ctx, run, "maybe", "", nil); err == nil {
		t.Fatal("an unknown run result was accepted")
	}
	r, err := s.GetRun(ctx, run)
	if err != nil || r.Result != RunRefused {
		t.Fatalf("run %+v %v", r, err)
	}
	if d, _ := s.GetDevice(ctx, "D9"); d.Status == DeviceFailed {
		t.Fatalf("a refused device is marked %q", d.Status)
	}
	st, err := s.Stats(ctx, "W")
	if err != nil || len(st) != 1 || st[0].Failed != 0 || st[0].RunsOK != 0 {
		t.Fatalf("stats %+v %v", st, err)
	}
	var outboxAfter int
	if err := s.rdb.QueryRowContext(ctx, "SELECT count(*) FROM outbox WHERE run_id IS NOT NULL").Scan(&outboxAfter); err != nil {
		t.Fatal(err)
	}
	if outboxAfter != outboxBefore+1 {
		t.Fatalf("outbox rows for runs %d → %d", outboxBefore, outboxAfter)
	}
}
