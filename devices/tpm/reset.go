package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Reset removes what this package put in the TPM: the persisted IAK and
// IDevID keys (evicted, so the private keys are gone for good) and the NV
// indices holding the chain. The SRK and the endorsement keys stay. It is
// for re-work and engineering: a device provisioned again after Reset gets
// new keys, and the station revokes its previous certificate (superseded).
// The owner can undefine the chain indices even after a write-lock
// (TPMA_NV_WRITEDEFINE locks writes, not the owner's undefine).
func (d *Device) Reset() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return err
	}
	for _, h := range []uint32{d.cfg.LDevIDHandle, d.cfg.IDevIDHandle, d.cfg.IAKHandle} {
		rp, found, err := d.readPublic(tpm2.TPMHandle(h))
		if err != nil {
			return fmt.Errorf("reset: %w", err)
		}
		if !found {
			continue
		}
		if _, err := (tpm2.EvictControl{
			Auth:             d.ownerAuth(),
			ObjectHandle:     tpm2.NamedHandle{Handle: tpm2.TPMHandle(h), Name: rp.Name},
			PersistentHandle: tpm2.TPMHandle(h),
		}).Execute(d.tpm); err != nil {
			return fmt.Errorf("reset: evict %#x: %w", h, err)
		}
	}
	for _, base := range []uint32{d.cfg.NVBase, d.cfg.LDevIDNVBase} {
		for i := 0; i < d.cfg.NVMaxIndices; i++ {
			idx := base + uint32(i)
			if err := d.undefineNV(idx); err != nil {
				if errors.Is(err, errNVAbsent) {
					continue
				}
				return fmt.Errorf("reset: %w", err)
			}
		}
	}
	return nil
}
