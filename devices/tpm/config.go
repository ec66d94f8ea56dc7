package tpm

import (
	"fmt"
)

// Default handles and NV indices. Persistent handles are in the owner range
// (0x81000000-0x817FFFFF); 0x81000001 is the TCG provisioning guidance SRK
// handle. Chain NV indices are in the owner-defined range
// 0x01500000-0x015FFFFF, not the platform-hierarchy IDevID index 0x01C90000,
// which PC firmware disables before the OS runs.
const (
	DefaultSRKHandle    uint32 = 0x81000001
	DefaultIAKHandle    uint32 = 0x81000010
	DefaultIDevIDHandle uint32 = 0x81000011
	DefaultNVBase       uint32 = 0x01500010
	DefaultNVMaxIndices        = 8
	// DefaultAnchorsIndex holds the firmware trust anchors (devices/anchors).
	DefaultAnchorsIndex uint32 = 0x01500001
	// DefaultCounterIndex is the anti-rollback NV counter (TPM_NT_COUNTER).
	DefaultCounterIndex uint32 = 0x01500002
	// DefaultLDevIDHandle is the persistent handle of the code-signing key.
	DefaultLDevIDHandle uint32 = 0x81000012
	// DefaultLDevIDNVBase is the first NV index of the code-signing chain.
	DefaultLDevIDNVBase uint32 = 0x01500020
)

// Config says where the Device keeps its keys and chain. Zero fields are
// replaced by the defaults of DefaultConfig (SRKHandle cannot be zero: the
// storage primary is always persisted, which saves a key generation per
// boot on a real chip).
type Config struct {
	// SRKHandle is the persistent handle of the ECC P-256 storage primary
	// key (SRK, TCG template) under which IAK and IDevID are created. It is
	// created and persisted when absent; a storage key already there (e.g.
	// an RSA SRK made by tpm2-tools) is used as it is.
	SRKHandle uint32
	// IAKHandle is the persistent handle of the attestation key.
	IAKHandle uint32
	// IDevIDHandle is the persistent handle of the device identity key.
	IDevIDHandle uint32
	// NVBase is the first NV index of the certificate chain; the chain uses
	// NVBase, NVBase+1, ... as needed.
	NVBase uint32
	// NVMaxIndices bounds how many NV indices the chain may use.
	NVMaxIndices int
	// LDevIDHandle is the persistent handle of the code-signing key (an
	// LDevID certified by the IAK like the IDevID).
	LDevIDHandle uint32
	// LDevIDNVBase is the first NV index of the code-signing key's chain
	// (up to NVMaxIndices indices, like the IDevID chain).
	LDevIDNVBase uint32
	// AnchorsIndex is the NV index of the firmware trust anchors.
	AnchorsIndex uint32
	// CounterIndex is the NV index of the anti-rollback counter.
	CounterIndex uint32
	// EKKind selects the EK returned by EK and used by default for
	// ActivateCredential ("" = automatic: ECC preferred, then RSA).
	EKKind string
	// OwnerAuth and EndorsementAuth are the hierarchy authorization values
	// (empty on a factory-fresh TPM). They are never logged or printed.
	OwnerAuth, EndorsementAuth []byte
	// LockoutAuth is the lockout hierarchy's authorization value (empty
	// on a fresh TPM). ChangeOwnerAuth sets it to the new owner value too:
	// with an empty lockout value anyone on the device could TPM2_Clear
	// the chip and define the anchors afresh.
	LockoutAuth []byte
}

// DefaultConfig returns the documented defaults: SRK 0x81000001, IAK
// 0x81000010, IDevID 0x81000011, chain from NV 0x01500010, up to 8 indices.
func DefaultConfig() Config {
	return Config{
		SRKHandle:    DefaultSRKHandle,
		IAKHandle:    DefaultIAKHandle,
		IDevIDHandle: DefaultIDevIDHandle,
		NVBase:       DefaultNVBase,
		NVMaxIndices: DefaultNVMaxIndices,
		AnchorsIndex: DefaultAnchorsIndex,
		CounterIndex: DefaultCounterIndex,
		LDevIDHandle: DefaultLDevIDHandle,
		LDevIDNVBase: DefaultLDevIDNVBase,
	}
}

