package plant

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Each station writes only its own rows, enforced by PostgreSQL itself (row-level security,
// INSERT-only grants), whatever SQL the station's client sends.
func TestStationWritesOnlyItsOwnRows(t *testing.T) {
	ctx := context.Background()
	p := newPlant(t)
	a, b := newStation(t, p, "st-a"), newStation(t, p, "st-b")
	a.provision(t, 2)
	b.provision(t, 2)
	for _, s := range []*station{a, b} {
		if _, err := s.syncer().SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, p.stationDSN(a.role))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	bHead, bHash, err := p.admin.Head(ctx, b.id)
	if err != nil {
		t.Fatal(err)
	}
	// a inserts a row into b's chain, a correct continuation of it: refused by RLS.
	_, err = conn.Exec(ctx, `INSERT INTO ledger (station_id, seq, hash, prev_hash, at, kind, actor, detail)
		VALUES ($1, $2, $3, $4, 1, 'cert.revoke', 'x', '{}')`, b.id, bHead+1, make([]byte, 32), bHash)
	if !errors.Is(mapErr(err), ErrForbidden) {
		t.Fatalf("insert into another station's ledger: %v", err)
	}
	for _, q := range []string{
		`INSERT INTO runs (station_id, run_id, content_hash, result, started_at, finished_at) VALUES ('st-b', 999, '\x00', 'ok', now(), now())`,
		`INSERT INTO alarms (station_id, kind, detail, fingerprint) VALUES ('st-b', 'fork', 'framed', '\x00')`,
		`UPDATE ledger SET actor = 'x' WHERE station_id = 'st-a'`,
		`DELETE FROM ledger WHERE station_id = 'st-a'`,
		`DELETE FROM runs WHERE station_id = 'st-a'`,
		`UPDATE stations SET audit_key = '\x00' WHERE id = 'st-a'`,
		`INSERT INTO revocation_requests (serial_hex, reason) VALUES ('01', 'keyCompromise')`,
		`INSERT INTO stations (id, role, audit_key, audit_key_id) VALUES ('st-c', 'station_st_a', '\x00', '\x00')`,
	} {
		if _, err := conn.Exec(ctx, q); !errors.Is(mapErr(err), ErrForbidden) {
			t.Errorf("%s: got %v, want refused", q, err)
		}
	}
	// b's rows are invisible to a.
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM ledger WHERE station_id = 'st-b'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("a sees %d of b's ledger rows (err %v)", n, err)
	}
	// Through the API: a cannot ingest for b (b's registration is invisible to a).
	es, _ := b.store.AuditEntries(ctx, 1, 1)
	if _, err := a.reg.Ingest(ctx, b.id, []Record{RecordFromEntry(es[0], nil)}); !errors.Is(err, ErrUnknownStation) {
		t.Fatalf("ingest as another station: %v", err)
	}
	// Its own rows it can insert (the honest path) and read.
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM ledger WHERE station_id = 'st-a'").Scan(&n); err != nil || n == 0 {
		t.Fatalf("a sees %d own rows (err %v)", n, err)
	}
	// The registry's copy of b is intact.
	if got := p.count(t, "SELECT count(*) FROM ledger WHERE station_id = 'st-b'"); got != bHead {
		t.Fatalf("b's ledger has %d rows, want %d", got, bHead)
	}
	// Even the owner cannot rewrite the witnessed ledger.
	if _, err := p.admin.pool.Exec(ctx, "DELETE FROM ledger WHERE station_id = 'st-b'"); !errors.Is(mapErr(err), ErrTampered) {
		t.Fatalf("owner delete: %v", err)
	}
	// A reader role sees everything and writes nothing.
	if err := p.admin.AddReader(ctx, "dash"); err != nil {
		t.Fatal(err)
	}
	rc, err := pgx.Connect(ctx, p.stationDSN("dash"))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close(ctx)
	if err := rc.QueryRow(ctx, "SELECT count(*) FROM ledger").Scan(&n); err != nil || int64(n) != p.count(t, "SELECT count(*) FROM ledger") {
		t.Fatalf("reader sees %d rows (err %v)", n, err)
	}
	if _, err := rc.Exec(ctx, "INSERT INTO alarms (station_id, kind, detail, fingerprint) VALUES ('st-a', 'x', 'y', '\\x00')"); !errors.Is(mapErr(err), ErrForbidden) {
		t.Fatalf("reader insert: %v", err)
	}
}
