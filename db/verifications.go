package db

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Verification results.
const (
	VerifyPass = "pass"
	VerifyFail = "fail"
)

// Verification is a QA check of a provisioned device (wsc verify).
type Verification struct {
	DeviceSerial  string
	CertSerialHex string // certificate checked, if any
	Verifier      string // QA station or person
	Result        string // VerifyPass | VerifyFail
	Detail        string
	At            time.Time // set by RecordVerification
}

// RecordVerification stores a QA result and its audit row and returns its id.
func (s *Store) RecordVerification(ctx context.Context, v Verification) (int64, error) {
	if v.Result != VerifyPass && v.Result != VerifyFail {
		return 0, fmt.Errorf("record verification of %s: result %q: want %q or %q", v.DeviceSerial, v.Result, VerifyPass, VerifyFail)
	}
	var id int64
	cs := ""
	if v.CertSerialHex != "" {
		cs = NormalizeSerial(v.CertSerialHex)
	}
	err := s.withTx(ctx, "record verification of "+v.DeviceSerial, func(tx *sql.Tx) error {
		did, err := deviceID(ctx, tx, v.DeviceSerial)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO verifications (device_id, cert_serial, verifier, result, detail, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`, did, cs, v.Verifier, v.Result, v.Detail, s.nowNanos())
		if err != nil {
			return err
		}
		if id, err = res.LastInsertId(); err != nil {
			return err
		}
		actor := v.Verifier
		if actor == "" {
			actor = s.actor
		}
		refs, err := s.refRows(ctx, tx, "verifications", fmt.Sprint(id))
		if err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, "qa.verify", actor, map[string]any{
			"device": v.DeviceSerial, "serial": cs, "result": v.Result, "id": id}, refs...)
	})
	return id, err
}

// Verifications returns the QA results of a device, oldest first.
func (s *Store) Verifications(ctx context.Context, deviceSerial string) ([]Verification, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT d.serial, v.cert_serial, v.verifier, v.result, v.detail, v.created_at
		FROM verifications v JOIN devices d ON d.id = v.device_id WHERE d.serial = ? ORDER BY v.id`, deviceSerial)
	if err != nil {
		return nil, fmt.Errorf("verifications of %s: %w", deviceSerial, mapErr(err))
	}
	defer rows.Close()
	var out []Verification
	for rows.Next() {
		var v Verification
		var at int64
		if err := rows.Scan(&v.DeviceSerial, &v.CertSerialHex, &v.Verifier, &v.Result, &v.Detail, &at); err != nil {
			return nil, fmt.Errorf("verifications of %s: %w", deviceSerial, mapErr(err))
		}
		v.At = fromNanos(at)
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("verifications of %s: %w", deviceSerial, mapErr(err))
	}
	return out, nil
}
