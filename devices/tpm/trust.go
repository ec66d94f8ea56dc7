package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Trust anchors and the anti-rollback counter.
//
// The anchors (devices/anchors encoding) live in one ordinary owner NV
// index, Config.AnchorsIndex, defined like the chain indices (OWNERWRITE,
// AUTHREAD with an empty index auth, NO_DA, WRITEDEFINE): anyone on the
// device reads them, only the owner writes them, and after LockAnchors no
// one does until the owner undefines the index. The lock protects only when
// the owner authorization is not the empty factory value: the station sets
// it with ChangeOwnerAuth before locking.
//
// The counter, Config.CounterIndex, is a TPM_NT_COUNTER index: it can only
// be incremented, by one per TPM2_NV_Increment, and it starts at the
// highest value any counter of the TPM ever held (so its first value is
// recorded as the anchors' counter base). It is AUTHWRITE with an empty
// index auth so that the agent can advance it without the owner
// authorization; a local attacker can therefore advance it too, which
// blocks updates (denial of service) but never allows a rollback.

// ErrNoAnchors means the trust anchors index is not defined or never
// written.
var ErrNoAnchors = errors.New("no trust anchors stored")

// ErrNoCounter means the anti-rollback counter is not defined or was never
// incremented.
var ErrNoCounter = errors.New("no anti-rollback counter")

// ChangeOwnerAuth sets the owner hierarchy's authorization value, and the
// lockout hierarchy's to the same value (TPM2_HierarchyChangeAuth, each
// authorized with its current value), and uses the new value from then
// on. The lockout value matters as much as the owner's: TPM2_Clear is
// authorized by the lockout hierarchy, and a chip anyone can clear is a
// chip whose anchors anyone can remove and define again. One value for
// both keeps the RMA desk's procedure to one unsealed secret (owner
// operations, and tpm2_clear with it). newAuth is never logged; keeping
// it is the caller's job (the station records it sealed). When the owner
// value was changed and the lockout value could not be, the error says so
// and the owner value in use is the new one.
func (d *Device) ChangeOwnerAuth(newAuth []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return err
	}
	if len(newAuth) == 0 || len(newAuth) > 32 {
		return fmt.Errorf("change owner auth: new value must be 1..32 bytes")
	}
	if _, err := (tpm2.HierarchyChangeAuth{
		AuthHandle: d.ownerAuth(),
		NewAuth:    tpm2.TPM2BAuth{Buffer: newAuth},
	}).Execute(d.tpm); err != nil {
		return fmt.Errorf("change owner auth: %w", err)
	}
	d.cfg.OwnerAuth = bytes.Clone(newAuth)
	if _, err := (tpm2.HierarchyChangeAuth{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHLockout, Auth: tpm2.PasswordAuth(d.cfg.LockoutAuth)},
		NewAuth:    tpm2.TPM2BAuth{Buffer: newAuth},
	}).Execute(d.tpm); err != nil {
		return fmt.Errorf("change owner auth: the owner value is set, the lockout value could not be: %w", err)
	}
	d.cfg.LockoutAuth = bytes.Clone(newAuth)
	return nil
}

// WriteAnchors stores the encoded trust anchors. It fails with an error
// wrapping tpm2.TPMRCNVLocked if the index is locked with other content;
// writing the same bytes again is not an error (a resumed end of line).
func (d *Device) WriteAnchors(enc []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return err
	}
	if len(enc) == 0 || len(enc) > d.nvIndexMax {
		return fmt.Errorf("write anchors: %d bytes, the index holds 1..%d", len(enc), d.nvIndexMax)
	}
	idx := d.cfg.AnchorsIndex
	pub, _, err := d.nvPublic(idx)
	switch {
	case errors.Is(err, errNVAbsent):
		if err := d.defineNV(idx, len(enc)); err != nil {
			return fmt.Errorf("write anchors: %w", err)
		}
	case err != nil:
		return fmt.Errorf("write anchors: %w", err)
	case pub.Attributes.WriteLocked:
		cur, rerr := d.readNVWhole(idx)
		if rerr == nil && bytes.Equal(cur, enc) {
			return nil
		}
		return fmt.Errorf("write anchors: nv %#x: %w", idx, tpm2.TPMRCNVLocked)
	case int(pub.DataSize) != len(enc):
		if err := d.undefineNV(idx); err != nil {
			return fmt.Errorf("write anchors: %w", err)
		}
		if err := d.defineNV(idx, len(enc)); err != nil {
			return fmt.Errorf("write anchors: %w", err)
		}
	}
	if err := d.writeNV(idx, 0, enc); err != nil {
		return fmt.Errorf("write anchors: %w", err)
	}
	return nil
}

// ReadAnchors returns the stored anchors' bytes and whether the index is
// write-locked. The bytes are as the chip holds them: decode them with
// anchors.Parse, which checks them.
func (d *Device) ReadAnchors() (enc []byte, locked bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, false, err
	}
	idx := d.cfg.AnchorsIndex
	pub, name, err := d.nvPublic(idx)
	if errors.Is(err, errNVAbsent) {
		return nil, false, fmt.Errorf("read anchors: %w", ErrNoAnchors)
	}
	if err != nil {
		return nil, false, fmt.Errorf("read anchors: %w", err)
	}
	if !pub.Attributes.Written {
		return nil, false, fmt.Errorf("read anchors: %w", ErrNoAnchors)
	}
	b, err := d.readNV(idx, pub, name, 0, int(pub.DataSize))
	if err != nil {
		return nil, false, fmt.Errorf("read anchors: %w", err)
	}
	return b, bool(pub.Attributes.WriteLocked), nil
}

