package db

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// AuditCheckpointKind is the kind of the ledger rows that carry a signed checkpoint.
const AuditCheckpointKind = "checkpoint"

const (
	auditRowDomain        = "wsc-audit-row-v1\n"
	auditCheckpointDomain = "wsc-audit-checkpoint-v1\n"
)

// AuditEntry is one row of the audit ledger.
type AuditEntry struct {
	Seq      int64
	At       time.Time
	Kind     string
	Actor    string
	Detail   json.RawMessage
	PrevHash []byte // SHA-256 of the previous row (zeros for the first)
	Hash     []byte
}

// Audit appends a row to the ledger in its own transaction. detail is stored as JSON; it
// must not contain secrets. Kind "checkpoint" is reserved.
func (s *Store) Audit(ctx context.Context, kind, actor string, detail any) error {
	if kind == "" || kind == AuditCheckpointKind {
		return fmt.Errorf("audit: invalid kind %q", kind)
	}
	return s.withTx(ctx, "audit "+kind, func(tx *sql.Tx) error {
		return s.appendAudit(ctx, tx, kind, actor, detail)
	})
}

// Checkpoint signs the ledger's current head with the audit key, unless the last row is
// already a checkpoint. It needs WithAuditSigner.
func (s *Store) Checkpoint(ctx context.Context) error {
	if s.auditSigner == nil {
		return errors.New("audit checkpoint: no audit signer configured")
	}
	return s.withTx(ctx, "audit checkpoint", func(tx *sql.Tx) error {
		seq, hash, err := auditHead(ctx, tx)
		if err != nil {
			return err
		}
		if seq == 0 {
			return nil
		}
		var kind string
		if err := tx.QueryRowContext(ctx, "SELECT kind FROM audit WHERE id = ?", seq).Scan(&kind); err != nil {
			return err
		}
		if kind == AuditCheckpointKind {
			return nil
		}
		return s.writeCheckpoint(ctx, tx, seq, hash)
	})
}

func auditHead(ctx context.Context, tx *sql.Tx) (int64, []byte, error) {
	var seq int64
	var hash []byte
	err := tx.QueryRowContext(ctx, "SELECT seq, hash FROM audit_head WHERE one = 1").Scan(&seq, &hash)
	return seq, hash, err
}

// appendAudit appends a row inside tx, moves the head, and adds a signed checkpoint when
// cpEvery rows have been written since the last one. refs are the ledger references of
// the covered rows the transaction wrote (see ledger.go); they are stored in the detail
// under "rows", which must then be a map.
func (s *Store) appendAudit(ctx context.Context, tx *sql.Tx, kind, actor string, detail any, refs ...rowRef) error {
	if len(refs) > 0 {
		m, ok := detail.(map[string]any)
		if !ok {
			return fmt.Errorf("audit %s: row references need a map detail, not %T", kind, detail)
		}
		m["rows"] = refs
	}
	var dj []byte
	switch d := detail.(type) {
	case nil:
		dj = []byte("{}")
	case json.RawMessage:
		dj = d
	default:
		var err error
		if dj, err = json.Marshal(detail); err != nil {
			return fmt.Errorf("audit detail: %w", err)
		}
	}
	seq, prev, err := auditHead(ctx, tx)
	if err != nil {
		return err
	}
	seq, hash, err := insertAudit(ctx, tx, seq+1, s.nowNanos(), kind, actor, string(dj), prev)
	if err != nil {
		return err
	}
	if s.auditSigner == nil {
		return nil
	}
	var last sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT max(id) FROM audit WHERE kind = 'checkpoint'").Scan(&last); err != nil {
		return err
	}
	if seq-last.Int64 >= int64(s.cpEvery) {
		return s.writeCheckpoint(ctx, tx, seq, hash)
	}
	return nil
}

// sealTx writes a signed checkpoint of the current head inside tx right away (when a
// signer is configured), so that a security-relevant record (a revocation) is anchored in
// the witness file as soon as it is committed instead of waiting for the interval.
func (s *Store) sealTx(ctx context.Context, tx *sql.Tx) error {
	if s.auditSigner == nil {
		return nil
	}
	seq, hash, err := auditHead(ctx, tx)
	if err != nil || seq == 0 {
		return err
	}
	var kind string
	if err := tx.QueryRowContext(ctx, "SELECT kind FROM audit WHERE id = ?", seq).Scan(&kind); err != nil {
		return err
	}
	if kind == AuditCheckpointKind { // the interval just sealed it
		return nil
	}
	return s.writeCheckpoint(ctx, tx, seq, hash)
}

