// Package plant is the plant registry on PostgreSQL: it witnesses every station's audit
// ledger (a batch is accepted only if it extends the chain already held, checkpoints are
// verified against the station's pinned audit key), stores the records derived from it
// (device bindings, certificates, runs, revocations), runs the plant-wide checks and the
// reports. Each station writes through its own PostgreSQL role, INSERT-only and limited by
// row-level security to its own rows; the station side is the outbox in package db, sent by
// a Syncer.
package plant

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Sentinel errors; callers branch with errors.Is.
var (
	// ErrTampered: a batch contradicts what the registry witnessed (a fork, a truncation, a
	// row whose content does not match its hash, a bad checkpoint). An alarm was raised.
	ErrTampered = errors.New("plant: station ledger contradicts the registry")
	// ErrGap: a batch does not start where the registry's copy of the chain ends.
	ErrGap = errors.New("plant: batch does not continue the registry's chain")
	// ErrUnknownCertificate: the registry has no certificate with that serial.
	ErrUnknownCertificate = errors.New("the registry has no such certificate")
	// ErrBadReason: a revocation reason that is not an RFC 5280 name.
	ErrBadReason = errors.New("unknown revocation reason")
	// ErrUnknownStation: the station is not registered (wsc plant station add).
	ErrUnknownStation = errors.New("plant: unknown station")
	// ErrForbidden: PostgreSQL refused the write (role, grants or row-level security).
	ErrForbidden = errors.New("plant: write refused by the registry's access rules")
	// ErrUnavailable: the registry cannot be reached; the outbox keeps the records.
	ErrUnavailable = errors.New("plant: registry unreachable")
	// ErrSchema: the registry's schema is missing or newer than this program.
	ErrSchema = errors.New("plant: registry schema")
)

// Registry is a connection pool to the plant database.
type Registry struct {
	pool  *pgxpool.Pool
	fault func(point string) // test hook at named points of an ingest
}

// Open connects to the registry at dsn (a libpq connection string or URL; for a station:
// sslmode=verify-full with sslcert/sslkey of its client certificate).
func Open(ctx context.Context, dsn string) (*Registry, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("plant registry: connection string: %w", redact(err))
	}
	if cfg.MaxConns > 8 {
		cfg.MaxConns = 8
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("plant registry: %w", mapErr(err))
	}
	return &Registry{pool: pool}, nil
}

// Close closes the pool.
func (r *Registry) Close() { r.pool.Close() }

// Pool exposes the connection pool (for reports and tests).
func (r *Registry) Pool() *pgxpool.Pool { return r.pool }

var pwRE = regexp.MustCompile(`(?i)(password=)\S+`)

// redact removes a password from a connection-string parse error.
func redact(err error) error {
	return errors.New(pwRE.ReplaceAllString(err.Error(), "${1}xxxxx"))
}

