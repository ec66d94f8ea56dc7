package db

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsc-project/wsc/devices/sim/testenv"
)

const testEvery = 10

// ledgerFile builds a closed database with n audit rows (plus checkpoints every testEvery)
// and returns its path and the audit key.
func ledgerFile(t *testing.T, n int) (string, crypto.Signer) {
	t.Helper()
	ctx := context.Background()
	key := newAuditKey(t)
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := Open(path, WithAuditSigner(key, testEvery))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := s.Audit(ctx, "test.event", "tester", map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil { // writes the final checkpoint and folds the WAL back
		t.Fatal(err)
	}
	return path, key
}

func copyFile(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy.db")
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// sqliteCLI tampers with the file the way an operator with a shell would.
func sqliteCLI(t *testing.T, path, script string) {
	t.Helper()
	testenv.NeedTools(t, "sqlite3")
	cmd := exec.Command("sqlite3", path)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
}

func verifyWith(t *testing.T, path string, pub crypto.PublicKey) (*AuditSummary, error) {
	t.Helper()
	s := openTest(t, path, WithReadOnly())
	return s.VerifyAudit(context.Background(), AuditVerifyOptions{Keys: []crypto.PublicKey{pub}, MaxGap: testEvery})
}

func TestAuditVerifyClean(t *testing.T) {
	path, key := ledgerFile(t, 35)
	sum, err := verifyWith(t, path, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	// 35 events + a checkpoint after each 10th row + the final one on Close.
	if sum.Checkpoints != 4 || sum.Rows != 39 || sum.HeadSeq != 39 {
		t.Fatalf("summary %+v", sum)
	}
	// The triggers refuse edits through SQL (defence in depth; the hashes are the proof).
	s := openTest(t, path)
	if _, err := s.db.Exec("UPDATE audit SET actor = 'x' WHERE id = 1"); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("update audit: %v", err)
	}
	if _, err := s.db.Exec("DELETE FROM audit WHERE id = 1"); err == nil {
		t.Fatal("delete audit row accepted")
	}
	if err := s.Audit(context.Background(), AuditCheckpointKind, "me", nil); err == nil {
		t.Fatal("forged checkpoint kind accepted")
	}
	if err := s.Checkpoint(context.Background()); err == nil {
		t.Fatal("checkpoint without a signer accepted")
	}
}

func TestAuditTamperingDetected(t *testing.T) {
	path, key := ledgerFile(t, 25) // rows 1..10, cp 11, 12..21, cp 22, 23..27, cp 28
	cases := []struct {
		name   string
		script string
		kind   AuditBreak
		seq    int64
	}{
		{"edit", `DROP TRIGGER audit_no_update; UPDATE audit SET detail = '{"i":999}' WHERE id = 5;`, AuditEdited, 5},
		{"delete", `DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id = 7;`, AuditDeleted, 8},
		{"swap", `DROP TRIGGER audit_no_update; UPDATE audit SET id = -5 WHERE id = 5; UPDATE audit SET id = 5 WHERE id = 6;
			UPDATE audit SET id = 6 WHERE id = -5;`, AuditReordered, 5},
		{"append forged", `INSERT INTO audit (at, kind, actor, detail, prev_hash, hash)
			SELECT at + 1, 'cert.issue', 'station', '{"serial":"ff"}', hash, randomblob(32) FROM audit ORDER BY id DESC LIMIT 1;`, AuditInserted, 29},
		{"insert forged with head moved", `INSERT INTO audit (at, kind, actor, detail, prev_hash, hash)
			SELECT at + 1, 'cert.issue', 'station', '{"serial":"ff"}', randomblob(32), randomblob(32) FROM audit ORDER BY id DESC LIMIT 1;
			UPDATE audit_head SET seq = seq + 1;`, AuditInserted, 29},
		{"delete tail", `DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id = 28;`, AuditDeleted, 28},
		{"delete first", `DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id = 1;`, AuditDeleted, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := copyFile(t, path)
			sqliteCLI(t, p, tc.script)
			_, err := verifyWith(t, p, key.Public())
			var ae *AuditError
			if !errors.As(err, &ae) || !errors.Is(err, ErrAuditTampered) {
				t.Fatalf("VerifyAudit: %v, want *AuditError", err)
			}
			if ae.Kind != tc.kind || ae.Seq != tc.seq {
				t.Fatalf("got %s at %d (%v), want %s at %d", ae.Kind, ae.Seq, err, tc.kind, tc.seq)
			}
		})
	}
}

// rechain rewrites the whole ledger without its checkpoint rows, with valid hashes and head,
// as someone holding this source code but not the audit key could.
func rechain(t *testing.T, path string, drop func(e AuditEntry) bool) {
	t.Helper()
	ctx := context.Background()
	s := openTest(t, path)
	es, err := s.AuditEntries(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := s.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, q := range []string{"DROP TRIGGER audit_no_delete", "DELETE FROM audit"} {
		if _, err := tx.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	prev, seq := make([]byte, 32), int64(0)
	for _, e := range es {
		if drop(e) {
			continue
		}
		seq++
		if _, prev, err = insertAudit(ctx, tx, seq, e.At.UnixNano(), e.Kind, e.Actor, string(e.Detail), prev); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tx.Exec("UPDATE sqlite_sequence SET seq = ? WHERE name = 'audit'", seq); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestAuditMissingCheckpoint(t *testing.T) {
	ctx := context.Background()
	path, key := ledgerFile(t, 25)

	t.Run("checkpoints removed and chain recomputed", func(t *testing.T) {
		p := copyFile(t, path)
		rechain(t, p, func(e AuditEntry) bool { return e.Kind == AuditCheckpointKind })
		// Without the key only the chain can be checked, and it is consistent …
		s := openTest(t, p, WithReadOnly())
		if _, err := s.VerifyAudit(ctx, AuditVerifyOptions{}); err != nil {
			t.Fatalf("chain-only verify: %v", err)
		}
		// … the signed checkpoints are what catch it.
		_, err := verifyWith(t, p, key.Public())
		var ae *AuditError
		if !errors.As(err, &ae) || ae.Kind != AuditMissingCheckpoint || ae.Seq != 11 {
			t.Fatalf("got %v, want missing-checkpoint at 11", err)
		}
	})
	t.Run("row edited and chain recomputed", func(t *testing.T) {
		p := copyFile(t, path)
		rechain(t, p, func(e AuditEntry) bool { return strings.Contains(string(e.Detail), `"i":3}`) })
		_, err := verifyWith(t, p, key.Public())
		var ae *AuditError
		if !errors.As(err, &ae) || ae.Kind != AuditBadCheckpoint || ae.Seq != 10 {
			t.Fatalf("got %v, want bad-checkpoint at 10", err)
		}
	})
	t.Run("writer without signer", func(t *testing.T) {
		p := copyFile(t, path)
		s := openTest(t, p) // no audit key: rows pile up without checkpoints
		for i := 0; i < testEvery+1; i++ {
			if err := s.Audit(ctx, "test.event", "qa", i); err != nil {
				t.Fatal(err)
			}
		}
		_, err := s.VerifyAudit(ctx, AuditVerifyOptions{Keys: []crypto.PublicKey{key.Public()}, MaxGap: testEvery})
		var ae *AuditError
		if !errors.As(err, &ae) || ae.Kind != AuditMissingCheckpoint || ae.Seq != 28+testEvery+1 {
			t.Fatalf("got %v, want missing-checkpoint at %d", err, 28+testEvery+1)
		}
		// The station's next write (or Close) with the key checkpoints the pending rows.
		st := openTest(t, p, WithAuditSigner(key, testEvery))
		if err := st.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := st.VerifyAudit(ctx, AuditVerifyOptions{Keys: []crypto.PublicKey{key.Public()}, MaxGap: 2 * testEvery}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("checkpoint by another key", func(t *testing.T) {
		_, other, _ := ed25519.GenerateKey(rand.Reader)
		p := copyFile(t, path)
		s := openTest(t, p, WithAuditSigner(other, testEvery))
		if err := s.Audit(ctx, "x", "y", nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.VerifyAudit(ctx, AuditVerifyOptions{Keys: []crypto.PublicKey{key.Public(), other.Public()}, MaxGap: testEvery}); err != nil {
			t.Fatalf("both keys accepted: %v", err)
		}
		_, err := s.VerifyAudit(ctx, AuditVerifyOptions{Keys: []crypto.PublicKey{key.Public()}, MaxGap: testEvery})
		var ae *AuditError
		if !errors.As(err, &ae) || ae.Kind != AuditBadCheckpoint {
			t.Fatalf("got %v, want bad-checkpoint", err)
		}
	})
}
