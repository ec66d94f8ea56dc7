package db

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// AuditBreak classifies a defect found by VerifyAudit.
type AuditBreak string

// Defects reported by VerifyAudit.
const (
	// The chain of ledger rows.
	AuditEdited            AuditBreak = "edited"             // a row's content no longer matches its hash
	AuditDeleted           AuditBreak = "deleted"            // rows are missing (gap in sequence, or the tail)
	AuditInserted          AuditBreak = "inserted"           // a row does not link to its predecessor, or lies beyond the head
	AuditReordered         AuditBreak = "reordered"          // rows swapped: a row links to its successor
	AuditMissingCheckpoint AuditBreak = "missing-checkpoint" // more rows without a signed checkpoint than allowed
	AuditBadCheckpoint     AuditBreak = "bad-checkpoint"     // checkpoint signature or content invalid
	AuditUnpinnedKey       AuditBreak = "unpinned-key"       // a checkpoint or key given is not the pinned audit key

	// The witness file.
	AuditTruncated       AuditBreak = "truncated"        // the database ends before the newest witnessed checkpoint
	AuditWitnessMismatch AuditBreak = "witness-mismatch" // a witnessed checkpoint disagrees with the database
	AuditWitnessTorn     AuditBreak = "witness-torn"     // the witness file's last line is incomplete (power cut?)
	AuditWitnessCorrupt  AuditBreak = "witness-corrupt"  // a witness line before the last is damaged or badly signed
	AuditWitnessMissing  AuditBreak = "witness-missing"  // the witness file named for the check does not exist

	// The rows the ledger vouches for (see coveredTables).
	AuditRowEdited     AuditBreak = "row-edited"     // a row differs from the hash its last ledger entry recorded
	AuditRowMissing    AuditBreak = "row-missing"    // a row the ledger vouches for was deleted
	AuditTableEmptied  AuditBreak = "table-emptied"  // every row of a table the ledger vouches for is gone
	AuditRowUnrecorded AuditBreak = "row-unrecorded" // a row no ledger entry vouches for (written behind the store)
)

// AuditError describes one defect of the ledger. errors.Is(err, ErrAuditTampered) holds.
type AuditError struct {
	Kind   AuditBreak
	Seq    int64  // ledger row concerned (0: none)
	Table  string // for row defects: the covered table
	Key    string // for row defects: the row's key (certificate serial, device serial …)
	Detail string
}

// Error describes the defect.
func (e *AuditError) Error() string {
	if e.Table != "" || e.Seq == 0 {
		return fmt.Sprintf("audit ledger %s: %s", e.Kind, e.Detail)
	}
	return fmt.Sprintf("audit ledger %s at row %d: %s", e.Kind, e.Seq, e.Detail)
}

// Is makes errors.Is(err, ErrAuditTampered) true.
func (e *AuditError) Is(target error) bool { return target == ErrAuditTampered }

// AuditVerifyOptions select the checks of VerifyAudit.
type AuditVerifyOptions struct {
	// PinnedKeys are the SHA-256 fingerprints (KeyID) of the accepted audit public keys,
	// taken from the station configuration, never from the database's folder. Checkpoints
	// must be signed by a pinned key; the public key is taken from Keys or from the
	// checkpoint itself, and trusted only when its fingerprint is pinned.
	PinnedKeys [][]byte
	// Keys are audit public keys supplied by the caller. With PinnedKeys, each must match
	// a pin (else an AuditUnpinnedKey error). Without PinnedKeys they are trusted as given
	// (tests and tools that hold the key itself). With neither, the checkpoints' content is
	// checked but not their signatures, and missing checkpoints are not reported.
	Keys []crypto.PublicKey
	// MaxGap is the largest number of rows allowed after a checkpoint without the next one
	// (the writer's checkpoint interval); 0 means DefaultCheckpointEvery.
	MaxGap int
	// Witness is the witness file to check the ledger against; empty: the store's own
	// (WithWitness), if any.
	Witness string
	// MaxFailures bounds the number of defects collected in AuditSummary.Failures (0: 100).
	MaxFailures int
}

