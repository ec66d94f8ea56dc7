package db

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
)

// Row coverage: every row of a covered table is vouched for by the ledger. Each write
// to a covered row appends, in the same transaction, an audit entry whose detail carries
// the SHA-256 of the row as it now stands ("rows": [{"t": table, "k": key, "h": hash}]).
// VerifyAudit replays those references and compares the last one of every row with the
// row in the table: an edited, deleted or smuggled-in row shows.
//
// Adding a table is one entry in coveredTables (and an audit reference wherever the
// store writes that table).

// coveredTable describes how a table's rows are hashed for the ledger.
type coveredTable struct {
	name string // table name, as written in the references
	noun string // what a row is, for messages ("certificate", "device binding")
	what string // what the hash covers, for messages
	// sel selects the key (TEXT) and then the hashed columns of all rows; keyCol is the
	// indexed column that selects one row by key (sel + " WHERE " + keyCol + " = ?"), and
	// keyArg converts a key to that column's value (nil: the key itself).
	sel    string
	keyCol string
	keyArg func(key string) (any, error)
	// optTail is the number of trailing columns of sel that are hashed only when they are
	// not NULL: a column added to the hash later is selected as NULL for the values every
	// existing row has, so that those rows keep the hash the ledger recorded for them.
	optTail int
	// since is the migration from which the ledger covers the table (0: from 0003).
	since int
	// legacySel replaces sel in migration hooks that run before the schema has the
	// optional tail's columns (the hashes are the same: the tail is NULL there).
	legacySel string
}

// intKey selects a row of an INTEGER PRIMARY KEY table by its decimal key.
func intKey(k string) (any, error) { return strconv.ParseInt(k, 10, 64) }

// hexKey selects a row by a BLOB column whose key is its upper-case hex.
func hexKey(k string) (any, error) { return hex.DecodeString(k) }

// coveredTables are the tables whose every row the ledger vouches for, in the order
// VerifyAudit reports them.
var coveredTables = []coveredTable{
	{name: "work_orders", noun: "work order", what: "product, quantity, profile and lock policy",
		sel: `SELECT id, id, product, quantity, profile, lock_policy, created_at FROM work_orders`, keyCol: "id"},
	{name: "operators", noun: "operator", what: "name, role and PIN hash",
		sel: `SELECT id, id, name, role, pin_hash FROM operators`, keyCol: "id"},
	{name: "devices", noun: "device binding", what: "serial, chip identity hash (ek_pub_hash), backend and proof",
		sel: `SELECT serial, id, serial, ek_pub_hash, backend, proof FROM devices`, keyCol: "serial"},
	{name: "keys", noun: "device key", what: "public key and owning device",
		sel: `SELECT hex(pub_hash), id, device_id, pub_hash, public_der FROM keys`, keyCol: "pub_hash", keyArg: hexKey},
	{name: "certificates", noun: "certificate", what: "DER, chain, device, key, proof, validity, status and role",
		sel: certificatesSel(`, NULLIF(c.role, 'idevid')`), keyCol: "c.serial_hex", optTail: 1, legacySel: certificatesSel("")},
	{name: "revocations", noun: "revocation", what: "serial, issuer, reason and time",
		sel: `SELECT serial_hex, serial_hex, issuer_key_id, reason, revoked_at FROM revocations`, keyCol: "serial_hex"},
	{name: "red_bin", noun: "red-bin entry", what: "chip identity, reason, certificate and release",
		sel: `SELECT CAST(id AS TEXT), id, chip_id, serial, reason, cert_serial, operator, created_at, released_at, released_by,
			release_note FROM red_bin`, keyCol: "id", keyArg: intKey},
	{name: "verifications", noun: "QA verdict", what: "device, certificate, verifier, result and detail",
		sel: `SELECT CAST(id AS TEXT), id, device_id, cert_serial, verifier, result, detail, created_at FROM verifications`, keyCol: "id", keyArg: intKey},
	// The state decides whether the line gate sends a device to the RMA desk: an edited
	// 'abandoned' must show.
	{name: "owner_auths", noun: "owner authorisation record", what: "device, run, chip, policy, sealed value and state",
		sel: `SELECT CAST(o.id AS TEXT), o.id, d.serial, o.run_id, o.chip_id, o.work_order, o.policy, o.escrow_key_id, o.suite, o.enc, o.sealed,
			o.state, o.created_at, o.set_at, o.abandoned_at, o.abandon_reason FROM owner_auths o JOIN devices d ON d.id = o.device_id`,
		keyCol: "o.id", keyArg: intKey, since: 7},
}

