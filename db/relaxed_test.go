package db

import (
	"context"
	"path/filepath"
	"testing"
)

// TestRelaxedCommitRestoresFull: after a relaxed (synchronous=NORMAL)
// transaction the writer connection is back at FULL, so issuance records
// committed next are synced.
func TestRelaxedCommitRestoresFull(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"))
	ctx := context.Background()
	if err := s.EnsureDevice(ctx, Device{Serial: "D-1", Backend: "tpm"}); err != nil {
		t.Fatal(err)
	}
	var mode int
	if err := s.db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != 2 { // FULL
		t.Fatalf("writer synchronous = %d after a relaxed commit, want 2 (FULL)", mode)
	}
}
