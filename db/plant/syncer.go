package plant

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/wsc-project/wsc/db"
)

// Syncer sends a station's outbox to the registry: in order, in batches, each batch
// acknowledged in the outbox only after the registry committed it. A crash between the two
// re-sends the batch, which the registry treats as a replay (no-op): exactly-once effect.
type Syncer struct {
	Store    *db.Store
	Registry *Registry
	Station  string // the station id registered in the plant

	// BatchSize is the number of outbox rows per batch (default 500).
	BatchSize int
	// MinBackoff and MaxBackoff bound the wait after a failed send (defaults 500 ms and 1 min).
	MinBackoff, MaxBackoff time.Duration
	// Poll is the wait between checks of an empty outbox (default 500 ms).
	Poll time.Duration
	// OnError, if set, is told of each failed round (the station shows it; the failure is
	// also stored on the outbox rows).
	OnError func(error)

	// Revoke, if set, applies a plant revocation request for a certificate this station
	// issued (the station's CA holds the intermediate's key); the revocation's ledger row
	// then flows back to the registry.
	Revoke func(ctx context.Context, serialHex string, reason int) error
	// Trust, if set, returns the station's intermediates and current CRLs, published to the
	// registry after each round that applied revocations (and on the first round).
	Trust func(ctx context.Context) ([]*x509.Certificate, []*x509.RevocationList, error)

	checked   bool
	published bool
	fault     func(point string) // test hook at named points of a batch
}

func (s *Syncer) at(point string) {
	if s.fault != nil {
		s.fault(point)
	}
}

func (s *Syncer) batchSize() int {
	if s.BatchSize <= 0 {
		return 500
	}
	return s.BatchSize
}

// SyncOnce sends everything pending and returns how many outbox rows were acknowledged. The
// first call also checks that the station's ledger still holds what the registry witnessed
// (a truncated or rewritten station ledger raises an alarm and stops the sync).
func (s *Syncer) SyncOnce(ctx context.Context) (int, error) {
	if !s.checked {
		if err := s.checkWitness(ctx); err != nil {
			return 0, err
		}
		s.checked = true
	}
	sent, revoked, requeued := 0, false, false
	for {
		items, err := s.Store.Pending(ctx, s.batchSize())
		if err != nil {
			return sent, fmt.Errorf("plant sync: %w", err)
		}
		if len(items) == 0 {
			if revoked {
				return sent, s.publish(ctx)
			}
			revoked = true
			applied, err := s.applyRevocations(ctx)
			if err != nil {
				return sent, err
			}
			if applied > 0 {
				continue // send the revocations' ledger rows
			}
			return sent, s.publish(ctx)
		}
		ids := make([]int64, 0, len(items))
		recs := make([]Record, 0, len(items))
		var last int64
		for _, it := range items {
			ids = append(ids, it.ID)
			switch {
			case it.Entry != nil:
				if it.Entry.Seq <= last { // the same row queued twice (a re-queued rewrite): send once
					continue
				}
				last = it.Entry.Seq
				recs = append(recs, RecordFromEntry(*it.Entry, it.Payload))
			case it.Run != nil:
				recs = append(recs, Record{Run: it.Run})
			}
		}
		s.at("batch:read")
		if _, err := s.Registry.Ingest(ctx, s.Station, recs); err != nil {
			if errors.Is(err, ErrGap) && !requeued {
				// The registry holds less than this station sent (restored from a backup):
				// send again from its head on.
				requeued = true
				head, _, herr := s.Registry.Head(ctx, s.Station)
				if herr == nil {
					if _, herr = s.Store.Requeue(ctx, head+1); herr == nil {
						continue
					}
				}
				err = errors.Join(err, herr)
			}
			if merr := s.Store.MarkFailed(context.WithoutCancel(ctx), ids, err); merr != nil {
				return sent, errors.Join(err, merr)
			}
			return sent, err
		}
		s.at("batch:committed")
		if err := s.Store.MarkSent(context.WithoutCancel(ctx), ids); err != nil {
			return sent, fmt.Errorf("plant sync: acknowledge: %w", err)
		}
		s.at("batch:acked")
		sent += len(ids)
	}
}

func (s *Syncer) applyRevocations(ctx context.Context) (int, error) {
	if s.Revoke == nil {
		return 0, nil
	}
	reqs, err := s.Registry.RevocationRequests(ctx, s.Station)
	if err != nil {
		return 0, fmt.Errorf("plant sync: %w", err)
	}
	for _, q := range reqs {
		code, ok := ReasonCode(q.Reason)
		if !ok {
			return 0, fmt.Errorf("plant sync: revocation request for %s: unknown reason %q", q.SerialHex, q.Reason)
		}
		if err := s.Revoke(ctx, q.SerialHex, code); err != nil {
			return 0, fmt.Errorf("plant sync: apply revocation request for %s: %w", q.SerialHex, err)
		}
	}
	if len(reqs) > 0 {
		s.published = false
	}
	return len(reqs), nil
}

func (s *Syncer) publish(ctx context.Context) error {
	if s.Trust == nil || s.published {
		return nil
	}
	issuers, crls, err := s.Trust(ctx)
	if err != nil {
		return fmt.Errorf("plant sync: trust material: %w", err)
	}
	if err := s.Registry.Publish(ctx, s.Station, issuers, crls); err != nil {
		return err
	}
	s.published = true
	return nil
}

// checkWitness compares the registry's head for the station with the station's ledger.
func (s *Syncer) checkWitness(ctx context.Context) error {
	seq, hash, err := s.Registry.Head(ctx, s.Station)
	if err != nil || seq == 0 {
		return err
	}
	local, err := s.Store.AuditEntries(ctx, seq, seq)
	if err != nil {
		return fmt.Errorf("plant sync: %w", err)
	}
	switch {
	case len(local) == 0:
		lh, _, _ := s.Store.AuditHead(ctx)
		return s.Registry.RaiseAlarm(ctx, s.Station, "truncation", seq,
			fmt.Sprintf("the station's ledger ends at row %d, the registry witnessed rows up to %d", lh, seq))
	case !bytes.Equal(local[0].Hash, hash):
		return s.Registry.RaiseAlarm(ctx, s.Station, "fork", seq,
			fmt.Sprintf("the station's row %d differs from the one the registry witnessed", seq))
	}
	return nil
}

// Run syncs until ctx ends: it sends what is pending, waits Poll when caught up, and backs
// off exponentially (MinBackoff doubling up to MaxBackoff) while the registry fails. A
// tamper refusal is not retried: it returns (an operator must look at the alarm).
func (s *Syncer) Run(ctx context.Context) error {
	minB, maxB, poll := s.MinBackoff, s.MaxBackoff, s.Poll
	if minB <= 0 {
		minB = 500 * time.Millisecond
	}
	if maxB <= 0 {
		maxB = time.Minute
	}
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	backoff := minB
	for {
		_, err := s.SyncOnce(ctx)
		wait := poll
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, ErrTampered) {
				return err
			}
			if s.OnError != nil {
				s.OnError(err)
			}
			wait = backoff
			backoff = min(backoff*2, maxB)
		} else {
			backoff = minB
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Head returns the registry's last witnessed ledger row of a station (0 when none).
func (r *Registry) Head(ctx context.Context, station string) (int64, []byte, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("plant head %s: %w", station, mapErr(err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	seq, hash, err := chainHead(ctx, tx, station)
	if err != nil {
		return 0, nil, fmt.Errorf("plant head %s: %w", station, mapErr(err))
	}
	return seq, hash, nil
}
