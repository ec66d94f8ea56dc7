package plant

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/wsc-project/wsc/db"
)

func TestSyncWitnessesLedgerExactlyOnce(t *testing.T) {
	ctx := context.Background()
	p := newPlant(t)
	a, b := newStation(t, p, "st-a"), newStation(t, p, "st-b")
	a.provision(t, 30)
	b.provision(t, 12)
	// A device turned away because b's work order was complete: a refused run.
	if err := b.store.EnsureDevice(ctx, db.Device{Serial: "B-LATE", Backend: "tpm", Model: "m1"}); err != nil {
		t.Fatal(err)
	}
	late, err := b.store.StartRun(ctx, db.RunStart{DeviceSerial: "B-LATE", Slot: 2, Station: b.id, Operator: "op", WorkOrder: "WO-" + b.id})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.store.FinishRun(ctx, late, db.RunRefused, "work order complete", nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*station{a, b} {
		n, err := s.syncer().SyncOnce(ctx)
		if err != nil {
			t.Fatalf("%s sync: %v", s.id, err)
		}
		if n == 0 {
			t.Fatalf("%s: nothing sent", s.id)
		}
		st, err := s.store.OutboxStatus(ctx)
		if err != nil || st.String() != "plant: in sync" {
			t.Fatalf("%s status %q %v", s.id, st.String(), err)
		}
	}
	for _, s := range []*station{a, b} {
		head, _, _ := s.store.AuditHead(ctx)
		if got := p.count(t, "SELECT count(*) FROM ledger WHERE station_id = $1", s.id); got != head {
			t.Fatalf("%s: registry holds %d ledger rows, station has %d", s.id, got, head)
		}
		if got := p.count(t, "SELECT count(*) FROM certificates WHERE station_id = $1", s.id); got != int64(s.n) {
			t.Fatalf("%s: %d certificates, want %d", s.id, got, s.n)
		}
		if got := p.count(t, "SELECT count(*) FROM confirmations WHERE station_id = $1", s.id); got != int64(s.n) {
			t.Fatalf("%s: %d confirmations, want %d", s.id, got, s.n)
		}
		failed := int64(s.n / 5)
		if got := p.count(t, "SELECT count(*) FROM runs WHERE station_id = $1 AND result = 'failed'", s.id); got != failed {
			t.Fatalf("%s: %d failed runs, want %d", s.id, got, failed)
		}
		if got := p.count(t, "SELECT count(*) FROM runs WHERE station_id = $1 AND result = 'ok'", s.id); got != int64(s.n) {
			t.Fatalf("%s: %d ok runs, want %d", s.id, got, s.n)
		}
		refused := int64(0)
		if s == b {
			refused = 1
		}
		if got := p.count(t, "SELECT count(*) FROM runs WHERE station_id = $1 AND result = 'refused'", s.id); got != refused {
			t.Fatalf("%s: %d refused runs, want %d", s.id, got, refused)
		}
		if got := p.count(t, "SELECT count(*) FROM checkpoints WHERE station_id = $1", s.id); got == 0 {
			t.Fatalf("%s: no checkpoints witnessed", s.id)
		}
		rep, err := VerifyStation(ctx, s.store, p.admin, s.id)
		if err != nil || rep.Witnessed != head || rep.Unwitnessed != 0 {
			t.Fatalf("%s verify: %+v %v", s.id, rep, err)
		}
	}
	// Replay of an old batch: every row a no-op, nothing added.
	es, err := a.store.AuditEntries(ctx, 1, 40)
	if err != nil {
		t.Fatal(err)
	}
	var old []Record
	for _, e := range es {
		old = append(old, RecordFromEntry(e, nil))
	}
	before := p.count(t, "SELECT count(*) FROM ledger")
	res, err := a.reg.Ingest(ctx, a.id, old)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if res.Accepted != 0 || res.Replayed != len(old) {
		t.Fatalf("replay: %+v, want %d replayed", res, len(old))
	}
	if after := p.count(t, "SELECT count(*) FROM ledger"); after != before {
		t.Fatalf("replay changed the ledger: %d -> %d", before, after)
	}
	if n := p.count(t, "SELECT count(*) FROM alarms"); n != 0 {
		t.Fatalf("%d alarms after honest syncs", n)
	}
	// More work after the sync continues the chain.
	a.provision(t, 3)
	if _, err := a.syncer().SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	head, _, _ := a.store.AuditHead(ctx)
	if got := p.count(t, "SELECT count(*) FROM ledger WHERE station_id = $1", a.id); got != head {
		t.Fatalf("after more work: %d rows, want %d", got, head)
	}
	// A device re-provisioned with a new key holds two confirmed
	// certificates (as a device with identity and signing certificates
	// does): the dashboard counts devices, so it counts it once.
	first := fmt.Sprintf("%s-D%06d", a.id, 1)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := a.provisionWith(ctx, first, db.KeyHash([]byte("ek:"+first)), k2, true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.syncer().SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := p.count(t, "SELECT count(*) FROM confirmations WHERE station_id = $1 AND device_serial = $2", a.id, first); got != 2 {
		t.Fatalf("%s: %d confirmations, want 2", first, got)
	}
	ov, err := a.reg.Overview(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range ov.Stations {
		if st.ID == a.id && st.Devices != int64(a.n) {
			t.Fatalf("dashboard: %d devices at %s, want %d", st.Devices, a.id, a.n)
		}
	}
}

func TestIngestRefusesTampering(t *testing.T) {
	ctx := context.Background()
	p := newPlant(t)
	a := newStation(t, p, "st-a")
	a.provision(t, 10)
	es, err := a.store.AuditEntries(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	half := len(es) / 2
	var recs []Record
	for _, e := range es[:half] {
		recs = append(recs, RecordFromEntry(e, nil))
	}
	// Witness the first half (cert.issue rows need their facts: use the syncer's payloads).
	items, _ := a.store.Pending(ctx, half+20)
	var first []Record
	for _, it := range items {
		if it.Entry != nil && it.Entry.Seq <= int64(half) {
			first = append(first, RecordFromEntry(*it.Entry, it.Payload))
		}
	}
	if _, err := a.reg.Ingest(ctx, a.id, first); err != nil {
		t.Fatal(err)
	}
	alarms := func(kind string) int64 {
		return p.count(t, "SELECT count(*) FROM alarms WHERE station_id = $1 AND kind = $2", a.id, kind)
	}
	rows := p.count(t, "SELECT count(*) FROM ledger")

	// A held row with other content (rewritten and rehashed from row 3): fork.
	forged := rehash(recs, 2, func(r *Record) { r.Detail = `{"forged":true}` })
	_, err = a.reg.Ingest(ctx, a.id, forged)
	var te *TamperError
	if !errors.Is(err, ErrTampered) || !errors.As(err, &te) || te.Kind != "fork" || te.Seq != 3 {
		t.Fatalf("rewritten rows: %v", err)
	}
	// The same bad batch again raises no second alarm.
	if _, err := a.reg.Ingest(ctx, a.id, forged); !errors.Is(err, ErrTampered) {
		t.Fatalf("second forged batch: %v", err)
	}
	if n := alarms("fork"); n != 1 {
		t.Fatalf("%d fork alarms, want 1", n)
	}
	// A row whose content does not match its hash: edited.
	edited := append([]Record(nil), recs[:3]...)
	edited[2].Actor = "mallory"
	if _, err := a.reg.Ingest(ctx, a.id, edited); !errors.As(err, &te) || te.Kind != "edited" {
		t.Fatalf("edited row: %v", err)
	}
	// A new row that does not extend the held chain (rehashed continuation): fork.
	next := RecordFromEntry(es[half], nil)
	next.PrevHash = make([]byte, 32)
	next.Hash = rowHash(next)
	if _, err := a.reg.Ingest(ctx, a.id, []Record{next}); !errors.As(err, &te) || te.Kind != "fork" || te.Seq != int64(half+1) {
		t.Fatalf("continuation off the chain: %v", err)
	}
	// A batch that starts after a missing row: refused as a gap, no alarm.
	gap := RecordFromEntry(es[half+1], nil)
	if _, err := a.reg.Ingest(ctx, a.id, []Record{gap}); !errors.Is(err, ErrGap) || errors.Is(err, ErrTampered) {
		t.Fatalf("gap: %v", err)
	}
	if got := p.count(t, "SELECT count(*) FROM ledger"); got != rows {
		t.Fatalf("refused batches changed the ledger: %d -> %d", rows, got)
	}
	if n := alarms("edited"); n != 1 {
		t.Fatalf("%d edited alarms, want 1", n)
	}
	// A finished run sent again with other content: run-changed.
	var run *Record
	for _, it := range items {
		if it.Run != nil {
			run = &Record{Run: it.Run}
			break
		}
	}
	if run == nil {
		t.Fatal("no run in the outbox")
	}
	if res, err := a.reg.Ingest(ctx, a.id, []Record{*run}); err != nil || res.Accepted != 1 {
		t.Fatalf("run: %+v %v", res, err)
	}
	if res, err := a.reg.Ingest(ctx, a.id, []Record{*run}); err != nil || res.Replayed != 1 {
		t.Fatalf("run replay: %+v %v", res, err)
	}
	changed := *run.Run
	changed.Error = "rewritten"
	if _, err := a.reg.Ingest(ctx, a.id, []Record{{Run: &changed}}); !errors.As(err, &te) || te.Kind != "run-changed" {
		t.Fatalf("changed run: %v", err)
	}
	// The honest station still syncs the rest.
	if _, err := a.syncer().SyncOnce(ctx); err != nil {
		t.Fatalf("honest sync after refusals: %v", err)
	}
}

func TestCheckpointSignedByOtherKeyIsRefused(t *testing.T) {
	ctx := context.Background()
	p := newPlant(t)
	a := newStation(t, p, "st-a")
	// A second station pinned with a's key is the impostor: its checkpoints use another key.
	imp := newStation(t, p, "st-imp")
	if _, err := p.admin.pool.Exec(ctx, "UPDATE stations SET audit_key = (SELECT audit_key FROM stations WHERE id = 'st-a'), audit_key_id = (SELECT audit_key_id FROM stations WHERE id = 'st-a') WHERE id = 'st-imp'"); err != nil {
		t.Fatal(err)
	}
	imp.provision(t, 4) // > 10 rows: at least one checkpoint
	_, err := imp.syncer().SyncOnce(ctx)
	var te *TamperError
	if !errors.As(err, &te) || te.Kind != "bad-checkpoint" {
		t.Fatalf("impostor checkpoint: %v", err)
	}
	if n := p.count(t, "SELECT count(*) FROM ledger WHERE station_id = 'st-imp'"); n != 0 {
		t.Fatalf("%d rows of the refused batch recorded", n)
	}
	if n := p.count(t, "SELECT count(*) FROM alarms WHERE station_id = 'st-imp' AND kind = 'bad-checkpoint'"); n != 1 {
		t.Fatalf("%d bad-checkpoint alarms", n)
	}
	st, _ := imp.store.OutboxStatus(ctx)
	if st.FailingSince == nil || st.Pending == 0 {
		t.Fatalf("outbox after refusal: %q", st.String())
	}
	_ = a
}

// rehash returns a copy of recs where row i is changed by edit and every row from i on is
// re-linked and rehashed, as a forger who controls the station's disk would do.
func rehash(recs []Record, i int, edit func(*Record)) []Record {
	out := append([]Record(nil), recs...)
	edit(&out[i])
	for j := i; j < len(out); j++ {
		if j > 0 {
			out[j].PrevHash = out[j-1].Hash
		}
		out[j].Hash = rowHash(out[j])
	}
	return out
}

func rowHash(r Record) []byte { return dbRowHash(r) }

// The registry is restored from an older backup (pg_dump / psql): it holds less than the
// station sent. The station's next sync notices the gap, sends again from the registry's head,
// and the restored registry ends up exact.
func TestRegistryRestoredFromBackup(t *testing.T) {
	ctx := context.Background()
	p := newPlant(t)
	a := newStation(t, p, "st-a")
	a.provision(t, 10)
	if _, err := a.syncer().SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	dump, err := p.srv.Dump(p.db, "plant.sql")
	if err != nil {
		t.Fatal(err)
	}
	a.provision(t, 10)
	if _, err := a.syncer().SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.srv.Restore("restored", dump); err != nil {
		t.Fatal(err)
	}
	restoredAdmin, err := Open(ctx, p.srv.AdminDSNFor("restored"))
	if err != nil {
		t.Fatal(err)
	}
	defer restoredAdmin.Close()
	reg, err := Open(ctx, p.srv.ClientDSN(a.role, "restored", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	a.provision(t, 3)
	sy := &Syncer{Store: a.store, Registry: reg, Station: a.id, BatchSize: 50}
	if _, err := sy.SyncOnce(ctx); err != nil {
		t.Fatalf("sync to the restored registry: %v", err)
	}
	restored := &testPlant{srv: p.srv, admin: restoredAdmin, db: "restored"}
	assertExact(t, restored, a, 23, 4)
}
