package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// errNVAbsent reports an NV index that is not defined.
var errNVAbsent = errors.New("nv index not defined")

// nvPublic reads an index's public area and Name (the Name changes when
// TPMA_NV_WRITTEN or the lock bits change, so it is re-read before use).
func (d *Device) nvPublic(idx uint32) (*tpm2.TPMSNVPublic, tpm2.TPM2BName, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(idx)}.Execute(d.tpm)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHandle) {
			return nil, tpm2.TPM2BName{}, fmt.Errorf("nv %#x: %w", idx, errNVAbsent)
		}
		return nil, tpm2.TPM2BName{}, fmt.Errorf("nv read public %#x: %w", idx, err)
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("nv read public %#x: %w", idx, err)
	}
	return pub, rsp.NVName, nil
}

// nvReadAuth picks the read authorization: the index's own (empty) auth if
// TPMA_NV_AUTHREAD, else the owner's.
func (d *Device) nvReadAuth(idx uint32, pub *tpm2.TPMSNVPublic, name tpm2.TPM2BName) tpm2.AuthHandle {
	if pub.Attributes.AuthRead {
		return tpm2.AuthHandle{Handle: tpm2.TPMHandle(idx), Name: name, Auth: tpm2.PasswordAuth(nil)}
	}
	return d.ownerAuth()
}

// readNV reads n bytes at off, in chunks of TPM_PT_NV_BUFFER_MAX.
func (d *Device) readNV(idx uint32, pub *tpm2.TPMSNVPublic, name tpm2.TPM2BName, off, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	for n > 0 {
		c := min(n, d.nvBufferMax)
		rsp, err := tpm2.NVRead{
			AuthHandle: d.nvReadAuth(idx, pub, name),
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: name},
			Size:       uint16(c),
			Offset:     uint16(off),
		}.Execute(d.tpm)
		if err != nil {
			return nil, fmt.Errorf("nv read %#x at %d: %w", idx, off, err)
		}
		if len(rsp.Data.Buffer) != c {
			return nil, fmt.Errorf("nv read %#x at %d: got %d bytes, want %d", idx, off, len(rsp.Data.Buffer), c)
		}
		out = append(out, rsp.Data.Buffer...)
		off += c
		n -= c
	}
	return out, nil
}

// readNVWhole reads a whole written index; errNVAbsent if undefined.
func (d *Device) readNVWhole(idx uint32) ([]byte, error) {
	pub, name, err := d.nvPublic(idx)
	if err != nil {
		return nil, err
	}
	if !pub.Attributes.Written {
		return nil, fmt.Errorf("nv %#x never written: %w", idx, errNVAbsent)
	}
	return d.readNV(idx, pub, name, 0, int(pub.DataSize))
}

// writeNV writes data at off in chunks of TPM_PT_NV_BUFFER_MAX with owner
// authorization, re-reading the index Name before every command.
func (d *Device) writeNV(idx uint32, off int, data []byte) error {
	for len(data) > 0 {
		c := min(len(data), d.nvBufferMax)
		_, name, err := d.nvPublic(idx)
		if err != nil {
			return err
		}
		if _, err := (tpm2.NVWrite{
			AuthHandle: d.ownerAuth(),
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: name},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data[:c]},
			Offset:     uint16(off),
		}).Execute(d.tpm); err != nil {
			return fmt.Errorf("nv write %#x at %d: %w", idx, off, err)
		}
		data = data[c:]
		off += c
	}
	return nil
}

// defineNV defines an ordinary owner index for chain data. TPMA_NV_WRITEDEFINE
// makes TPM2_NV_WriteLock permanent (until the owner undefines the index);
// AUTHREAD with an empty auth lets anyone on the device read the chain,
// which is public data.
func (d *Device) defineNV(idx uint32, size int) error {
	_, err := tpm2.NVDefineSpace{
		AuthHandle: d.ownerAuth(),
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex: tpm2.TPMHandle(idx),
			NameAlg: tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{
				OwnerWrite:  true,
				OwnerRead:   true,
				AuthRead:    true,
				NoDA:        true,
				WriteDefine: true,
				NT:          tpm2.TPMNTOrdinary,
			},
			DataSize: uint16(size),
		}),
	}.Execute(d.tpm)
	if err != nil {
		return fmt.Errorf("nv define %#x (%d bytes): %w", idx, size, err)
	}
	return nil
}

func (d *Device) undefineNV(idx uint32) error {
	_, name, err := d.nvPublic(idx)
	if err != nil {
		return err
	}
	_, err = tpm2.NVUndefineSpace{
		AuthHandle: d.ownerAuth(),
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: name},
	}.Execute(d.tpm)
	if err != nil {
		return fmt.Errorf("nv undefine %#x: %w", idx, err)
	}
	return nil
}
