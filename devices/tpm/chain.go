package tpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Chain storage layout. The chain is stored as one byte stream spread over
// NV indices NVBase, NVBase+1, ... of TPM_PT_NV_INDEX_MAX bytes each (the
// last one may be smaller):
//
//	offset 0  magic   "WSCC"
//	offset 4  version uint16 BE (1)
//	offset 6  flags   uint16 BE (0, reserved)
//	offset 8  length  uint32 BE: length of content
//	offset 12 SHA-256 of content (32 bytes)
//	offset 44 content: the certificates' DER, leaf first, concatenated
//	          (each DER element is self-delimiting)
const (
	chainMagic      = "WSCC"
	chainVersion    = 1
	chainHeaderSize = 44
)

// ChainDigest returns the SHA-256 stored in the chain header: the hash of
// the certificates' DER concatenated, leaf first.
func ChainDigest(chain [][]byte) []byte {
	h := sha256.New()
	for _, c := range chain {
		h.Write(c)
	}
	return h.Sum(nil)
}

func (d *Device) chainIndex(i int) uint32 {
	if d.chainBase != 0 {
		return d.chainBase + uint32(i)
	}
	return d.cfg.NVBase + uint32(i)
}

// WriteChain stores a certificate chain (DER, leaf first) and returns the
// NV indices it occupies.
//
// Power-loss safety: all content is written first and the header (magic,
// version, length, SHA-256) last, in a single TPM2_NV_Write, which the TPM
// executes atomically. An interrupted rewrite therefore leaves the old
// header over partly new content, which fails the hash check (ErrCorruptChain),
// or the old content unchanged (old chain valid), or the new header over the
// complete new content (new chain valid) — never a mix that passes.
//
// One case loses the old chain before the new one is complete: when an
// index must grow (the old chain's last index was sized to fit), it is
// undefined and defined again; if that index is the first one, an
// interruption leaves no chain (ErrNoChain), otherwise a corrupt one.
//
// A chain locked by LockChain cannot be rewritten: the error wraps
// tpm2.TPMRCNVLocked and nothing is modified.
func (d *Device) WriteChain(chain [][]byte) ([]uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, err
	}
	return d.writeChain(chain)
}

// writeChain is WriteChain at the current chain base (d.mu held).
func (d *Device) writeChain(chain [][]byte) ([]uint32, error) {
	if len(chain) == 0 {
		return nil, errors.New("write chain: empty chain")
	}
	var content []byte
	for i, c := range chain {
		t, err := trimDER(c)
		if err != nil || len(t) != len(c) {
			return nil, fmt.Errorf("write chain: certificate %d is not a single DER element", i)
		}
		content = append(content, c...)
	}
	sum := sha256.Sum256(content)
	header := make([]byte, chainHeaderSize)
	copy(header, chainMagic)
	binary.BigEndian.PutUint16(header[4:], chainVersion)
	binary.BigEndian.PutUint32(header[8:], uint32(len(content)))
	copy(header[12:], sum[:])

	total := chainHeaderSize + len(content)
	n := (total + d.nvIndexMax - 1) / d.nvIndexMax
	if n > d.cfg.NVMaxIndices {
		return nil, fmt.Errorf("write chain of %d bytes: needs %d indices of %d bytes, %d configured: %w",
			total, n, d.nvIndexMax, d.cfg.NVMaxIndices, ErrChainTooLarge)
	}

	// Look at every index of our range first: a locked one stops us before
	// anything is modified.
	existing := make([]*tpm2.TPMSNVPublic, d.cfg.NVMaxIndices)
	for i := range existing {
		pub, _, err := d.nvPublic(d.chainIndex(i))
		if errors.Is(err, errNVAbsent) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("write chain: %w", err)
		}
		if pub.Attributes.WriteLocked {
			return nil, fmt.Errorf("write chain: nv %#x: %w", d.chainIndex(i), tpm2.TPMRCNVLocked)
		}
		existing[i] = pub
	}

	// Define (or grow) the indices the stream needs.
	indices := make([]uint32, n)
	for i := range n {
		idx := d.chainIndex(i)
		indices[i] = idx
		need := min(total-i*d.nvIndexMax, d.nvIndexMax)
		size := need
		if i < n-1 {
			size = d.nvIndexMax
		} else {
			size = min((need+255)/256*256, d.nvIndexMax) // slack for a slightly longer chain later
		}
		if pub := existing[i]; pub != nil {
			if int(pub.DataSize) >= need && (i == n-1 || int(pub.DataSize) == d.nvIndexMax) {
				continue
			}
			if err := d.undefineNV(idx); err != nil {
				return nil, fmt.Errorf("write chain: resize: %w", err)
			}
		}
		if err := d.defineNV(idx, size); err != nil {
			return nil, fmt.Errorf("write chain: %w", err)
		}
	}

	// Content first, header last. The header travels in the last write
	// together with as much of the first index's content as fits one
	// TPM_PT_NV_BUFFER_MAX command (one NV_Write less per chain than a
	// separate header write; the last command is still the one that makes
	// the chain valid, and the TPM executes it atomically).
	stream := append(append(make([]byte, 0, total), header...), content...)
	last := min(d.nvBufferMax, d.nvIndexMax, total)
	for i := range n {
		lo := max(i*d.nvIndexMax, last)
		hi := min((i+1)*d.nvIndexMax, total)
		if lo >= hi {
			continue
		}
		if err := d.writeNV(indices[i], lo-i*d.nvIndexMax, stream[lo:hi]); err != nil {
			return nil, fmt.Errorf("write chain: %w", err)
		}
	}
	if err := d.writeNV(indices[0], 0, stream[:last]); err != nil {
		return nil, fmt.Errorf("write chain header: %w", err)
	}

	// Drop indices a previous, longer chain used.
	for i := n; i < d.cfg.NVMaxIndices; i++ {
		if existing[i] == nil {
			continue
		}
		if err := d.undefineNV(d.chainIndex(i)); err != nil {
			return nil, fmt.Errorf("write chain: cleanup: %w", err)
		}
	}
	return indices, nil
}

