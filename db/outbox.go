package db

import (
	"context"
	"crypto"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The outbox holds what the station still has to send to the plant registry: one row per
// ledger row and per finished run, inserted by triggers (migration 0004) in the same
// transaction as the record, so a record and its outbox row exist together or not at all.

// OutboxItem is one pending record: a ledger row (Entry) or a finished run (Run).
type OutboxItem struct {
	ID        int64
	Entry     *AuditEntry     // the ledger row, or nil
	Run       *Run            // the finished run, or nil
	Payload   json.RawMessage // facts the ledger row refers to (certificate, device binding); nil if none
	Attempts  int
	LastError string
}

// CertificateFacts is the payload sent with a "cert.issue" ledger row: what the plant needs to
// know about the certificate and the device it binds, read from the station's tables.
type CertificateFacts struct {
	Serial      string    `json:"serial"`
	Device      string    `json:"device"`
	DER         []byte    `json:"der"`
	IssuerKeyID string    `json:"issuer"`
	KeyHash     string    `json:"key"`
	EKHash      string    `json:"ek,omitempty"`
	Backend     string    `json:"backend,omitempty"`
	Model       string    `json:"model,omitempty"`
	WorkOrder   string    `json:"work_order,omitempty"`
	RunID       int64     `json:"run,omitempty"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
}

// Pending returns up to limit unsent outbox rows in order.
func (s *Store) Pending(ctx context.Context, limit int) ([]OutboxItem, error) {
	if limit <= 0 {
		limit = 500
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT o.id, o.attempts, o.last_error,
		a.id, a.at, a.kind, a.actor, a.detail, a.prev_hash, a.hash, o.run_id
		FROM outbox o LEFT JOIN audit a ON a.id = o.audit_seq
		WHERE o.sent_at IS NULL ORDER BY o.id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("outbox pending: %w", mapErr(err))
	}
	var out []OutboxItem
	for rows.Next() {
		var it OutboxItem
		var seq, at, run sql.NullInt64
		var kind, actor, detail sql.NullString
		var prev, hash []byte
		if err := rows.Scan(&it.ID, &it.Attempts, &it.LastError, &seq, &at, &kind, &actor, &detail, &prev, &hash, &run); err != nil {
			rows.Close()
			return nil, fmt.Errorf("outbox pending: %w", mapErr(err))
		}
		switch {
		case seq.Valid:
			it.Entry = &AuditEntry{Seq: seq.Int64, At: time.Unix(0, at.Int64).UTC(), Kind: kind.String, Actor: actor.String,
				Detail: json.RawMessage(detail.String), PrevHash: prev, Hash: hash}
		case run.Valid:
			it.Run = &Run{ID: run.Int64}
		default:
			rows.Close()
			return nil, fmt.Errorf("outbox row %d: its ledger row is missing: %w", it.ID, ErrAuditTampered)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return nil, fmt.Errorf("outbox pending: %w", mapErr(err))
	}
	rows.Close()
	for i := range out {
		it := &out[i]
		switch {
		case it.Run != nil:
			r, err := s.GetRun(ctx, it.Run.ID)
			if err != nil {
				return nil, fmt.Errorf("outbox row %d: %w", it.ID, err)
			}
			it.Run = r
		case it.Entry.Kind == "cert.issue":
			var d struct {
				Serial string `json:"serial"`
			}
			if err := json.Unmarshal(it.Entry.Detail, &d); err != nil {
				return nil, fmt.Errorf("outbox row %d: ledger row %d: %w", it.ID, it.Entry.Seq, err)
			}
			f, err := s.certificateFacts(ctx, d.Serial)
			if err != nil {
				return nil, fmt.Errorf("outbox row %d: %w", it.ID, err)
			}
			if it.Payload, err = json.Marshal(f); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func (s *Store) certificateFacts(ctx context.Context, serial string) (*CertificateFacts, error) {
	var f CertificateFacts
	var issuer, key, ek []byte
	var wo sql.NullString
	var run sql.NullInt64
	var nb, na int64
	err := s.rdb.QueryRowContext(ctx, `SELECT c.serial_hex, d.serial, c.der, c.issuer_key_id, k.pub_hash, d.ek_pub_hash,
		d.backend, d.model, i.work_order, i.run_id, c.not_before, c.not_after
		FROM certificates c JOIN devices d ON d.id = c.device_id JOIN keys k ON k.id = c.key_id
		LEFT JOIN issue_intents i ON i.id = c.intent_id WHERE c.serial_hex = ?`, serial).
		Scan(&f.Serial, &f.Device, &f.DER, &issuer, &key, &ek, &f.Backend, &f.Model, &wo, &run, &nb, &na)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", serial, mapErr(err))
	}
	f.IssuerKeyID, f.KeyHash, f.EKHash = hex.EncodeToString(issuer), hex.EncodeToString(key), hex.EncodeToString(ek)
	f.WorkOrder, f.RunID = wo.String, run.Int64
	f.NotBefore, f.NotAfter = time.Unix(0, nb).UTC(), time.Unix(0, na).UTC()
	return &f, nil
}

// MarkSent records that the registry acknowledged outbox rows ids (in one transaction).
func (s *Store) MarkSent(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	return s.withTxRelaxed(ctx, "outbox mark sent", func(tx *sql.Tx) error {
		now := s.nowNanos()
		st, err := tx.PrepareContext(ctx, "UPDATE outbox SET sent_at = ? WHERE id = ? AND sent_at IS NULL")
		if err != nil {
			return err
		}
		defer st.Close()
		for _, id := range ids {
			if _, err := st.ExecContext(ctx, now, id); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, "UPDATE outbox_state SET last_sent_at = ?, failing_since = NULL, last_error = '' WHERE one = 1", now)
		return err
	})
}

// MarkFailed records a failed send of outbox rows ids: their attempt count and last error,
// and since when the link fails. The message must not contain secrets (it is shown).
func (s *Store) MarkFailed(ctx context.Context, ids []int64, sendErr error) error {
	msg := "unknown error"
	if sendErr != nil {
		msg = sendErr.Error()
	}
	return s.withTxRelaxed(ctx, "outbox mark failed", func(tx *sql.Tx) error {
		now := s.nowNanos()
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `UPDATE outbox SET attempts = attempts + 1, last_error = ?, last_attempt_at = ?
				WHERE id = ? AND sent_at IS NULL`, msg, now, id); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, "UPDATE outbox_state SET failing_since = COALESCE(failing_since, ?), last_error = ? WHERE one = 1", now, msg)
		return err
	})
}

// OutboxStatus is the link to the plant as the operator screen shows it.
type OutboxStatus struct {
	Pending      int        // rows not yet acknowledged
	OldestAt     *time.Time // creation time of the oldest pending row
	LastSentAt   *time.Time // last acknowledgement
	FailingSince *time.Time // first failed send since the last success; nil when the link works
	LastError    string
}

// String is the one-line summary: "plant: in sync", "plant: 12 behind",
// "plant: offline since 14:02:05 (12 behind)".
func (st OutboxStatus) String() string {
	switch {
	case st.FailingSince != nil:
		return fmt.Sprintf("plant: offline since %s (%d behind)", st.FailingSince.Local().Format("2006-01-02 15:04:05"), st.Pending)
	case st.Pending == 0:
		return "plant: in sync"
	default:
		return fmt.Sprintf("plant: %d behind", st.Pending)
	}
}

// OutboxStatus returns the state of the link to the plant.
func (s *Store) OutboxStatus(ctx context.Context) (OutboxStatus, error) {
	var st OutboxStatus
	var oldest, sent, failing sql.NullInt64
	err := s.rdb.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM outbox WHERE sent_at IS NULL),
		(SELECT min(created_at) FROM outbox WHERE sent_at IS NULL), last_sent_at, failing_since, last_error
		FROM outbox_state WHERE one = 1`).Scan(&st.Pending, &oldest, &sent, &failing, &st.LastError)
	if err != nil {
		return st, fmt.Errorf("outbox status: %w", mapErr(err))
	}
	tp := func(v sql.NullInt64) *time.Time {
		if !v.Valid {
			return nil
		}
		t := time.Unix(0, v.Int64).UTC()
		return &t
	}
	st.OldestAt, st.LastSentAt, st.FailingSince = tp(oldest), tp(sent), tp(failing)
	return st, nil
}

