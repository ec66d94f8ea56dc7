package db

import (
	"context"
	"crypto"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wsc-project/wsc/devices/sim/testenv"
)

// roleStation is a closed station database where SIM-0003 holds an identity
// and two signing certificates (the first superseded), with a sealed owner
// authorisation in each state. It returns a revoked certificate of each
// role: flipping a revoked row's role breaks no one-live-per-role index,
// so the forger's sqlite3 script goes through.
func roleStation(t *testing.T) (st *station, revokedID, revokedSign string) {
	t.Helper()
	ctx := context.Background()
	st = newStation(t)
	s, err := Open(st.path, WithAuditSigner(st.key, testEvery), WithWitness(st.witness))
	if err != nil {
		t.Fatal(err)
	}
	p := getPKI()
	for range 2 {
		kd, pub := newDeviceKey()
		intent, _, err := s.BeginIssue(ctx, IssueIntent{DeviceSerial: "SIM-0003", KeyPublicDER: kd, Role: RoleLDevID})
		if err != nil {
			t.Fatal(err)
		}
		der, chain := p.leaf(pub, "SIM-0003")
		if err := s.CompleteIssue(ctx, intent, Certificate{DeviceSerial: "SIM-0003", DER: der, Chain: chain}); err != nil {
			t.Fatal(err)
		}
	}
	for role, dst := range map[string]*string{RoleIDevID: &revokedID, RoleLDevID: &revokedSign} {
		if err := s.rdb.QueryRowContext(ctx, "SELECT serial_hex FROM certificates WHERE role = ? AND revoked_at IS NOT NULL ORDER BY id LIMIT 1", role).Scan(dst); err != nil {
			t.Fatalf("revoked %s certificate: %v", role, err)
		}
	}
	for i, settle := range []func(int64) error{
		func(id int64) error { return s.MarkOwnerAuthSet(ctx, id) },
		func(id int64) error { return s.MarkOwnerAuthAbandoned(ctx, id, "line fault before the set command") },
		func(int64) error { return nil }, // pending: maybe set
	} {
		id, err := s.RecordOwnerAuth(ctx, OwnerAuthRecord{DeviceSerial: "SIM-0003", ChipID: KeyHash([]byte{byte(i)}), Policy: OwnerAuthSealed,
			EscrowKeyID: KeyHash([]byte("escrow")), Suite: "suite", Enc: []byte("enc"), Sealed: []byte("ciphertext")})
		if err != nil {
			t.Fatal(err)
		}
		if err := settle(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return st, revokedID, revokedSign
}

// TestLedgerCertificateRole: the role is under the row hash. A database
// with both roles verifies; the store itself refuses to rewrite a role;
// a role flipped with the sqlite3 CLI (trigger dropped) either way shows
// as that certificate's row-edited, and so does an owner authorisation
// record moved from pending (maybe set) to abandoned.
func TestLedgerCertificateRole(t *testing.T) {
	st, idSerial, signSerial := roleStation(t)
	sum, err := st.verify(t, AuditVerifyOptions{})
	if err != nil {
		t.Fatalf("unmodified database with both roles: %v", err)
	}
	// 19 rows of newStation, 2 signing certificates with their keys, the first one's
	// revocation (superseded), 3 owner authorisations.
	if sum.CoveredRows != 27 {
		t.Fatalf("covered rows %d, want 27", sum.CoveredRows)
	}
	// Without dropping the trigger the CLI cannot flip a role.
	c := st.copy(t)
	testenv.NeedTools(t, "sqlite3")
	out, err := exec.Command("sqlite3", c.path, "UPDATE certificates SET role = 'ldevid' WHERE serial_hex = '"+idSerial+"';").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "role is never rewritten") {
		t.Fatalf("role rewritten through the trigger: %v %s", err, out)
	}
	cases := []struct{ name, script, table, key, msg string }{
		{"idevid to ldevid", `DROP TRIGGER certificates_role_fixed; UPDATE certificates SET role = 'ldevid' WHERE serial_hex = '` + idSerial + `';`,
			"certificates", idSerial, "certificate " + idSerial + " differs from what ledger row"},
		{"ldevid to idevid", `DROP TRIGGER certificates_role_fixed; UPDATE certificates SET role = 'idevid' WHERE serial_hex = '` + signSerial + `';`,
			"certificates", signSerial, "certificate " + signSerial + " differs from what ledger row"},
		{"maybe-set owner authorisation abandoned", `UPDATE owner_auths SET state = 'abandoned', abandoned_at = 1, abandon_reason = 'x' WHERE state = 'pending';`,
			"owner_auths", "3", "owner authorisation record 3 differs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := st.copy(t)
			sqliteCLI(t, c.path, tc.script)
			sum, err := c.verify(t, AuditVerifyOptions{})
			wantBreak(t, err, AuditRowEdited, tc.table, tc.key, tc.msg)
			if len(sum.Failures) != 1 {
				t.Fatalf("failures %v", sum.Failures)
			}
		})
	}
}

