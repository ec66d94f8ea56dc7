package db

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// station is a closed station database written through the store's API, with its
// witness file on another directory (standing for another medium).
type station struct {
	path, witness string
	key           *ecdsa.PrivateKey
	pin           []byte
	certs         map[string]*Certificate // live certificate per device
	revoked       string                  // certificate revoked for keyCompromise
}

func newStation(t *testing.T) *station {
	t.Helper()
	ctx := context.Background()
	st := &station{
		path:    filepath.Join(t.TempDir(), "station.db"),
		witness: filepath.Join(t.TempDir(), "other-medium", "ledger.witness"),
		key:     newAuditKey(t),
		certs:   map[string]*Certificate{},
	}
	if err := os.MkdirAll(filepath.Dir(st.witness), 0o700); err != nil {
		t.Fatal(err)
	}
	st.pin, _ = KeyID(st.key.Public())
	s, err := Open(st.path, WithAuditSigner(st.key, testEvery), WithWitness(st.witness))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateWorkOrder(ctx, WorkOrder{ID: "WO-1", Product: "gw", Quantity: 10}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpsertOperator(ctx, Operator{ID: "op1", Name: "Op", Role: "operator"}, "1234"); err != nil {
		t.Fatal(err)
	}
	p := getPKI()
	for _, sn := range []string{"SIM-0001", "SIM-0002", "SIM-0003"} {
		c, err := provision(ctx, s, p, sn, "WO-1")
		if err != nil {
			t.Fatal(err)
		}
		st.certs[sn] = c
		if _, err := s.RecordVerification(ctx, Verification{DeviceSerial: sn, Verifier: "qa", Result: VerifyPass}); err != nil {
			t.Fatal(err)
		}
	}
	// Re-provisioning supersedes (revokes) SIM-0001's first certificate.
	c, err := provision(ctx, s, p, "SIM-0001", "WO-1")
	if err != nil {
		t.Fatal(err)
	}
	st.certs["SIM-0001"] = c
	// A rogue chip goes to the red bin.
	if err := s.RedBin(ctx, RedBinEntry{ChipID: KeyHash([]byte("rogue chip")), Serial: "SIM-0001", Reason: "attestation failed", Operator: "op1"}); err != nil {
		t.Fatal(err)
	}
	// The last record: SIM-0002's key is compromised.
	st.revoked = st.certs["SIM-0002"].SerialHex
	if err := s.RecordRevocation(ctx, st.revoked, st.certs["SIM-0002"].IssuerKeyID, ReasonKeyCompromise, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return st
}

// copyStation copies the database and its witness file.
func (st *station) copy(t *testing.T) *station {
	t.Helper()
	c := *st
	c.path = copyFile(t, st.path)
	c.witness = filepath.Join(t.TempDir(), "ledger.witness")
	b, err := os.ReadFile(st.witness)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.witness, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return &c
}

// verify checks the ledger as `wsc audit verify` does: pinned key, witness file.
func (st *station) verify(t *testing.T, opts AuditVerifyOptions) (*AuditSummary, error) {
	t.Helper()
	if opts.PinnedKeys == nil && opts.Keys == nil {
		opts.PinnedKeys = [][]byte{st.pin}
	}
	if opts.Witness == "-" {
		opts.Witness = ""
	} else if opts.Witness == "" {
		opts.Witness = st.witness
	}
	opts.MaxGap = testEvery
	s := openTest(t, st.path, WithReadOnly())
	return s.VerifyAudit(context.Background(), opts)
}

func wantBreak(t *testing.T, err error, kind AuditBreak, table, key, msg string) *AuditError {
	t.Helper()
	var ae *AuditError
	if !errors.As(err, &ae) || !errors.Is(err, ErrAuditTampered) {
		t.Fatalf("VerifyAudit: %v, want *AuditError %s", err, kind)
	}
	if ae.Kind != kind || ae.Table != table || ae.Key != key || !strings.Contains(ae.Error(), msg) {
		t.Fatalf("got %s table=%q key=%q: %v\nwant %s table=%q key=%q containing %q", ae.Kind, ae.Table, ae.Key, err, kind, table, key, msg)
	}
	return ae
}

func hasBreak(sum *AuditSummary, kind AuditBreak) bool {
	for _, f := range sum.Failures {
		if f.Kind == kind {
			return true
		}
	}
	return false
}

func TestLedgerCoversEveryRow(t *testing.T) {
	st := newStation(t)
	sum, err := st.verify(t, AuditVerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// 1 work order, 1 operator, 3 devices, 4 keys, 4 certificates, 2 revocations, 1 red-bin entry, 3 QA verdicts.
	if sum.CoveredRows != 19 || sum.WitnessLines == 0 || sum.WitnessNewest+1 != sum.HeadSeq || sum.Unsealed != 0 {
		t.Fatalf("summary %+v", sum)
	}
	// The revocation was sealed at once: the newest witnessed checkpoint covers it.
	s := openTest(t, st.path, WithReadOnly())
	es, err := s.AuditEntries(context.Background(), sum.WitnessNewest, sum.WitnessNewest)
	if err != nil || len(es) != 1 || es[0].Kind != "cert.revoke" || !strings.Contains(string(es[0].Detail), "keyCompromise") {
		t.Fatalf("newest witnessed row %+v %v", es, err)
	}
}

// The forgeries: each is made with the sqlite3 CLI after dropping the triggers that
// protect the tables, and each is caught with its own kind and message.
func TestLedgerForgeries(t *testing.T) {
	st := newStation(t)
	victim := st.certs["SIM-0003"].SerialHex
	other := st.certs["SIM-0001"].SerialHex
	cases := []struct {
		name, script      string
		kind              AuditBreak
		table, key, msg   string
		chainOnlyDetected bool
	}{
		{"swapped certificate DER", fmt.Sprintf(`DROP TRIGGER certificates_fixed;
			UPDATE certificates SET der = (SELECT der FROM certificates WHERE serial_hex = '%s') WHERE serial_hex = '%s';`, other, victim),
			AuditRowEdited, "certificates", victim, "certificate " + victim + " differs from what ledger row", true},
		{"deleted certificate row", fmt.Sprintf(`DROP TRIGGER certificates_no_delete; DELETE FROM certificates WHERE serial_hex = '%s';`, victim),
			AuditRowMissing, "certificates", victim, "is missing from table certificates", true},
		{"emptied revocations", `DROP TRIGGER revocations_no_delete; DELETE FROM revocations;`,
			AuditTableEmptied, "revocations", "", "table revocations is empty but the ledger vouches for 2 revocation rows", true},
		{"edited device binding", `UPDATE devices SET ek_pub_hash = randomblob(32), backend = 'pkcs11' WHERE serial = 'SIM-0003';`,
			AuditRowEdited, "devices", "SIM-0003", "device binding SIM-0003 differs from what ledger row", true},
		{"smuggled revocation", fmt.Sprintf(`INSERT INTO revocations (serial_hex, issuer_key_id, reason, revoked_at) VALUES ('%s', X'01', 1, 1);`, "abc123"),
			AuditRowUnrecorded, "revocations", "abc123", "no ledger entry vouches for it", true},
		{"edited chain", `DROP TRIGGER chains_no_update; UPDATE chains SET der = CAST(der || X'00' AS BLOB);`,
			AuditRowEdited, "certificates", "", "", true},
		{"released red bin", `UPDATE red_bin SET released_at = 1, released_by = 'mallory', release_note = 'ok';`,
			AuditRowEdited, "red_bin", "1", "red-bin entry 1 differs", true},
		{"deleted red bin", `DELETE FROM red_bin;`,
			AuditTableEmptied, "red_bin", "", "table red_bin is empty but the ledger vouches for 1 red-bin entry rows", true},
		{"edited operator PIN hash", `UPDATE operators SET pin_hash = 'pbkdf2-sha256$1$AAAA$AAAA' WHERE id = 'op1';`,
			AuditRowEdited, "operators", "op1", "operator op1 differs", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := st.copy(t)
			sqliteCLI(t, c.path, tc.script)
			sum, err := c.verify(t, AuditVerifyOptions{})
			if tc.key == "" && tc.table == "certificates" { // every certificate shares the chain
				var ae *AuditError
				if !errors.As(err, &ae) || ae.Kind != AuditRowEdited || ae.Table != "certificates" || len(sum.Failures) != 4 {
					t.Fatalf("edited chain: %v (%d failures)", err, len(sum.Failures))
				}
				return
			}
			wantBreak(t, err, tc.kind, tc.table, tc.key, tc.msg)
			if len(sum.Failures) != 1 {
				t.Fatalf("failures %v", sum.Failures)
			}
		})
	}
}

// TestLedgerTailTruncation is the attack of issue 11: the keyCompromise revocation and
// everything after it are deleted with their checkpoints, audit_head and sqlite_sequence
// are fixed, the revocation row is deleted and the certificate row put back as it was.
func TestLedgerTailTruncation(t *testing.T) {
	st := newStation(t)
	c := st.copy(t)
	s := openTest(t, c.path, WithReadOnly())
	es, err := s.AuditEntries(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	var cut int64
	for _, e := range es {
		if e.Kind == "cert.revoke" && strings.Contains(string(e.Detail), "keyCompromise") {
			cut = e.Seq
		}
	}
	if cut == 0 {
		t.Fatal("no keyCompromise revocation in the ledger")
	}
	sqliteCLI(t, c.path, fmt.Sprintf(`DROP TRIGGER audit_no_delete; DROP TRIGGER revocations_no_delete;
		DELETE FROM audit WHERE id >= %[1]d;
		UPDATE audit_head SET seq = %[2]d, hash = (SELECT hash FROM audit WHERE id = %[2]d);
		UPDATE sqlite_sequence SET seq = %[2]d WHERE name = 'audit';
		DELETE FROM revocations WHERE serial_hex = '%[3]s';
		UPDATE certificates SET status = 'confirmed', revoked_at = NULL, revoke_reason = NULL WHERE serial_hex = '%[3]s';`,
		cut, cut-1, st.revoked))

	// Inside the database everything is consistent again: only the witness can tell.
	if _, err := c.verify(t, AuditVerifyOptions{Witness: "-"}); err != nil {
		t.Fatalf("without the witness the truncation passes (as it did before the witness): %v", err)
	}
	sum, err := c.verify(t, AuditVerifyOptions{})
	ae := wantBreak(t, err, AuditTruncated, "", "", fmt.Sprintf("the database ends at row %d but the witness file", cut-1))
	if ae.Seq != cut || len(sum.Failures) != 1 {
		t.Fatalf("truncation reported at %d, failures %v", ae.Seq, sum.Failures)
	}
	// The station refuses to open (and write on top of) the truncated database.
	if _, err := Open(c.path, WithAuditSigner(st.key, testEvery), WithWitness(c.witness)); !errors.Is(err, ErrWitnessMismatch) ||
		!strings.Contains(err.Error(), "restore the database that matches the witness file") {
		t.Fatalf("open truncated database with its witness: %v", err)
	}
}

// rehash rewrites the ledger through the sqlite3 CLI with every row's hash recomputed
// after edit, as someone holding this source code could. With resign, the checkpoints
// are signed anew with that key; without, they are left as they were.
func rehash(t *testing.T, path string, edit func(e *AuditEntry), resign crypto.Signer) {
	t.Helper()
	s := openTest(t, path, WithReadOnly())
	es, err := s.AuditEntries(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	var b strings.Builder
	b.WriteString("DROP TRIGGER audit_no_update;\n")
	prev := make([]byte, 32)
	for _, e := range es {
		edit(&e)
		if e.Kind == AuditCheckpointKind && resign != nil {
			pub, _ := x509.MarshalPKIXPublicKey(resign.Public())
			sig, err := signDigest(resign, checkpointDigest(e.Seq-1, prev))
			if err != nil {
				t.Fatal(err)
			}
			d, _ := json.Marshal(checkpointDetail{Seq: e.Seq - 1, Hash: hex.EncodeToString(prev), Key: hex.EncodeToString(KeyHash(pub)),
				Sig: base64.StdEncoding.EncodeToString(sig), Pub: base64.StdEncoding.EncodeToString(pub)})
			e.Detail = d
		}
		h := auditRowHash(e.Seq, e.At.UnixNano(), e.Kind, e.Actor, string(e.Detail), prev)
		fmt.Fprintf(&b, "UPDATE audit SET detail = '%s', prev_hash = X'%x', hash = X'%x' WHERE id = %d;\n",
			strings.ReplaceAll(string(e.Detail), "'", "''"), prev, h, e.Seq)
		prev = h
	}
	fmt.Fprintf(&b, "UPDATE audit_head SET hash = X'%x';\n", prev)
	sqliteCLI(t, path, b.String())
}

func TestLedgerEditAndRehash(t *testing.T) {
	st := newStation(t)
	c := st.copy(t)
	// Turn the keyCompromise into a harmless "superseded", and the chain with it.
	rehash(t, c.path, func(e *AuditEntry) {
		e.Detail = json.RawMessage(strings.ReplaceAll(string(e.Detail), `"keyCompromise"`, `"superseded"`))
	}, nil)
	sum, err := c.verify(t, AuditVerifyOptions{})
	ae := wantBreak(t, err, AuditBadCheckpoint, "", "", "checkpoint covers row")
	if ae.Seq != sum.WitnessNewest+1 {
		t.Fatalf("bad checkpoint at row %d, want %d", ae.Seq, sum.WitnessNewest+1)
	}
	// The witness disagrees as well, whatever the checkpoints say.
	if !hasBreak(sum, AuditWitnessMismatch) {
		t.Fatalf("no witness mismatch among %v", sum.Failures)
	}
}

func TestLedgerForeignKeyCaughtByPin(t *testing.T) {
	st := newStation(t)
	c := st.copy(t)
	foreign, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rehash(t, c.path, func(e *AuditEntry) {
		e.Detail = json.RawMessage(strings.ReplaceAll(string(e.Detail), `"keyCompromise"`, `"superseded"`))
	}, foreign)
	// The public key stored beside the database is replaced by the forger's.
	replaced := foreign.Public()

	// Trusting the key beside the database, the forgery passes (that was the hole) …
	if _, err := c.verify(t, AuditVerifyOptions{Keys: []crypto.PublicKey{replaced}, Witness: "-"}); err != nil {
		t.Fatalf("forged ledger with the forger's key: %v", err)
	}
	// … the pin refuses the replaced key …
	_, err := c.verify(t, AuditVerifyOptions{Keys: []crypto.PublicKey{replaced}, PinnedKeys: [][]byte{st.pin}, Witness: "-"})
	wantBreak(t, err, AuditUnpinnedKey, "", "", "is not the pinned audit key")
	// … and the checkpoints signed with the foreign key carried inside them.
	_, err = c.verify(t, AuditVerifyOptions{Witness: "-"})
	ae := wantBreak(t, err, AuditUnpinnedKey, "", "", "checkpoints re-signed with another key?")
	if ae.Seq != testEvery+1 {
		t.Fatalf("unpinned key reported at row %d, want the first checkpoint %d", ae.Seq, testEvery+1)
	}
}

func TestWitnessTornLastLine(t *testing.T) {
	ctx := context.Background()
	st := newStation(t)
	c := st.copy(t)
	f, err := os.OpenFile(c.witness, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"seq":99,"hash":"ab`); err != nil { // power cut mid-line
		t.Fatal(err)
	}
	f.Close()
	sum, err := c.verify(t, AuditVerifyOptions{})
	wantBreak(t, err, AuditWitnessTorn, "", "", "ends with an incomplete line of 20 bytes")
	if len(sum.Failures) != 1 {
		t.Fatalf("failures %v", sum.Failures)
	}
	if _, err := Open(c.path, WithAuditSigner(st.key, testEvery), WithWitness(c.witness)); !errors.Is(err, ErrWitnessTorn) ||
		!strings.Contains(err.Error(), "wsc audit repair-witness") {
		t.Fatalf("open with torn witness: %v", err)
	}
	// The explicit repair records the cut bytes in the ledger and cuts them.
	s, err := Open(c.path, WithAuditSigner(st.key, testEvery))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.RepairWitness(ctx, c.witness)
	if err != nil || rep == nil || rep.TornBytes != 20 {
		t.Fatalf("repair: %+v %v", rep, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sum, err = c.verify(t, AuditVerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s = openTest(t, c.path, WithReadOnly())
	es, _ := s.AuditEntries(ctx, sum.HeadSeq-1, sum.HeadSeq-1)
	if len(es) != 1 || es[0].Kind != "witness.repair" || !strings.Contains(string(es[0].Detail), rep.TornHash) {
		t.Fatalf("repair not recorded: %+v", es)
	}
	// A damaged line before the last one is not a power cut.
	b, _ := os.ReadFile(c.witness)
	lines := strings.SplitAfter(string(b), "\n")
	lines[0] = "garbage\n"
	if err := os.WriteFile(c.witness, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = c.verify(t, AuditVerifyOptions{})
	wantBreak(t, err, AuditWitnessCorrupt, "", "", "witness line 1 is damaged")
}

func TestWitnessMissingAndForeign(t *testing.T) {
	st := newStation(t)
	c := st.copy(t)
	_, err := c.verify(t, AuditVerifyOptions{Witness: filepath.Join(t.TempDir(), "nowhere.witness")})
	wantBreak(t, err, AuditWitnessMissing, "", "", "does not exist")
	// Another station's witness: its checkpoints are not this ledger's.
	other := newStation(t)
	_, err = c.verify(t, AuditVerifyOptions{Witness: other.witness, PinnedKeys: [][]byte{st.pin, other.pin}})
	wantBreak(t, err, AuditWitnessMismatch, "", "", "the ledger was rewritten")
	if _, err := Open(c.path, WithWitness(other.witness)); !errors.Is(err, ErrWitnessMismatch) {
		t.Fatalf("open with another station's witness: %v", err)
	}
}

// TestWitnessOnAnotherPath: the witness lives where the option says, not beside the
// database, and a store that reopens appends after the lines already there.
func TestWitnessOnAnotherPath(t *testing.T) {
	ctx := context.Background()
	st := newStation(t)
	if _, err := os.Stat(filepath.Join(filepath.Dir(st.path), "ledger.witness")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a witness file beside the database: %v", err)
	}
	before, err := ReadWitness(st.witness)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(st.path, WithAuditSigner(st.key, testEvery), WithWitness(st.witness))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < testEvery; i++ {
		if err := s.Audit(ctx, "test.event", "t", map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := ReadWitness(st.witness)
	if err != nil || len(after.Lines) != len(before.Lines)+1 || len(after.TornTail) != 0 {
		t.Fatalf("witness lines %d → %d (%v)", len(before.Lines), len(after.Lines), err)
	}
	if _, err := st.verify(t, AuditVerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateReleaseV1: a database written by the previous release (testdata, made with
// its code) migrates; its rows are vouched for from the migration on, its old ledger rows
// stay verifiable as a chain with their signed checkpoints.
func TestMigrateReleaseV1(t *testing.T) {
	ctx := context.Background()
	path := copyFile(t, "testdata/release-v1.db")
	pub, err := loadPEMPublicKey("testdata/release-v1.db.pub")
	if err != nil {
		t.Fatal(err)
	}
	pin, _ := KeyID(pub)
	s := openTest(t, path)
	v, err := s.Version(ctx)
	if err != nil || v != SchemaVersion() {
		t.Fatalf("version %d %v", v, err)
	}
	sum, err := s.VerifyAudit(ctx, AuditVerifyOptions{PinnedKeys: [][]byte{pin}, Keys: []crypto.PublicKey{pub}, MaxGap: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if sum.CoveredRows == 0 || sum.RowRefs != sum.CoveredRows {
		t.Fatalf("summary %+v", sum)
	}
	// Migration 0005 rebuilt runs: every issuance intent still names its run.
	var intents, fkErrors int
	if err := s.rdb.QueryRowContext(ctx, "SELECT count(*) FROM issue_intents i JOIN runs r ON r.id = i.run_id").Scan(&intents); err != nil || intents != 4 {
		t.Fatalf("intents naming a run after the migration: %d %v", intents, err)
	}
	if err := s.rdb.QueryRowContext(ctx, "SELECT count(*) FROM pragma_foreign_key_check").Scan(&fkErrors); err != nil || fkErrors != 0 {
		t.Fatalf("foreign key check: %d %v", fkErrors, err)
	}
	es, _ := s.AuditEntries(ctx, 27, 0)
	if len(es) == 0 || es[0].Kind != "ledger.baseline" {
		t.Fatalf("first entry after the old ledger: %+v", es)
	}
	s.Close()
	// A legacy row edited after the migration is caught like any other.
	sqliteCLI(t, path, `UPDATE devices SET ek_pub_hash = randomblob(32) WHERE serial = 'OLD-2';`)
	s2 := openTest(t, path, WithReadOnly())
	_, err = s2.VerifyAudit(ctx, AuditVerifyOptions{PinnedKeys: [][]byte{pin}, Keys: []crypto.PublicKey{pub}, MaxGap: 1000})
	wantBreak(t, err, AuditRowEdited, "devices", "OLD-2", "device binding OLD-2 differs")
}

func loadPEMPublicKey(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := string(b)
	s = strings.TrimPrefix(strings.TrimSpace(s), "-----BEGIN PUBLIC KEY-----")
	s = strings.TrimSuffix(s, "-----END PUBLIC KEY-----")
	der, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(s, "\n", ""))
	if err != nil {
		return nil, err
	}
	return x509.ParsePKIXPublicKey(der)
}

func TestQuickCheckRefusesCorruptFile(t *testing.T) {
	path, _ := ledgerFile(t, 300)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// Scribble over the middle of the last pages (audit rows), keeping the header and schema.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 3000)
	for i := range junk {
		junk[i] = byte(i*7 + 3)
	}
	if _, err := f.WriteAt(junk, fi.Size()-4096*3+100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = Open(path)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "restore the last backup") {
		t.Fatalf("open corrupt file: %v", err)
	}
}

// The red-bin, release, rework and revocation paths keep the ledger's references current,
// and revocations and rebindings are sealed at once.
func TestLedgerFollowsRedBinReworkRevocation(t *testing.T) {
	ctx := context.Background()
	st := newStation(t)
	c := st.copy(t)
	s, err := Open(c.path, WithAuditSigner(st.key, testEvery), WithWitness(c.witness))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.RevokeRecorded(ctx, st.certs["SIM-0003"].SerialHex, ReasonKeyCompromise, "stolen", "sup1"); err != nil || !ok {
		t.Fatalf("revoke: %v %v", ok, err)
	}
	w, err := ReadWitness(c.witness)
	if err != nil {
		t.Fatal(err)
	}
	es, _ := s.AuditEntries(ctx, w.Newest().Seq, w.Newest().Seq)
	if len(es) != 1 || es[0].Kind != "cert.revoke" {
		t.Fatalf("revocation not sealed at once: newest witnessed %+v", es)
	}
	if err := s.Rebind(ctx, "SIM-0001", KeyHash([]byte("new chip")), "tpm", "sup1", "SIM-0001"); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseRedBin(ctx, KeyHash([]byte("rogue chip")), "sup1", "false alarm"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sum, err := c.verify(t, AuditVerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Unsealed != 0 || sum.CoveredRows != 21 { // 19 + the revocations of SIM-0003 (keyCompromise) and of SIM-0001 (rework)
		t.Fatalf("summary %+v", sum)
	}
}

// TestLedgerReferenceUsesIndex: the reference of a written row is one index lookup, so the
// ledger's cost per record does not grow with the database.
func TestLedgerReferenceUsesIndex(t *testing.T) {
	s := openTest(t, "")
	for _, ct := range coveredTables {
		var arg any = "1"
		if ct.keyArg != nil {
			var err error
			if arg, err = ct.keyArg("01"); err != nil {
				t.Fatal(err)
			}
		}
		rows, err := s.rdb.Query("EXPLAIN QUERY PLAN "+ct.sel+" WHERE "+ct.keyCol+" = ?", arg)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		for _, d := range plan {
			if strings.HasPrefix(d, "SCAN") {
				t.Errorf("%s: reference lookup scans: %q", ct.name, plan)
			}
		}
	}
}