// ReadChain reads the stored chain (DER, leaf first) and checks its header.
// It returns ErrNoChain if nothing is stored and ErrCorruptChain if the
// header, length or SHA-256 do not match.
func (d *Device) ReadChain() ([][]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, err
	}
	chain, _, err := d.readChain()
	return chain, err
}

// readChain returns the chain and the indices it occupies.
func (d *Device) readChain() ([][]byte, []uint32, error) {
	idx0 := d.chainIndex(0)
	pub, name, err := d.nvPublic(idx0)
	if errors.Is(err, errNVAbsent) {
		return nil, nil, ErrNoChain
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read chain: %w", err)
	}
	if !pub.Attributes.Written {
		return nil, nil, ErrNoChain
	}
	if int(pub.DataSize) < chainHeaderSize+1 {
		return nil, nil, fmt.Errorf("read chain: nv %#x too small: %w", idx0, ErrCorruptChain)
	}
	header, err := d.readNV(idx0, pub, name, 0, chainHeaderSize)
	if err != nil {
		return nil, nil, fmt.Errorf("read chain: %w", err)
	}
	if string(header[:4]) != chainMagic {
		return nil, nil, fmt.Errorf("read chain: bad magic: %w", ErrCorruptChain)
	}
	if v := binary.BigEndian.Uint16(header[4:]); v != chainVersion {
		return nil, nil, fmt.Errorf("read chain: unknown version %d: %w", v, ErrCorruptChain)
	}
	length := int(binary.BigEndian.Uint32(header[8:]))
	total := chainHeaderSize + length
	n := (total + d.nvIndexMax - 1) / d.nvIndexMax
	if length == 0 || n > d.cfg.NVMaxIndices {
		return nil, nil, fmt.Errorf("read chain: length %d out of range: %w", length, ErrCorruptChain)
	}
	content := make([]byte, 0, length)
	indices := make([]uint32, n)
	for i := range n {
		idx := d.chainIndex(i)
		indices[i] = idx
		lo := max(i*d.nvIndexMax, chainHeaderSize)
		hi := min((i+1)*d.nvIndexMax, total)
		ipub, iname := pub, name
		if i > 0 {
			ipub, iname, err = d.nvPublic(idx)
			if errors.Is(err, errNVAbsent) {
				return nil, nil, fmt.Errorf("read chain: nv %#x missing: %w", idx, ErrCorruptChain)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("read chain: %w", err)
			}
		}
		off := lo - i*d.nvIndexMax
		if !ipub.Attributes.Written || int(ipub.DataSize) < hi-i*d.nvIndexMax {
			return nil, nil, fmt.Errorf("read chain: nv %#x short: %w", idx, ErrCorruptChain)
		}
		part, err := d.readNV(idx, ipub, iname, off, hi-lo)
		if err != nil {
			return nil, nil, fmt.Errorf("read chain: %w", err)
		}
		content = append(content, part...)
	}
	sum := sha256.Sum256(content)
	if !bytes.Equal(sum[:], header[12:44]) {
		return nil, nil, fmt.Errorf("read chain: sha-256 mismatch: %w", ErrCorruptChain)
	}
	var chain [][]byte
	for rest := content; len(rest) > 0; {
		c, err := trimDER(rest)
		if err != nil {
			return nil, nil, fmt.Errorf("read chain: certificate %d: %w", len(chain), ErrCorruptChain)
		}
		chain = append(chain, c)
		rest = rest[len(c):]
	}
	return chain, indices, nil
}

// LockChain write-locks the NV indices of the stored chain
// (TPM2_NV_WriteLock; permanent because the indices carry
// TPMA_NV_WRITEDEFINE). Later WriteChain calls fail with an error wrapping
// tpm2.TPMRCNVLocked. The owner can still undefine the indices: the lock
// protects against accidental rewrites, not against the platform owner.
// Locking an already locked chain is not an error.
func (d *Device) LockChain() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return err
	}
	return d.lockChain()
}

// lockChain is LockChain at the current chain base (d.mu held).
func (d *Device) lockChain() error {
	_, indices, err := d.readChain()
	if err != nil {
		return fmt.Errorf("lock chain: %w", err)
	}
	return d.lockIndices(indices)
}

// lockIndices write-locks the given chain indices (d.mu held); a locked
// one is left alone. A caller that just wrote (and hashed) the chain
// passes the indices writeChain returned, without reading it all back.
func (d *Device) lockIndices(indices []uint32) error {
	for _, idx := range indices {
		pub, name, err := d.nvPublic(idx)
		if err != nil {
			return fmt.Errorf("lock chain: %w", err)
		}
		if pub.Attributes.WriteLocked {
			continue
		}
		if _, err := (tpm2.NVWriteLock{
			AuthHandle: d.ownerAuth(),
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: name},
		}).Execute(d.tpm); err != nil {
			return fmt.Errorf("lock chain: nv %#x: %w", idx, err)
		}
	}
	return nil
}