// AuditSummary describes the ledger VerifyAudit walked.
type AuditSummary struct {
	Rows        int64
	Checkpoints int64
	HeadSeq     int64
	HeadHash    []byte
	// Unsealed is the number of rows after the last signed checkpoint: the chain links
	// them, but nothing outside the database vouches for them yet.
	Unsealed int64
	// CoveredRows is the number of rows of the covered tables checked against the ledger;
	// RowRefs the number of row references the ledger holds.
	CoveredRows, RowRefs int64
	// Witness is the witness file checked ("" when none), WitnessLines its complete lines
	// and WitnessNewest the newest witnessed row.
	Witness       string
	WitnessLines  int
	WitnessNewest int64
	// Failures lists the defects found (the first is the error VerifyAudit returns).
	// Checking stops at the first defect of the chain itself; witness and row defects
	// are all collected.
	Failures []*AuditError
}

// refState is the last reference of one row seen in the ledger.
type refState struct {
	hash [sha256.Size]byte
	del  bool
	seq  int64
}

// VerifyAudit walks the whole ledger and checks, in one read snapshot:
//
//   - the chain: every row's hash and link, the head, sqlite_sequence; the signed
//     checkpoints (signatures by a pinned key, at most MaxGap rows apart);
//   - the witness file: every witnessed checkpoint is in the database with the same
//     hash, the database does not end before the newest one, and the file's last line is
//     complete;
//   - the covered rows: every row of the covered tables (certificates with their chains,
//     revocations, device bindings, keys, work orders, operators, QA verdicts) equals the
//     hash of its last ledger reference, no referenced row is missing, no row is unknown
//     to the ledger.
//
// It returns the summary and, for a defect, an *AuditError (the first of
// summary.Failures). Rows appended after the last checkpoint by someone who recomputes
// the hashes and the head cannot be told from genuine ones (summary.Unsealed counts
// them); signed checkpoints and the witness file bound that window.
func (s *Store) VerifyAudit(ctx context.Context, opts AuditVerifyOptions) (*AuditSummary, error) {
	maxGap := int64(opts.MaxGap)
	if maxGap <= 0 {
		maxGap = DefaultCheckpointEvery
	}
	maxFail := opts.MaxFailures
	if maxFail <= 0 {
		maxFail = 100
	}
	sum := &AuditSummary{}
	fail := func(e *AuditError) {
		if len(sum.Failures) < maxFail {
			sum.Failures = append(sum.Failures, e)
		}
	}
	result := func() (*AuditSummary, error) {
		if len(sum.Failures) > 0 {
			return sum, sum.Failures[0]
		}
		return sum, nil
	}
	pins := map[string]bool{}
	for _, p := range opts.PinnedKeys {
		pins[string(p)] = true
	}
	keys := map[string]crypto.PublicKey{}
	for _, k := range opts.Keys {
		id, err := KeyID(k)
		if err != nil {
			return nil, fmt.Errorf("verify audit: %w", err)
		}
		if len(pins) > 0 && !pins[string(id)] {
			fail(&AuditError{Kind: AuditUnpinnedKey, Detail: fmt.Sprintf("the audit public key given (fingerprint %x) is not the pinned audit key %s: "+
				"it may have been replaced; take the fingerprint from the station configuration", id, pinList(opts.PinnedKeys))})
			return result()
		}
		keys[string(id)] = k
	}
	checkSigs := len(keys) > 0 || len(pins) > 0
	// keyFor returns the public key a checkpoint or witness line claims, if it is trusted.
	keyFor := func(keyHex, pubB64 string) (crypto.PublicKey, *AuditError) {
		kid, _ := hex.DecodeString(keyHex)
		if pub, ok := keys[string(kid)]; ok {
			return pub, nil
		}
		if len(pins) == 0 {
			return nil, &AuditError{Kind: AuditBadCheckpoint, Detail: fmt.Sprintf("signed by unknown key %s", keyHex)}
		}
		if !pins[string(kid)] {
			return nil, &AuditError{Kind: AuditUnpinnedKey, Detail: fmt.Sprintf("signed by key %s, which is not the pinned audit key %s "+
				"(checkpoints re-signed with another key?)", keyHex, pinList(opts.PinnedKeys))}
		}
		der, err := base64.StdEncoding.DecodeString(pubB64)
		if err != nil || len(der) == 0 {
			return nil, &AuditError{Kind: AuditBadCheckpoint, Detail: fmt.Sprintf("signed by pinned key %s but carries no public key; pass the key itself", keyHex)}
		}
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return nil, &AuditError{Kind: AuditBadCheckpoint, Detail: fmt.Sprintf("public key of %s unreadable: %v", keyHex, err)}
		}
		if id := KeyHash(der); !bytes.Equal(id, kid) {
			return nil, &AuditError{Kind: AuditUnpinnedKey, Detail: fmt.Sprintf("carries public key %x under the pinned key id %s", id, keyHex)}
		}
		keys[string(kid)] = pub
		return pub, nil
	}

	// The witness file, read before the database snapshot: a checkpoint witnessed after
	// the snapshot cannot then be reported as missing.
	witnessPath := opts.Witness
	if witnessPath == "" && s.witness != nil {
		witnessPath = s.witness.path
	}
	var wf *WitnessFile
	witnessed := map[int64]*WitnessLine{}
	if witnessPath != "" {
		sum.Witness = witnessPath
		var err error
		wf, err = ReadWitness(witnessPath)
		var wc *witnessCorruptError
		switch {
		case errors.Is(err, os.ErrNotExist):
			fail(&AuditError{Kind: AuditWitnessMissing, Detail: fmt.Sprintf("witness file %s does not exist: find the medium it was written to, "+
				"or pass the right path; a deleted witness file hides a truncated ledger", witnessPath)})
			wf = nil
		case errors.As(err, &wc):
			fail(&AuditError{Kind: AuditWitnessCorrupt, Seq: 0, Detail: fmt.Sprintf("witness file %s: %v", witnessPath, wc)})
		case err != nil:
			return nil, fmt.Errorf("verify audit: %w", err)
		}
		if wf != nil {
			sum.WitnessLines = len(wf.Lines)
			for i := range wf.Lines {
				l := &wf.Lines[i]
				witnessed[l.Seq] = l
				sum.WitnessNewest = l.Seq
				if !checkSigs {
					continue
				}
				pub, kerr := keyFor(l.Key, l.Pub)
				if kerr != nil {
					kerr.Seq = l.Seq
					kerr.Detail = "witness line of row " + fmt.Sprint(l.Seq) + ": " + kerr.Detail
					if kerr.Kind == AuditBadCheckpoint {
						kerr.Kind = AuditWitnessCorrupt
					}
					fail(kerr)
					continue
				}
				h, herr := hex.DecodeString(l.Hash)
				sig, serr := base64.StdEncoding.DecodeString(l.Sig)
				if herr != nil || serr != nil || !verifyDigest(pub, checkpointDigest(l.Seq, h), sig) {
					fail(&AuditError{Kind: AuditWitnessCorrupt, Seq: l.Seq, Detail: fmt.Sprintf("witness line of row %d has an invalid signature", l.Seq)})
				}
			}
		}
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
	sum.HeadSeq, sum.HeadHash = headSeq, headHash
	var maxSeq sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT seq FROM sqlite_sequence WHERE name = 'audit'").Scan(&maxSeq); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("verify audit: sequence: %w", mapErr(err))
	}
	refs := map[string]*refState{}
	chainErr, prevSeq, err := s.walkLedger(ctx, tx, sum, walkParams{
		headSeq: headSeq, headHash: headHash, maxSeq: maxSeq, maxGap: maxGap, checkSigs: checkSigs,
		keyFor: keyFor, witnessed: witnessed, refs: refs, fail: fail,
	})
	if err != nil {
		return nil, fmt.Errorf("verify audit: %w", mapErr(err))
	}
	if chainErr != nil {
		// A broken chain makes everything after it meaningless; report it first.
		sum.Failures = append([]*AuditError{chainErr}, sum.Failures...)
		return result()
	}
	if wf != nil {
		if n := wf.Newest(); n != nil && prevSeq < n.Seq+1 {
			fail(&AuditError{Kind: AuditTruncated, Seq: prevSeq + 1, Detail: fmt.Sprintf("the database ends at row %d but the witness file %s holds "+
				"a signed checkpoint of row %d (written at %s): rows %d to %d were deleted", prevSeq, witnessPath, n.Seq, n.At, prevSeq+1, n.Seq+1)})
		}
		if len(wf.TornTail) > 0 {
			fail(&AuditError{Kind: AuditWitnessTorn, Seq: sum.WitnessNewest, Detail: fmt.Sprintf("witness file %s ends with an incomplete line of %d bytes "+
				"after the checkpoint of row %d (a power cut while it was written?); once this report shows no other defect, "+
				"run `wsc audit repair-witness` to record and cut it", witnessPath, len(wf.TornTail), sum.WitnessNewest)})
		}
	}
	if err := checkCoveredRows(ctx, tx, refs, sum, fail); err != nil {
		return nil, fmt.Errorf("verify audit: %w", mapErr(err))
	}
	return result()
}

