package db

import (
	"context"
	"crypto"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func reportPercentiles(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkIssueDurable: one provisioning record made durable — BeginIssue + CompleteIssue,
// two commits with synchronous=FULL (fsync of the WAL each). The CA signature is made
// beforehand and is not timed.
func BenchmarkIssueDurable(b *testing.B) {
	benchIssueDurable(b, WithAuditSigner(newAuditKey(b), DefaultCheckpointEvery))
}

// BenchmarkIssueDurableWitness: BenchmarkIssueDurable with every checkpoint also appended
// and fsync'd to a witness file (one per DefaultCheckpointEvery ledger rows).
func BenchmarkIssueDurableWitness(b *testing.B) {
	benchIssueDurable(b, WithAuditSigner(newAuditKey(b), DefaultCheckpointEvery), WithWitness(filepath.Join(b.TempDir(), "bench.witness")))
}

func benchIssueDurable(b *testing.B, opts ...Option) {
	ctx := context.Background()
	p := getPKI()
	s := openTest(b, "", opts...)
	type job struct {
		serial string
		key    []byte
		der    []byte
		chain  [][]byte
	}
	var jobs []job
	for i := 0; i < b.N; i++ {
		serial := fmt.Sprintf("D%07d", i)
		if err := s.EnsureDevice(ctx, Device{Serial: serial, Backend: "tpm"}); err != nil {
			b.Fatal(err)
		}
		kd, pub := newDeviceKey()
		der, chain := p.leaf(pub, serial)
		jobs = append(jobs, job{serial, kd, der, chain})
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for _, j := range jobs {
		t0 := time.Now()
		id, _, err := s.BeginIssue(ctx, IssueIntent{DeviceSerial: j.serial, KeyPublicDER: j.key})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.CompleteIssue(ctx, id, Certificate{DER: j.der, Chain: j.chain}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

// storagePerDevice provisions n devices through the whole flow (run, intent, certificate,
// delivery, confirmation, QA verdict, audit rows and checkpoints) and returns the file
// growth per device after the WAL is folded back.
func storagePerDevice(tb testing.TB, n int) float64 {
	ctx := context.Background()
	p := getPKI()
	path := filepath.Join(tb.TempDir(), "size.db")
	s := openTest(tb, path, WithSynchronous("NORMAL"), WithAuditSigner(newAuditKey(tb), DefaultCheckpointEvery))
	if err := s.CreateWorkOrder(ctx, WorkOrder{ID: "W", Product: "x", Quantity: n}); err != nil {
		tb.Fatal(err)
	}
	size := func() int64 {
		if _, err := s.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			tb.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			tb.Fatal(err)
		}
		return fi.Size()
	}
	base := size()
	for i := 0; i < n; i++ {
		serial := fmt.Sprintf("SN-%08d", i)
		if _, err := provision(ctx, s, p, serial, "W"); err != nil {
			tb.Fatal(err)
		}
		if _, err := s.RecordVerification(ctx, Verification{DeviceSerial: serial, Verifier: "qa", Result: VerifyPass}); err != nil {
			tb.Fatal(err)
		}
	}
	return float64(size()-base) / float64(n)
}

// TestStorageBudget: at most 8 KiB per provisioned device, chain and audit included.
func TestStorageBudget(t *testing.T) {
	per := storagePerDevice(t, 500)
	t.Logf("%.0f bytes per device", per)
	if per > 8192 {
		t.Fatalf("%.0f bytes per device, budget 8192", per)
	}
}

// BenchmarkStorageBytesPerDevice reports the file growth per provisioned device.
func BenchmarkStorageBytesPerDevice(b *testing.B) {
	n := max(b.N, 1000)
	b.ReportMetric(storagePerDevice(b, n), "bytes/device")
}

// TestStatsUsesCounters: Stats is an index lookup on the counter table, never a scan of
// devices or runs.
func TestStatsUsesCounters(t *testing.T) {
	s := openTest(t, "")
	rows, err := s.rdb.Query("EXPLAIN QUERY PLAN "+statsQuery+" WHERE w.id = ?", "W")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	for _, d := range plan {
		if strings.HasPrefix(d, "SCAN") || strings.Contains(d, "devices") || strings.Contains(d, "runs") {
			t.Fatalf("Stats plan %q", plan)
		}
	}
}

const benchDevices = 1_000_000

// syntheticDB returns a cached database under os.TempDir with 1,000,000 devices (and as many
// runs, 5 % failed) over 20 work orders, built once and reused by later runs.
func syntheticDB(b *testing.B) string {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("wsc-db-bench-%d-v%d.db", benchDevices, SchemaVersion()))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	b.Logf("building %s (once)", path)
	tmp := path + ".tmp"
	os.Remove(tmp)
	s, err := Open(tmp, WithSynchronous("OFF"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	const wos = 20
	for w := 0; w < wos; w++ {
		if err := s.CreateWorkOrder(ctx, WorkOrder{ID: fmt.Sprintf("WO-%02d", w), Product: "gw", Quantity: benchDevices}); err != nil {
			b.Fatal(err)
		}
	}
	err = s.withTx(ctx, "build", func(tx *sql.Tx) error {
		dev, err := tx.Prepare(`INSERT INTO devices (serial, backend, model, ek_pub_hash, status, work_order, created_at, updated_at, provisioned_at)
			VALUES (?, 'tpm', 'm1', ?, 'provisioned', ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		run, err := tx.Prepare(`INSERT INTO runs (device_id, slot, station, operator, work_order, step, result, durations, started_at, finished_at)
			VALUES (?, ?, 'st1', 'op1', ?, 'confirm', ?, '{"issue":900,"deliver":2100}', ?, ?)`)
		if err != nil {
			return err
		}
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
		for i := 0; i < benchDevices; i++ {
			at := t0 + int64(i)*int64(time.Second)
			wo := fmt.Sprintf("WO-%02d", i%wos)
			res, err := dev.Exec(fmt.Sprintf("SN-%08d", i), KeyHash([]byte(fmt.Sprint(i))), wo, at, at, at)
			if err != nil {
				return err
			}
			id, _ := res.LastInsertId()
			result := RunOK
			if i%20 == 0 {
				result = RunFailed
			}
			if _, err := run.Exec(id, i%8, wo, result, at, at); err != nil {
				return err
			}
		}
		// Bulk rows bypass the per-row triggers; set the counters as they would stand.
		_, err = tx.Exec(`UPDATE work_order_counters SET
			assigned = (SELECT count(*) FROM devices d WHERE d.work_order = work_order_counters.work_order),
			done = (SELECT count(*) FROM devices d WHERE d.work_order = work_order_counters.work_order AND d.provisioned_at IS NOT NULL),
			runs_ok = (SELECT count(*) FROM runs r WHERE r.work_order = work_order_counters.work_order AND r.result = 'ok'),
			runs_failed = (SELECT count(*) FROM runs r WHERE r.work_order = work_order_counters.work_order AND r.result = 'failed'),
			first_run_at = (SELECT min(started_at) FROM runs r WHERE r.work_order = work_order_counters.work_order),
			last_done_at = (SELECT max(provisioned_at) FROM devices d WHERE d.work_order = work_order_counters.work_order)`)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	os.Remove(tmp + "-wal")
	os.Remove(tmp + "-shm")
	return path
}

// BenchmarkStats1M: Stats of one work order in a database of 1,000,000 devices.
func BenchmarkStats1M(b *testing.B) {
	path := syntheticDB(b)
	s := openTest(b, path, WithReadOnly())
	ctx := context.Background()
	var n int
	if err := s.rdb.QueryRow("SELECT count(*) FROM devices").Scan(&n); err != nil || n != benchDevices {
		b.Fatalf("synthetic db has %d devices: %v", n, err)
	}
	st, err := s.Stats(ctx, "WO-07")
	if err != nil || st[0].Done != benchDevices/20 {
		b.Fatalf("stats %+v %v", st, err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := s.Stats(ctx, "WO-07"); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

// BenchmarkStatsAll1M: Stats of all 20 work orders at 1,000,000 devices.
func BenchmarkStatsAll1M(b *testing.B) {
	s := openTest(b, syntheticDB(b), WithReadOnly())
	ctx := context.Background()
	for b.Loop() {
		if _, err := s.Stats(ctx, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyAudit: walking the ledger, per row.
func BenchmarkVerifyAudit(b *testing.B) {
	ctx := context.Background()
	key := newAuditKey(b)
	s := openTest(b, "", WithSynchronous("OFF"), WithAuditSigner(key, DefaultCheckpointEvery))
	for i := 0; i < 20000; i++ {
		if err := s.Audit(ctx, "bench", "b", map[string]int{"i": i}); err != nil {
			b.Fatal(err)
		}
	}
	opts := AuditVerifyOptions{Keys: []crypto.PublicKey{key.Public()}}
	var rows int64
	b.ResetTimer()
	for b.Loop() {
		sum, err := s.VerifyAudit(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		rows = sum.Rows
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows), "ns/row")
}
