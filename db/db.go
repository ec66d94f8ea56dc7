package db

import (
	"context"
	"crypto"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// DefaultBusyTimeout is how long a statement waits for another process's write lock.
const DefaultBusyTimeout = 5 * time.Second

// DefaultCheckpointEvery is the default number of audit rows between two signed checkpoints.
const DefaultCheckpointEvery = 100

// Store is an open station database. It is safe for concurrent use.
type Store struct {
	db       *sql.DB // writer: one connection, BEGIN IMMEDIATE
	rdb      *sql.DB // readers: deferred, query-only
	path     string
	readOnly bool

	auditSigner crypto.Signer
	auditKeyID  []byte
	cpEvery     int
	actor       string
	now         func() time.Time
	synchronous string

	closeOnce sync.Once
}

type config struct {
	readOnly    bool
	busyTimeout time.Duration
	synchronous string
	signer      crypto.Signer
	cpEvery     int
	actor       string
	now         func() time.Time
}

// Option configures Open.
type Option func(*config)

// WithReadOnly opens the file read-only (SQLite mode=ro). Every write returns ErrReadOnly.
// The schema must already be current. Use it for QA read-outs and exports.
func WithReadOnly() Option { return func(c *config) { c.readOnly = true } }

// WithBusyTimeout sets how long a statement waits for a lock held by another connection
// or process before failing with ErrBusy (default DefaultBusyTimeout).
func WithBusyTimeout(d time.Duration) Option { return func(c *config) { c.busyTimeout = d } }

// WithSynchronous overrides PRAGMA synchronous (default "FULL"). Only bulk tools and tests
// should lower it: with "NORMAL" a power cut may lose the last commits (never corrupt).
func WithSynchronous(mode string) Option { return func(c *config) { c.synchronous = mode } }

// WithAuditSigner makes the store sign an audit checkpoint, in the same transaction, each
// time every audit rows have been appended since the last checkpoint (every <= 0 means
// DefaultCheckpointEvery). The signer is the station's dedicated audit key, never the CA key.
func WithAuditSigner(signer crypto.Signer, every int) Option {
	return func(c *config) { c.signer, c.cpEvery = signer, every }
}

// WithActor sets the actor recorded in the audit rows written implicitly by this store
// (issuance, revocation …); default "station".
func WithActor(actor string) Option { return func(c *config) { c.actor = actor } }

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// Open opens (creating if needed) the database at path and migrates its schema.
func Open(path string, opts ...Option) (*Store, error) {
	cfg := config{busyTimeout: DefaultBusyTimeout, synchronous: "FULL", cpEvery: DefaultCheckpointEvery, actor: "station", now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.cpEvery <= 0 {
		cfg.cpEvery = DefaultCheckpointEvery
	}
	switch cfg.synchronous {
	case "OFF", "NORMAL", "FULL", "EXTRA":
	default:
		return nil, fmt.Errorf("open %s: invalid synchronous mode %q", path, cfg.synchronous)
	}
	base := url.Values{}
	base.Set("_foreign_keys", "1")
	base.Set("_busy_timeout", fmt.Sprint(cfg.busyTimeout.Milliseconds()))
	if cfg.readOnly {
		base.Set("mode", "ro")
	}
	if onReadOnlyFS(path) {
		if !cfg.readOnly {
			return nil, fmt.Errorf("open %s: file system is read-only (open with WithReadOnly to read it): %w", path, ErrReadOnly)
		}
		// A WAL database needs its -shm file, which cannot be created on read-only media;
		// nobody can write there either, so the file is opened immutable.
		base.Set("immutable", "1")
	}
	dsn := func(extra map[string]string) string {
		q := url.Values{}
		for k, v := range base {
			q[k] = v
		}
		for k, v := range extra {
			q.Set(k, v)
		}
		return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	}
	// Writer pool: one connection, so that the station's own writers queue in Go rather than
	// in SQLite's busy handler; BEGIN IMMEDIATE takes the write lock up front, so a
	// transaction never fails half-way upgrading a read lock. Other processes wait up to the
	// busy timeout.
	wopts := map[string]string{"_txlock": "immediate"}
	if !cfg.readOnly {
		wopts["_journal_mode"] = "WAL"
		wopts["_synchronous"] = cfg.synchronous
	}
	sdb, err := sql.Open("sqlite3", dsn(wopts))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, mapErr(err))
	}
	sdb.SetMaxOpenConns(1)
	// Reader pool: deferred transactions on query-only connections; WAL readers see a
	// consistent snapshot and never block the writer.
	rdb, err := sql.Open("sqlite3", dsn(map[string]string{"_txlock": "deferred", "_query_only": "1"}))
	if err != nil {
		sdb.Close()
		return nil, fmt.Errorf("open %s: %w", path, mapErr(err))
	}
	s := &Store{db: sdb, rdb: rdb, path: path, readOnly: cfg.readOnly, auditSigner: cfg.signer, cpEvery: cfg.cpEvery, actor: cfg.actor, now: cfg.now, synchronous: strings.ToUpper(cfg.synchronous)}
	closeAll := func() { sdb.Close(); rdb.Close() }
	if cfg.signer != nil {
		id, err := KeyID(cfg.signer.Public())
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("open %s: audit signer: %w", path, err)
		}
		s.auditKeyID = id
	}
	ctx := context.Background()
	if err := sdb.PingContext(ctx); err != nil {
		closeAll()
		return nil, fmt.Errorf("open %s: %w", path, mapErr(err))
	}
	if err := s.migrate(ctx); err != nil {
		closeAll()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return s, nil
}

