package db

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// RedBinEntry is a device sent to the red bin. It is keyed on the chip's
// identity (ChipID: the EK public-key hash of a TPM, the chip identity of a
// secure element, the key hash of an unattested device), never on the serial
// the device reports: a device chooses what it reports, not which chip it is.
type RedBinEntry struct {
	ChipID     []byte
	Serial     string // as reported; informational
	Reason     string
	CertSerial string // the certificate concerned, if any
	Operator   string
	CreatedAt  time.Time
	// ReleasedAt, ReleasedBy and ReleaseNote are set by ReleaseRedBin.
	ReleasedAt  *time.Time
	ReleasedBy  string
	ReleaseNote string
}

// RedBin puts the chip in the red bin. A chip already in the red bin keeps
// its first entry (no error): the reason that counts is the first one.
func (s *Store) RedBin(ctx context.Context, e RedBinEntry) error {
	if len(e.ChipID) == 0 {
		return errors.New("red bin: empty chip identity")
	}
	if e.Reason == "" {
		return errors.New("red bin: a reason is required")
	}
	return s.withTx(ctx, "red bin "+hex.EncodeToString(e.ChipID), func(tx *sql.Tx) error {
		now := s.nowNanos()
		res, err := tx.ExecContext(ctx, `INSERT INTO red_bin (chip_id, serial, reason, cert_serial, operator, created_at)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (chip_id) WHERE released_at IS NULL DO NOTHING`,
			e.ChipID, e.Serial, e.Reason, e.CertSerial, e.Operator, now)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		refs, err := s.refRows(ctx, tx, "red_bin", fmt.Sprint(id))
		if err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, "redbin", actorOr(e.Operator, s.actor), map[string]any{
			"chip": hex.EncodeToString(e.ChipID), "device": e.Serial, "reason": e.Reason, "cert": e.CertSerial}, refs...)
	})
}

// ActiveRedBin returns why the chip must not be provisioned, or nil when it
// may be: an unreleased red-bin entry, or a certificate of a device bound to
// this chip revoked for a reason other than superseded or
// cessationOfOperation (e.g. keyCompromise) after the chip's last release.
func (s *Store) ActiveRedBin(ctx context.Context, chipID []byte) (*RedBinEntry, error) {
	if len(chipID) == 0 {
		return nil, errors.New("red bin: empty chip identity")
	}
	var e RedBinEntry
	var at int64
	err := s.rdb.QueryRowContext(ctx, `SELECT chip_id, serial, reason, cert_serial, operator, created_at FROM red_bin
		WHERE chip_id = ? AND released_at IS NULL`, chipID).Scan(&e.ChipID, &e.Serial, &e.Reason, &e.CertSerial, &e.Operator, &at)
	switch {
	case err == nil:
		e.CreatedAt = fromNanos(at)
		return &e, nil
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("red bin: %w", mapErr(err))
	}
	var lastRelease sql.NullInt64
	if err := s.rdb.QueryRowContext(ctx, `SELECT MAX(released_at) FROM red_bin WHERE chip_id = ?`, chipID).Scan(&lastRelease); err != nil {
		return nil, fmt.Errorf("red bin: %w", mapErr(err))
	}
	var serial, dev string
	var reason int
	err = s.rdb.QueryRowContext(ctx, `SELECT c.serial_hex, d.serial, c.revoke_reason, c.revoked_at FROM certificates c
		JOIN devices d ON d.id = c.device_id
		WHERE d.ek_pub_hash = ? AND c.revoked_at IS NOT NULL AND c.revoke_reason NOT IN (?, ?) AND c.revoked_at > ?
		ORDER BY c.revoked_at DESC LIMIT 1`, chipID, ReasonSuperseded, ReasonCessationOfOperation, lastRelease.Int64).
		Scan(&serial, &dev, &reason, &at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("red bin: %w", mapErr(err))
	}
	return &RedBinEntry{ChipID: chipID, Serial: dev, CertSerial: serial, CreatedAt: fromNanos(at),
		Reason: fmt.Sprintf("certificate %s was revoked (%s)", serial, ReasonName(reason))}, nil
}

