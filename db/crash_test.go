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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// Environment of the crash child: the test binary re-executed by TestCrashSafety.
const (
	envCrashDB    = "WSC_DB_CRASH_CHILD_DB"
	envCrashKey   = "WSC_DB_CRASH_CHILD_KEY"
	envCrashPoint = "WSC_DB_CRASH_CHILD_POINT" // "NAME:N": kill yourself at the N-th hit of point NAME
	envCrashSeed  = "WSC_CRASH_SEED"           // reproduces a run of TestCrashSafety
)

// crashPoints are the named points where a crash child kills itself with
// SIGKILL. Points "tx:TABLE" are inside a write transaction, right after a
// row of TABLE changed (SQLite's update hook): the transaction is open and
// part of it may already be in the WAL. "commit" is SQLite's commit hook: the
// transaction is about to commit. "step:…" lie between two calls of the
// station's flow: after the issuance intent is recorded and before the
// certificate is, after the certificate is recorded and before delivery,
// after delivery and before confirmation, after the run is finished.
var crashPoints = []string{
	"tx:devices", "tx:runs", "tx:keys", "tx:issue_intents", "tx:certificates", "tx:revocations",
	"tx:audit", "tx:verifications", "commit",
	"step:intent-recorded", "step:issued", "step:delivered", "step:run-finished",
}

// maxHits bounds the seeded hit count of a point: a transaction point is hit
// several times per device, a step once per device.
func maxHits(point string) int {
	if strings.HasPrefix(point, "step:") {
		return 8
	}
	return 25
}

// crashChildIterations bounds a child that never reaches its point (a point
// the flow does not hit): it exits with an error instead of running forever.
const crashChildIterations = 2000