// TestMigrateSession3: a database written by the session-3 code (schema
// 0006: ldevid certificates hashed without their role, owner authorisation
// records outside the ledger; testdata/session3.db, made with
// testdata/gen_session3.go.txt at commit 9c20ff0) migrates and verifies;
// its ldevid rows are vouched for again with the role, its owner
// authorisation records are baselined; after that a flipped role or an
// edited owner authorisation record is caught.
func TestMigrateSession3(t *testing.T) {
	ctx := context.Background()
	path := copyFile(t, "testdata/session3.db")
	pub, err := loadPEMPublicKey("testdata/session3.db.pub")
	if err != nil {
		t.Fatal(err)
	}
	opts := AuditVerifyOptions{Keys: []crypto.PublicKey{pub}, MaxGap: 1000}
	s := openTest(t, path)
	sum, err := s.VerifyAudit(ctx, opts)
	if err != nil {
		t.Fatalf("session-3 database after migration 0007: %v", err)
	}
	// 2 devices, 4 keys, 4 certificates, 2 owner authorisations: all vouched for.
	if sum.CoveredRows != 12 || sum.RowRefs < sum.CoveredRows {
		t.Fatalf("summary %+v", sum)
	}
	es, _ := s.AuditEntries(ctx, 0, 0)
	kinds := map[string]int{}
	for _, e := range es {
		kinds[e.Kind]++
		if e.Kind == "ledger.role-covered" && strings.Count(string(e.Detail), `"t":"certificates"`) != 2 {
			t.Fatalf("role-covered entry %s", e.Detail)
		}
	}
	if kinds["ledger.role-covered"] != 1 || kinds["ledger.baseline"] != 1 {
		t.Fatalf("ledger kinds after the migration %v", kinds)
	}
	recs, err := s.OwnerAuths(ctx, "S3-0002")
	if err != nil || len(recs) != 1 || recs[0].State != OwnerAuthPending || !recs[0].MaybeSet() {
		t.Fatalf("owner authorisation of S3-0002 after migration: %+v %v", recs, err)
	}
	var ldevid string
	if err := s.rdb.QueryRowContext(ctx, "SELECT serial_hex FROM certificates WHERE role = 'ldevid' ORDER BY id LIMIT 1").Scan(&ldevid); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, tc := range []struct{ script, table, key string }{
		// The forger drops the one-live-per-role index too: the device's live
		// identity certificate stays as it was.
		{`DROP TRIGGER certificates_role_fixed; DROP INDEX certificates_one_live;
		  UPDATE certificates SET role = 'idevid' WHERE serial_hex = '` + ldevid + `';`, "certificates", ""},
		{`UPDATE owner_auths SET state = 'abandoned', abandoned_at = 1 WHERE state = 'pending';`, "owner_auths", "2"},
	} {
		c := copyFile(t, path)
		sqliteCLI(t, c, tc.script)
		s := openTest(t, c, WithReadOnly())
		_, err := s.VerifyAudit(ctx, opts)
		if tc.key == "" {
			wantBreak(t, err, AuditRowEdited, tc.table, ldevid, "differs from what ledger row")
		} else {
			wantBreak(t, err, AuditRowEdited, tc.table, tc.key, "differs from what ledger row")
		}
	}
}

