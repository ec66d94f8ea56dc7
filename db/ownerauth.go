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

	// OwnerAuthPending: sealed and recorded, not yet confirmed set on the
	// chip (a crash here leaves the chip with its old or this value).
	OwnerAuthPending = "pending"
	// OwnerAuthSet: the chip took the value.
	OwnerAuthSet = "set"
)

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
	State       string // OwnerAuthPending, OwnerAuthSet, or "none"
	CreatedAt   time.Time
	SetAt       *time.Time
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
		state = "none"
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
		return s.appendAudit(ctx, tx, kind, s.actor, detail)
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

// MarkOwnerAuthSet records that the chip took the sealed owner
// authorisation of record id.
func (s *Store) MarkOwnerAuthSet(ctx context.Context, id int64) error {
	return s.withTx(ctx, fmt.Sprintf("owner authorisation %d set", id), func(tx *sql.Tx) error {
		var serial, state string
		err := tx.QueryRowContext(ctx, `SELECT d.serial, o.state FROM owner_auths o JOIN devices d ON d.id = o.device_id WHERE o.id = ?`, id).Scan(&serial, &state)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("owner authorisation %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if state != OwnerAuthPending {
			return fmt.Errorf("owner authorisation %d of %s is %s, not pending", id, serial, state)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE owner_auths SET state = ?, set_at = ? WHERE id = ?", OwnerAuthSet, s.nowNanos(), id); err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, "owner_auth.set", s.actor, map[string]any{"device": serial, "record": id})
	})
}

// OwnerAuths returns a device's owner authorisation records, oldest first.
func (s *Store) OwnerAuths(ctx context.Context, deviceSerial string) ([]OwnerAuthRecord, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT o.id, d.serial, o.run_id, o.chip_id, o.work_order, o.policy, o.escrow_key_id, o.suite, o.enc, o.sealed,
		o.state, o.created_at, o.set_at FROM owner_auths o JOIN devices d ON d.id = o.device_id WHERE d.serial = ? ORDER BY o.id`, deviceSerial)
	if err != nil {
		return nil, fmt.Errorf("owner authorisations of %s: %w", deviceSerial, mapErr(err))
	}
	defer rows.Close()
	var out []OwnerAuthRecord
	for rows.Next() {
		var r OwnerAuthRecord
		var run, setAt sql.NullInt64
		var created int64
		if err := rows.Scan(&r.ID, &r.DeviceSerial, &run, &r.ChipID, &r.WorkOrder, &r.Policy, &r.EscrowKeyID, &r.Suite, &r.Enc, &r.Sealed,
			&r.State, &created, &setAt); err != nil {
			return nil, fmt.Errorf("owner authorisations of %s: %w", deviceSerial, mapErr(err))
		}
		r.RunID, r.CreatedAt, r.SetAt = run.Int64, fromNanos(created), nullNanos(setAt)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("owner authorisations of %s: %w", deviceSerial, mapErr(err))
	}
	return out, nil
}
