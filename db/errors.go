package db

import (
	"database/sql"
	"errors"
	"fmt"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// Sentinel errors returned (wrapped, with context) at the package boundary.
var (
	// ErrNotFound: the requested row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrDuplicate: a unique value (serial, work-order id …) is already taken.
	ErrDuplicate = errors.New("already exists")
	// ErrKeyConflict: the public key is registered to another device.
	ErrKeyConflict = errors.New("key registered to another device")
	// ErrKeyRevoked: the key's certificate was revoked; the device needs a new key.
	ErrKeyRevoked = errors.New("key's certificate is revoked")
	// ErrQuotaExceeded: the work order's quantity is reached.
	ErrQuotaExceeded = errors.New("work order quota exceeded")
	// ErrStaleIntent: the issue intent was abandoned (superseded by a newer key) or belongs
	// to another device or key than the certificate presented.
	ErrStaleIntent = errors.New("stale issue intent")
	// ErrDeviceMismatch: a device with this serial exists with another EK.
	ErrDeviceMismatch = errors.New("device serial already bound to another EK")
	// ErrRevoked: the certificate is revoked.
	ErrRevoked = errors.New("certificate revoked")
	// ErrAlreadyRevoked: the serial is already on the revocation list (also matches ErrDuplicate).
	ErrAlreadyRevoked = fmt.Errorf("%w: already revoked", ErrDuplicate)
	// ErrBadPIN: the operator PIN does not match.
	ErrBadPIN = errors.New("wrong operator PIN")
	// ErrReadOnly: the database (file, file system or Store) is read-only.
	ErrReadOnly = errors.New("read-only database")
	// ErrDiskFull: the file system (or the page limit) is full; the transaction was rolled back.
	ErrDiskFull = errors.New("disk full")
	// ErrBusy: another process held the lock longer than the busy timeout.
	ErrBusy = errors.New("database busy")
	// ErrCorrupt: the file is not a database or is damaged.
	ErrCorrupt = errors.New("database is corrupt")
	// ErrSchemaTooNew: the file was written by a newer version of this program.
	ErrSchemaTooNew = errors.New("database schema is newer than this program")
	// ErrConstraint: another integrity constraint failed (foreign key, check, live-certificate rule).
	ErrConstraint = errors.New("constraint violated")
	// ErrAuditTampered: VerifyAudit found a broken ledger; the error is an *AuditError.
	ErrAuditTampered = errors.New("audit ledger tampered")
	// ErrWitnessTorn: the witness file ends with an incomplete line (power cut while it
	// was appended); the store refuses to append after it until RepairWitness records and
	// cuts it.
	ErrWitnessTorn = errors.New("witness file ends with an incomplete line")
	// ErrWitnessMismatch: the database does not hold the newest checkpoint recorded in the
	// witness file (its tail was deleted or rewritten, or it is another database).
	ErrWitnessMismatch = errors.New("database does not match its witness file")
)

// mapErr maps driver errors to the sentinels, keeping the driver error in the chain.
// Errors already carrying a sentinel are returned unchanged.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return err
	}
	for _, s := range []error{ErrNotFound, ErrDuplicate, ErrKeyConflict, ErrQuotaExceeded, ErrReadOnly, ErrDiskFull, ErrBusy, ErrCorrupt, ErrConstraint} {
		if errors.Is(err, s) {
			return err
		}
	}
	switch se.Code {
	case sqlite3.ErrConstraint:
		switch se.ExtendedCode {
		case sqlite3.ErrConstraintUnique, sqlite3.ErrConstraintPrimaryKey:
			return fmt.Errorf("%w: %w", ErrDuplicate, err)
		}
		return fmt.Errorf("%w: %w", ErrConstraint, err)
	case sqlite3.ErrFull:
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	case sqlite3.ErrReadonly:
		return fmt.Errorf("%w: %w", ErrReadOnly, err)
	case sqlite3.ErrBusy, sqlite3.ErrLocked:
		return fmt.Errorf("%w: %w", ErrBusy, err)
	case sqlite3.ErrCorrupt, sqlite3.ErrNotADB:
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	case sqlite3.ErrIoErr:
		// ENOSPC while growing the WAL or the shared-memory file surfaces as an I/O error.
		if errors.Is(se.SystemErrno, errENOSPC) {
			return fmt.Errorf("%w: %w", ErrDiskFull, err)
		}
	case sqlite3.ErrCantOpen:
		if errors.Is(se.SystemErrno, errEROFS) || errors.Is(se.SystemErrno, errEACCES) {
			return fmt.Errorf("%w: %w", ErrReadOnly, err)
		}
	}
	return err
}