// LockAnchors write-locks the anchors index (TPM2_NV_WriteLock with the
// owner authorization; permanent because of TPMA_NV_WRITEDEFINE). Locking
// a locked index is not an error.
func (d *Device) LockAnchors() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return err
	}
	idx := d.cfg.AnchorsIndex
	pub, name, err := d.nvPublic(idx)
	if errors.Is(err, errNVAbsent) {
		return fmt.Errorf("lock anchors: %w", ErrNoAnchors)
	}
	if err != nil {
		return fmt.Errorf("lock anchors: %w", err)
	}
	if !pub.Attributes.Written {
		return fmt.Errorf("lock anchors: %w", ErrNoAnchors)
	}
	if pub.Attributes.WriteLocked {
		return nil
	}
	if _, err := (tpm2.NVWriteLock{
		AuthHandle: d.ownerAuth(),
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: name},
	}).Execute(d.tpm); err != nil {
		return fmt.Errorf("lock anchors: nv %#x: %w", idx, err)
	}
	return nil
}

// SetupCounter defines the anti-rollback counter if it is absent,
// increments it once if it was never incremented (a counter cannot be read
// before), and returns its value. Defining needs the owner authorization;
// an existing counter is reused.
func (d *Device) SetupCounter() (uint64, error) {
	if err := d.PrepareCounter(); err != nil {
		return 0, err
	}
	return d.Counter()
}

// PrepareCounter is SetupCounter without the final read: the counter is
// defined if absent and incremented once if it never was, so that Counter
// can read it. An agent does the two in separate calls, letting other
// requests use the TPM in between.
func (d *Device) PrepareCounter() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return err
	}
	idx := d.cfg.CounterIndex
	pub, _, err := d.nvPublic(idx)
	if errors.Is(err, errNVAbsent) {
		if _, err := (tpm2.NVDefineSpace{
			AuthHandle: d.ownerAuth(),
			PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
				NVIndex: tpm2.TPMHandle(idx),
				NameAlg: tpm2.TPMAlgSHA256,
				Attributes: tpm2.TPMANV{
					AuthWrite: true,
					AuthRead:  true,
					OwnerRead: true,
					NoDA:      true,
					NT:        tpm2.TPMNTCounter,
				},
				DataSize: 8,
			}),
		}).Execute(d.tpm); err != nil {
			return fmt.Errorf("setup counter: nv define %#x: %w", idx, err)
		}
		pub, _, err = d.nvPublic(idx)
	}
	if err != nil {
		return fmt.Errorf("setup counter: %w", err)
	}
	if pub.Attributes.NT != tpm2.TPMNTCounter || pub.DataSize != 8 {
		return fmt.Errorf("setup counter: nv %#x is not a counter index: %w", idx, ErrHandleInUse)
	}
	if !pub.Attributes.Written {
		if err := d.incrementCounter(); err != nil {
			return fmt.Errorf("setup counter: %w", err)
		}
	}
	return nil
}

// Counter returns the anti-rollback counter's value.
func (d *Device) Counter() (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return 0, err
	}
	return d.readCounter()
}

// IncrementCounter adds one to the anti-rollback counter
// (TPM2_NV_Increment) and returns the new value.
func (d *Device) IncrementCounter() (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return 0, err
	}
	if err := d.incrementCounter(); err != nil {
		return 0, fmt.Errorf("increment counter: %w", err)
	}
	return d.readCounter()
}

func (d *Device) incrementCounter() error {
	idx := d.cfg.CounterIndex
	_, name, err := d.nvPublic(idx)
	if errors.Is(err, errNVAbsent) {
		return ErrNoCounter
	}
	if err != nil {
		return err
	}
	if _, err := (tpm2.NVIncrement{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(idx), Name: name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: name},
	}).Execute(d.tpm); err != nil {
		return fmt.Errorf("nv increment %#x: %w", idx, err)
	}
	return nil
}

func (d *Device) readCounter() (uint64, error) {
	idx := d.cfg.CounterIndex
	pub, name, err := d.nvPublic(idx)
	if errors.Is(err, errNVAbsent) {
		return 0, fmt.Errorf("read counter: %w", ErrNoCounter)
	}
	if err != nil {
		return 0, fmt.Errorf("read counter: %w", err)
	}
	if pub.Attributes.NT != tpm2.TPMNTCounter || pub.DataSize != 8 {
		return 0, fmt.Errorf("read counter: nv %#x is not a counter index: %w", idx, ErrHandleInUse)
	}
	if !pub.Attributes.Written {
		return 0, fmt.Errorf("read counter: never incremented: %w", ErrNoCounter)
	}
	b, err := d.readNV(idx, pub, name, 0, 8)
	if err != nil {
		return 0, fmt.Errorf("read counter: %w", err)
	}
	return binary.BigEndian.Uint64(b), nil
}