// String describes the configuration without the authorization values.
func (c Config) String() string {
	return fmt.Sprintf("tpm.Config{SRK:%#x IAK:%#x IDevID:%#x NVBase:%#x NVMaxIndices:%d EKKind:%q}",
		c.SRKHandle, c.IAKHandle, c.IDevIDHandle, c.NVBase, c.NVMaxIndices, c.EKKind)
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.SRKHandle == 0 {
		c.SRKHandle = d.SRKHandle
	}
	if c.IAKHandle == 0 {
		c.IAKHandle = d.IAKHandle
	}
	if c.IDevIDHandle == 0 {
		c.IDevIDHandle = d.IDevIDHandle
	}
	if c.NVBase == 0 {
		c.NVBase = d.NVBase
	}
	if c.NVMaxIndices <= 0 {
		c.NVMaxIndices = d.NVMaxIndices
	}
	if c.AnchorsIndex == 0 {
		c.AnchorsIndex = d.AnchorsIndex
	}
	if c.CounterIndex == 0 {
		c.CounterIndex = d.CounterIndex
	}
	if c.LDevIDHandle == 0 {
		c.LDevIDHandle = d.LDevIDHandle
	}
	if c.LDevIDNVBase == 0 {
		c.LDevIDNVBase = d.LDevIDNVBase
	}
	return c
}

func (c Config) validate() error {
	for _, h := range []struct {
		name string
		v    uint32
	}{{"srk", c.SRKHandle}, {"iak", c.IAKHandle}, {"idevid", c.IDevIDHandle}} {
		if h.v < 0x81000000 || h.v > 0x817FFFFF {
			return fmt.Errorf("%s handle %#x is not an owner persistent handle (0x81000000-0x817fffff)", h.name, h.v)
		}
	}
	if c.SRKHandle == c.IAKHandle || c.SRKHandle == c.IDevIDHandle || c.IAKHandle == c.IDevIDHandle {
		return fmt.Errorf("srk, iak and idevid handles must differ")
	}
	last := uint64(c.NVBase) + uint64(c.NVMaxIndices) - 1
	if c.NVBase < 0x01000000 || last > 0x01BFFFFF {
		return fmt.Errorf("nv indices %#x..%#x outside the owner NV range", c.NVBase, last)
	}
	for _, x := range []struct {
		name string
		v    uint32
	}{{"anchors", c.AnchorsIndex}, {"counter", c.CounterIndex}} {
		if x.v < 0x01000000 || x.v > 0x01BFFFFF {
			return fmt.Errorf("%s nv index %#x outside the owner NV range", x.name, x.v)
		}
		if x.v >= c.NVBase && uint64(x.v) <= last {
			return fmt.Errorf("%s nv index %#x overlaps the chain indices %#x..%#x", x.name, x.v, c.NVBase, last)
		}
	}
	if c.LDevIDHandle < 0x81000000 || c.LDevIDHandle > 0x817FFFFF || c.LDevIDHandle == c.SRKHandle || c.LDevIDHandle == c.IAKHandle || c.LDevIDHandle == c.IDevIDHandle {
		return fmt.Errorf("ldevid handle %#x must be an owner persistent handle distinct from srk, iak and idevid", c.LDevIDHandle)
	}
	llast := uint64(c.LDevIDNVBase) + uint64(c.NVMaxIndices) - 1
	if c.LDevIDNVBase < 0x01000000 || llast > 0x01BFFFFF || (uint64(c.LDevIDNVBase) <= last && llast >= uint64(c.NVBase)) {
		return fmt.Errorf("ldevid chain nv indices %#x..%#x outside the owner NV range or overlapping the idevid chain", c.LDevIDNVBase, llast)
	}
	for _, x := range []uint32{c.AnchorsIndex, c.CounterIndex} {
		if x >= c.LDevIDNVBase && uint64(x) <= llast {
			return fmt.Errorf("nv index %#x overlaps the ldevid chain indices", x)
		}
	}
	if c.AnchorsIndex == c.CounterIndex {
		return fmt.Errorf("anchors and counter nv indices must differ")
	}
	switch c.EKKind {
	case "", EKKindRSA2048, EKKindECCP256, EKKindECCP384:
	default:
		return fmt.Errorf("unknown ek kind %q", c.EKKind)
	}
	return nil
}

// GoString is String for %#v, so that authorization values never print.
func (c Config) GoString() string { return c.String() }