// TestOwnerAuthLifecycle: pending → set and pending → abandoned, each once,
// with its ledger row naming the run; a settled record is never moved
// again; MaybeSet says which records the line gate treats as set.
func TestOwnerAuthLifecycle(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	if err := s.EnsureDevice(ctx, Device{Serial: "DEV-L1", Backend: "tpm"}); err != nil {
		t.Fatal(err)
	}
	run, err := s.StartRun(ctx, RunStart{DeviceSerial: "DEV-L1", Slot: 1, Station: "st1", Operator: "op1"})
	if err != nil {
		t.Fatal(err)
	}
	rec := OwnerAuthRecord{DeviceSerial: "DEV-L1", RunID: run, ChipID: KeyHash([]byte("chip")), Policy: OwnerAuthSealed,
		EscrowKeyID: KeyHash([]byte("escrow")), Suite: "suite", Enc: []byte("enc"), Sealed: []byte("ciphertext")}
	a, err := s.RecordOwnerAuth(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.RecordOwnerAuth(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MarkOwnerAuthAbandoned(ctx, a, "the agent refused the set command"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []func() error{
		func() error { return s.MarkOwnerAuthSet(ctx, a) },
		func() error { return s.MarkOwnerAuthAbandoned(ctx, a, "again") },
	} {
		if err := f(); err == nil {
			t.Fatal("a settled record moved again")
		}
	}
	if err := s.MarkOwnerAuthAbandoned(ctx, 999, "x"); err == nil {
		t.Fatal("unknown record abandoned")
	}
	recs, _ := s.OwnerAuths(ctx, "DEV-L1")
	if len(recs) != 2 || recs[0].State != OwnerAuthAbandoned || recs[0].AbandonedAt == nil || recs[0].AbandonReason != "the agent refused the set command" ||
		recs[0].MaybeSet() || recs[1].State != OwnerAuthPending || !recs[1].MaybeSet() || recs[1].RunID != run {
		t.Fatalf("records %+v", recs)
	}
	if err := s.MarkOwnerAuthSet(ctx, b); err != nil {
		t.Fatal(err)
	}
	recs, _ = s.OwnerAuths(ctx, "DEV-L1")
	if recs[1].State != OwnerAuthSet || recs[1].SetAt == nil || recs[1].SetAt.Before(recs[1].CreatedAt.Add(-time.Second)) || !recs[1].MaybeSet() {
		t.Fatalf("record %+v", recs[1])
	}
	es, _ := s.AuditEntries(ctx, 0, 0)
	var abandon, set int
	for _, e := range es {
		switch e.Kind {
		case "owner_auth.abandon":
			abandon++
			if !strings.Contains(string(e.Detail), `"run":`) || !strings.Contains(string(e.Detail), `"t":"owner_auths"`) {
				t.Fatalf("abandon row %s", e.Detail)
			}
		case "owner_auth.set":
			set++
		}
	}
	if abandon != 1 || set != 1 {
		t.Fatalf("abandon %d set %d", abandon, set)
	}
	// The run's end names both records with their final state.
	if err := s.FinishRun(ctx, run, RunFailed, "anchors refused", nil); err != nil {
		t.Fatal(err)
	}
	es, _ = s.AuditEntries(ctx, 0, 0)
	last := es[len(es)-1]
	if last.Kind != "owner_auth.run-end" || !strings.Contains(string(last.Detail), `"records":[{"record":1,"state":"abandoned"},{"record":2,"state":"set"}]`) ||
		!strings.Contains(string(last.Detail), `"result":"failed"`) {
		t.Fatalf("run end %s %s", last.Kind, last.Detail)
	}
	recs, _ = s.OwnerAuths(ctx, "DEV-L1")
	if recs[0].RunResult != RunFailed {
		t.Fatalf("run result %q", recs[0].RunResult)
	}
	if _, err := s.VerifyAudit(ctx, AuditVerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateSession3EditedBefore: an ldevid row edited in a session-3
// database before migration 0007 is not vouched for again: it still shows
// as edited, while the untouched ldevid row is re-vouched.
func TestMigrateSession3EditedBefore(t *testing.T) {
	ctx := context.Background()
	path := copyFile(t, "testdata/session3.db")
	pub, err := loadPEMPublicKey("testdata/session3.db.pub")
	if err != nil {
		t.Fatal(err)
	}
	testenv.NeedTools(t, "sqlite3")
	var victim string
	out, err := exec.Command("sqlite3", path, "SELECT serial_hex FROM certificates WHERE role = 'ldevid' ORDER BY id LIMIT 1;").Output()
	if victim = strings.TrimSpace(string(out)); err != nil || victim == "" {
		t.Fatalf("sqlite3: %v", err)
	}
	sqliteCLI(t, path, `UPDATE certificates SET status = 'delivered' WHERE serial_hex = '`+victim+`';`)
	s := openTest(t, path)
	sum, err := s.VerifyAudit(ctx, AuditVerifyOptions{Keys: []crypto.PublicKey{pub}, MaxGap: 1000})
	wantBreak(t, err, AuditRowEdited, "certificates", victim, "differs from what ledger row")
	if len(sum.Failures) != 1 {
		t.Fatalf("failures %v", sum.Failures)
	}
	es, _ := s.AuditEntries(ctx, 0, 0)
	for _, e := range es {
		if e.Kind == "ledger.role-covered" && (strings.Count(string(e.Detail), `"t":"certificates"`) != 1 || strings.Contains(string(e.Detail), victim)) {
			t.Fatalf("role-covered entry %s (victim %s)", e.Detail, victim)
		}
	}
}
