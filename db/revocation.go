package db

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Revocation is one entry of an issuer's revocation list.
type Revocation struct {
	SerialHex   string
	IssuerKeyID []byte
	Reason      int // RFC 5280 CRLReason code
	RevokedAt   time.Time
}

// revokeTx puts serial on the revocation list and marks the certificate row (when this
// station recorded it) revoked. An already revoked serial gives ErrAlreadyRevoked.
func revokeTx(ctx context.Context, tx *sql.Tx, serial string, issuerKeyID []byte, reason int, at int64) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO revocations (serial_hex, issuer_key_id, reason, revoked_at) VALUES (?, ?, ?, ?)`,
		serial, issuerKeyID, reason, at); err != nil {
		if errors.Is(mapErr(err), ErrDuplicate) {
			return fmt.Errorf("serial %s: %w", serial, ErrAlreadyRevoked)
		}
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE certificates SET status = 'revoked', revoked_at = ?, revoke_reason = ?
		WHERE serial_hex = ? AND revoked_at IS NULL`, at, reason, serial)
	return err
}

// RecordRevocation puts a certificate serial on its issuer's revocation list (for the CA's
// CRL) and, if the station recorded that certificate, marks it revoked. The serial may be one
// this station never recorded. A serial already revoked gives ErrAlreadyRevoked.
func (s *Store) RecordRevocation(ctx context.Context, serialHex string, issuerKeyID []byte, reason int, at time.Time) error {
	serial := NormalizeSerial(serialHex)
	if len(issuerKeyID) == 0 {
		return fmt.Errorf("record revocation of %s: empty issuer key id", serial)
	}
	if _, ok := reasonNames[reason]; !ok {
		return fmt.Errorf("record revocation of %s: invalid reason code %d", serial, reason)
	}
	return s.withTx(ctx, "record revocation of "+serial, func(tx *sql.Tx) error {
		var have []byte
		err := tx.QueryRowContext(ctx, "SELECT issuer_key_id FROM certificates WHERE serial_hex = ?", serial).Scan(&have)
		if err == nil && string(have) != string(issuerKeyID) {
			return fmt.Errorf("certificate was issued by key %x, not %x", have, issuerKeyID)
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		recorded := err == nil
		if err := revokeTx(ctx, tx, serial, issuerKeyID, reason, at.UTC().UnixNano()); err != nil {
			return err
		}
		refs, err := s.revocationRefs(ctx, tx, serial, recorded)
		if err != nil {
			return err
		}
		if err := s.appendAudit(ctx, tx, "cert.revoke", s.actor, map[string]any{
			"serial": serial, "issuer": hex.EncodeToString(issuerKeyID), "reason": ReasonName(reason)}, refs...); err != nil {
			return err
		}
		// A revocation is sealed and witnessed at once: deleting it later would also have
		// to delete a witnessed checkpoint.
		return s.sealTx(ctx, tx)
	})
}

// revocationRefs are the ledger references of a revocation and, when the station
// recorded it, of the revoked certificate.
func (s *Store) revocationRefs(ctx context.Context, tx *sql.Tx, serial string, recorded bool) ([]rowRef, error) {
	refs, err := s.refRows(ctx, tx, "revocations", serial)
	if err != nil || !recorded {
		return refs, err
	}
	crefs, err := s.refRows(ctx, tx, "certificates", serial)
	return append(refs, crefs...), err
}

// Revocations returns the revocation list of one issuer key, oldest first.
func (s *Store) Revocations(ctx context.Context, issuerKeyID []byte) ([]Revocation, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT serial_hex, issuer_key_id, reason, revoked_at FROM revocations
		WHERE issuer_key_id = ? ORDER BY revoked_at, serial_hex`, issuerKeyID)
	if err != nil {
		return nil, fmt.Errorf("revocations: %w", mapErr(err))
	}
	defer rows.Close()
	var out []Revocation
	for rows.Next() {
		var r Revocation
		var at int64
		if err := rows.Scan(&r.SerialHex, &r.IssuerKeyID, &r.Reason, &at); err != nil {
			return nil, fmt.Errorf("revocations: %w", mapErr(err))
		}
		r.RevokedAt = fromNanos(at)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("revocations: %w", mapErr(err))
	}
	return out, nil
}

// IsRevoked reports whether the serial is on a revocation list.
func (s *Store) IsRevoked(ctx context.Context, serialHex string) (bool, error) {
	var one int
	err := s.rdb.QueryRowContext(ctx, "SELECT 1 FROM revocations WHERE serial_hex = ?", NormalizeSerial(serialHex)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("is revoked %s: %w", serialHex, mapErr(err))
	}
	return true, nil
}

// NextCRLNumber returns the next CRL number of an issuer key (1, 2, …), persisted before it
// is returned so that a number is never handed out twice, even across a crash.
func (s *Store) NextCRLNumber(ctx context.Context, issuerKeyID []byte) (int64, error) {
	if len(issuerKeyID) == 0 {
		return 0, errors.New("next crl number: empty issuer key id")
	}
	var n int64
	err := s.withTx(ctx, "next crl number", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO crl_numbers (issuer_key_id, number) VALUES (?, 1)
			ON CONFLICT (issuer_key_id) DO UPDATE SET number = number + 1 RETURNING number`, issuerKeyID).Scan(&n)
	})
	return n, err
}