func pinList(pins [][]byte) string {
	var out []string
	for _, p := range pins {
		out = append(out, hex.EncodeToString(p))
	}
	return strings.Join(out, ", ")
}

type walkParams struct {
	headSeq   int64
	headHash  []byte
	maxSeq    sql.NullInt64
	maxGap    int64
	checkSigs bool
	keyFor    func(keyHex, pubB64 string) (crypto.PublicKey, *AuditError)
	witnessed map[int64]*WitnessLine
	refs      map[string]*refState
	fail      func(*AuditError)
}

// walkLedger checks the chain row by row and collects the row references. It returns the
// first chain defect, the last row walked, or a database error.
func (s *Store) walkLedger(ctx context.Context, tx *sql.Tx, sum *AuditSummary, p walkParams) (*AuditError, int64, error) {
	rows, err := tx.QueryContext(ctx, "SELECT id, at, kind, actor, detail, prev_hash, hash FROM audit ORDER BY id")
	if err != nil {
		return nil, 0, err
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
	prevSeq, prevHash := int64(0), make([]byte, sha256.Size)
	since := int64(0) // rows since the last checkpoint
	cur, err := next()
	for err == nil && cur != nil {
		var nxt *AuditEntry
		if nxt, err = next(); err != nil {
			break
		}
		brk := func(k AuditBreak, format string, a ...any) (*AuditError, int64, error) {
			return &AuditError{Kind: k, Seq: cur.Seq, Detail: fmt.Sprintf(format, a...)}, prevSeq, nil
		}
		if cur.Seq > p.headSeq {
			return brk(AuditInserted, "row lies beyond the recorded head (row %d): appended outside the store", p.headSeq)
		}
		if !bytes.Equal(cur.PrevHash, prevHash) {
			switch {
			case cur.Seq != prevSeq+1:
				return brk(AuditDeleted, "rows %d to %d are missing", prevSeq+1, cur.Seq-1)
			case nxt != nil && bytes.Equal(nxt.Hash, cur.PrevHash):
				return brk(AuditReordered, "row %d links to row %d that follows it", cur.Seq, nxt.Seq)
			default:
				return brk(AuditInserted, "row does not link to row %d", prevSeq)
			}
		}
		if !bytes.Equal(auditRowHash(cur.Seq, cur.At.UnixNano(), cur.Kind, cur.Actor, string(cur.Detail), cur.PrevHash), cur.Hash) {
			if cur.Seq != prevSeq+1 {
				return brk(AuditDeleted, "rows %d to %d are missing", prevSeq+1, cur.Seq-1)
			}
			return brk(AuditEdited, "content does not match its hash")
		}
		if w := p.witnessed[cur.Seq]; w != nil && w.Hash != hex.EncodeToString(cur.Hash) {
			p.fail(&AuditError{Kind: AuditWitnessMismatch, Seq: cur.Seq, Detail: fmt.Sprintf("the witness file holds a signed checkpoint of row %d "+
				"with hash %s, the database's row has %x: the ledger was rewritten", cur.Seq, w.Hash, cur.Hash)})
		}
		if cur.Kind == AuditCheckpointKind {
			var cp checkpointDetail
			if err := json.Unmarshal(cur.Detail, &cp); err != nil {
				return brk(AuditBadCheckpoint, "unreadable checkpoint: %v", err)
			}
			if cp.Seq != prevSeq || cp.Hash != hex.EncodeToString(prevHash) {
				return brk(AuditBadCheckpoint, "checkpoint covers row %d with another hash than the ledger's", cp.Seq)
			}
			if p.checkSigs {
				pub, kerr := p.keyFor(cp.Key, cp.Pub)
				if kerr != nil {
					kerr.Seq = cur.Seq
					kerr.Detail = "checkpoint " + kerr.Detail
					return kerr, prevSeq, nil
				}
				sig, serr := base64.StdEncoding.DecodeString(cp.Sig)
				if serr != nil || !verifyDigest(pub, checkpointDigest(cp.Seq, prevHash), sig) {
					return brk(AuditBadCheckpoint, "checkpoint signature invalid")
				}
			}
			sum.Checkpoints++
			since = 0
		} else {
			since++
			if p.checkSigs && since > p.maxGap {
				return brk(AuditMissingCheckpoint, "%d rows without a signed checkpoint (at most %d allowed)", since, p.maxGap)
			}
			if bytes.Contains(cur.Detail, []byte(`"rows"`)) {
				var d struct {
					Rows []rowRef `json:"rows"`
				}
				if err := json.Unmarshal(cur.Detail, &d); err != nil {
					return brk(AuditEdited, "unreadable detail: %v", err)
				}
				for _, r := range d.Rows {
					st := &refState{seq: cur.Seq, del: r.Hash == ""}
					if !st.del {
						if h, err := hex.DecodeString(r.Hash); err != nil || len(h) != sha256.Size {
							return brk(AuditEdited, "row reference %s %s has a malformed hash", r.Table, r.Key)
						} else {
							copy(st.hash[:], h)
						}
					}
					p.refs[r.Table+"\x00"+r.Key] = st
					sum.RowRefs++
				}
			}
		}
		sum.Rows++
		prevSeq, prevHash = cur.Seq, cur.Hash
		cur = nxt
	}
	if err != nil {
		return nil, prevSeq, err
	}
	sum.Unsealed = since
	if prevSeq < p.headSeq || (p.maxSeq.Valid && prevSeq < p.maxSeq.Int64) {
		last := max(p.headSeq, p.maxSeq.Int64)
		return &AuditError{Kind: AuditDeleted, Seq: prevSeq + 1, Detail: fmt.Sprintf("rows %d to %d at the end are missing", prevSeq+1, last)}, prevSeq, nil
	}
	if !bytes.Equal(prevHash, p.headHash) {
		return &AuditError{Kind: AuditEdited, Seq: prevSeq, Detail: "last row does not match the recorded head"}, prevSeq, nil
	}
	return nil, prevSeq, nil
}

// checkCoveredRows compares every row of the covered tables with its last ledger reference.
func checkCoveredRows(ctx context.Context, tx *sql.Tx, refs map[string]*refState, sum *AuditSummary, fail func(*AuditError)) error {
	seen := make(map[string]bool, len(refs))
	for _, t := range coveredTables {
		rows, err := tx.QueryContext(ctx, t.sel)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		cols, err := rows.Columns()
		if err != nil {
			rows.Close()
			return err
		}
		n := 0
		for rows.Next() {
			key, h, err := scanCovered(t, rows, len(cols))
			if err != nil {
				rows.Close()
				return err
			}
			n++
			sum.CoveredRows++
			id := t.name + "\x00" + key
			seen[id] = true
			st := refs[id]
			switch {
			case st == nil:
				fail(&AuditError{Kind: AuditRowUnrecorded, Table: t.name, Key: key, Detail: fmt.Sprintf(
					"%s %s is in table %s but no ledger entry vouches for it: it was written behind the store", t.noun, key, t.name)})
			case st.del:
				fail(&AuditError{Kind: AuditRowUnrecorded, Seq: st.seq, Table: t.name, Key: key, Detail: fmt.Sprintf(
					"%s %s is in table %s although ledger row %d records its deletion", t.noun, key, t.name, st.seq)})
			case !bytes.Equal(st.hash[:], h):
				fail(&AuditError{Kind: AuditRowEdited, Seq: st.seq, Table: t.name, Key: key, Detail: fmt.Sprintf(
					"%s %s differs from what ledger row %d vouches for (its %s): the row was edited", t.noun, key, st.seq, t.what)})
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		// Rows the ledger vouches for that are gone.
		var missing []string
		prefix := t.name + "\x00"
		for id, st := range refs {
			if !st.del && strings.HasPrefix(id, prefix) && !seen[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			continue
		}
		sort.Slice(missing, func(i, j int) bool { return refs[missing[i]].seq < refs[missing[j]].seq })
		if n == 0 {
			first := refs[missing[0]]
			fail(&AuditError{Kind: AuditTableEmptied, Seq: first.seq, Table: t.name, Detail: fmt.Sprintf(
				"table %s is empty but the ledger vouches for %d %s rows (the first at ledger row %d): the table was emptied",
				t.name, len(missing), t.noun, first.seq)})
			continue
		}
		for _, id := range missing {
			key := strings.TrimPrefix(id, prefix)
			fail(&AuditError{Kind: AuditRowMissing, Seq: refs[id].seq, Table: t.name, Key: key, Detail: fmt.Sprintf(
				"%s %s, vouched for by ledger row %d, is missing from table %s: the row was deleted", t.noun, key, refs[id].seq, t.name)})
		}
	}
	return nil
}
