package db

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Owner authorisation policies and states (owner_auths.policy, .state).
const (
	// OwnerAuthSealed: the station set a random owner authorisation,
	// recorded sealed to the escrow public key.
	OwnerAuthSealed = "sealed"
	// OwnerAuthNone: the work order's explicit policy left the owner
	// hierarchy as it was.
	OwnerAuthNone = "none"

	// OwnerAuthPending: sealed and recorded, not confirmed set on the chip:
	// "maybe set". From the moment it is recorded the station may have sent
	// it, so a crash or a timeout leaves the chip with its old value or this
	// one, and the line gate treats the chip as set (RMA desk).
	OwnerAuthPending = "pending"
	// OwnerAuthSet: the chip took the value.
	OwnerAuthSet = "set"
	// OwnerAuthAbandoned: the run failed before the value reached the chip
	// (the set command was never sent, or the agent refused the request
	// before any TPM command ran): the chip provably kept its previous owner
	// authorisation.
	OwnerAuthAbandoned = "abandoned"
	// OwnerAuthStateNone is the state of a policy-none record.
	OwnerAuthStateNone = "none"
)

// MaybeSet reports whether a record's chip may hold its sealed
// value: a sealed record that is set, or pending (maybe set).
func (r OwnerAuthRecord) MaybeSet() bool {
	return r.Policy == OwnerAuthSealed && (r.State == OwnerAuthSet || r.State == OwnerAuthPending)
}

// OwnerAuthRecord is a recorded owner authorisation of a device's TPM. It
// holds no secret: Sealed opens only with the escrow private key.
type OwnerAuthRecord struct {
	ID           int64
	DeviceSerial string
	RunID        int64 // 0: not tied to a run
	ChipID       []byte
	WorkOrder    string
	Policy       string // OwnerAuthSealed or OwnerAuthNone
	// EscrowKeyID is the SHA-256 of the escrow public key (PKIX DER).
	EscrowKeyID []byte
	// Suite names the HPKE suite; Enc and Sealed are its encapsulated
	// key and ciphertext.
	Suite       string
	Enc, Sealed []byte
	// State is OwnerAuthPending, OwnerAuthSet, OwnerAuthAbandoned or
	// OwnerAuthStateNone.
	State       string
	CreatedAt   time.Time
	SetAt       *time.Time
	AbandonedAt *time.Time
	// AbandonReason says why a record was abandoned.
	AbandonReason string
	// RunResult is the result of the run that wrote the record ("" while
	// it runs, or when the record names no run).
	RunResult string
}

// RecordOwnerAuth records a sealed owner authorisation (state pending) or
// the explicit policy none, with its ledger row (whose outbox row carries
// it to the plant registry) in one durable transaction, and returns the
// record's id. The caller sets the value on the chip only after this
// returned.
func (s *Store) RecordOwnerAuth(ctx context.Context, r OwnerAuthRecord) (int64, error) {
	state := OwnerAuthPending
	switch r.Policy {
	case OwnerAuthSealed:
		if len(r.Sealed) == 0 || len(r.Enc) == 0 || len(r.EscrowKeyID) == 0 || r.Suite == "" {
			return 0, fmt.Errorf("record owner authorisation of %s: sealed record without its ciphertext, encapsulated key, suite or escrow key id", r.DeviceSerial)
		}
	case OwnerAuthNone:
		if len(r.Sealed) != 0 || len(r.Enc) != 0 {
			return 0, fmt.Errorf("record owner authorisation of %s: policy none carries no ciphertext", r.DeviceSerial)
		}
		state = OwnerAuthStateNone
	default:
		return 0, fmt.Errorf("record owner authorisation of %s: unknown policy %q", r.DeviceSerial, r.Policy)
	}
	if len(r.ChipID) == 0 {
		return 0, fmt.Errorf("record owner authorisation of %s: no chip id", r.DeviceSerial)
	}
	var id int64
	err := s.withTx(ctx, "record owner authorisation of "+r.DeviceSerial, func(tx *sql.Tx) error {
		var devID int64
		if err := tx.QueryRowContext(ctx, "SELECT id FROM devices WHERE serial = ?", r.DeviceSerial).Scan(&devID); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("device: %w", ErrNotFound)
			}
			return err
		}
		var run any
		if r.RunID != 0 {
			run = r.RunID
		}
		now := s.nowNanos()
		res, err := tx.ExecContext(ctx, `INSERT INTO owner_auths (device_id, run_id, chip_id, work_order, policy, escrow_key_id, suite, enc, sealed, state, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, devID, run, r.ChipID, r.WorkOrder, r.Policy, nullBytes(r.EscrowKeyID), r.Suite,
			nullBytes(r.Enc), nullBytes(r.Sealed), state, now)
		if err != nil {
			return err
		}
		if id, err = res.LastInsertId(); err != nil {
			return err
		}
		detail := map[string]any{"device": r.DeviceSerial, "run": r.RunID, "chip": hex.EncodeToString(r.ChipID), "work_order": r.WorkOrder,
			"policy": r.Policy, "record": id}
		kind := "owner_auth.policy"
		if r.Policy == OwnerAuthSealed {
			// The sealed blob travels in the ledger (and so through the
			// outbox to the plant registry): it is ciphertext for the
			// escrow key, not the secret.
			kind = "owner_auth.seal"
			detail["escrow_key"] = hex.EncodeToString(r.EscrowKeyID)
			detail["suite"] = r.Suite
			detail["enc"] = hex.EncodeToString(r.Enc)
			detail["sealed"] = hex.EncodeToString(r.Sealed)
		}
		refs, err := s.refRows(ctx, tx, "owner_auths", fmt.Sprint(id))
		if err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, kind, s.actor, detail, refs...)
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

// settleOwnerAuth moves a pending record to set or abandoned, with its
// ledger row, in one durable transaction.
func (s *Store) settleOwnerAuth(ctx context.Context, id int64, state, reason string) error {
	return s.withTx(ctx, fmt.Sprintf("owner authorisation %d %s", id, state), func(tx *sql.Tx) error {
		var serial, cur string
		var run sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT d.serial, o.state, o.run_id FROM owner_auths o JOIN devices d ON d.id = o.device_id WHERE o.id = ?`, id).Scan(&serial, &cur, &run)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("owner authorisation %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if cur != OwnerAuthPending {
			return fmt.Errorf("owner authorisation %d of %s is %s, not pending: %w", id, serial, cur, ErrConstraint)
		}
		now := s.nowNanos()
		detail := map[string]any{"device": serial, "record": id, "run": run.Int64}
		kind := "owner_auth.set"
		if state == OwnerAuthSet {
			_, err = tx.ExecContext(ctx, "UPDATE owner_auths SET state = ?, set_at = ? WHERE id = ?", OwnerAuthSet, now, id)
		} else {
			kind = "owner_auth.abandon"
			detail["reason"] = reason
			_, err = tx.ExecContext(ctx, "UPDATE owner_auths SET state = ?, abandoned_at = ?, abandon_reason = ? WHERE id = ?", OwnerAuthAbandoned, now, reason, id)
		}
		if err != nil {
			return err
		}
		refs, err := s.refRows(ctx, tx, "owner_auths", fmt.Sprint(id))
		if err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, kind, s.actor, detail, refs...)
	})
}

