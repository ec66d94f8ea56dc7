package plant

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wsc-project/wsc/db"
)

// Record is one item of a station's batch: a ledger row (Seq > 0) exactly as the station
// holds it, with the facts its row refers to in Payload (not covered by the row hash, checked
// against the row), or a finished run (Run != nil).
type Record struct {
	Seq      int64
	At       int64 // station clock, Unix nanoseconds
	Kind     string
	Actor    string
	Detail   string // the row's JSON, byte for byte
	PrevHash []byte
	Hash     []byte
	Payload  json.RawMessage
	Run      *db.Run
}

// RecordFromEntry builds a ledger Record from a station's audit row.
func RecordFromEntry(e db.AuditEntry, payload json.RawMessage) Record {
	return Record{Seq: e.Seq, At: e.At.UnixNano(), Kind: e.Kind, Actor: e.Actor, Detail: string(e.Detail),
		PrevHash: e.PrevHash, Hash: e.Hash, Payload: payload}
}

func (rec Record) entry() db.AuditEntry {
	return db.AuditEntry{Seq: rec.Seq, At: time.Unix(0, rec.At), Kind: rec.Kind, Actor: rec.Actor,
		Detail: json.RawMessage(rec.Detail), PrevHash: rec.PrevHash, Hash: rec.Hash}
}

// Result says what a batch did.
type Result struct {
	Accepted int   // ledger rows and runs newly recorded
	Replayed int   // already held with the same content: no-ops
	Head     int64 // the registry's ledger head for the station afterwards
}

// TamperError describes why a batch was refused as tampering. errors.Is(err, ErrTampered).
type TamperError struct {
	Station string
	Kind    string // fork, truncation, edited, bad-checkpoint, run-changed
	Seq     int64
	Detail  string
}

// Error describes the contradiction.
func (e *TamperError) Error() string {
	return fmt.Sprintf("plant: station %s ledger %s at row %d: %s", e.Station, e.Kind, e.Seq, e.Detail)
}

// Is makes errors.Is(err, ErrTampered) hold.
func (e *TamperError) Is(target error) bool { return target == ErrTampered }

