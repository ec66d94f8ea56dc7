package db

import (
	"context"
	"crypto"
	"crypto/x509"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
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
	auditPubDER []byte
	// witness receives every signed checkpoint after its commit; pendingWitness is the
	// checkpoint written by the transaction in progress (only touched while holding the
	// single writer connection).
	witness        *witness
	pendingWitness *WitnessLine
	refStmts       map[string]*sql.Stmt // writer's prepared row-reference selects
	cpEvery        int
	actor          string
	now            func() time.Time
	synchronous    string

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
	witness     string
	skipQuick   bool
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

// WithWitness makes the store append every signed checkpoint, fsync'd after its commit,
// to the witness file at path, kept outside the database file (the station's default is
// beside the CA keys; better on another medium). Open refuses a database that does not
// hold the newest checkpoint the file records (ErrWitnessMismatch) and a file whose last
// line is incomplete (ErrWitnessTorn). VerifyAudit checks the ledger against it.
func WithWitness(path string) Option { return func(c *config) { c.witness = path } }

// WithoutQuickCheck skips PRAGMA quick_check at Open. Only for tools that must read a
// damaged file to salvage it; never for the station.
func WithoutQuickCheck() Option { return func(c *config) { c.skipQuick = true } }

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// Open opens (creating if needed) the database at path, runs PRAGMA quick_check (a
// damaged file is refused with ErrCorrupt and an instruction), migrates its schema and,
// with WithWitness, checks it against the witness file.
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
	// The writer keeps its prepared statements (the same few dozen, every record): parsing
	// was a quarter of the CPU time of an issuance.
	wopts := map[string]string{"_txlock": "immediate", "_stmt_cache_size": "64"}
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
		der, err := x509.MarshalPKIXPublicKey(cfg.signer.Public())
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("open %s: audit signer: %w", path, err)
		}
		s.auditPubDER, s.auditKeyID = der, KeyHash(der)
	}
	ctx := context.Background()
	if err := pingWriter(ctx, sdb, cfg.busyTimeout); err != nil {
		closeAll()
		return nil, fmt.Errorf("open %s: %w", path, mapErr(err))
	}
	if !cfg.skipQuick {
		if err := s.quickCheck(ctx); err != nil {
			closeAll()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	if err := s.migrate(ctx); err != nil {
		closeAll()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if !cfg.readOnly {
		if err := s.prepareRefs(ctx); err != nil {
			closeAll()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	if cfg.witness != "" && !cfg.readOnly {
		w, wf, err := openWitness(cfg.witness)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		s.witness = w
		if err := s.matchWitness(ctx, wf); err != nil {
			w.close()
			closeAll()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	} else if cfg.witness != "" {
		s.witness = &witness{path: cfg.witness} // read by VerifyAudit only
	}
	return s, nil
}

// pingWriter opens the writer connection. Opening it switches the file to WAL, and SQLite
// answers that switch with SQLITE_BUSY at once, without its busy handler, while another
// connection (another process opening the same new file) holds a lock; so a busy open is
// tried again, with a short pause, until the busy timeout has passed.
func pingWriter(ctx context.Context, db *sql.DB, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pause := 2 * time.Millisecond
	for {
		err := db.PingContext(ctx)
		if err == nil || !errors.Is(mapErr(err), ErrBusy) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(pause)
		if pause < 50*time.Millisecond {
			pause *= 2
		}
	}
}

// quickCheck runs PRAGMA quick_check: a damaged file is refused before anything is
// written to it.
func (s *Store) quickCheck(ctx context.Context) error {
	rows, err := s.rdb.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return fmt.Errorf("%w: quick_check failed: %w (%s)", ErrCorrupt, mapErr(err), corruptInstruction)
	}
	defer rows.Close()
	var msgs []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return fmt.Errorf("%w: quick_check failed: %w (%s)", ErrCorrupt, mapErr(err), corruptInstruction)
		}
		if m != "ok" {
			msgs = append(msgs, m)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%w: quick_check failed: %w (%s)", ErrCorrupt, mapErr(err), corruptInstruction)
	}
	if len(msgs) > 0 {
		if len(msgs) > 5 {
			msgs = append(msgs[:5], fmt.Sprintf("… %d more", len(msgs)-5))
		}
		return fmt.Errorf("%w: quick_check reports %s (%s)", ErrCorrupt, strings.Join(msgs, "; "), corruptInstruction)
	}
	return nil
}

const corruptInstruction = "stop the station, keep this file untouched for investigation, " +
	"restore the last backup of the database and check it with `wsc audit verify`"

// matchWitness refuses a database that does not hold the newest checkpoint the witness
// file records: its ledger was cut or rewritten, or it is another station's database.
func (s *Store) matchWitness(ctx context.Context, wf *WitnessFile) error {
	n := wf.Newest()
	if n == nil {
		return nil
	}
	var hash []byte
	err := s.rdb.QueryRowContext(ctx, "SELECT hash FROM audit WHERE id = ?", n.Seq).Scan(&hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("check witness: %w", mapErr(err))
	}
	var cp int
	if err == nil {
		if err := s.rdb.QueryRowContext(ctx, "SELECT count(*) FROM audit WHERE id = ? AND kind = 'checkpoint'", n.Seq+1).Scan(&cp); err != nil {
			return fmt.Errorf("check witness: %w", mapErr(err))
		}
	}
	if err != nil || cp == 0 || hex.EncodeToString(hash) != n.Hash {
		return fmt.Errorf("the witness file %s holds a signed checkpoint of ledger row %d that this database does not hold "+
			"(its ledger was cut or rewritten, or it is another database): do not use it; run `wsc audit verify` and restore "+
			"the database that matches the witness file: %w", s.witness.path, n.Seq, ErrWitnessMismatch)
	}
	return nil
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
		if s.witness != nil && s.witness.f != nil {
			if werr := s.witness.close(); werr != nil && err == nil {
				err = fmt.Errorf("close witness file: %w", werr)
			}
		}
		for _, st := range s.refStmts {
			st.Close()
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
	return s.runTx(tx, op, fn, false)
}

// runTx runs fn in tx, commits it and then appends the checkpoint it wrote, if any, to
// the witness file. A failed witness append is returned as an error although the
// transaction is committed: the station must stop rather than go on unwitnessed.
// relaxed says that tx runs with synchronous=NORMAL: if it wrote a checkpoint that will be
// witnessed, it is rolled back with errNeedDurable, for the caller to run it again with
// FULL (SQLite cannot change the safety level inside a transaction): a witnessed
// checkpoint must never be lost by the database in a power cut.
func (s *Store) runTx(tx *sql.Tx, op string, fn func(tx *sql.Tx) error, relaxed bool) error {
	s.pendingWitness = nil
	if err := fn(tx); err != nil {
		s.pendingWitness = nil
		_ = tx.Rollback()
		return fmt.Errorf("%s: %w", op, mapErr(err))
	}
	pw := s.pendingWitness
	s.pendingWitness = nil
	if pw != nil && relaxed && s.witness != nil && s.witness.f != nil {
		_ = tx.Rollback()
		return errNeedDurable
	}
	if err := tx.Commit(); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("%s: commit: %w", op, mapErr(err))
	}
	if pw != nil && s.witness != nil && s.witness.f != nil {
		if err := s.witness.append(*pw); err != nil {
			return fmt.Errorf("%s: committed, but the checkpoint could not be witnessed (check the witness medium): %w", op, err)
		}
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
	err = s.runTx(tx, op, fn, true)
	if !errors.Is(err, errNeedDurable) {
		return err
	}
	// The transaction wrote a checkpoint (about one in DefaultCheckpointEvery): run it
	// again, durably.
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = FULL"); err != nil {
		return fmt.Errorf("%s: restore sync: %w", op, mapErr(err))
	}
	if tx, err = conn.BeginTx(ctx, nil); err != nil {
		return fmt.Errorf("%s: begin: %w", op, mapErr(err))
	}
	return s.runTx(tx, op, fn, false)
}

// errNeedDurable: a relaxed transaction wrote a witnessed checkpoint and must be run again
// with synchronous=FULL.
var errNeedDurable = errors.New("checkpoint needs a durable commit")

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
