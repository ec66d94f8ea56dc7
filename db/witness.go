package db

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// The witness file is the ledger's anchor outside the database file: every signed
// checkpoint is also appended to it, one JSON line each, and fsync'd after the database
// commit. Someone who rewrites the database (deleting the tail with its checkpoints and
// fixing audit_head and sqlite_sequence) cannot make it end before the newest witnessed
// checkpoint without the witness medium noticing, and cannot rewrite a witnessed row.
// Keep it on another medium than the database when one is available.

// WitnessLine is one line of the witness file: a signed checkpoint of ledger row Seq.
type WitnessLine struct {
	Seq  int64  `json:"seq"`  // ledger row covered by the checkpoint
	Hash string `json:"hash"` // hex SHA-256 of row Seq
	Key  string `json:"key"`  // hex KeyID (SHA-256 of the PKIX public key) of the audit key
	Pub  string `json:"pub"`  // base64 PKIX public key of the audit key (trusted only if pinned)
	Sig  string `json:"sig"`  // base64 signature over the checkpoint digest
	At   string `json:"at"`   // RFC 3339 time of the checkpoint (informational, not signed)
}

// WitnessFile is the parsed content of a witness file.
type WitnessFile struct {
	Lines []WitnessLine
	// TornTail holds the bytes after the last complete line when the file does not end
	// with a complete, readable line (typically a power cut while appending).
	TornTail []byte
	// Size is the length of the complete lines (where a repair truncates the file).
	Size int64
}

// Newest returns the newest witnessed checkpoint, or nil for an empty file.
func (w *WitnessFile) Newest() *WitnessLine {
	if len(w.Lines) == 0 {
		return nil
	}
	return &w.Lines[len(w.Lines)-1]
}

// errWitnessCorrupt marks a damaged line that is not the last one.
type witnessCorruptError struct {
	line int
	err  error
}

func (e *witnessCorruptError) Error() string {
	return fmt.Sprintf("witness line %d is damaged: %v", e.line, e.err)
}

// ReadWitness parses a witness file. A missing file gives an error wrapping
// os.ErrNotExist. A damaged line before the last one is an error; a damaged or
// incomplete last line is returned in TornTail, for the caller to report.
func ReadWitness(path string) (*WitnessFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read witness file: %w", err)
	}
	return parseWitness(b)
}

func parseWitness(b []byte) (*WitnessFile, error) {
	w := &WitnessFile{}
	off := 0
	for n := 1; off < len(b); n++ {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 { // no newline: the last line never finished
			w.TornTail = b[off:]
			break
		}
		line := b[off : off+i]
		var l WitnessLine
		err := json.Unmarshal(line, &l)
		if err == nil && (l.Seq <= 0 || l.Hash == "" || l.Sig == "") {
			err = errors.New("missing fields")
		}
		if err == nil && len(w.Lines) > 0 && l.Seq <= w.Lines[len(w.Lines)-1].Seq {
			err = fmt.Errorf("row %d does not follow row %d", l.Seq, w.Lines[len(w.Lines)-1].Seq)
		}
		if err != nil {
			if off+i+1 == len(b) { // the last line
				w.TornTail = b[off:]
				break
			}
			return w, &witnessCorruptError{line: n, err: err}
		}
		w.Lines = append(w.Lines, l)
		off += i + 1
	}
	w.Size = int64(off)
	return w, nil
}

// witness appends checkpoints to the witness file.
type witness struct {
	path string
	mu   sync.Mutex
	f    *os.File
	last int64 // newest witnessed row
}

// openWitness opens (creating it and syncing its folder if needed) the witness file for
// appending. A torn last line is refused: appending after it would damage the next line,
// and accepting it silently would hide a power cut; see RepairWitness.
func openWitness(path string) (*witness, *WitnessFile, error) {
	wf, err := ReadWitness(path)
	created := false
	switch {
	case errors.Is(err, os.ErrNotExist):
		wf, created = &WitnessFile{}, true
	case err != nil:
		return nil, nil, err
	}
	if len(wf.TornTail) > 0 {
		return nil, wf, fmt.Errorf("witness file %s ends with an incomplete line (%d bytes; a power cut while it was written?): "+
			"check the ledger with `wsc audit verify`, then run `wsc audit repair-witness` to record and cut the incomplete line: %w",
			path, len(wf.TornTail), ErrWitnessTorn)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open witness file: %w", err)
	}
	if created {
		if err := syncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("open witness file: %w", err)
		}
	}
	w := &witness{path: path, f: f}
	if n := wf.Newest(); n != nil {
		w.last = n.Seq
	}
	return w, wf, nil
}

// append writes one line and fsyncs it. Lines older than the newest written are skipped:
// the newer checkpoint covers them.
func (w *witness) append(l WitnessLine) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if l.Seq <= w.last {
		return nil
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if _, err := w.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("append to witness file %s: %w", w.path, err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("sync witness file %s: %w", w.path, err)
	}
	w.last = l.Seq
	return nil
}

func (w *witness) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// truncateWitness cuts the file to size and syncs it.
func truncateWitness(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		return err
	}
	return f.Sync()
}

// WitnessRepair describes what RepairWitness recorded and cut.
type WitnessRepair struct {
	Path      string
	TornBytes int    // length of the incomplete line that was cut
	TornHash  string // hex SHA-256 of those bytes, recorded in the ledger
	Newest    int64  // newest complete witnessed checkpoint
}

// RepairWitness is the explicit, recorded way past an incomplete last witness line (a
// power cut while it was appended). It checks every complete line against the database
// (refusing with ErrWitnessMismatch if one disagrees), appends a "witness.repair" ledger
// row holding the length and SHA-256 of the incomplete bytes, and then cuts them off. It
// returns nil, nil when the file ends with a complete line. Run it with the store opened
// without WithWitness.
func (s *Store) RepairWitness(ctx context.Context, path string) (*WitnessRepair, error) {
	wf, err := ReadWitness(path)
	if err != nil {
		return nil, fmt.Errorf("repair witness: %w", err)
	}
	if len(wf.TornTail) == 0 {
		return nil, nil
	}
	for _, l := range wf.Lines {
		var hash []byte
		err := s.rdb.QueryRowContext(ctx, "SELECT hash FROM audit WHERE id = ?", l.Seq).Scan(&hash)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("repair witness: %w", mapErr(err))
		}
		if err != nil || hex.EncodeToString(hash) != l.Hash {
			return nil, fmt.Errorf("repair witness: the checkpoint of row %d in %s is not in this database; nothing was changed: %w", l.Seq, path, ErrWitnessMismatch)
		}
	}
	sum := sha256.Sum256(wf.TornTail)
	rep := &WitnessRepair{Path: path, TornBytes: len(wf.TornTail), TornHash: hex.EncodeToString(sum[:])}
	if n := wf.Newest(); n != nil {
		rep.Newest = n.Seq
	}
	if err := s.withTx(ctx, "repair witness", func(tx *sql.Tx) error {
		return s.appendAudit(ctx, tx, "witness.repair", s.actor, map[string]any{
			"witness": path, "torn_bytes": rep.TornBytes, "torn_sha256": rep.TornHash, "newest": rep.Newest})
	}); err != nil {
		return nil, err
	}
	if err := truncateWitness(path, wf.Size); err != nil {
		return nil, fmt.Errorf("repair witness: recorded, but cutting %s failed: %w", path, err)
	}
	return rep, nil
}