// certificatesSel selects the hashed columns of certificates, then tail.
//
// The role (migration 0006: 'idevid', the identity certificate, or 'ldevid', the
// code-signing certificate) is hashed since migration 0007, as NULLIF(role, 'idevid') in the
// optional tail: an idevid row hashes exactly as before, so every row written by the first
// release (commit 16acf11, no roles: all idevid) and every idevid row of later databases
// still verifies, while flipping a row's role either way with the sqlite3 CLI changes its
// hash. ldevid rows exist only in databases written by the unreleased session-3 code (after
// 0006, before 0007); their references hash without the role. Migration 0007 re-vouches for
// each of them with the role included — only when the row still matches its last reference,
// so that a row edited before the migration still shows as edited (hook in migrate.go,
// coverCertificateRoles). A role flipped before 0007 cannot be told from a genuine one.
func certificatesSel(tail string) string {
	return `SELECT c.serial_hex, c.id, c.device_id, c.key_id, c.intent_id, c.issuer_key_id, c.der, ch.der, c.not_before,
			c.not_after, c.status, c.issued_at, c.delivered_at, c.confirmed_at, c.revoked_at, c.revoke_reason, c.proof` + tail + `
			FROM certificates c LEFT JOIN chains ch ON ch.id = c.chain_id`
}

// legacyCoveredTables is coveredTables as the migration hook of 0003 sees them: the tables
// covered since then, without the columns later migrations added (certificate roles).
func legacyCoveredTables() []coveredTable {
	var out []coveredTable
	for _, t := range coveredTables {
		if t.since != 0 {
			continue
		}
		if t.legacySel != "" {
			t.sel, t.optTail, t.legacySel = t.legacySel, 0, ""
		}
		out = append(out, t)
	}
	return out
}

// coveredSince returns the tables the ledger covers from migration v on.
func coveredSince(v int) []coveredTable {
	var out []coveredTable
	for _, t := range coveredTables {
		if t.since == v {
			out = append(out, t)
		}
	}
	return out
}

