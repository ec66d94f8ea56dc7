package tpm

import (
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Device is one TPM used as a wsc device key store. Its methods are safe for
// concurrent use (they are serialised: a TPM executes one command at a time).
type Device struct {
	mu  sync.Mutex
	tpm transport.TPM
	cfg Config

	nvBufferMax int // TPM_PT_NV_BUFFER_MAX
	nvIndexMax  int // TPM_PT_NV_INDEX_MAX

	eks []EK // cached after the first EKs call

	// chainBase, when not 0, replaces Config.NVBase for the chain
	// functions (set under mu by the signing-key chain functions).
	chainBase uint32
}

// New wraps an open transport. It flushes every transient object and
// session left loaded by earlier clients (a crashed agent leaks them and a
// TPM without resource manager has only about 3 object slots), then reads
// TPM_PT_NV_BUFFER_MAX and TPM_PT_NV_INDEX_MAX. The Device does not own t:
// Close does not close it.
func New(t transport.TPM, cfg Config) (*Device, error) {
	if t == nil {
		return nil, errors.New("new tpm device: nil transport")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("new tpm device: %w", err)
	}
	d := &Device{tpm: retryTPM{t: t}, cfg: cfg}
	if err := d.flushAll(); err != nil {
		return nil, fmt.Errorf("new tpm device: %w", err)
	}
	props, err := d.properties(tpm2.TPMPTNVBufferMax, tpm2.TPMPTNVIndexMax)
	if err != nil {
		return nil, fmt.Errorf("new tpm device: %w", err)
	}
	d.nvBufferMax = int(props[tpm2.TPMPTNVBufferMax])
	d.nvIndexMax = int(props[tpm2.TPMPTNVIndexMax])
	if d.nvBufferMax < 64 || d.nvIndexMax < 512 {
		return nil, fmt.Errorf("new tpm device: implausible nv limits (buffer %d, index %d)", d.nvBufferMax, d.nvIndexMax)
	}
	if d.nvBufferMax > d.nvIndexMax {
		d.nvBufferMax = d.nvIndexMax
	}
	return d, nil
}

// Config returns the effective configuration (defaults filled in).
func (d *Device) Config() Config { return d.cfg }

// NVLimits returns TPM_PT_NV_BUFFER_MAX and TPM_PT_NV_INDEX_MAX as read
// from the TPM.
func (d *Device) NVLimits() (bufferMax, indexMax int) { return d.nvBufferMax, d.nvIndexMax }

// Close releases the Device. Persistent keys and NV data stay in the TPM;
// the transport is left open for its owner to close.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tpm = nil
	return nil
}

func (d *Device) transport() (transport.TPM, error) {
	if d.tpm == nil {
		return nil, errors.New("tpm device closed")
	}
	return d.tpm, nil
}

// handles lists handles of one type (first byte of the handle).
func (d *Device) handles(first uint32) ([]tpm2.TPMHandle, error) {
	var out []tpm2.TPMHandle
	next := first
	for {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: next, PropertyCount: 64}.Execute(d.tpm)
		if err != nil {
			return nil, fmt.Errorf("list handles %#x: %w", first, err)
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return nil, fmt.Errorf("list handles %#x: %w", first, err)
		}
		done := false
		for _, h := range hs.Handle {
			if uint32(h)>>24 != first>>24 {
				done = true
				break
			}
			out = append(out, h)
		}
		if done || !bool(rsp.MoreData) || len(hs.Handle) == 0 {
			return out, nil
		}
		next = uint32(hs.Handle[len(hs.Handle)-1]) + 1
	}
}

// flushAll flushes loaded transient objects, loaded sessions and saved
// (context-gapped) sessions.
func (d *Device) flushAll() error {
	for _, first := range []uint32{0x80000000, 0x02000000, 0x03000000} {
		hs, err := d.handles(first)
		if err != nil {
			return err
		}
		for _, h := range hs {
			if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(d.tpm); err != nil {
				return fmt.Errorf("flush handle %#x: %w", uint32(h), err)
			}
		}
	}
	return nil
}

func (d *Device) flush(h tpm2.TPMHandle) {
	// Best effort: a failed flush only costs a slot until the next New.
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(d.tpm)
}

// properties reads TPM_PROPERTIES values.
func (d *Device) properties(pts ...tpm2.TPMPT) (map[tpm2.TPMPT]uint32, error) {
	out := make(map[tpm2.TPMPT]uint32, len(pts))
	for _, pt := range pts {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(pt), PropertyCount: 1}.Execute(d.tpm)
		if err != nil {
			return nil, fmt.Errorf("get tpm property %#x: %w", uint32(pt), err)
		}
		props, err := rsp.CapabilityData.Data.TPMProperties()
		if err != nil {
			return nil, fmt.Errorf("get tpm property %#x: %w", uint32(pt), err)
		}
		for _, p := range props.TPMProperty {
			if p.Property == pt {
				out[pt] = p.Value
			}
		}
		if _, ok := out[pt]; !ok {
			return nil, fmt.Errorf("get tpm property %#x: not reported", uint32(pt))
		}
	}
	return out, nil
}

// readPublic returns the public area and name of a loaded or persistent
// object; found is false when the handle is empty.
func (d *Device) readPublic(h tpm2.TPMHandle) (pub *tpm2.ReadPublicResponse, found bool, err error) {
	rsp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(d.tpm)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHandle) || errors.Is(err, tpm2.TPMRCValue) || errors.Is(err, tpm2.TPMRCReferenceH0) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("read public %#x: %w", uint32(h), err)
	}
	return rsp, true, nil
}

func (d *Device) ownerAuth() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(d.cfg.OwnerAuth)}
}

func (d *Device) endorsementAuth() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(d.cfg.EndorsementAuth)}
}

// String describes the Device without authorization values (fmt would
// otherwise print the unexported Config fields raw).
func (d *Device) String() string {
	return fmt.Sprintf("tpm.Device{%s nvBufferMax:%d nvIndexMax:%d}", d.cfg, d.nvBufferMax, d.nvIndexMax)
}

// GoString is String for %#v.
func (d *Device) GoString() string { return d.String() }
