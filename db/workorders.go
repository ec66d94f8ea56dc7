package db

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Lock policies of a work order: whether the chain NV area is write-locked after delivery.
const (
	LockPolicyLock = "lock" // lock after read-back confirmation
	LockPolicyNone = "none" // leave writable (engineering builds)
)

// WorkOrder is a production order from the plant's MES.
type WorkOrder struct {
	ID         string
	Product    string
	Quantity   int // devices that may be provisioned under this order
	Profile    string
	LockPolicy string
	CreatedAt  time.Time // set by CreateWorkOrder
}

// CreateWorkOrder records a work order; an existing id gives ErrDuplicate.
func (s *Store) CreateWorkOrder(ctx context.Context, w WorkOrder) error {
	if w.ID == "" {
		return errors.New("create work order: empty id")
	}
	if w.Quantity < 0 {
		return fmt.Errorf("create work order %s: negative quantity", w.ID)
	}
	return s.withTx(ctx, "create work order "+w.ID, func(tx *sql.Tx) error {
		now := s.nowNanos()
		if _, err := tx.ExecContext(ctx, `INSERT INTO work_orders (id, product, quantity, profile, lock_policy, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`, w.ID, w.Product, w.Quantity, w.Profile, w.LockPolicy, now); err != nil {
			return err
		}
		refs, err := s.refRows(ctx, tx, "work_orders", w.ID)
		if err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, "workorder.create", s.actor, map[string]any{
			"id": w.ID, "product": w.Product, "quantity": w.Quantity, "profile": w.Profile, "lock_policy": w.LockPolicy}, refs...)
	})
}

// GetWorkOrder returns the work order, or ErrNotFound.
func (s *Store) GetWorkOrder(ctx context.Context, id string) (*WorkOrder, error) {
	var w WorkOrder
	var created int64
	err := s.rdb.QueryRowContext(ctx, `SELECT id, product, quantity, profile, lock_policy, created_at FROM work_orders WHERE id = ?`, id).
		Scan(&w.ID, &w.Product, &w.Quantity, &w.Profile, &w.LockPolicy, &created)
	if err != nil {
		return nil, fmt.Errorf("get work order %s: %w", id, mapErr(err))
	}
	w.CreatedAt = fromNanos(created)
	return &w, nil
}

// ListWorkOrders returns all work orders, oldest first.
func (s *Store) ListWorkOrders(ctx context.Context) ([]WorkOrder, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, product, quantity, profile, lock_policy, created_at FROM work_orders ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list work orders: %w", mapErr(err))
	}
	defer rows.Close()
	var out []WorkOrder
	for rows.Next() {
		var w WorkOrder
		var created int64
		if err := rows.Scan(&w.ID, &w.Product, &w.Quantity, &w.Profile, &w.LockPolicy, &created); err != nil {
			return nil, fmt.Errorf("list work orders: %w", mapErr(err))
		}
		w.CreatedAt = fromNanos(created)
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list work orders: %w", mapErr(err))
	}
	return out, nil
}

func workOrderExists(ctx context.Context, tx *sql.Tx, id string) error {
	var one int
	err := tx.QueryRowContext(ctx, "SELECT 1 FROM work_orders WHERE id = ?", id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("work order %s: %w", id, ErrNotFound)
	}
	return err
}

// WorkOrderStats are the production counters of one work order.
type WorkOrderStats struct {
	WorkOrder  string
	Quantity   int
	Assigned   int     // devices holding a quota unit (issuance started)
	Done       int     // devices first confirmed (read back) under this order; counted once per device
	Failed     int     // failed runs (attempts)
	RunsOK     int     // successful runs
	Yield      float64 // RunsOK / (RunsOK + Failed); 0 without runs
	PerHour    float64 // Done per hour between the first run and the last device done
	FirstRunAt *time.Time
	LastDoneAt *time.Time
}

const statsQuery = `SELECT w.id, w.quantity, c.assigned, c.done, c.runs_ok, c.runs_failed, c.first_run_at, c.last_done_at
	FROM work_orders w JOIN work_order_counters c ON c.work_order = w.id`

// Stats returns the counters of one work order, or of all when workOrder is empty. It reads
// the counter table kept by triggers, so it costs the same at ten or a million devices.
func (s *Store) Stats(ctx context.Context, workOrder string) ([]WorkOrderStats, error) {
	q, args := statsQuery+" ORDER BY w.created_at, w.id", []any(nil)
	if workOrder != "" {
		q, args = statsQuery+" WHERE w.id = ?", []any{workOrder}
	}
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", mapErr(err))
	}
	defer rows.Close()
	var out []WorkOrderStats
	for rows.Next() {
		var st WorkOrderStats
		var first, last sql.NullInt64
		if err := rows.Scan(&st.WorkOrder, &st.Quantity, &st.Assigned, &st.Done, &st.RunsOK, &st.Failed, &first, &last); err != nil {
			return nil, fmt.Errorf("stats: %w", mapErr(err))
		}
		st.FirstRunAt, st.LastDoneAt = nullNanos(first), nullNanos(last)
		if n := st.RunsOK + st.Failed; n > 0 {
			st.Yield = float64(st.RunsOK) / float64(n)
		}
		if first.Valid && last.Valid && last.Int64 > first.Int64 {
			st.PerHour = float64(st.Done) / (time.Duration(last.Int64 - first.Int64).Hours())
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stats: %w", mapErr(err))
	}
	if workOrder != "" && len(out) == 0 {
		return nil, fmt.Errorf("stats: work order %s: %w", workOrder, ErrNotFound)
	}
	return out, nil
}