// Ingest records a station's batch with an exactly-once effect keyed on (station, ledger
// sequence, content hash): rows already held with the same hash are no-ops, a different
// content for a held sequence is refused and raised as a tamper alarm. New rows must extend
// the chain the registry holds (continuity of seq and prev_hash, hash recomputed, signed
// checkpoints verified against the station's pinned audit key); a fork is refused and
// alarmed, a batch that starts after a missing row is refused with ErrGap. All of a batch
// is recorded, or none of it.
func (r *Registry) Ingest(ctx context.Context, stationID string, batch []Record) (Result, error) {
	var res Result
	var ledger []Record
	var runs []Record
	for _, rec := range batch {
		if rec.Run != nil {
			runs = append(runs, rec)
		} else {
			ledger = append(ledger, rec)
		}
	}
	// Checks that need nothing from the registry: order and each row's own hash.
	for i, rec := range ledger {
		if i > 0 && rec.Seq != ledger[i-1].Seq+1 {
			return res, fmt.Errorf("ingest %s: rows %d and %d are not consecutive: %w", stationID, ledger[i-1].Seq, rec.Seq, ErrGap)
		}
		if !bytes.Equal(db.AuditRowHash(rec.entry()), rec.Hash) {
			return res, r.alarm(ctx, &TamperError{Station: stationID, Kind: "edited", Seq: rec.Seq,
				Detail: "row content does not match its hash"}, rec.Hash)
		}
		if i > 0 && !bytes.Equal(rec.PrevHash, ledger[i-1].Hash) {
			return res, r.alarm(ctx, &TamperError{Station: stationID, Kind: "fork", Seq: rec.Seq,
				Detail: "row does not link to the previous row of the batch"}, rec.Hash)
		}
	}
	var terr *TamperError
	var alarmFP []byte
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		res = Result{}
		// One ingest per station at a time (a restarted syncer may overlap its predecessor).
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(7715002, hashtext($1))", stationID); err != nil {
			return err
		}
		var keyDER []byte
		if err := tx.QueryRow(ctx, "SELECT audit_key FROM stations WHERE id = $1", stationID).Scan(&keyDER); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("ingest %s: %w (register it with wsc plant station add, and connect with its role)", stationID, ErrUnknownStation)
			}
			return err
		}
		pub, err := x509.ParsePKIXPublicKey(keyDER)
		if err != nil {
			return fmt.Errorf("ingest %s: pinned audit key: %w", stationID, err)
		}
		head, headHash, err := chainHead(ctx, tx, stationID)
		if err != nil {
			return err
		}
		var fresh []Record
		if len(ledger) > 0 {
			held := map[int64][]byte{}
			rows, err := tx.Query(ctx, "SELECT seq, hash FROM ledger WHERE station_id = $1 AND seq BETWEEN $2 AND $3",
				stationID, ledger[0].Seq, ledger[len(ledger)-1].Seq)
			if err != nil {
				return err
			}
			for rows.Next() {
				var s int64
				var h []byte
				if err := rows.Scan(&s, &h); err != nil {
					rows.Close()
					return err
				}
				held[s] = h
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, rec := range ledger {
				if h, ok := held[rec.Seq]; ok {
					if !bytes.Equal(h, rec.Hash) {
						terr = &TamperError{Station: stationID, Kind: "fork", Seq: rec.Seq,
							Detail: fmt.Sprintf("the registry holds row %d with hash %x, the station sent %x", rec.Seq, h[:8], rec.Hash[:8])}
						alarmFP = rec.Hash
						return terr
					}
					res.Replayed++
					continue
				}
				if rec.Seq <= head {
					return fmt.Errorf("ingest %s: row %d below the head %d is missing from the registry", stationID, rec.Seq, head)
				}
				fresh = append(fresh, rec)
			}
		}
		if len(fresh) > 0 {
			first := fresh[0]
			if first.Seq != head+1 {
				return fmt.Errorf("ingest %s: batch starts at row %d, the registry holds rows up to %d: %w", stationID, first.Seq, head, ErrGap)
			}
			if !bytes.Equal(first.PrevHash, headHash) {
				terr = &TamperError{Station: stationID, Kind: "fork", Seq: first.Seq,
					Detail: fmt.Sprintf("row does not extend the chain held up to row %d", head)}
				alarmFP = first.Hash
				return terr
			}
			for _, rec := range fresh {
				if rec.Kind == db.AuditCheckpointKind {
					if msg := checkCheckpoint(rec, pub, keyDER); msg != "" {
						terr = &TamperError{Station: stationID, Kind: "bad-checkpoint", Seq: rec.Seq, Detail: msg}
						alarmFP = rec.Hash
						return terr
					}
				}
			}
			if err := insertLedger(ctx, tx, stationID, fresh); err != nil {
				return err
			}
			res.Accepted += len(fresh)
			res.Head = fresh[len(fresh)-1].Seq
		} else {
			res.Head = head
		}
		if len(runs) > 0 {
			added, fp, err := insertRuns(ctx, tx, stationID, runs)
			if err != nil {
				if errors.As(err, &terr) {
					alarmFP = fp
				}
				return err
			}
			res.Accepted += added
			res.Replayed += len(runs) - added
		}
		if r.fault != nil {
			r.fault("ingest:before-commit")
		}
		return nil
	})
	if terr == nil && errors.As(err, &terr) && alarmFP == nil {
		alarmFP = []byte(terr.Detail)
	}
	if terr != nil {
		return Result{}, r.alarm(ctx, terr, alarmFP)
	}
	if err != nil {
		return Result{}, fmt.Errorf("ingest %s: %w", stationID, mapErr(err))
	}
	return res, nil
}