func TestMain(m *testing.M) {
	if path := os.Getenv(envCrashDB); path != "" {
		if err := crashChild(path, os.Getenv(envCrashKey), os.Getenv(envCrashPoint)); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashTrigger counts hits of every named point and kills the process at
// the planned hit of the planned point.
type crashTrigger struct {
	point string
	at    int
	hits  map[string]int
}

func (c *crashTrigger) hit(point string) {
	c.hits[point]++
	if point != c.point || c.hits[point] != c.at {
		return
	}
	// The parent reads this line to count the crashes per point; a write to
	// a pipe is complete when the call returns.
	fmt.Fprintf(os.Stdout, "crash-at %s %d\n", point, c.at)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	for {
		time.Sleep(time.Hour) // SIGKILL is on its way
	}
}

// crashChild provisions devices — new devices, re-provisioning with a new key
// (supersede), resumes, QA verdicts and plain audit rows — and kills itself
// at the N-th hit of the named point given as "NAME:N".
func crashChild(path, keyFile, plan string) error {
	ctx := context.Background()
	i := strings.LastIndex(plan, ":")
	if i <= 0 {
		return fmt.Errorf("bad %s %q, want NAME:N", envCrashPoint, plan)
	}
	name := plan[:i]
	n, err := strconv.Atoi(plan[i+1:])
	if err != nil || n < 1 {
		return fmt.Errorf("bad %s %q, want NAME:N", envCrashPoint, plan)
	}
	trig := &crashTrigger{point: name, at: n, hits: map[string]int{}}
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
	// The writer is one connection (SetMaxOpenConns(1)) kept in the pool:
	// hooks set on it now see every write transaction of this process.
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	if err := conn.Raw(func(dc any) error {
		sc, ok := dc.(*sqlite3.SQLiteConn)
		if !ok {
			return fmt.Errorf("writer connection is %T, not *sqlite3.SQLiteConn", dc)
		}
		sc.RegisterUpdateHook(func(_ int, _, table string, _ int64) { trig.hit("tx:" + table) })
		sc.RegisterCommitHook(func() int { trig.hit("commit"); return 0 })
		return nil
	}); err != nil {
		return err
	}
	if err := conn.Close(); err != nil { // back to the pool, still open
		return err
	}
	p := newPKI()
	if err := s.CreateWorkOrder(ctx, WorkOrder{ID: "WO-CRASH", Product: "gw", Quantity: 1 << 30}); err != nil && !errors.Is(err, ErrDuplicate) {
		return err
	}
	const wo = "WO-CRASH"
	prefix := fmt.Sprintf("P%d-", os.Getpid())
	for i := 0; i < crashChildIterations; i++ {
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
		// The station's flow (provision in helpers_test.go), with the steps named.
		if err := s.EnsureDevice(ctx, Device{Serial: serial, Backend: "tpm", Model: "m1", EKPublicHash: KeyHash([]byte(serial))}); err != nil {
			return err
		}
		run, err := s.StartRun(ctx, RunStart{DeviceSerial: serial, Slot: 1, Station: "st1", Operator: "op1", WorkOrder: wo})
		if err != nil {
			return err
		}
		kd, pub := newDeviceKey()
		id, existing, err := s.BeginIssue(ctx, IssueIntent{DeviceSerial: serial, KeyPublicDER: kd, WorkOrder: wo, RunID: run})
		if err != nil {
			return err
		}
		if existing != nil {
			return fmt.Errorf("a new key of %s returned an existing certificate", serial)
		}
		trig.hit("step:intent-recorded")
		der, chain := p.leaf(pub, serial)
		if err := s.CompleteIssue(ctx, id, Certificate{DeviceSerial: serial, DER: der, Chain: chain}); err != nil {
			return err
		}
		trig.hit("step:issued")
		c, err := s.LiveCertificate(ctx, serial)
		if err != nil {
			return err
		}
		if err := s.MarkDelivered(ctx, c.SerialHex); err != nil {
			return err
		}
		trig.hit("step:delivered")
		if err := s.MarkConfirmed(ctx, c.SerialHex); err != nil {
			return err
		}
		if err := s.FinishRun(ctx, run, RunOK, "", map[string]time.Duration{"issue": time.Millisecond, "deliver": 2 * time.Millisecond}); err != nil {
			return err
		}
		trig.hit("step:run-finished")
		if i%3 == 0 {
			if _, err := s.RecordVerification(ctx, Verification{DeviceSerial: serial, Verifier: "qa", Result: VerifyPass}); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("point %q hit %d times in %d iterations, never the planned %d-th time", name, trig.hits[name], crashChildIterations, n)
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

// TestCrashSafety kills a process that is provisioning with SIGKILL at seeded,
// named points (crashPoints: inside write transactions, at commit, between
// the steps of issuance) and checks the database after each kill. The child
// kills itself at the planned hit of the planned point, so no verdict depends
// on how fast the machine is. Every point is planned at least once; the test
// asserts that each child died where it was planned (counts per point) and
// that everything committed before the kill survived: a kill after the N-th
// certificate of a child finds at least N more certificates.
// WSC_LONG=1 runs 200 kills instead of 50 (-short: one per point);
// WSC_CRASH_SEED=S repeats a run.
func TestCrashSafety(t *testing.T) {
	kills := 50
	if testing.Short() {
		kills = len(crashPoints) // each point once
	}
	if os.Getenv("WSC_LONG") == "1" {
		kills = 200
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(envCrashSeed); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", envCrashSeed, v, err)
		}
	}
	t.Logf("seed %d (%s=%d repeats this run)", seed, envCrashSeed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))

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

	// The plan: every point once per round, in a seeded order; a seeded hit.
	type kill struct {
		point string
		at    int
	}
	plan := make([]kill, 0, kills)
	for len(plan) < kills {
		order := slices.Clone(crashPoints)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, p := range order {
			if len(plan) < kills {
				plan = append(plan, kill{p, 1 + rng.IntN(maxHits(p))})
			}
		}
	}
	planned, crashed := map[string]int{}, map[string]int{}
	var lastCerts int
	for i, k := range plan {
		planned[k.point]++
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envCrashDB+"="+path, envCrashKey+"="+keyFile, fmt.Sprintf("%s=%s:%d", envCrashPoint, k.point, k.at))
		out := &limitedBuffer{max: 4096}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err == nil {
			t.Fatalf("kill %d (%s #%d): child exited normally:\n%s", i, k.point, k.at, out.String())
		} else if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("kill %d (%s #%d): child ended by itself (%v):\n%s", i, k.point, k.at, err, out.String())
		}
		var point string
		var at int
		if _, err := fmt.Sscanf(out.String(), "crash-at %s %d", &point, &at); err != nil || point != k.point || at != k.at {
			t.Fatalf("kill %d: planned %s #%d, child reported %q", i, k.point, k.at, out.String())
		}
		crashed[point]++
		s, err := Open(path)
		if err != nil {
			t.Fatalf("kill %d (%s #%d): reopen: %v", i, k.point, k.at, err)
		}
		checkInvariants(t, s, opts)
		var n int
		if err := s.rdb.QueryRow("SELECT count(*) FROM certificates").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if n < lastCerts {
			t.Fatalf("kill %d (%s #%d): certificates went from %d to %d", i, k.point, k.at, lastCerts, n)
		}
		// Each hit of these points follows one committed certificate of this child.
		if (k.point == "step:issued" || k.point == "step:delivered" || k.point == "step:run-finished") && n-lastCerts < k.at {
			t.Fatalf("kill %d (%s #%d): only %d new certificates survived, want at least %d", i, k.point, k.at, n-lastCerts, k.at)
		}
		lastCerts = n
	}
	for _, p := range crashPoints {
		if crashed[p] != planned[p] || (kills >= len(crashPoints) && crashed[p] == 0) {
			t.Errorf("point %s: %d crashes, planned %d", p, crashed[p], planned[p])
		}
		t.Logf("%-22s %d crashes", p, crashed[p])
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