// Close writes a final audit checkpoint when a signer is configured and rows are pending,
// then closes the database.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.auditSigner != nil && !s.readOnly {
			if cerr := s.Checkpoint(context.Background()); cerr != nil && !errors.Is(cerr, ErrReadOnly) {
				err = cerr
			}
		}
		rerr := s.rdb.Close()
		if cerr := s.db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", s.path, mapErr(cerr))
		}
		if rerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", s.path, mapErr(rerr))
		}
	})
	return err
}

// Path returns the database file path.
func (s *Store) Path() string { return s.path }

// IntegrityCheck runs PRAGMA integrity_check and returns an ErrCorrupt error listing the
// problems, if any.
func (s *Store) IntegrityCheck(ctx context.Context) error {
	rows, err := s.rdb.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("integrity check: %w", mapErr(err))
	}
	defer rows.Close()
	var msgs []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return fmt.Errorf("integrity check: %w", mapErr(err))
		}
		if m != "ok" {
			msgs = append(msgs, m)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("integrity check: %w", mapErr(err))
	}
	if len(msgs) > 0 {
		return fmt.Errorf("integrity check: %w: %v", ErrCorrupt, msgs)
	}
	return nil
}

// withTx runs fn in a write transaction (BEGIN IMMEDIATE) and commits it.
func (s *Store) withTx(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	if s.readOnly {
		return fmt.Errorf("%s: %w", op, ErrReadOnly)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", op, mapErr(err))
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("%s: %w", op, mapErr(err))
	}
	if err := tx.Commit(); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("%s: commit: %w", op, mapErr(err))
	}
	return nil
}

// withTxRelaxed is withTx committed with synchronous=NORMAL instead of FULL:
// as atomic, and as durable against a crash of the process (the WAL is in
// the operating system's hands), but the last such commits can be lost if the
// machine loses power before the next FULL commit, which syncs the WAL with
// everything before it. It is used only for records whose loss with the
// power is harmless: the intent to issue (the certificate it announces is
// only ever sent after CompleteIssue's FULL commit, so a lost intent means a
// certificate that never left the process), device and run bookkeeping.
// It saves one fsync (about 0.5 ms on this machine) per such record.
func (s *Store) withTxRelaxed(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	if s.readOnly || s.synchronous != "FULL" {
		return s.withTx(ctx, op, fn)
	}
	// Pin the writer connection so no other transaction runs while it is
	// relaxed.
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", op, mapErr(err))
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = NORMAL"); err != nil {
		return fmt.Errorf("%s: relax sync: %w", op, mapErr(err))
	}
	defer func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous = FULL"); err != nil {
			// The connection must not go back to the pool relaxed.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", op, mapErr(err))
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("%s: %w", op, mapErr(err))
	}
	if err := tx.Commit(); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("%s: commit: %w", op, mapErr(err))
	}
	return nil
}

func (s *Store) nowNanos() int64 { return s.now().UTC().UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func nullNanos(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNanos(n.Int64)
	return &t
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