// alarm records a tamper alarm in its own transaction (the batch was rolled back) and
// returns the tamper error; if even the alarm cannot be written, both errors are returned.
func (r *Registry) alarm(ctx context.Context, terr *TamperError, fingerprint []byte) error {
	if fingerprint == nil {
		fingerprint = []byte{}
	}
	_, err := r.pool.Exec(ctx, `INSERT INTO alarms (station_id, kind, seq, detail, fingerprint) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (station_id, kind, seq, fingerprint) DO NOTHING`, terr.Station, terr.Kind, terr.Seq, terr.Detail, fingerprint)
	if err != nil {
		return errors.Join(terr, fmt.Errorf("raise alarm: %w", mapErr(err)))
	}
	return terr
}

// RaiseAlarm records an alarm about a station (for detections made outside Ingest, such as a
// truncated station ledger found by the syncer or by VerifyStation).
func (r *Registry) RaiseAlarm(ctx context.Context, station, kind string, seq int64, detail string) error {
	return r.alarm(ctx, &TamperError{Station: station, Kind: kind, Seq: seq, Detail: detail}, []byte(detail))
}

func chainHead(ctx context.Context, q pgx.Tx, stationID string) (int64, []byte, error) {
	var seq int64
	var hash []byte
	err := q.QueryRow(ctx, "SELECT seq, hash FROM ledger WHERE station_id = $1 ORDER BY seq DESC LIMIT 1", stationID).Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, make([]byte, sha256.Size), nil
	}
	return seq, hash, err
}

func checkCheckpoint(rec Record, pub crypto.PublicKey, keyDER []byte) string {
	cp, err := db.ParseCheckpoint([]byte(rec.Detail))
	if err != nil {
		return fmt.Sprintf("unreadable checkpoint: %v", err)
	}
	if cp.Seq != rec.Seq-1 || !bytes.Equal(cp.Hash, rec.PrevHash) {
		return fmt.Sprintf("checkpoint covers row %d, not the row before it", cp.Seq)
	}
	kid := sha256.Sum256(keyDER)
	if !bytes.Equal(cp.KeyID, kid[:]) {
		return fmt.Sprintf("checkpoint signed by key %x, not the station's pinned audit key %x", cp.KeyID, kid[:8])
	}
	if !db.VerifyCheckpointSignature(pub, cp.Seq, cp.Hash, cp.Sig) {
		return "checkpoint signature does not verify with the pinned audit key"
	}
	return ""
}

type certDetail struct {
	Serial    string `json:"serial"`
	Device    string `json:"device"`
	Issuer    string `json:"issuer"`
	Key       string `json:"key"`
	WorkOrder string `json:"work_order"`
	Run       int64  `json:"run"`
	Reason    string `json:"reason"`
}