// mapErr maps driver errors to the package's sentinels.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "42501": // insufficient_privilege, including row-level security violations
			return fmt.Errorf("%w: %w", ErrForbidden, err)
		case "WS002", "WS003":
			return fmt.Errorf("%w: %w", ErrTampered, err)
		case "WS001":
			return fmt.Errorf("%w: %w", ErrGap, err)
		case "57P01", "57P02", "57P03", "53300": // shutdown, crash, starting up, too many connections
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		case "42P01", "42883": // undefined table / function
			return fmt.Errorf("%w: %w (run wsc plant init)", ErrSchema, err)
		}
		if strings.HasPrefix(pe.Code, "08") { // connection exceptions
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) || isConnErr(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

func isConnErr(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	s := err.Error()
	for _, m := range []string{"connection refused", "connection reset", "broken pipe", "unexpected EOF", "conn closed",
		"failed to connect", "i/o timeout", "no such host", "server closed", "EOF"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

//go:embed migrations/*.sql
var migrations embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	ents, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range ents {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %q: name must be NNNN_name.sql", e.Name())
		}
		b, err := migrations.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: expected version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// SchemaVersion is the registry schema version this program writes.
func SchemaVersion() int {
	ms, _ := loadMigrations()
	return len(ms)
}

// Migrate applies the missing migrations, each in its own transaction, under an advisory
// lock so that two `wsc plant init` cannot both apply one. It needs a role that may create
// tables and roles (the plant's administrator). It returns the versions applied.
func (r *Registry) Migrate(ctx context.Context) ([]int, error) {
	ms, err := loadMigrations()
	if err != nil {
		return nil, err
	}
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("plant migrate: %w", mapErr(err))
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(7715001)"); err != nil {
		return nil, fmt.Errorf("plant migrate: lock: %w", mapErr(err))
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(7715001)")
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("plant migrate: %w", mapErr(err))
	}
	var cur int
	if err := conn.QueryRow(ctx, "SELECT COALESCE(max(version), 0) FROM schema_migrations").Scan(&cur); err != nil {
		return nil, fmt.Errorf("plant migrate: %w", mapErr(err))
	}
	if cur > len(ms) {
		return nil, fmt.Errorf("%w: version %d, this program knows %d: use a newer wsc", ErrSchema, cur, len(ms))
	}
	var applied []int
	for _, m := range ms[cur:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("plant migrate %s: %w", m.name, mapErr(err))
		}
		applied = append(applied, m.version)
	}
	return applied, nil
}

var roleRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// AddStation registers a station: its id, the PostgreSQL login role it connects as (created
// if missing, member of wsc_station: INSERT/SELECT on its own rows only) and its pinned
// audit public key. Run by the plant's administrator. Re-adding with the same key is a
// no-op; another key is refused (re-pinning is a deliberate, separate act).
func (r *Registry) AddStation(ctx context.Context, id, role string, auditKey crypto.PublicKey) error {
	if !roleRE.MatchString(role) {
		return fmt.Errorf("add station %s: role %q: use lower-case letters, digits and _", id, role)
	}
	der, err := x509.MarshalPKIXPublicKey(auditKey)
	if err != nil {
		return fmt.Errorf("add station %s: audit key: %w", id, err)
	}
	kid := sha256.Sum256(der)
	return pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		var have []byte
		err := tx.QueryRow(ctx, "SELECT audit_key FROM stations WHERE id = $1", id).Scan(&have)
		if err == nil {
			if string(have) != string(der) {
				return fmt.Errorf("add station %s: already registered with another audit key: %w", id, ErrTampered)
			}
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("add station %s: %w", id, mapErr(err))
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
			return fmt.Errorf("add station %s: %w", id, mapErr(err))
		}
		q := pgx.Identifier{role}.Sanitize()
		if !exists {
			if _, err := tx.Exec(ctx, "CREATE ROLE "+q+" LOGIN"); err != nil {
				return fmt.Errorf("add station %s: create role: %w", id, mapErr(err))
			}
		}
		if _, err := tx.Exec(ctx, "GRANT wsc_station TO "+q); err != nil {
			return fmt.Errorf("add station %s: grant: %w", id, mapErr(err))
		}
		if _, err := tx.Exec(ctx, "INSERT INTO stations (id, role, audit_key, audit_key_id) VALUES ($1, $2, $3, $4)",
			id, role, der, kid[:]); err != nil {
			return fmt.Errorf("add station %s: %w", id, mapErr(err))
		}
		return nil
	})
}

// AddReader creates (if missing) a read-only login role for dashboards and reports.
func (r *Registry) AddReader(ctx context.Context, role string) error {
	if !roleRE.MatchString(role) {
		return fmt.Errorf("add reader: role %q: use lower-case letters, digits and _", role)
	}
	q := pgx.Identifier{role}.Sanitize()
	return pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
			return mapErr(err)
		}
		if !exists {
			if _, err := tx.Exec(ctx, "CREATE ROLE "+q+" LOGIN"); err != nil {
				return fmt.Errorf("add reader: %w", mapErr(err))
			}
		}
		_, err := tx.Exec(ctx, "GRANT wsc_reader TO "+q)
		return mapErr(err)
	})
}
