package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// A/B firmware slots on the device's disk.
//
// DIR/slot-a.wasm and DIR/slot-b.wasm hold modules; DIR/state.json says
// which slot is active (committed) and which one holds a module installed
// but not yet committed (pending). Install writes only the inactive slot
// and then the state, each through a temporary file, fsync and rename, so a
// crash at any point leaves the active module and the state that names it
// untouched: the previous module stays runnable. Commit advances the chip's
// anti-rollback counter first and then makes the pending slot active; a
// crash between the two is finished by running commit again.
//
// The state file is not trusted for security: Install and Commit verify
// the module bytes in the slot against the chip, and the counter lives in
// the chip.

// MaxCounterStep bounds how far one commit advances the chip counter (one
// TPM2_NV_Increment per step): manifest versions are small release
// numbers, not dates.
const MaxCounterStep = 1 << 12

// ErrNothingPending means commit found no installed module to commit.
var ErrNothingPending = errors.New("no installed module waiting for commit")

// SlotState is DIR/state.json.
type SlotState struct {
	// Active is "a" or "b", or "" before the first commit.
	Active string `json:"active"`
	// ActiveVersion and ActiveComponent describe the active module.
	ActiveVersion   uint64 `json:"active_version"`
	ActiveComponent string `json:"active_component,omitempty"`
	// Pending is the slot of an installed, uncommitted module, or "".
	Pending        string `json:"pending,omitempty"`
	PendingVersion uint64 `json:"pending_version,omitempty"`
	PendingMin     uint64 `json:"pending_min_version,omitempty"`
	// PendingSHA256 is the hash of the pending slot's bytes.
	PendingSHA256 string `json:"pending_sha256,omitempty"`
}

// Slots manages the A/B slots in one directory.
type Slots struct {
	// Dir is the slot directory.
	Dir string
	// crash, when set (tests), is called at each named point of Install and
	// Commit; an error stops the operation there, as a power cut would.
	crash func(point string) error
}

func (s *Slots) hit(point string) error {
	if s.crash == nil {
		return nil
	}
	return s.crash(point)
}

// SlotPath returns the file of slot "a" or "b".
func (s *Slots) SlotPath(slot string) string { return filepath.Join(s.Dir, "slot-"+slot+".wasm") }

func (s *Slots) statePath() string { return filepath.Join(s.Dir, "state.json") }

// State reads the slot state (the zero state when there is none yet).
func (s *Slots) State() (*SlotState, error) {
	b, err := os.ReadFile(s.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return &SlotState{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("slot state: %w", err)
	}
	var st SlotState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("slot state %s: %w", s.statePath(), err)
	}
	for _, v := range []string{st.Active, st.Pending} {
		if v != "" && v != "a" && v != "b" {
			return nil, fmt.Errorf("slot state %s: unknown slot %q", s.statePath(), v)
		}
	}
	return &st, nil
}

// Runnable returns the module to run: the active slot's file ("" when
// nothing was ever committed).
func (s *Slots) Runnable() (string, error) {
	st, err := s.State()
	if err != nil || st.Active == "" {
		return "", err
	}
	return s.SlotPath(st.Active), nil
}

func other(slot string) string {
	if slot == "a" {
		return "b"
	}
	return "a"
}

// Install verifies module against the chip and installs it into the
// inactive slot as pending. It returns the verdict; a refused module is
// never written to a slot.
func (s *Slots) Install(ctx context.Context, fw *Firmware, module io.Reader, bundle []byte) (*FirmwareResult, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("slot directory: %w", err)
	}
	st, err := s.State()
	if err != nil {
		return nil, err
	}
	target := other(st.Active)
	if st.Active == "" {
		target = "a"
	}
	// Copy first, verify the copy: what is checked is what will run.
	tmp := s.SlotPath(target) + ".tmp"
	sum, err := writeSynced(tmp, module)
	if err != nil {
		return nil, fmt.Errorf("write slot %s: %w", target, err)
	}
	defer os.Remove(tmp)
	if err := s.hit("copied"); err != nil {
		return nil, err
	}
	f, err := os.Open(tmp)
	if err != nil {
		return nil, err
	}
	res, err := fw.Verify(ctx, f, bundle)
	f.Close()
	if err != nil {
		return res, err
	}
	if err := os.Rename(tmp, s.SlotPath(target)); err != nil {
		return res, fmt.Errorf("install slot %s: %w", target, err)
	}
	if err := syncDir(s.Dir); err != nil {
		return res, err
	}
	if err := s.hit("slot-written"); err != nil {
		return res, err
	}
	st.Pending, st.PendingVersion, st.PendingMin, st.PendingSHA256 = target, res.Manifest.Version, res.Manifest.MinVersion, hex.EncodeToString(sum)
	if err := s.writeState(st); err != nil {
		return res, err
	}
	return res, nil
}

// Commit makes the pending module active after it ran successfully: it
// verifies the pending slot again (the disk is not trusted), advances the
// chip's counter to the module's minimum version, then records the slot as
// active. Running Commit again after a crash finishes the job.
func (s *Slots) Commit(ctx context.Context, fw *Firmware, bundle []byte) (*FirmwareResult, error) {
	st, err := s.State()
	if err != nil {
		return nil, err
	}
	if st.Pending == "" {
		return nil, ErrNothingPending
	}
	f, err := os.Open(s.SlotPath(st.Pending))
	if err != nil {
		return nil, fmt.Errorf("pending slot: %w", err)
	}
	res, err := fw.Verify(ctx, f, bundle)
	f.Close()
	if err != nil {
		return res, err
	}
	m := res.Manifest
	chip, err := fw.readChip(ctx)
	if err != nil {
		return res, err
	}
	if m.MinVersion > chip.floor {
		if m.MinVersion-chip.floor > MaxCounterStep {
			return res, refuse(fmt.Errorf("%w: minimum version %d is more than %d above the counter %d", ErrRollback, m.MinVersion, MaxCounterStep, chip.floor))
		}
		for v := chip.floor; v < m.MinVersion; v++ {
			if _, err := fw.Store.IncrementCounter(ctx); err != nil {
				return res, fmt.Errorf("advance the anti-rollback counter: %w", err)
			}
			if v == chip.floor {
				if err := s.hit("counter-advanced"); err != nil {
					return res, err
				}
			}
		}
		res.MinVersion = m.MinVersion
	}
	if err := s.hit("before-state"); err != nil {
		return res, err
	}
	st.Active, st.ActiveVersion, st.ActiveComponent = st.Pending, m.Version, m.Component
	st.Pending, st.PendingVersion, st.PendingMin, st.PendingSHA256 = "", 0, 0, ""
	return res, s.writeState(st)
}

func (s *Slots) writeState(st *SlotState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.statePath() + ".tmp"
	if _, err := writeSynced(tmp, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("write slot state: %w", err)
	}
	if err := os.Rename(tmp, s.statePath()); err != nil {
		return fmt.Errorf("write slot state: %w", err)
	}
	return syncDir(s.Dir)
}

// writeSynced streams r into a new file, fsyncs it and returns SHA-256.
func writeSynced(path string, r io.Reader) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	buf := make([]byte, 64<<10)
	if _, err := io.CopyBuffer(io.MultiWriter(f, h), r, buf); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
