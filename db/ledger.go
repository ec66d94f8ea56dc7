package db

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
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
	{name: "certificates", noun: "certificate", what: "DER, chain, device, key, proof, validity and status",
		sel: `SELECT c.serial_hex, c.id, c.device_id, c.key_id, c.intent_id, c.issuer_key_id, c.der, ch.der, c.not_before,
			c.not_after, c.status, c.issued_at, c.delivered_at, c.confirmed_at, c.revoked_at, c.revoke_reason, c.proof
			FROM certificates c LEFT JOIN chains ch ON ch.id = c.chain_id`, keyCol: "c.serial_hex"},
	{name: "revocations", noun: "revocation", what: "serial, issuer, reason and time",
		sel: `SELECT serial_hex, serial_hex, issuer_key_id, reason, revoked_at FROM revocations`, keyCol: "serial_hex"},
	{name: "red_bin", noun: "red-bin entry", what: "chip identity, reason, certificate and release",
		sel: `SELECT CAST(id AS TEXT), id, chip_id, serial, reason, cert_serial, operator, created_at, released_at, released_by,
			release_note FROM red_bin`, keyCol: "id", keyArg: intKey},
	{name: "verifications", noun: "QA verdict", what: "device, certificate, verifier, result and detail",
		sel: `SELECT CAST(id AS TEXT), id, device_id, cert_serial, verifier, result, detail, created_at FROM verifications`, keyCol: "id", keyArg: intKey},
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
	h, err := rowHash(t.name, vals[1:])
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