func insertAudit(ctx context.Context, tx *sql.Tx, seq, at int64, kind, actor, detail string, prev []byte) (int64, []byte, error) {
	h := auditRowHash(seq, at, kind, actor, detail, prev)
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit (id, at, kind, actor, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		seq, at, kind, actor, detail, prev, h); err != nil {
		return 0, nil, err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE audit_head SET seq = ?, hash = ? WHERE one = 1", seq, h); err != nil {
		return 0, nil, err
	}
	return seq, h, nil
}

type checkpointDetail struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`          // hex SHA-256 of row Seq
	Key  string `json:"key"`           // hex KeyID of the audit key
	Sig  string `json:"sig"`           // base64 signature over checkpointDigest
	Pub  string `json:"pub,omitempty"` // base64 PKIX public key; trusted only when its KeyID is pinned
}

func (s *Store) writeCheckpoint(ctx context.Context, tx *sql.Tx, seq int64, hash []byte) error {
	sig, err := signDigest(s.auditSigner, checkpointDigest(seq, hash))
	if err != nil {
		return fmt.Errorf("sign audit checkpoint: %w", err)
	}
	cp := checkpointDetail{Seq: seq, Hash: hex.EncodeToString(hash), Key: hex.EncodeToString(s.auditKeyID),
		Sig: base64.StdEncoding.EncodeToString(sig), Pub: base64.StdEncoding.EncodeToString(s.auditPubDER)}
	d, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	at := s.nowNanos()
	if _, _, err = insertAudit(ctx, tx, seq+1, at, AuditCheckpointKind, s.actor, string(d), hash); err != nil {
		return err
	}
	if s.witness != nil {
		// Appended to the witness file after the commit (withTx), never before: a
		// witnessed checkpoint is always one the database holds.
		s.pendingWitness = &WitnessLine{Seq: seq, Hash: cp.Hash, Key: cp.Key, Pub: cp.Pub, Sig: cp.Sig,
			At: fromNanos(at).Format(time.RFC3339Nano)}
	}
	return nil
}

// auditRowHash is SHA-256 over the row's fields, length-prefixed, and the previous hash.
func auditRowHash(seq, at int64, kind, actor, detail string, prev []byte) []byte {
	h := sha256.New()
	var b [8]byte
	h.Write([]byte(auditRowDomain))
	binary.BigEndian.PutUint64(b[:], uint64(seq))
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(at))
	h.Write(b[:])
	for _, f := range []string{kind, actor, detail} {
		binary.BigEndian.PutUint64(b[:], uint64(len(f)))
		h.Write(b[:])
		h.Write([]byte(f))
	}
	h.Write(prev)
	return h.Sum(nil)
}

func checkpointDigest(seq int64, hash []byte) []byte {
	h := sha256.New()
	h.Write([]byte(auditCheckpointDomain))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seq))
	h.Write(b[:])
	h.Write(hash)
	return h.Sum(nil)
}

// KeyID is the SHA-256 of a public key's PKIX encoding.
func KeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("key id: %w", err)
	}
	return KeyHash(der), nil
}

func signDigest(signer crypto.Signer, digest []byte) ([]byte, error) {
	if _, ok := signer.Public().(ed25519.PublicKey); ok {
		return signer.Sign(rand.Reader, digest, crypto.Hash(0)) // Ed25519 signs the digest as its message
	}
	return signer.Sign(rand.Reader, digest, crypto.SHA256)
}

func verifyDigest(pub crypto.PublicKey, digest, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, digest, sig)
	case ed25519.PublicKey:
		return ed25519.Verify(k, digest, sig)
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) == nil
	}
	return false
}

// AuditEntries returns ledger rows with sequence numbers in [from, to] (to <= 0: to the end).
func (s *Store) AuditEntries(ctx context.Context, from, to int64) ([]AuditEntry, error) {
	if to <= 0 {
		to = 1<<63 - 1
	}
	rows, err := s.rdb.QueryContext(ctx, "SELECT id, at, kind, actor, detail, prev_hash, hash FROM audit WHERE id BETWEEN ? AND ? ORDER BY id", from, to)
	if err != nil {
		return nil, fmt.Errorf("audit entries: %w", mapErr(err))
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var at int64
		var d string
		if err := rows.Scan(&e.Seq, &at, &e.Kind, &e.Actor, &d, &e.PrevHash, &e.Hash); err != nil {
			return nil, fmt.Errorf("audit entries: %w", mapErr(err))
		}
		e.At, e.Detail = time.Unix(0, at).UTC(), json.RawMessage(d)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit entries: %w", mapErr(err))
	}
	return out, nil
}
