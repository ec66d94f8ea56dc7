package db

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Environment of the crash child: the test binary re-executed by TestCrashSafety.
const (
	envCrashDB  = "WSC_DB_CRASH_CHILD_DB"
	envCrashKey = "WSC_DB_CRASH_CHILD_KEY"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(envCrashDB); path != "" {
		if err := crashChild(path, os.Getenv(envCrashKey)); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild provisions devices forever: new devices, re-provisioning with a new key
// (supersede), resumes, QA verdicts and plain audit rows, until it is killed.
func crashChild(path, keyFile string) error {
	ctx := context.Background()
	pemBytes, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	blk, _ := pem.Decode(pemBytes)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return err
	}
	s, err := Open(path, WithAuditSigner(k.(*ecdsa.PrivateKey), testEvery))
	if err != nil {
		return err
	}
	p := newPKI()
	if err := s.CreateWorkOrder(ctx, WorkOrder{ID: "WO-CRASH", Product: "gw", Quantity: 1 << 30}); err != nil && !errors.Is(err, ErrDuplicate) {
		return err
	}
	prefix := fmt.Sprintf("P%d-", os.Getpid())
	for i := 0; ; i++ {
		serial := fmt.Sprintf("%s%d", prefix, i)
		switch {
		case i%5 == 4: // re-provision an earlier device of this child with a new key
			serial = fmt.Sprintf("%s%d", prefix, i-2)
		case i%7 == 6: // resume: same key again returns the existing certificate
			c, err := s.LiveCertificate(ctx, fmt.Sprintf("%s%d", prefix, i-1))
			if err == nil {
				if err := s.MarkDelivered(ctx, c.SerialHex); err != nil {
					return err
				}
			}
			if err := s.Audit(ctx, "test.resume", "child", map[string]any{"i": i}); err != nil {
				return err
			}
			continue
		}
		if _, err := provision(ctx, s, p, serial, "WO-CRASH"); err != nil {
			return err
		}
		if i%3 == 0 {
			if _, err := s.RecordVerification(ctx, Verification{DeviceSerial: serial, Verifier: "qa", Result: VerifyPass}); err != nil {
				return err
			}
		}
	}
}

// checkInvariants is what must hold after any crash.
func checkInvariants(t *testing.T, s *Store, keys AuditVerifyOptions) {
	t.Helper()
	ctx := context.Background()
	if err := s.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyAudit(ctx, keys); err != nil {
		t.Fatalf("VerifyAudit after crash: %v", err)
	}
	checks := []struct{ what, q string }{
		{"certificate without key or device row", `SELECT count(*) FROM certificates c LEFT JOIN keys k ON k.id = c.key_id
			LEFT JOIN devices d ON d.id = c.device_id WHERE k.id IS NULL OR d.id IS NULL OR k.device_id <> c.device_id`},
		{"key without certificate", `SELECT count(*) FROM keys k LEFT JOIN certificates c ON c.key_id = k.id WHERE c.id IS NULL`},
		{"certificate without completed intent", `SELECT count(*) FROM certificates c LEFT JOIN issue_intents i ON i.id = c.intent_id
			WHERE i.id IS NULL OR i.state <> 'completed'`},
		{"completed intent without certificate", `SELECT count(*) FROM issue_intents i LEFT JOIN certificates c ON c.intent_id = i.id
			WHERE i.state = 'completed' AND c.id IS NULL`},
		{"device with two live certificates", `SELECT count(*) FROM (SELECT device_id FROM certificates WHERE revoked_at IS NULL
			GROUP BY device_id HAVING count(*) > 1)`},
		{"revoked certificate off the revocation list", `SELECT count(*) FROM certificates c LEFT JOIN revocations r
			ON r.serial_hex = c.serial_hex WHERE c.revoked_at IS NOT NULL AND r.serial_hex IS NULL`},
		{"certificate without its audit row", `SELECT (SELECT count(*) FROM certificates) -
			(SELECT count(*) FROM audit WHERE kind = 'cert.issue')`},
		{"done counter off", `SELECT count(*) FROM work_order_counters w WHERE done <>
			(SELECT count(*) FROM devices d WHERE d.work_order = w.work_order AND d.provisioned_at IS NOT NULL)`},
		{"assigned counter off", `SELECT count(*) FROM work_order_counters w WHERE assigned <>
			(SELECT count(*) FROM devices d WHERE d.work_order = w.work_order)`},
		{"finished runs counter off", `SELECT count(*) FROM work_order_counters w WHERE runs_ok + runs_failed <>
			(SELECT count(*) FROM runs r WHERE r.work_order = w.work_order AND r.result IS NOT NULL)`},
	}
	for _, c := range checks {
		var n int
		if err := s.rdb.QueryRowContext(ctx, c.q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if n != 0 {
			t.Fatalf("%s: %d", c.what, n)
		}
	}
}

// TestCrashSafety kills a process that is provisioning with SIGKILL at random moments and
// checks the database after each kill. WSC_LONG=1 runs 200 kills instead of 50.
func TestCrashSafety(t *testing.T) {
	kills := 50
	if os.Getenv("WSC_LONG") == "1" {
		kills = 200
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "crash.db")
	key := newAuditKey(t)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "audit.key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := AuditVerifyOptions{Keys: []crypto.PublicKey{key.Public()}, MaxGap: testEvery}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var lastCerts int
	for i := 0; i < kills; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envCrashDB+"="+path, envCrashKey+"="+keyFile)
		out := &limitedBuffer{max: 4096}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+rng.IntN(130)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("kill %d: child ended by itself (%v):\n%s", i, err, out.String())
		}
		s, err := Open(path)
		if err != nil {
			t.Fatalf("kill %d: reopen: %v", i, err)
		}
		checkInvariants(t, s, opts)
		var n int
		s.rdb.QueryRow("SELECT count(*) FROM certificates").Scan(&n)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if n < lastCerts {
			t.Fatalf("kill %d: certificates went from %d to %d", i, lastCerts, n)
		}
		lastCerts = n
	}
	if lastCerts < kills {
		t.Fatalf("only %d certificates issued across %d runs: the child barely ran", lastCerts, kills)
	}
	t.Logf("%d kills, %d certificates recorded", kills, lastCerts)
}

type limitedBuffer struct {
	buf []byte
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string { return string(b.buf) }
