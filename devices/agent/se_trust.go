package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/wsc-project/wsc/devices/anchors"
	"github.com/wsc-project/wsc/devices/se"
)

// Secure element layout of the firmware trust anchors and the counter:
// data slot 8 (416 bytes, clear read, clear write until slot-locked,
// lockable in the provisioning configuration) holds a 2-byte big-endian
// length, the devices/anchors encoding, and zeros; it is locked with Lock
// mode 2 and the CRC of its whole contents, so the chip refuses the lock if
// what it holds differs from what the agent wrote. Monotonic counter 0 is
// the anti-rollback counter.
const (
	seAnchorsSlot = 8
	seCounterID   = 0
)

// errAnchorsLocked reports a locked anchors slot with other content.
var errAnchorsLocked = errors.New("trust anchors slot is locked")

func (b *SEBackend) anchorsImage(enc []byte) ([]byte, error) {
	size := se.SlotSize(seAnchorsSlot)
	if len(enc) == 0 || len(enc)+2 > size {
		return nil, fmt.Errorf("trust anchors of %d bytes do not fit slot %d (%d bytes): use at most 4 roots and 4 CRL floors", len(enc), seAnchorsSlot, size)
	}
	img := make([]byte, size)
	binary.BigEndian.PutUint16(img, uint16(len(enc)))
	copy(img[2:], enc)
	return img, nil
}

func (b *SEBackend) slotLocked() (bool, error) {
	cfg, err := b.chip.ReadConfig()
	if err != nil {
		return false, err
	}
	return cfg.SlotLocked(seAnchorsSlot), nil
}

// WriteAnchors implements TrustStore.
func (b *SEBackend) WriteAnchors(ctx context.Context, enc []byte) error {
	img, err := b.anchorsImage(enc)
	if err != nil {
		return err
	}
	locked, err := b.slotLocked()
	if err != nil {
		return err
	}
	if locked {
		cur, _, err := b.ReadAnchors(ctx)
		if err == nil && bytes.Equal(cur, enc) {
			return nil
		}
		return fmt.Errorf("slot %d: %w with other content", seAnchorsSlot, errAnchorsLocked)
	}
	return b.chip.WriteSlot(seAnchorsSlot, 0, img)
}

// ReadAnchors implements TrustStore.
func (b *SEBackend) ReadAnchors(context.Context) ([]byte, bool, error) {
	img, err := b.chip.ReadSlot(seAnchorsSlot)
	if err != nil {
		return nil, false, err
	}
	n := int(binary.BigEndian.Uint16(img))
	if n == 0 {
		return nil, false, ErrNoAnchors
	}
	if n+2 > len(img) || n > anchors.MaxSize {
		return nil, false, fmt.Errorf("slot %d: anchors length %d out of range", seAnchorsSlot, n)
	}
	locked, err := b.slotLocked()
	if err != nil {
		return nil, false, err
	}
	return bytes.Clone(img[2 : 2+n]), locked, nil
}

// LockAnchors implements TrustStore: Lock mode 2 with the CRC of the
// slot's contents as read back.
func (b *SEBackend) LockAnchors(ctx context.Context) error {
	locked, err := b.slotLocked()
	if err != nil || locked {
		return err
	}
	img, err := b.chip.ReadSlot(seAnchorsSlot)
	if err != nil {
		return err
	}
	if binary.BigEndian.Uint16(img) == 0 {
		return ErrNoAnchors
	}
	return b.chip.LockSlot(seAnchorsSlot, img)
}

// SetupCounter implements TrustStore: the monotonic counter exists on
// every chip; its current value is the base.
func (b *SEBackend) SetupCounter(context.Context) (uint64, error) {
	v, err := b.chip.Counter(seCounterID)
	return uint64(v), err
}

// Counter implements TrustStore.
func (b *SEBackend) Counter(context.Context) (uint64, error) {
	v, err := b.chip.Counter(seCounterID)
	return uint64(v), err
}

// IncrementCounter implements TrustStore.
func (b *SEBackend) IncrementCounter(context.Context) (uint64, error) {
	v, err := b.chip.IncrementCounter(seCounterID)
	return uint64(v), err
}