// ReleaseRedBin releases the chip from the red bin (a supervisor's
// decision, recorded with their identity and note). A chip held because a
// certificate was revoked is released too: the release is recorded as an
// entry released at once, so the revocation no longer holds the chip.
// ErrNotFound when the chip is not held.
func (s *Store) ReleaseRedBin(ctx context.Context, chipID []byte, supervisor, note string) error {
	if supervisor == "" {
		return errors.New("release red bin: the supervisor is required")
	}
	held, err := s.ActiveRedBin(ctx, chipID)
	if err != nil {
		return err
	}
	if held == nil {
		return fmt.Errorf("release red bin %x: %w", chipID, ErrNotFound)
	}
	return s.withTx(ctx, "release red bin "+hex.EncodeToString(chipID), func(tx *sql.Tx) error {
		now := s.nowNanos()
		var id int64
		err := tx.QueryRowContext(ctx, `UPDATE red_bin SET released_at = ?, released_by = ?, release_note = ?
			WHERE chip_id = ? AND released_at IS NULL RETURNING id`, now, supervisor, note, chipID).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			// Held by a revocation only: record the release as an entry.
			res, err := tx.ExecContext(ctx, `INSERT INTO red_bin (chip_id, serial, reason, cert_serial, operator, created_at,
				released_at, released_by, release_note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				chipID, held.Serial, held.Reason, held.CertSerial, supervisor, now, now, supervisor, note)
			if err != nil {
				return err
			}
			if id, err = res.LastInsertId(); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		refs, err := s.refRows(ctx, tx, "red_bin", fmt.Sprint(id))
		if err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, "redbin.release", supervisor, map[string]any{
			"chip": hex.EncodeToString(chipID), "device": held.Serial, "reason": held.Reason, "note": note}, refs...)
	})
}

// RedBins lists red-bin entries, newest first; activeOnly leaves out
// released ones.
func (s *Store) RedBins(ctx context.Context, activeOnly bool) ([]RedBinEntry, error) {
	q := `SELECT chip_id, serial, reason, cert_serial, operator, created_at, released_at, COALESCE(released_by, ''),
		COALESCE(release_note, '') FROM red_bin`
	if activeOnly {
		q += " WHERE released_at IS NULL"
	}
	rows, err := s.rdb.QueryContext(ctx, q+" ORDER BY created_at DESC, id DESC")
	if err != nil {
		return nil, fmt.Errorf("red bins: %w", mapErr(err))
	}
	defer rows.Close()
	out := []RedBinEntry{}
	for rows.Next() {
		var e RedBinEntry
		var at int64
		var rel sql.NullInt64
		if err := rows.Scan(&e.ChipID, &e.Serial, &e.Reason, &e.CertSerial, &e.Operator, &at, &rel, &e.ReleasedBy, &e.ReleaseNote); err != nil {
			return nil, fmt.Errorf("red bins: %w", mapErr(err))
		}
		e.CreatedAt, e.ReleasedAt = fromNanos(at), nullNanos(rel)
		out = append(out, e)
	}
	return out, rows.Err()
}

// ChipOf returns the chip identity and proof a device serial is bound to
// (nil when the serial is unknown or not yet bound).
func (s *Store) ChipOf(ctx context.Context, serial string) (chipID []byte, proof string, err error) {
	err = s.rdb.QueryRowContext(ctx, "SELECT ek_pub_hash, proof FROM devices WHERE serial = ?", serial).Scan(&chipID, &proof)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("chip of %s: %w", serial, mapErr(err))
	}
	return chipID, proof, nil
}

// Rebind binds a device serial to another chip: the re-work of a device
// whose chip was replaced, decided by a supervisor against a scanned label.
// The device's live certificate, if any, is revoked (superseded) at once,
// so that the old chip's certificate does not stay live beside the new one.
func (s *Store) Rebind(ctx context.Context, serial string, chipID []byte, proof, supervisor, label string) error {
	switch {
	case supervisor == "":
		return errors.New("rebind: a supervisor is required")
	case label == "" || label != serial:
		return fmt.Errorf("rebind %s: the scanned label %q must equal the device serial", serial, label)
	case len(chipID) == 0:
		return errors.New("rebind: empty chip identity")
	}
	return s.withTx(ctx, "rebind "+serial, func(tx *sql.Tx) error {
		now := s.nowNanos()
		var devID int64
		var old []byte
		err := tx.QueryRowContext(ctx, "SELECT id, ek_pub_hash FROM devices WHERE serial = ?", serial).Scan(&devID, &old)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("device %s: %w", serial, ErrNotFound)
		}
		if err != nil {
			return err
		}
		// Every live certificate of the old chip's keys (identity and, since
		// migration 0006, code-signing) is superseded.
		type live struct {
			serial string
			issuer []byte
		}
		var lives []live
		rows, err := tx.QueryContext(ctx, "SELECT serial_hex, issuer_key_id FROM certificates WHERE device_id = ? AND revoked_at IS NULL ORDER BY id", devID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var l live
			if err := rows.Scan(&l.serial, &l.issuer); err != nil {
				rows.Close()
				return err
			}
			lives = append(lives, l)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for _, l := range lives {
			if err := revokeTx(ctx, tx, l.serial, l.issuer, ReasonSuperseded, now); err != nil {
				return err
			}
			refs, err := s.revocationRefs(ctx, tx, l.serial, true)
			if err != nil {
				return err
			}
			if err := s.appendAudit(ctx, tx, "cert.revoke", supervisor, map[string]any{
				"serial": l.serial, "device": serial, "reason": ReasonName(ReasonSuperseded), "rework": true}, refs...); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, "UPDATE devices SET ek_pub_hash = ?, proof = ?, updated_at = ? WHERE id = ?",
			chipID, proof, now, devID); err != nil {
			return err
		}
		refs, err := s.refRows(ctx, tx, "devices", serial)
		if err != nil {
			return err
		}
		if err := s.appendAudit(ctx, tx, "device.rebind", supervisor, map[string]any{
			"device": serial, "old_chip": hex.EncodeToString(old), "chip": hex.EncodeToString(chipID), "proof": proof, "label": label}, refs...); err != nil {
			return err
		}
		return s.sealTx(ctx, tx) // a rebinding is sealed and witnessed at once
	})
}

// RevokeUnconfirmed revokes a certificate that was signed but never
// confirmed in its device (read-back or end-of-line failed, or the device
// never came back), with reason cessationOfOperation. A confirmed or already
// revoked certificate is left alone (revoked false).
func (s *Store) RevokeUnconfirmed(ctx context.Context, certSerialHex, why string) (revoked bool, err error) {
	return s.revokeRecorded(ctx, certSerialHex, ReasonCessationOfOperation, why, s.actor, true)
}

// RevokeRecorded revokes a certificate this station recorded, with its
// recorded issuer, for reason (an RFC 5280 code), on behalf of actor (the
// operator or supervisor who decided it). An already revoked certificate is
// left alone (revoked false); an unknown one gives ErrNotFound.
func (s *Store) RevokeRecorded(ctx context.Context, certSerialHex string, reason int, why, actor string) (revoked bool, err error) {
	if _, ok := reasonNames[reason]; !ok || reason == ReasonRemoveFromCRL {
		return false, fmt.Errorf("revoke %s: invalid reason code %d", certSerialHex, reason)
	}
	return s.revokeRecorded(ctx, certSerialHex, reason, why, actorOr(actor, s.actor), false)
}

func (s *Store) revokeRecorded(ctx context.Context, certSerialHex string, reason int, why, actor string, unconfirmedOnly bool) (revoked bool, err error) {
	serial := NormalizeSerial(certSerialHex)
	err = s.withTx(ctx, "revoke "+serial, func(tx *sql.Tx) error {
		revoked = false
		var issuer []byte
		var status, dev string
		err := tx.QueryRowContext(ctx, `SELECT c.issuer_key_id, c.status, d.serial FROM certificates c JOIN devices d ON d.id = c.device_id
			WHERE c.serial_hex = ?`, serial).Scan(&issuer, &status, &dev)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("certificate %s: %w", serial, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if status == CertRevoked || (unconfirmedOnly && status == CertConfirmed) {
			return nil
		}
		if err := revokeTx(ctx, tx, serial, issuer, reason, s.nowNanos()); err != nil {
			return err
		}
		revoked = true
		refs, err := s.revocationRefs(ctx, tx, serial, true)
		if err != nil {
			return err
		}
		if err := s.appendAudit(ctx, tx, "cert.revoke", actor, map[string]any{
			"serial": serial, "device": dev, "reason": ReasonName(reason), "unconfirmed": status != CertConfirmed, "why": why}, refs...); err != nil {
			return err
		}
		return s.sealTx(ctx, tx) // a revocation is sealed and witnessed at once
	})
	return revoked, err
}

// UnconfirmedBefore lists certificates signed before t that were never
// confirmed and are not revoked (devices that did not come back).
func (s *Store) UnconfirmedBefore(ctx context.Context, t time.Time) ([]string, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT serial_hex FROM certificates WHERE status IN ('issued', 'delivered')
		AND issued_at < ? ORDER BY issued_at`, t.UTC().UnixNano())
	if err != nil {
		return nil, fmt.Errorf("unconfirmed certificates: %w", mapErr(err))
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var sn string
		if err := rows.Scan(&sn); err != nil {
			return nil, fmt.Errorf("unconfirmed certificates: %w", mapErr(err))
		}
		out = append(out, sn)
	}
	return out, rows.Err()
}

func actorOr(a, def string) string {
	if a != "" {
		return a
	}
	return def
}

// SerialsOfChip returns the device serials bound to a chip identity (one,
// normally; none when the chip is new).
func (s *Store) SerialsOfChip(ctx context.Context, chipID []byte) ([]string, error) {
	rows, err := s.rdb.QueryContext(ctx, "SELECT serial FROM devices WHERE ek_pub_hash = ? ORDER BY serial", chipID)
	if err != nil {
		return nil, fmt.Errorf("serials of chip: %w", mapErr(err))
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var sn string
		if err := rows.Scan(&sn); err != nil {
			return nil, fmt.Errorf("serials of chip: %w", mapErr(err))
		}
		out = append(out, sn)
	}
	return out, rows.Err()
}
