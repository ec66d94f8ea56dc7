package db

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Device states recorded in devices.status.
const (
	DeviceNew         = "new"         // known, nothing issued yet
	DeviceIssuing     = "issuing"     // intent recorded, certificate not yet recorded
	DeviceIssued      = "issued"      // certificate recorded, not yet delivered
	DeviceDelivered   = "delivered"   // chain written to the device
	DeviceProvisioned = "provisioned" // chain read back and confirmed
	DeviceFailed      = "failed"      // last run failed
)

// Device is a unit under provisioning, identified by its serial.
type Device struct {
	Serial       string
	Backend      string // "tpm" | "se" | "pkcs11"
	Model        string
	EKPublicHash []byte // the chip's identity: SHA-256 of the endorsement key, or a secure element's chip identity
	// Proof is the attestation proof the chip binding rests on ("tpm", "atecc608", "unattested").
	Proof     string
	Status    string // one of the Device* states; empty means DeviceNew or unchanged
	WorkOrder string // read-only here: set by BeginIssue
	// ProvisionedAt is set by MarkConfirmed (read-only here).
	ProvisionedAt *time.Time
}

// EnsureDevice inserts the device or updates its backend, model and status. A device whose
// serial is already bound to another EK hash is refused with ErrDeviceMismatch: two parts
// claiming one serial is a cloning or labelling fault that an operator must look at.
func (s *Store) EnsureDevice(ctx context.Context, d Device) error {
	if d.Serial == "" {
		return errors.New("ensure device: empty serial")
	}
	return s.withTxRelaxed(ctx, "ensure device "+d.Serial, func(tx *sql.Tx) error {
		now := s.nowNanos()
		var id int64
		var ek []byte
		var backend, proof string
		err := tx.QueryRowContext(ctx, "SELECT id, ek_pub_hash, backend, proof FROM devices WHERE serial = ?", d.Serial).Scan(&id, &ek, &backend, &proof)
		if errors.Is(err, sql.ErrNoRows) {
			st := d.Status
			if st == "" {
				st = DeviceNew
			}
			if _, err = tx.ExecContext(ctx, `INSERT INTO devices (serial, backend, model, ek_pub_hash, proof, status, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, d.Serial, d.Backend, d.Model, nullBytes(d.EKPublicHash), d.Proof, st, now, now); err != nil {
				return err
			}
			return s.auditBinding(ctx, tx, d.Serial)
		}
		if err != nil {
			return err
		}
		if len(ek) > 0 && len(d.EKPublicHash) > 0 && !bytes.Equal(ek, d.EKPublicHash) {
			return ErrDeviceMismatch
		}
		// The binding (serial, chip identity, backend) is what the ledger vouches for.
		rebind := (len(ek) == 0 && len(d.EKPublicHash) > 0) || (d.Backend != "" && d.Backend != backend) ||
			(len(ek) == 0 && d.Proof != "" && d.Proof != proof)
		_, err = tx.ExecContext(ctx, `UPDATE devices SET
			backend = CASE WHEN ? = '' THEN backend ELSE ? END,
			model = CASE WHEN ? = '' THEN model ELSE ? END,
			ek_pub_hash = COALESCE(ek_pub_hash, ?),
			proof = CASE WHEN ek_pub_hash IS NULL AND ? <> '' THEN ? ELSE proof END,
			status = CASE WHEN ? = '' THEN status ELSE ? END,
			updated_at = ? WHERE id = ?`,
			d.Backend, d.Backend, d.Model, d.Model, nullBytes(d.EKPublicHash), d.Proof, d.Proof, d.Status, d.Status, now, id)
		if err != nil || !rebind {
			return err
		}
		// First binding of this serial to a chip (or a new backend): the ledger vouches for it.
		return s.auditBinding(ctx, tx, d.Serial)
	})
}

// auditBinding records a device's binding (serial, chip identity hash, backend, proof) in
// the ledger with the row's hash: "device.bind" once a chip is bound, "device.new" for a
// device known before its chip is.
func (s *Store) auditBinding(ctx context.Context, tx *sql.Tx, serial string) error {
	refs, err := s.refRows(ctx, tx, "devices", serial)
	if err != nil {
		return err
	}
	var ek []byte
	var backend, proof string
	if err := tx.QueryRowContext(ctx, "SELECT ek_pub_hash, backend, proof FROM devices WHERE serial = ?", serial).Scan(&ek, &backend, &proof); err != nil {
		return err
	}
	kind := "device.bind" // bound to a chip
	if len(ek) == 0 {
		kind = "device.new" // known, not yet bound
	}
	return s.appendAudit(ctx, tx, kind, s.actor, map[string]any{
		"device": serial, "chip": hex.EncodeToString(ek), "proof": proof, "backend": backend}, refs...)
}

// GetDevice returns the device with this serial, or ErrNotFound.
func (s *Store) GetDevice(ctx context.Context, serial string) (*Device, error) {
	var d Device
	var wo sql.NullString
	var prov sql.NullInt64
	err := s.rdb.QueryRowContext(ctx, `SELECT serial, backend, model, ek_pub_hash, status, work_order, provisioned_at
		FROM devices WHERE serial = ?`, serial).Scan(&d.Serial, &d.Backend, &d.Model, &d.EKPublicHash, &d.Status, &wo, &prov)
	if err != nil {
		return nil, fmt.Errorf("get device %s: %w", serial, mapErr(err))
	}
	d.WorkOrder = wo.String
	d.ProvisionedAt = nullNanos(prov)
	return &d, nil
}

// RunStart describes a new provisioning attempt.
type RunStart struct {
	DeviceSerial string // may be empty when the device has not answered yet; see AttachRunDevice
	Slot         int
	Station      string
	Operator     string
	WorkOrder    string // empty: no work order
}

// Run results.
const (
	RunOK     = "ok"
	RunFailed = "failed"
	// RunRefused: the device was turned away before anything was issued because
	// the work order's quantity was reached. Neither a pass nor a failure: the
	// device keeps its status and the order's failure counter is untouched.
	RunRefused = "refused"
)

// StartRun records a new attempt and returns its id.
func (s *Store) StartRun(ctx context.Context, r RunStart) (int64, error) {
	var id int64
	err := s.withTxRelaxed(ctx, "start run", func(tx *sql.Tx) error {
		var dev any
		if r.DeviceSerial != "" {
			did, err := deviceID(ctx, tx, r.DeviceSerial)
			if err != nil {
				return err
			}
			dev = did
		}
		if r.WorkOrder != "" {
			if err := workOrderExists(ctx, tx, r.WorkOrder); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO runs (device_id, slot, station, operator, work_order, started_at)
			VALUES (?, ?, ?, ?, ?, ?)`, dev, r.Slot, r.Station, r.Operator, nullString(r.WorkOrder), s.nowNanos())
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	return id, err
}

// AttachRunDevice sets the device of a run started without one.
func (s *Store) AttachRunDevice(ctx context.Context, runID int64, serial string) error {
	return s.withTx(ctx, fmt.Sprintf("attach device %s to run %d", serial, runID), func(tx *sql.Tx) error {
		did, err := deviceID(ctx, tx, serial)
		if err != nil {
			return err
		}
		return execOne(ctx, tx, "UPDATE runs SET device_id = ? WHERE id = ?", did, runID)
	})
}

// StepRun records the step the run has reached; an unknown or finished run gives ErrNotFound.
func (s *Store) StepRun(ctx context.Context, runID int64, step string) error {
	return s.withTxRelaxed(ctx, fmt.Sprintf("step run %d", runID), func(tx *sql.Tx) error {
		return execOne(ctx, tx, "UPDATE runs SET step = ? WHERE id = ? AND result IS NULL", step, runID)
	})
}

// FinishRun records the outcome of a run (RunOK, RunFailed or RunRefused), its error message
// and the time spent in each step. A failed run marks a device that is not provisioned
// DeviceFailed.
func (s *Store) FinishRun(ctx context.Context, runID int64, result, errMsg string, steps map[string]time.Duration) error {
	if result != RunOK && result != RunFailed && result != RunRefused {
		return fmt.Errorf("finish run %d: result %q: want %q, %q or %q", runID, result, RunOK, RunFailed, RunRefused)
	}
	return s.withTx(ctx, fmt.Sprintf("finish run %d", runID), func(tx *sql.Tx) error {
		return s.finishRunTx(ctx, tx, runID, result, errMsg, steps)
	})
}

// ConfirmAndFinish records, in one durable commit, that the device holds
// and uses its certificate (MarkConfirmed) and that its run succeeded
// (FinishRun with RunOK): the last two records of a good provisioning.
func (s *Store) ConfirmAndFinish(ctx context.Context, certSerialHex string, runID int64, steps map[string]time.Duration) error {
	return s.ConfirmAllAndFinish(ctx, []string{certSerialHex}, runID, steps)
}

// ConfirmAllAndFinish is ConfirmAndFinish for a run that delivered
// several certificates (the identity certificate and the code-signing
// certificate): all are confirmed and the run closed in one durable commit.
func (s *Store) ConfirmAllAndFinish(ctx context.Context, certSerialHexes []string, runID int64, steps map[string]time.Duration) error {
	if len(certSerialHexes) == 0 {
		return fmt.Errorf("confirm and finish run %d: no certificate", runID)
	}
	serials := make([]string, len(certSerialHexes))
	for i, c := range certSerialHexes {
		serials[i] = NormalizeSerial(c)
	}
	return s.withTx(ctx, fmt.Sprintf("confirm %s and finish run %d", strings.Join(serials, ", "), runID), func(tx *sql.Tx) error {
		for _, serial := range serials {
			if err := s.markConfirmedTx(ctx, tx, serial); err != nil {
				return err
			}
		}
		return s.finishRunTx(ctx, tx, runID, RunOK, "", steps)
	})
}

func (s *Store) finishRunTx(ctx context.Context, tx *sql.Tx, runID int64, result, errMsg string, steps map[string]time.Duration) error {
	us := make(map[string]int64, len(steps))
	for k, v := range steps {
		us[k] = v.Microseconds()
	}
	dj, err := json.Marshal(us)
	if err != nil {
		return err
	}
	now := s.nowNanos()
	if err := execOne(ctx, tx, `UPDATE runs SET result = ?, error = ?, durations = ?, finished_at = ?
		WHERE id = ? AND result IS NULL`, result, errMsg, string(dj), now, runID); err != nil {
		return err
	}
	if err := s.noteRunOwnerAuths(ctx, tx, runID, result); err != nil {
		return err
	}
	if result == RunFailed {
		_, err := tx.ExecContext(ctx, `UPDATE devices SET status = ?, updated_at = ?
			WHERE id = (SELECT device_id FROM runs WHERE id = ?) AND provisioned_at IS NULL`, DeviceFailed, now, runID)
		return err
	}
	return nil
}

// Run is a recorded provisioning attempt.
type Run struct {
	ID           int64
	DeviceSerial string
	Slot         int
	Station      string
	Operator     string
	WorkOrder    string
	Step         string
	Result       string // "" while running
	Error        string
	Durations    map[string]time.Duration
	StartedAt    time.Time
	FinishedAt   *time.Time
}

// GetRun returns a run by id.
func (s *Store) GetRun(ctx context.Context, runID int64) (*Run, error) {
	var r Run
	var serial, wo, result sql.NullString
	var dj string
	var started int64
	var fin sql.NullInt64
	err := s.rdb.QueryRowContext(ctx, `SELECT r.id, d.serial, r.slot, r.station, r.operator, r.work_order, r.step, r.result,
		r.error, r.durations, r.started_at, r.finished_at FROM runs r LEFT JOIN devices d ON d.id = r.device_id WHERE r.id = ?`, runID).
		Scan(&r.ID, &serial, &r.Slot, &r.Station, &r.Operator, &wo, &r.Step, &result, &r.Error, &dj, &started, &fin)
	if err != nil {
		return nil, fmt.Errorf("get run %d: %w", runID, mapErr(err))
	}
	r.DeviceSerial, r.WorkOrder, r.Result = serial.String, wo.String, result.String
	r.StartedAt, r.FinishedAt = fromNanos(started), nullNanos(fin)
	var us map[string]int64
	if err := json.Unmarshal([]byte(dj), &us); err != nil {
		return nil, fmt.Errorf("get run %d: durations: %w", runID, err)
	}
	r.Durations = make(map[string]time.Duration, len(us))
	for k, v := range us {
		r.Durations[k] = time.Duration(v) * time.Microsecond
	}
	return &r, nil
}

func deviceID(ctx context.Context, tx *sql.Tx, serial string) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, "SELECT id FROM devices WHERE serial = ?", serial).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("device %s: %w", serial, ErrNotFound)
	}
	return id, err
}

// execOne runs an UPDATE that must touch exactly one row (else ErrNotFound).
func execOne(ctx context.Context, tx *sql.Tx, q string, args ...any) error {
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}
