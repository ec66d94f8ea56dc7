package db

import (
	"bytes"
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
// cpEvery rows have been written since the last one.
func (s *Store) appendAudit(ctx context.Context, tx *sql.Tx, kind, actor string, detail any) error {
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
	Hash string `json:"hash"` // hex SHA-256 of row Seq
	Key  string `json:"key"`  // hex KeyID of the audit key
	Sig  string `json:"sig"`  // base64 signature over checkpointDigest
}

func (s *Store) writeCheckpoint(ctx context.Context, tx *sql.Tx, seq int64, hash []byte) error {
	sig, err := signDigest(s.auditSigner, checkpointDigest(seq, hash))
	if err != nil {
		return fmt.Errorf("sign audit checkpoint: %w", err)
	}
	d, err := json.Marshal(checkpointDetail{Seq: seq, Hash: hex.EncodeToString(hash), Key: hex.EncodeToString(s.auditKeyID),
		Sig: base64.StdEncoding.EncodeToString(sig)})
	if err != nil {
		return err
	}
	_, _, err = insertAudit(ctx, tx, seq+1, s.nowNanos(), AuditCheckpointKind, s.actor, string(d), hash)
	return err
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

// AuditBreak classifies a defect found by VerifyAudit.
type AuditBreak string

// Defects reported by VerifyAudit.
const (
	AuditEdited            AuditBreak = "edited"             // a row's content no longer matches its hash
	AuditDeleted           AuditBreak = "deleted"            // rows are missing (gap in sequence, or the tail)
	AuditInserted          AuditBreak = "inserted"           // a row does not link to its predecessor, or lies beyond the head
	AuditReordered         AuditBreak = "reordered"          // rows swapped: a row links to its successor
	AuditMissingCheckpoint AuditBreak = "missing-checkpoint" // more rows without a signed checkpoint than allowed
	AuditBadCheckpoint     AuditBreak = "bad-checkpoint"     // checkpoint signature or content invalid
)

// AuditError describes the first defect of the ledger. errors.Is(err, ErrAuditTampered) holds.
type AuditError struct {
	Kind   AuditBreak
	Seq    int64 // first row concerned
	Detail string
}

// Error describes the defect.
func (e *AuditError) Error() string {
	return fmt.Sprintf("audit ledger %s at row %d: %s", e.Kind, e.Seq, e.Detail)
}

// Is makes errors.Is(err, ErrAuditTampered) true.
func (e *AuditError) Is(target error) bool { return target == ErrAuditTampered }

// AuditVerifyOptions select the checkpoint checks of VerifyAudit.
type AuditVerifyOptions struct {
	// Keys are the audit public keys whose checkpoints are accepted. Without keys the
	// checkpoints' content is checked but not their signatures, and missing checkpoints are
	// not reported.
	Keys []crypto.PublicKey
	// MaxGap is the largest number of rows allowed after a checkpoint without the next one
	// (the writer's checkpoint interval); 0 means DefaultCheckpointEvery.
	MaxGap int
}

// AuditSummary describes a ledger that verified.
type AuditSummary struct {
	Rows        int64
	Checkpoints int64
	HeadSeq     int64
	HeadHash    []byte
}

// VerifyAudit walks the whole ledger and returns an *AuditError for the first defect: an
// edited, deleted, inserted or reordered row, a bad or missing checkpoint. Rows appended
// after the last checkpoint by someone who recomputes the hashes and the head cannot be told
// from genuine ones; the signed checkpoints bound that window.
func (s *Store) VerifyAudit(ctx context.Context, opts AuditVerifyOptions) (*AuditSummary, error) {
	maxGap := int64(opts.MaxGap)
	if maxGap <= 0 {
		maxGap = DefaultCheckpointEvery
	}
	keys := map[string]crypto.PublicKey{}
	for _, k := range opts.Keys {
		id, err := KeyID(k)
		if err != nil {
			return nil, fmt.Errorf("verify audit: %w", err)
		}
		keys[string(id)] = k
	}
	// One read transaction: a consistent snapshot even while the station appends.
	tx, err := s.rdb.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("verify audit: %w", mapErr(err))
	}
	defer tx.Rollback()
	var headSeq int64
	var headHash []byte
	if err := tx.QueryRowContext(ctx, "SELECT seq, hash FROM audit_head WHERE one = 1").Scan(&headSeq, &headHash); err != nil {
		return nil, fmt.Errorf("verify audit: head: %w", mapErr(err))
	}
	var maxSeq sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT seq FROM sqlite_sequence WHERE name = 'audit'").Scan(&maxSeq); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("verify audit: sequence: %w", mapErr(err))
	}
	rows, err := tx.QueryContext(ctx, "SELECT id, at, kind, actor, detail, prev_hash, hash FROM audit ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("verify audit: %w", mapErr(err))
	}
	defer rows.Close()
	next := func() (*AuditEntry, error) {
		if !rows.Next() {
			return nil, rows.Err()
		}
		var e AuditEntry
		var at int64
		var d string
		if err := rows.Scan(&e.Seq, &at, &e.Kind, &e.Actor, &d, &e.PrevHash, &e.Hash); err != nil {
			return nil, err
		}
		e.At, e.Detail = time.Unix(0, at), json.RawMessage(d)
		return &e, nil
	}
	sum := &AuditSummary{HeadSeq: headSeq, HeadHash: headHash}
	prevSeq, prevHash := int64(0), make([]byte, sha256.Size)
	since := int64(0) // rows since the last checkpoint
	cur, err := next()
	for err == nil && cur != nil {
		var nxt *AuditEntry
		if nxt, err = next(); err != nil {
			break
		}
		fail := func(k AuditBreak, format string, a ...any) (*AuditSummary, error) {
			return nil, &AuditError{Kind: k, Seq: cur.Seq, Detail: fmt.Sprintf(format, a...)}
		}
		if cur.Seq > headSeq {
			return fail(AuditInserted, "row lies beyond the recorded head (row %d): appended outside the store", headSeq)
		}
		if !bytes.Equal(cur.PrevHash, prevHash) {
			switch {
			case cur.Seq != prevSeq+1:
				return fail(AuditDeleted, "rows %d to %d are missing", prevSeq+1, cur.Seq-1)
			case nxt != nil && bytes.Equal(nxt.Hash, cur.PrevHash):
				return fail(AuditReordered, "row %d links to row %d that follows it", cur.Seq, nxt.Seq)
			default:
				return fail(AuditInserted, "row does not link to row %d", prevSeq)
			}
		}
		if !bytes.Equal(auditRowHash(cur.Seq, cur.At.UnixNano(), cur.Kind, cur.Actor, string(cur.Detail), cur.PrevHash), cur.Hash) {
			if cur.Seq != prevSeq+1 {
				return fail(AuditDeleted, "rows %d to %d are missing", prevSeq+1, cur.Seq-1)
			}
			return fail(AuditEdited, "content does not match its hash")
		}
		if cur.Kind == AuditCheckpointKind {
			var cp checkpointDetail
			if err := json.Unmarshal(cur.Detail, &cp); err != nil {
				return fail(AuditBadCheckpoint, "unreadable checkpoint: %v", err)
			}
			if cp.Seq != prevSeq || cp.Hash != hex.EncodeToString(prevHash) {
				return fail(AuditBadCheckpoint, "checkpoint covers row %d with another hash than the ledger's", cp.Seq)
			}
			if len(keys) > 0 {
				kid, _ := hex.DecodeString(cp.Key)
				pub, ok := keys[string(kid)]
				sig, serr := base64.StdEncoding.DecodeString(cp.Sig)
				if !ok {
					return fail(AuditBadCheckpoint, "checkpoint signed by unknown key %s", cp.Key)
				}
				if serr != nil || !verifyDigest(pub, checkpointDigest(cp.Seq, prevHash), sig) {
					return fail(AuditBadCheckpoint, "checkpoint signature invalid")
				}
			}
			sum.Checkpoints++
			since = 0
		} else {
			since++
			if len(keys) > 0 && since > maxGap {
				return fail(AuditMissingCheckpoint, "%d rows without a signed checkpoint (at most %d allowed)", since, maxGap)
			}
		}
		sum.Rows++
		prevSeq, prevHash = cur.Seq, cur.Hash
		cur = nxt
	}
	if err != nil {
		return nil, fmt.Errorf("verify audit: %w", mapErr(err))
	}
	tailFail := func(k AuditBreak, format string, a ...any) (*AuditSummary, error) {
		return nil, &AuditError{Kind: k, Seq: prevSeq + 1, Detail: fmt.Sprintf(format, a...)}
	}
	if prevSeq < headSeq || (maxSeq.Valid && prevSeq < maxSeq.Int64) {
		last := max(headSeq, maxSeq.Int64)
		return tailFail(AuditDeleted, "rows %d to %d at the end are missing", prevSeq+1, last)
	}
	if !bytes.Equal(prevHash, headHash) {
		return nil, &AuditError{Kind: AuditEdited, Seq: prevSeq, Detail: "last row does not match the recorded head"}
	}
	return sum, nil
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