// Operator is a person allowed to run the station.
type Operator struct {
	ID        string
	Name      string
	Role      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// pinIterations: PBKDF2-SHA256 work factor (OWASP 2023 figure). A PIN has little entropy,
// so the hash only slows an offline guesser down; the file itself must stay on the station.
const pinIterations = 600_000

// UpsertOperator creates or updates an operator. The PIN is stored only as a salted
// PBKDF2-SHA256 hash; an empty pin keeps the existing hash (error for a new operator).
func (s *Store) UpsertOperator(ctx context.Context, op Operator, pin string) error {
	if op.ID == "" {
		return errors.New("upsert operator: empty id")
	}
	var hash string
	if pin != "" {
		var err error
		if hash, err = hashPIN(pin, pinIterations); err != nil {
			return fmt.Errorf("upsert operator %s: %w", op.ID, err)
		}
	}
	return s.withTx(ctx, "upsert operator "+op.ID, func(tx *sql.Tx) error {
		now := s.nowNanos()
		res, err := tx.ExecContext(ctx, `UPDATE operators SET name = ?, role = ?,
			pin_hash = CASE WHEN ? = '' THEN pin_hash ELSE ? END, updated_at = ? WHERE id = ?`,
			op.Name, op.Role, hash, hash, now, op.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			if hash == "" {
				return errors.New("new operator needs a PIN")
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO operators (id, name, role, pin_hash, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?)`, op.ID, op.Name, op.Role, hash, now, now); err != nil {
				return err
			}
		}
		refs, err := s.refRows(ctx, tx, "operators", op.ID)
		if err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, "operator.upsert", s.actor, map[string]any{
			"id": op.ID, "name": op.Name, "role": op.Role, "pin_changed": hash != ""}, refs...)
	})
}

// GetOperator returns an operator (without any PIN material), or ErrNotFound.
func (s *Store) GetOperator(ctx context.Context, id string) (*Operator, error) {
	var op Operator
	var c, u int64
	err := s.rdb.QueryRowContext(ctx, `SELECT id, name, role, created_at, updated_at FROM operators WHERE id = ?`, id).
		Scan(&op.ID, &op.Name, &op.Role, &c, &u)
	if err != nil {
		return nil, fmt.Errorf("get operator %s: %w", id, mapErr(err))
	}
	op.CreatedAt, op.UpdatedAt = fromNanos(c), fromNanos(u)
	return &op, nil
}

// VerifyOperator checks an operator's PIN and returns the operator; a wrong PIN gives
// ErrBadPIN, an unknown id ErrNotFound. Every attempt, good or bad, is a ledger entry
// ("operator.login": who, whether it succeeded, the role), so sign-ins and guessing are on
// record.
func (s *Store) VerifyOperator(ctx context.Context, id, pin string) (*Operator, error) {
	op, verr := s.verifyOperator(ctx, id, pin)
	detail := map[string]any{"id": id, "ok": verr == nil}
	if op != nil {
		detail["role"] = op.Role
	}
	if verr != nil {
		detail["error"] = verr.Error()
	}
	if err := s.Audit(ctx, "operator.login", id, detail); err != nil {
		return nil, fmt.Errorf("verify operator %s: record the sign-in: %w", id, err)
	}
	return op, verr
}

func (s *Store) verifyOperator(ctx context.Context, id, pin string) (*Operator, error) {
	var stored string
	err := s.rdb.QueryRowContext(ctx, `SELECT pin_hash FROM operators WHERE id = ?`, id).Scan(&stored)
	if err != nil {
		return nil, fmt.Errorf("verify operator %s: %w", id, mapErr(err))
	}
	ok, err := checkPIN(stored, pin)
	if err != nil {
		return nil, fmt.Errorf("verify operator %s: %w", id, err)
	}
	if !ok {
		return nil, fmt.Errorf("verify operator %s: %w", id, ErrBadPIN)
	}
	return s.GetOperator(ctx, id)
}

// hashPIN returns "pbkdf2-sha256$iterations$salt$hash" (base64 raw std).
func hashPIN(pin string, iter int) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("pin salt: %w", err)
	}
	dk, err := pbkdf2.Key(sha256.New, pin, salt, iter, 32)
	if err != nil {
		return "", fmt.Errorf("pin hash: %w", err)
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("pbkdf2-sha256$%d$%s$%s", iter, enc.EncodeToString(salt), enc.EncodeToString(dk)), nil
}

func checkPIN(stored, pin string) (bool, error) {
	parts := strings.Split(stored, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" {
		return false, errors.New("unknown pin hash format")
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 {
		return false, errors.New("bad pin hash iterations")
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[2])
	want, err2 := enc.DecodeString(parts[3])
	if err1 != nil || err2 != nil {
		return false, errors.New("bad pin hash encoding")
	}
	got, err := pbkdf2.Key(sha256.New, pin, salt, iter, len(want))
	if err != nil {
		return false, fmt.Errorf("pin hash: %w", err)
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
