package db

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsc-project/wsc/devices/sim/testenv"
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

// TestDiskFullTmpfs runs the store on a tiny tmpfs (the tests run as root; mount must
// succeed, no skip): at 200 KiB not even the schema fits, and the failed migration leaves
// nothing behind; at 1 MiB devices fit until the disk fills; after growing the file system
// the station carries on; remounted read-only, writes give ErrReadOnly.
func TestDiskFullTmpfs(t *testing.T) {
	ctx := context.Background()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	mount := func(args ...string) {
		t.Helper()
		testenv.NeedRoot(t, "mount a 200 KiB tmpfs")
		testenv.NeedTools(t, "mount", "umount", "sqlite3")
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v (needs root; TestDiskFullPageLimit covers SQLITE_FULL without it): %v\n%s", args, err, out)
		}
	}
	mount("-t", "tmpfs", "-o", "size=200k", "tmpfs", mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v\n%s", err, out)
		}
	})
	path := filepath.Join(mnt, "wsc.db")
	if _, err := Open(path); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("open on 200 KiB: %v, want ErrDiskFull", err)
	}
	mount("-o", "remount,size=1m", mnt)
	out, err := exec.Command("sqlite3", path, "PRAGMA user_version; SELECT count(*) FROM sqlite_master;").CombinedOutput()
	if err != nil || strings.Fields(string(out))[0] != "0" || strings.Fields(string(out))[1] != "0" {
		t.Fatalf("after the failed migration: %q %v, want version 0 and no tables", out, err)
	}

	s, err := Open(path, WithSynchronous("NORMAL"))
	if err != nil {
		t.Fatal(err)
	}
	fillUntilFull(t, s)

	// More room: the station carries on where it stopped.
	mount("-o", "remount,size=8m", mnt)
	if _, err := provision(ctx, s, getPKI(), "AFTER-1", "W"); err != nil {
		t.Fatalf("after growing the file system: %v", err)
	}
	checkInvariants(t, s, AuditVerifyOptions{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	mount("-o", "remount,ro", mnt)
	defer mount("-o", "remount,rw", mnt)
	if _, err := Open(path); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("open read-write on a read-only file system: %v, want ErrReadOnly", err)
	}
	r, err := Open(path, WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checkInvariants(t, r, AuditVerifyOptions{})
	if err := r.Audit(ctx, "x", "y", nil); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write: %v, want ErrReadOnly", err)
	}
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