// coverCertificateRoles is migration 0007's hook: the certificate role joins the row hash
// (see certificatesSel), owner_auths joins the covered tables. Every ldevid certificate row
// whose last ledger reference matches its hash without the role is vouched for again with
// the role ("ledger.role-covered"); a row that no longer matches its reference is left
// alone, so that VerifyAudit still reports it edited. The owner_auths rows present are
// vouched for as they stand ("ledger.baseline"). It returns the number of rows re-vouched.
func (s *Store) coverCertificateRoles(ctx context.Context, tx *sql.Tx) (int, error) {
	legacy := coveredTable{name: "certificates", sel: certificatesSel("")}
	rows, err := tx.QueryContext(ctx, legacy.sel+" WHERE c.role <> 'idevid'")
	if err != nil {
		return 0, fmt.Errorf("certificate roles: %w", err)
	}
	cols, err := rows.Columns()
	if err != nil {
		rows.Close()
		return 0, err
	}
	old := map[string]string{}
	for rows.Next() {
		k, h, err := scanCovered(legacy, rows, len(cols))
		if err != nil {
			rows.Close()
			return 0, fmt.Errorf("certificate roles: %w", err)
		}
		old[k] = hex.EncodeToString(h)
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if _, err := s.baselineLedger(ctx, tx, coveredSince(7)); err != nil {
		return 0, err
	}
	if len(old) == 0 {
		return 0, nil
	}
	last, err := lastRefs(ctx, tx, "certificates", old)
	if err != nil {
		return 0, err
	}
	var keys []string
	for k, h := range old {
		if last[k] == h {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return 0, nil
	}
	sort.Strings(keys)
	refs, err := s.refRows(ctx, tx, "certificates", keys...)
	if err != nil {
		return 0, err
	}
	for i := 0; i < len(refs); i += baselineChunk {
		chunk := refs[i:min(i+baselineChunk, len(refs))]
		if err := s.appendAudit(ctx, tx, "ledger.role-covered", s.actor, map[string]any{"table": "certificates"}, chunk...); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// lastRefs returns the hash of the last ledger reference of each of the given rows of table.
func lastRefs(ctx context.Context, tx *sql.Tx, table string, want map[string]string) (map[string]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT detail FROM audit WHERE instr(detail, '"rows"') > 0 ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("ledger references of %s: %w", table, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var d []byte
		if err := rows.Scan(&d); err != nil {
			return nil, err
		}
		var v struct {
			Rows []rowRef `json:"rows"`
		}
		if err := json.Unmarshal(d, &v); err != nil {
			return nil, fmt.Errorf("ledger references of %s: unreadable detail: %w", table, err)
		}
		for _, r := range v.Rows {
			if _, ok := want[r.Key]; ok && r.Table == table {
				out[r.Key] = r.Hash
			}
		}
	}
	return out, rows.Err()
}

func coveredTableByName(name string) (coveredTable, bool) {
	for _, t := range coveredTables {
		if t.name == name {
			return t, true
		}
	}
	return coveredTable{}, false
}

// rowRef is a ledger entry's reference to a row: table, key and SHA-256 of the row's
// covered columns (empty: the row was deleted).
type rowRef struct {
	Table string `json:"t"`
	Key   string `json:"k"`
	Hash  string `json:"h"`
}

const rowHashDomain = "wsc-ledger-row-v1\n"

// rowHash is SHA-256 over the table name and the row's columns, each tagged with its type
// and length-prefixed, so that no two different rows share an encoding.
func rowHash(table string, cols []any) ([]byte, error) {
	h := sha256.New()
	var b [9]byte
	h.Write([]byte(rowHashDomain))
	writeBytes := func(tag byte, p []byte) {
		b[0] = tag
		binary.BigEndian.PutUint64(b[1:], uint64(len(p)))
		h.Write(b[:])
		h.Write(p)
	}
	writeBytes('t', []byte(table))
	for i, c := range cols {
		switch v := c.(type) {
		case nil:
			b[0] = 'n'
			h.Write(b[:1])
		case int64:
			b[0] = 'i'
			binary.BigEndian.PutUint64(b[1:], uint64(v))
			h.Write(b[:])
		case float64:
			b[0] = 'f'
			binary.BigEndian.PutUint64(b[1:], math.Float64bits(v))
			h.Write(b[:])
		case string:
			writeBytes('s', []byte(v))
		case []byte:
			writeBytes('b', v)
		default:
			return nil, fmt.Errorf("row hash of %s: column %d has unsupported type %T", table, i, c)
		}
	}
	return h.Sum(nil), nil
}

// scanCovered scans a row of sel: the key, then the hashed columns.
func scanCovered(t coveredTable, r interface{ Scan(...any) error }, ncols int) (string, []byte, error) {
	vals := make([]any, ncols)
	ptrs := make([]any, ncols)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := r.Scan(ptrs...); err != nil {
		return "", nil, err
	}
	var key string
	switch k := vals[0].(type) {
	case string:
		key = k
	case []byte:
		key = string(k)
	case int64:
		key = fmt.Sprint(k)
	default:
		return "", nil, fmt.Errorf("%s: key of type %T", t.name, vals[0])
	}
	cols := vals[1:]
	for i := 0; i < t.optTail && len(cols) > 0 && cols[len(cols)-1] == nil; i++ {
		cols = cols[:len(cols)-1]
	}
	h, err := rowHash(t.name, cols)
	return key, h, err
}

// prepareRefs prepares the single-row selects of the covered tables on the writer, so
// that a reference costs a lookup and a hash, not a parse.
func (s *Store) prepareRefs(ctx context.Context) error {
	s.refStmts = make(map[string]*sql.Stmt, len(coveredTables))
	for _, t := range coveredTables {
		st, err := s.db.PrepareContext(ctx, t.sel+" WHERE "+t.keyCol+" = ?")
		if err != nil {
			return fmt.Errorf("prepare ledger reference of %s: %w", t.name, mapErr(err))
		}
		s.refStmts[t.name] = st
	}
	return nil
}

// refRows computes the references of the given rows of one covered table as they stand
// in tx; a row that does not exist gets an empty hash (deleted).
func (s *Store) refRows(ctx context.Context, tx *sql.Tx, table string, keys ...string) ([]rowRef, error) {
	t, ok := coveredTableByName(table)
	if !ok {
		return nil, fmt.Errorf("ledger: table %s is not covered", table)
	}
	out := make([]rowRef, 0, len(keys))
	for _, k := range keys {
		var arg any = k
		if t.keyArg != nil {
			var err error
			if arg, err = t.keyArg(k); err != nil {
				return nil, fmt.Errorf("ledger reference %s %q: %w", t.noun, k, err)
			}
		}
		var rows *sql.Rows
		var err error
		if st := s.refStmts[table]; st != nil {
			rows, err = tx.StmtContext(ctx, st).QueryContext(ctx, arg)
		} else {
			rows, err = tx.QueryContext(ctx, t.sel+" WHERE "+t.keyCol+" = ?", arg)
		}
		if err != nil {
			return nil, fmt.Errorf("ledger reference %s %s: %w", t.noun, k, err)
		}
		cols, err := rows.Columns()
		if err != nil {
			rows.Close()
			return nil, err
		}
		ref := rowRef{Table: table, Key: k}
		if rows.Next() {
			_, h, err := scanCovered(t, rows, len(cols))
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("ledger reference %s %s: %w", t.noun, k, err)
			}
			ref.Hash = hex.EncodeToString(h)
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		out = append(out, ref)
	}
	return out, nil
}

// baselineChunk is the number of row references per baseline entry.
const baselineChunk = 500

// baselineLedger appends "ledger.baseline" entries that vouch for every row of the covered
// tables as they stand (used when a database of an earlier release is migrated: its rows
// were never referenced by the ledger). It returns the number of rows referenced.
func (s *Store) baselineLedger(ctx context.Context, tx *sql.Tx, tables []coveredTable) (int, error) {
	total := 0
	for _, t := range tables {
		rows, err := tx.QueryContext(ctx, t.sel)
		if err != nil {
			return total, fmt.Errorf("ledger baseline of %s: %w", t.name, err)
		}
		cols, err := rows.Columns()
		if err != nil {
			rows.Close()
			return total, err
		}
		var refs []rowRef
		for rows.Next() {
			k, h, err := scanCovered(t, rows, len(cols))
			if err != nil {
				rows.Close()
				return total, fmt.Errorf("ledger baseline of %s: %w", t.name, err)
			}
			refs = append(refs, rowRef{Table: t.name, Key: k, Hash: hex.EncodeToString(h)})
		}
		if err := rows.Close(); err != nil {
			return total, err
		}
		if err := rows.Err(); err != nil {
			return total, err
		}
		for i := 0; i < len(refs); i += baselineChunk {
			chunk := refs[i:min(i+baselineChunk, len(refs))]
			if err := s.appendAudit(ctx, tx, "ledger.baseline", s.actor, map[string]any{"table": t.name}, chunk...); err != nil {
				return total, err
			}
		}
		total += len(refs)
	}
	return total, nil
}
