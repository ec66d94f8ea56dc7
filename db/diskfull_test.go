package db

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// fillUntilFull provisions devices until a write fails and checks that the failure is
// ErrDiskFull, that nothing was half-written, and that the committed data is intact.
func fillUntilFull(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	p := getPKI()
	if err := s.CreateWorkOrder(ctx, WorkOrder{ID: "W", Product: "x", Quantity: 1 << 20}); err != nil {
		t.Fatalf("create work order: %v", err)
	}
	var err error
	var ok int
	for i := 0; i < 100000; i++ {
		if _, err = provision(ctx, s, p, fmt.Sprintf("D%05d", i), "W"); err != nil {
			break
		}
		ok++
	}
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("after %d devices: %v, want ErrDiskFull", ok, err)
	}
	if ok == 0 {
		t.Fatal("not a single device fitted: the file system is too small for the test")
	}
	t.Logf("%d devices provisioned, then: %v", ok, err)
	// Reads still work and the rolled-back transactions left nothing behind.
	checkInvariants(t, s, AuditVerifyOptions{})
	var done int
	if err := s.rdb.QueryRow("SELECT count(*) FROM devices WHERE provisioned_at IS NOT NULL").Scan(&done); err != nil {
		t.Fatal(err)
	}
	if done < ok {
		t.Fatalf("%d devices confirmed before the disk filled, %d recorded", ok, done)
	}
	// Further writes fail cleanly too.
	if err := s.Audit(ctx, "after.full", "t", map[string]string{"pad": string(make([]byte, 64<<10))}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("write on full disk: %v, want ErrDiskFull", err)
	}
}

// TestDiskFullTmpfs fills a 1 MiB tmpfs (200 KiB does not hold the schema plus the WAL and
// shared-memory files). The tests run as root; mount must succeed (no skip).
func TestDiskFullTmpfs(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs (needs root; TestDiskFullPageLimit covers SQLITE_FULL without it): %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v\n%s", err, out)
		}
	})
	s, err := Open(filepath.Join(mnt, "wsc.db"), WithSynchronous("NORMAL"))
	if err != nil {
		t.Fatal(err)
	}
	fillUntilFull(t, s)
	s.Close()
	// Reopened, the file is consistent; the last committed device is there.
	s2, err := Open(filepath.Join(mnt, "wsc.db"), WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	checkInvariants(t, s2, AuditVerifyOptions{})
}

// TestDiskFullPageLimit provokes SQLITE_FULL with PRAGMA max_page_count, independent of
// mount permissions.
func TestDiskFullPageLimit(t *testing.T) {
	s := openTest(t, "", WithSynchronous("NORMAL"))
	var pages int
	if err := s.db.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	// The writer pool has one connection, so the pragma holds for every write.
	if _, err := s.db.Exec(fmt.Sprintf("PRAGMA max_page_count = %d", pages+40)); err != nil {
		t.Fatal(err)
	}
	fillUntilFull(t, s)
}
