package plant

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkIngest measures the registry's sync throughput: a station's real outbox (ledger
// rows with certificates, checkpoints and runs) ingested in batches of 500 into a local
// PostgreSQL over TLS as the station's role, a fresh station each iteration.
func BenchmarkIngest(b *testing.B) {
	ctx := context.Background()
	p := newPlant(b)
	src := newStation(b, p, "src")
	src.provision(b, 1000)
	items, err := src.store.Pending(ctx, 1<<30)
	if err != nil {
		b.Fatal(err)
	}
	var recs []Record
	for _, it := range items {
		if it.Entry != nil {
			recs = append(recs, RecordFromEntry(*it.Entry, it.Payload))
		} else {
			recs = append(recs, Record{Run: it.Run})
		}
	}
	n := 0
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		id := fmt.Sprintf("bench%d", i)
		// The station's role now writes for a fresh station with the same pinned key.
		if _, err := p.admin.pool.Exec(ctx, "UPDATE stations SET role = 'old_' || id WHERE role = $1", src.role); err != nil {
			b.Fatal(err)
		}
		if _, err := p.admin.pool.Exec(ctx, `INSERT INTO stations (id, role, audit_key, audit_key_id)
			SELECT $1, $2, audit_key, audit_key_id FROM stations WHERE id = 'src'`, id, src.role); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for j := 0; j < len(recs); j += 500 {
			if _, err := src.reg.Ingest(ctx, id, recs[j:min(j+500, len(recs))]); err != nil {
				b.Fatal(err)
			}
		}
		n += len(recs)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

func benchSize(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

// BenchmarkLookupBySerial measures a device lookup (by device serial, and by certificate
// serial) at WSC_PLANT_BENCH_DEVICES synthetic devices (default 10,000,000, made with
// generate_series); it reports the median.
func BenchmarkLookupBySerial(b *testing.B) {
	ctx := context.Background()
	p := newPlant(b)
	n := benchSize("WSC_PLANT_BENCH_DEVICES", 10_000_000)
	if err := p.synthesize(ctx, 10, n, 0); err != nil {
		b.Fatal(err)
	}
	for _, by := range []string{"device", "cert"} {
		b.Run(by, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			var ds []time.Duration
			for b.Loop() {
				i := rng.IntN(n)
				q := fmt.Sprintf("SYN-%09d", i)
				if by == "cert" {
					q = fmt.Sprintf("%x", 0x10000000+i)
				}
				t0 := time.Now()
				ls, err := p.admin.Find(ctx, q)
				ds = append(ds, time.Since(t0))
				if err != nil || len(ls) != 1 {
					b.Fatalf("find %s: %v %d", q, err, len(ls))
				}
			}
			sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
			b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "p50-ms")
		})
	}
}

// BenchmarkReportDay measures `wsc plant report` for one day of a 10-station plant with
// WSC_PLANT_BENCH_RUNS runs per station per day (default 10,000) over 7 days.
func BenchmarkReportDay(b *testing.B) {
	ctx := context.Background()
	p := newPlant(b)
	perDay := benchSize("WSC_PLANT_BENCH_RUNS", 10_000)
	if err := p.synthesize(ctx, 10, 0, perDay); err != nil {
		b.Fatal(err)
	}
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -3)
	for b.Loop() {
		rep, err := p.admin.Report(ctx, day, day.Add(24*time.Hour))
		if err != nil || len(rep.Rows) != 30 { // 10 stations x 3 work orders
			b.Fatalf("report: %v %d rows", err, len(rep.Rows))
		}
	}
}

