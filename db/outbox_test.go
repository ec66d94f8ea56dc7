package db

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestOutboxFollowsEveryRecord(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", WithAuditSigner(newAuditKey(t), 5))
	if err := s.CreateWorkOrder(ctx, WorkOrder{ID: "wo1", Product: "p", Quantity: 10}); err != nil {
		t.Fatal(err)
	}
	for _, sn := range []string{"D1", "D2", "D3"} {
		if _, err := provision(ctx, s, getPKI(), sn, "wo1"); err != nil {
			t.Fatal(err)
		}
	}
	head, _, err := s.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	items, err := s.Pending(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Every ledger row (checkpoints included) in order, then the 3 finished runs interleaved.
	var seqs []int64
	runs, certs := 0, 0
	for _, it := range items {
		switch {
		case it.Entry != nil:
			seqs = append(seqs, it.Entry.Seq)
			if it.Entry.Kind == "cert.issue" {
				certs++
				if !strings.Contains(string(it.Payload), `"der"`) {
					t.Fatalf("cert.issue without certificate facts: %s", it.Payload)
				}
			}
			if string(AuditRowHash(*it.Entry)) != string(it.Entry.Hash) {
				t.Fatalf("row %d: AuditRowHash differs from the stored hash", it.Entry.Seq)
			}
		case it.Run != nil:
			runs++
			if it.Run.Result != RunOK || it.Run.DeviceSerial == "" {
				t.Fatalf("run item %+v", it.Run)
			}
		}
	}
	if int64(len(seqs)) != head || runs != 3 || certs != 3 {
		t.Fatalf("outbox: %d ledger rows (head %d), %d runs, %d certificates", len(seqs), head, runs, certs)
	}
	for i, q := range seqs {
		if q != int64(i+1) {
			t.Fatalf("ledger rows out of order: %v", seqs)
		}
	}
	st, err := s.OutboxStatus(ctx)
	if err != nil || st.Pending != len(items) || st.String() != "plant: "+strconv.Itoa(len(items))+" behind" {
		t.Fatalf("status %v %q err %v", st.Pending, st.String(), err)
	}
	ids := []int64{items[0].ID, items[1].ID}
	if err := s.MarkFailed(ctx, ids, errors.New("connection refused")); err != nil {
		t.Fatal(err)
	}
	st, _ = s.OutboxStatus(ctx)
	if st.FailingSince == nil || !strings.HasPrefix(st.String(), "plant: offline since ") || st.LastError != "connection refused" {
		t.Fatalf("after failure: %q %+v", st.String(), st)
	}
	again, _ := s.Pending(ctx, 1)
	if again[0].Attempts != 1 || again[0].LastError != "connection refused" {
		t.Fatalf("row after failure: %+v", again[0])
	}
	var all []int64
	for _, it := range items {
		all = append(all, it.ID)
	}
	if err := s.MarkSent(ctx, all); err != nil {
		t.Fatal(err)
	}
	st, _ = s.OutboxStatus(ctx)
	if st.String() != "plant: in sync" || st.FailingSince != nil || st.LastSentAt == nil {
		t.Fatalf("after sent: %q", st.String())
	}
	if rest, _ := s.Pending(ctx, 0); len(rest) != 0 {
		t.Fatalf("%d rows still pending", len(rest))
	}
}

// BenchmarkProvisionOutbox measures the station-side cost of the plant outbox: one durable
// provisioning (device, run, intent, certificate, delivery, confirmation, finished run) with
// the outbox triggers, and with them dropped (sync off); "fsync-off" variants take the disk
// out to show the CPU cost alone.
func BenchmarkProvisionOutbox(b *testing.B) {
	for _, mode := range []string{"outbox", "no-outbox", "outbox-fsync-off", "no-outbox-fsync-off"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			opts := []Option{WithAuditSigner(newAuditKey(b), 0)}
			if strings.HasSuffix(mode, "fsync-off") {
				opts = append(opts, WithSynchronous("OFF"))
			}
			s := openTest(b, "", opts...)
			if strings.HasPrefix(mode, "no-outbox") {
				for _, q := range []string{"DROP TRIGGER outbox_audit", "DROP TRIGGER outbox_run_finished"} {
					if _, err := s.db.Exec(q); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := s.CreateWorkOrder(ctx, WorkOrder{ID: "wo", Product: "p", Quantity: 1 << 30}); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i++
				if _, err := provision(ctx, s, getPKI(), "B"+strconv.Itoa(i), "wo"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOutboxRowCost isolates what the outbox adds to a write: ledger rows appended in
// one transaction (no commit, no fsync in the loop), with and without the outbox trigger. A
// provisioning writes about seven outbox rows (its ledger rows, checkpoints, its runs).
func BenchmarkOutboxRowCost(b *testing.B) {
	for _, mode := range []string{"outbox", "no-outbox"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			s := openTest(b, "", WithSynchronous("OFF"))
			if mode == "no-outbox" {
				if _, err := s.db.Exec("DROP TRIGGER outbox_audit"); err != nil {
					b.Fatal(err)
				}
			}
			err := s.withTx(ctx, "bench", func(tx *sql.Tx) error {
				for b.Loop() {
					if err := s.appendAudit(ctx, tx, "bench.row", "bench", map[string]any{"device": "D1", "serial": "01"}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}