// MarkOwnerAuthSet records that the chip took the sealed owner
// authorisation of record id (pending → set).
func (s *Store) MarkOwnerAuthSet(ctx context.Context, id int64) error {
	return s.settleOwnerAuth(ctx, id, OwnerAuthSet, "")
}

// MarkOwnerAuthAbandoned records that the sealed owner authorisation of
// record id never reached the chip (pending → abandoned). Call it only when
// that is certain: the set command was not sent, or the agent refused the
// request before any TPM command ran. After a timeout, a lost line or a
// device error the chip may hold the value: the record stays pending.
func (s *Store) MarkOwnerAuthAbandoned(ctx context.Context, id int64, reason string) error {
	return s.settleOwnerAuth(ctx, id, OwnerAuthAbandoned, reason)
}

// noteRunOwnerAuths is the run's end for the owner authorisation records
// it wrote: in the transaction that closes the run, a ledger row
// "owner_auth.run-end" names the run, its result and each record with its
// state then (and vouches for the rows as they stand), so that a failed
// run's record reads "abandoned" or "pending, maybe set", never ambiguously.
// A run that wrote none costs one indexed lookup.
func (s *Store) noteRunOwnerAuths(ctx context.Context, tx *sql.Tx, runID int64, result string) error {
	rows, err := tx.QueryContext(ctx, "SELECT id, state FROM owner_auths WHERE run_id = ? ORDER BY id", runID)
	if err != nil {
		return fmt.Errorf("owner authorisations of run %d: %w", runID, err)
	}
	var keys []string
	var recs []map[string]any
	for rows.Next() {
		var id int64
		var state string
		if err := rows.Scan(&id, &state); err != nil {
			rows.Close()
			return err
		}
		keys = append(keys, fmt.Sprint(id))
		recs = append(recs, map[string]any{"record": id, "state": state})
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	refs, err := s.refRows(ctx, tx, "owner_auths", keys...)
	if err != nil {
		return err
	}
	return s.appendAudit(ctx, tx, "owner_auth.run-end", s.actor, map[string]any{"run": runID, "result": result, "records": recs}, refs...)
}

// OwnerAuths returns a device's owner authorisation records, oldest first.
func (s *Store) OwnerAuths(ctx context.Context, deviceSerial string) ([]OwnerAuthRecord, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT o.id, d.serial, o.run_id, o.chip_id, o.work_order, o.policy, o.escrow_key_id, o.suite, o.enc, o.sealed,
		o.state, o.created_at, o.set_at, o.abandoned_at, o.abandon_reason, r.result FROM owner_auths o JOIN devices d ON d.id = o.device_id
		LEFT JOIN runs r ON r.id = o.run_id WHERE d.serial = ? ORDER BY o.id`, deviceSerial)
	if err != nil {
		return nil, fmt.Errorf("owner authorisations of %s: %w", deviceSerial, mapErr(err))
	}
	defer rows.Close()
	var out []OwnerAuthRecord
	for rows.Next() {
		var r OwnerAuthRecord
		var run, setAt, abandonedAt sql.NullInt64
		var runResult sql.NullString
		var created int64
		if err := rows.Scan(&r.ID, &r.DeviceSerial, &run, &r.ChipID, &r.WorkOrder, &r.Policy, &r.EscrowKeyID, &r.Suite, &r.Enc, &r.Sealed,
			&r.State, &created, &setAt, &abandonedAt, &r.AbandonReason, &runResult); err != nil {
			return nil, fmt.Errorf("owner authorisations of %s: %w", deviceSerial, mapErr(err))
		}
		r.RunID, r.CreatedAt, r.SetAt, r.AbandonedAt, r.RunResult = run.Int64, fromNanos(created), nullNanos(setAt), nullNanos(abandonedAt), runResult.String
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("owner authorisations of %s: %w", deviceSerial, mapErr(err))
	}
	return out, nil
}