// synthesize fills the registry as the administrator: stations, and either devices devices
// (ledger rows, bindings, certificates) or runsPerDay runs per station per day over 7 days.
// It loads with session_replication_role = replica (no triggers or foreign-key checks: the
// rows are consistent by construction) and builds the indexes afterwards, as a bulk load does.
func (p *testPlant) synthesize(ctx context.Context, stations, devices, runsPerDay int) error {
	conn, err := p.admin.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	per := max(1, devices/stations)
	stmts := []string{
		"SET session_replication_role = replica",
		"SET maintenance_work_mem = '512MB'",
		`INSERT INTO stations (id, role, audit_key, audit_key_id)
			SELECT 'syn' || s, 'syn_role' || s, '\x00', '\x00' FROM generate_series(1, ` + strconv.Itoa(stations) + `) s`,
	}
	if devices > 0 {
		stmts = append(stmts,
			"DROP INDEX devices_serial, devices_ek, devices_key, certificates_serial, certificates_device, certificates_issued",
			"ALTER TABLE devices DROP CONSTRAINT devices_pkey",
			"ALTER TABLE certificates DROP CONSTRAINT certificates_pkey",
			"ALTER TABLE ledger DROP CONSTRAINT ledger_pkey CASCADE",
			fmt.Sprintf(`INSERT INTO ledger (station_id, seq, hash, prev_hash, at, kind, actor, detail)
				SELECT 'syn' || (1 + i / %d), 1 + i %% %d, sha256(int8send(i)), sha256(int8send(i - 1)), 0, 'cert.issue', 'syn', '{}'
				FROM generate_series(0, %d) i`, per, per, devices-1),
			fmt.Sprintf(`INSERT INTO devices (station_id, seq, serial, ek_hash, key_hash, backend, model, work_order, bound_at)
				SELECT 'syn' || (1 + i / %d), 1 + i %% %d, 'SYN-' || lpad(i::text, 9, '0'), sha256(int8send(-i)), sha256(int8send(i)),
					'tpm', 'm', 'WO', now() FROM generate_series(0, %d) i`, per, per, devices-1),
			fmt.Sprintf(`INSERT INTO certificates (station_id, seq, serial_hex, device_serial, issuer_key_id, der, run_id, work_order,
					not_before, not_after, issued_at)
				SELECT 'syn' || (1 + i / %d), 1 + i %% %d, to_hex(268435456 + i), 'SYN-' || lpad(i::text, 9, '0'), '\x01', '\x30', i, 'WO',
					now(), now() + interval '1 year', now() FROM generate_series(0, %d) i`, per, per, devices-1),
			"ALTER TABLE ledger ADD PRIMARY KEY (station_id, seq)",
			"ALTER TABLE devices ADD PRIMARY KEY (station_id, seq)",
			"ALTER TABLE certificates ADD PRIMARY KEY (station_id, seq)",
			"CREATE INDEX devices_serial ON devices (serial)",
			"CREATE INDEX certificates_serial ON certificates (serial_hex)",
			"CREATE INDEX certificates_device ON certificates (device_serial)",
		)
	}
	if runsPerDay > 0 {
		total := runsPerDay * stations * 7
		stmts = append(stmts, fmt.Sprintf(`INSERT INTO runs (station_id, run_id, content_hash, device_serial, slot, operator, work_order,
				step, result, error, started_at, finished_at)
			SELECT 'syn' || (1 + i %% %d), i, '\x00', 'R-' || i, 1, 'op', 'WO-' || (i %% 3),
				CASE WHEN i %% 17 = 0 THEN 'activate' WHEN i %% 23 = 0 THEN 'install' ELSE 'done' END,
				CASE WHEN i %% 17 = 0 OR i %% 23 = 0 THEN 'failed' ELSE 'ok' END,
				CASE WHEN i %% 17 = 0 THEN 'credential activation failed' WHEN i %% 23 = 0 THEN 'read-back mismatch' ELSE '' END,
				t, t + (20 + i %% 15) * interval '1 second'
			FROM generate_series(0, %d) i,
				LATERAL (SELECT date_trunc('day', now()) - interval '6 days' + (i::float8 / %d) * interval '7 days' AS t) x`,
			stations, total-1, total))
	}
	stmts = append(stmts, "SET session_replication_role = DEFAULT", "VACUUM ANALYZE")
	for _, s := range stmts {
		t0 := time.Now()
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%.60s: %w", s, err)
		}
		if os.Getenv("WSC_BENCH_VERBOSE") != "" {
			fmt.Fprintf(os.Stderr, "synthesize: %.50s… %s\n", strings.Join(strings.Fields(s), " "), time.Since(t0).Round(time.Millisecond))
		}
	}
	return nil
}
