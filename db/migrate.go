package db

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// migrations holds the schema, one file per version: NNNN_name.sql, applied in order.
// Migrations only go up; a released file is never edited, a change is a new file.
//
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
		return nil, fmt.Errorf("read embedded migrations: %w", err)
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
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", ms[i-1].name, ms[i].name, ms[i].version)
		}
	}
	return ms, nil
}

// Numbers may have gaps while branches that reserved them are merged (0002 quarantine,
// 0004 plant outbox): each migration is recorded in schema_migrations when applied, and a
// missing one is applied even when a higher one already is. Databases written before
// schema_migrations existed have applied exactly 1..user_version.

// migrationHooks run in the transaction of their migration, after its SQL.
var migrationHooks = map[int]func(s *Store, ctx context.Context, tx *sql.Tx) error{
	3: func(s *Store, ctx context.Context, tx *sql.Tx) error {
		// The rows written by an earlier release were never referenced by the ledger:
		// vouch for them as they stand now (see docs/threat-model.md for what that means).
		// The schema is that of 0003 here: the tables as they were (no certificate role yet).
		_, err := s.baselineLedger(ctx, tx, legacyCoveredTables())
		return err
	},
	7: func(s *Store, ctx context.Context, tx *sql.Tx) error {
		_, err := s.coverCertificateRoles(ctx, tx)
		return err
	},
}

// SchemaVersion is the schema version this program writes (its highest migration).
func SchemaVersion() int {
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// Version returns the schema version stored in the file (PRAGMA user_version).
func (s *Store) Version(ctx context.Context) (int, error) {
	var v int
	if err := s.rdb.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", mapErr(err))
	}
	return v, nil
}

// appliedMigrations returns the versions applied to the file, read through q.
func appliedMigrations(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) (map[int]bool, int, error) {
	var uv int
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&uv); err != nil {
		return nil, 0, err
	}
	var n int
	if err := q.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").Scan(&n); err != nil {
		return nil, 0, err
	}
	applied := map[int]bool{}
	if n == 0 {
		for v := 1; v <= uv; v++ {
			applied[v] = true
		}
		return applied, uv, nil
	}
	rows, err := q.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, 0, err
		}
		applied[v] = true
	}
	return applied, uv, rows.Err()
}

// migrate applies the missing migrations in order, each in its own IMMEDIATE transaction
// that also records it (schema_migrations, user_version), so that two processes opening a
// fresh file cannot both apply one.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	applied, uv, err := appliedMigrations(ctx, s.rdb)
	if err != nil {
		return fmt.Errorf("read schema version: %w", mapErr(err))
	}
	if uv > SchemaVersion() {
		return fmt.Errorf("schema version %d, this program knows up to %d: %w", uv, SchemaVersion(), ErrSchemaTooNew)
	}
	known := map[int]bool{}
	for _, m := range ms {
		known[m.version] = true
	}
	for v := range applied {
		if !known[v] {
			return fmt.Errorf("schema version %d applied, this program knows up to %d: %w", v, SchemaVersion(), ErrSchemaTooNew)
		}
	}
	var pending []migration
	for _, m := range ms {
		if !applied[m.version] {
			pending = append(pending, m)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	if s.readOnly {
		return fmt.Errorf("schema version %d needs migration %s: %w", uv, pending[0].name, ErrReadOnly)
	}
	for _, m := range pending {
		err := s.withTx(ctx, "migrate "+m.name, func(tx *sql.Tx) error {
			applied, uv, err := appliedMigrations(ctx, tx)
			if err != nil {
				return err
			}
			if applied[m.version] { // applied by another process meanwhile
				return nil
			}
			if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`); err != nil {
				return err
			}
			now := s.nowNanos()
			for v := range applied { // record what user_version said was applied
				if _, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO schema_migrations (version, name, applied_at) VALUES (?, '', ?)", v, now); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			if hook := migrationHooks[m.version]; hook != nil {
				if err := hook(s, ctx, tx); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)", m.version, m.name, now); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", max(uv, m.version)))
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}