// AuditHead returns the sequence number and hash of the ledger's last row (0 and zeros
// when empty).
func (s *Store) AuditHead(ctx context.Context) (int64, []byte, error) {
	var seq int64
	var hash []byte
	if err := s.rdb.QueryRowContext(ctx, "SELECT seq, hash FROM audit_head WHERE one = 1").Scan(&seq, &hash); err != nil {
		return 0, nil, fmt.Errorf("audit head: %w", mapErr(err))
	}
	return seq, hash, nil
}

// AuditRowHash is the hash a ledger row must carry, for verifiers outside this package (the
// plant registry recomputes every row it witnesses).
func AuditRowHash(e AuditEntry) []byte {
	return auditRowHash(e.Seq, e.At.UnixNano(), e.Kind, e.Actor, string(e.Detail), e.PrevHash)
}

// CheckpointDigest is the digest a checkpoint row's signature covers: the checkpointed
// row's sequence number and hash, domain-separated.
func CheckpointDigest(seq int64, hash []byte) []byte { return checkpointDigest(seq, hash) }

// Checkpoint is the content of a "checkpoint" ledger row.
type Checkpoint struct {
	Seq   int64  // the row it covers
	Hash  []byte // that row's hash
	KeyID []byte // KeyID of the audit key
	Sig   []byte // signature over CheckpointDigest(Seq, Hash)
}

// ParseCheckpoint decodes a checkpoint row's detail.
func ParseCheckpoint(detail []byte) (*Checkpoint, error) {
	var d checkpointDetail
	if err := json.Unmarshal(detail, &d); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	h, err1 := hex.DecodeString(d.Hash)
	k, err2 := hex.DecodeString(d.Key)
	sig, err3 := base64.StdEncoding.DecodeString(d.Sig)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return &Checkpoint{Seq: d.Seq, Hash: h, KeyID: k, Sig: sig}, nil
}

// VerifyCheckpointSignature reports whether sig is a valid audit-key signature (ECDSA
// P-256 ASN.1, Ed25519 or RSA PKCS#1 v1.5) over CheckpointDigest(seq, hash).
func VerifyCheckpointSignature(pub crypto.PublicKey, seq int64, hash, sig []byte) bool {
	return verifyDigest(pub, checkpointDigest(seq, hash), sig)
}

// Requeue marks for sending again every outbox row from the one of ledger row fromSeq on
// (ledger rows and runs recorded after it). The syncer uses it when the registry holds less
// than the station sent, as after a restore of the registry from a backup; re-sent rows the
// registry still holds are no-ops there. It returns the number of rows re-queued.
func (s *Store) Requeue(ctx context.Context, fromSeq int64) (int, error) {
	var n int64
	err := s.withTxRelaxed(ctx, "outbox requeue", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE outbox SET sent_at = NULL
			WHERE sent_at IS NOT NULL AND id >= (SELECT COALESCE(min(id), 1 << 62) FROM outbox WHERE audit_seq >= ?)`, fromSeq)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("outbox requeue from %d: %w", fromSeq, err)
	}
	return int(n), nil
}