func insertLedger(ctx context.Context, tx pgx.Tx, station string, recs []Record) error {
	// One statement for the batch (COPY is refused under row-level security); rows go in
	// seq order so that the chain trigger sees each row's predecessor.
	n := len(recs)
	seqs, ats := make([]int64, n), make([]int64, n)
	hashes, prevs := make([][]byte, n), make([][]byte, n)
	kinds, actors, details := make([]string, n), make([]string, n), make([]string, n)
	for i, r := range recs {
		seqs[i], ats[i], hashes[i], prevs[i], kinds[i], actors[i], details[i] = r.Seq, r.At, r.Hash, r.PrevHash, r.Kind, r.Actor, r.Detail
	}
	if _, err := tx.Exec(ctx, `INSERT INTO ledger (station_id, seq, hash, prev_hash, at, kind, actor, detail)
		SELECT $1, u.seq, u.hash, u.prev, u.at, u.kind, u.actor, u.detail
		FROM unnest($2::bigint[], $3::bytea[], $4::bytea[], $5::bigint[], $6::text[], $7::text[], $8::text[])
			AS u(seq, hash, prev, at, kind, actor, detail) ORDER BY u.seq`,
		station, seqs, hashes, prevs, ats, kinds, actors, details); err != nil {
		return err
	}
	var b pgx.Batch
	for _, r := range recs {
		at := time.Unix(0, r.At).UTC()
		switch r.Kind {
		case db.AuditCheckpointKind:
			cp, err := db.ParseCheckpoint([]byte(r.Detail))
			if err != nil {
				return err
			}
			b.Queue(`INSERT INTO checkpoints (station_id, seq, covers_seq, covers_hash, key_id, sig) VALUES ($1, $2, $3, $4, $5, $6)`,
				station, r.Seq, cp.Seq, cp.Hash, cp.KeyID, cp.Sig)
		case "cert.issue":
			var d certDetail
			if err := json.Unmarshal([]byte(r.Detail), &d); err != nil {
				return fmt.Errorf("row %d: %w", r.Seq, err)
			}
			var f db.CertificateFacts
			if len(r.Payload) == 0 {
				return fmt.Errorf("row %d: cert.issue without the certificate (station too old?)", r.Seq)
			}
			if err := json.Unmarshal(r.Payload, &f); err != nil {
				return fmt.Errorf("row %d: payload: %w", r.Seq, err)
			}
			// The payload is not covered by the row hash: it must agree with the hashed row.
			if f.Serial != d.Serial || f.Device != d.Device || f.KeyHash != d.Key || f.IssuerKeyID != d.Issuer {
				return &TamperError{Station: station, Kind: "edited", Seq: r.Seq, Detail: "certificate facts disagree with the ledger row"}
			}
			leaf, err := x509.ParseCertificate(f.DER)
			if err != nil {
				return fmt.Errorf("row %d: certificate: %w", r.Seq, err)
			}
			if db.SerialHex(leaf.SerialNumber) != d.Serial || hex.EncodeToString(db.KeyHash(leaf.RawSubjectPublicKeyInfo)) != d.Key {
				return &TamperError{Station: station, Kind: "edited", Seq: r.Seq, Detail: "certificate does not match the ledger row's serial and key"}
			}
			issuer, _ := hex.DecodeString(d.Issuer)
			key, _ := hex.DecodeString(d.Key)
			var ek []byte
			if f.EKHash != "" {
				ek, _ = hex.DecodeString(f.EKHash)
			}
			b.Queue(`INSERT INTO devices (station_id, seq, serial, ek_hash, key_hash, backend, model, work_order, bound_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, station, r.Seq, d.Device, ek, key, f.Backend, f.Model, d.WorkOrder, at)
			b.Queue(`INSERT INTO certificates (station_id, seq, serial_hex, device_serial, issuer_key_id, der, run_id, work_order,
				not_before, not_after, issued_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
				station, r.Seq, d.Serial, d.Device, issuer, f.DER, d.Run, d.WorkOrder, leaf.NotBefore, leaf.NotAfter, at)
		case "cert.confirm":
			var d certDetail
			if err := json.Unmarshal([]byte(r.Detail), &d); err != nil {
				return fmt.Errorf("row %d: %w", r.Seq, err)
			}
			b.Queue(`INSERT INTO confirmations (station_id, seq, serial_hex, device_serial, at) VALUES ($1, $2, $3, $4, $5)`,
				station, r.Seq, d.Serial, d.Device, at)
		case "cert.revoke":
			var d certDetail
			if err := json.Unmarshal([]byte(r.Detail), &d); err != nil {
				return fmt.Errorf("row %d: %w", r.Seq, err)
			}
			b.Queue(`INSERT INTO revocations (station_id, seq, serial_hex, device_serial, reason, at) VALUES ($1, $2, $3, $4, $5, $6)`,
				station, r.Seq, d.Serial, d.Device, d.Reason, at)
		case "redbin", "device.quarantine":
			var d struct {
				Device string `json:"device"`
				Reason string `json:"reason"`
			}
			if err := json.Unmarshal([]byte(r.Detail), &d); err != nil {
				return fmt.Errorf("row %d: %w", r.Seq, err)
			}
			b.Queue(`INSERT INTO red_bins (station_id, seq, device_serial, reason, at) VALUES ($1, $2, $3, $4, $5)`,
				station, r.Seq, d.Device, d.Reason, at)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, &b).Close()
}

type runContent struct {
	ID         int64            `json:"id"`
	Device     string           `json:"device"`
	Slot       int              `json:"slot"`
	Operator   string           `json:"operator"`
	WorkOrder  string           `json:"work_order"`
	Step       string           `json:"step"`
	Result     string           `json:"result"`
	Error      string           `json:"error"`
	Durations  map[string]int64 `json:"durations_us"`
	StartedAt  int64            `json:"started_at"`
	FinishedAt int64            `json:"finished_at"`
}

// insertRuns records finished runs in one statement; a run already held is a no-op when its
// content hash is the same, and a tamper error otherwise.
func insertRuns(ctx context.Context, tx pgx.Tx, station string, recs []Record) (int, []byte, error) {
	n := len(recs)
	ids, slots := make([]int64, n), make([]int32, n)
	hashes := make([][]byte, n)
	devs, ops, wos, steps, results, errs, durs := make([]string, n), make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n)
	starts, ends := make([]time.Time, n), make([]time.Time, n)
	byID := make(map[int64][]byte, n)
	for i, rec := range recs {
		run := rec.Run
		if run.Result == "" || run.FinishedAt == nil {
			return 0, nil, fmt.Errorf("run %d is not finished", run.ID)
		}
		c := runContent{ID: run.ID, Device: run.DeviceSerial, Slot: run.Slot, Operator: run.Operator, WorkOrder: run.WorkOrder,
			Step: run.Step, Result: run.Result, Error: run.Error, Durations: map[string]int64{},
			StartedAt: run.StartedAt.UnixNano(), FinishedAt: run.FinishedAt.UnixNano()}
		for k, v := range run.Durations {
			c.Durations[k] = v.Microseconds()
		}
		cj, err := json.Marshal(c) // map keys sorted: canonical
		if err != nil {
			return 0, nil, err
		}
		h := sha256.Sum256(cj)
		dur, _ := json.Marshal(c.Durations)
		ids[i], slots[i], hashes[i] = run.ID, int32(run.Slot), h[:]
		devs[i], ops[i], wos[i], steps[i], results[i], errs[i], durs[i] = c.Device, c.Operator, c.WorkOrder, c.Step, c.Result, c.Error, string(dur)
		starts[i], ends[i] = run.StartedAt, *run.FinishedAt
		byID[run.ID] = h[:]
	}
	rows, err := tx.Query(ctx, `INSERT INTO runs (station_id, run_id, content_hash, device_serial, slot, operator, work_order, step,
			result, error, durations, started_at, finished_at)
		SELECT $1, u.id, u.h, u.dev, u.slot, u.op, u.wo, u.step, u.res, u.err, u.dur::jsonb, u.st, u.fin
		FROM unnest($2::bigint[], $3::bytea[], $4::text[], $5::int[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
			$11::text[], $12::timestamptz[], $13::timestamptz[]) AS u(id, h, dev, slot, op, wo, step, res, err, dur, st, fin)
		ON CONFLICT (station_id, run_id) DO NOTHING RETURNING run_id`,
		station, ids, hashes, devs, slots, ops, wos, steps, results, errs, durs, starts, ends)
	if err != nil {
		return 0, nil, err
	}
	added := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, nil, err
		}
		added[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, nil, err
	}
	if len(added) == n {
		return n, nil, nil
	}
	var held []int64
	for _, id := range ids {
		if !added[id] {
			held = append(held, id)
		}
	}
	hr, err := tx.Query(ctx, "SELECT run_id, content_hash FROM runs WHERE station_id = $1 AND run_id = ANY($2)", station, held)
	if err != nil {
		return 0, nil, err
	}
	defer hr.Close()
	for hr.Next() {
		var id int64
		var have []byte
		if err := hr.Scan(&id, &have); err != nil {
			return 0, nil, err
		}
		if !bytes.Equal(have, byID[id]) {
			return 0, byID[id], &TamperError{Station: station, Kind: "run-changed", Seq: 0,
				Detail: fmt.Sprintf("run %d was recorded with other content", id)}
		}
	}
	return len(added), nil, hr.Err()
}
