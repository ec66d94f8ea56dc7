package tpm

import (
	"fmt"
	"sort"
	"strings"
	"time"
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
	// LatencyProfile names a real chip whose per-operation latency the
	// Device imitates ("" = none). See LatencyProfiles.
	LatencyProfile string
	// EKKind selects the EK returned by EK and used by default for
	// ActivateCredential ("" = automatic: ECC preferred, then RSA).
	EKKind string
	// OwnerAuth and EndorsementAuth are the hierarchy authorization values
	// (empty on a factory-fresh TPM). They are never logged or printed.
	OwnerAuth, EndorsementAuth []byte
}

// DefaultConfig returns the documented defaults: SRK 0x81000001, IAK
// 0x81000010, IDevID 0x81000011, chain from NV 0x01500010, up to 8 indices,
// no latency profile.
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
	return fmt.Sprintf("tpm.Config{SRK:%#x IAK:%#x IDevID:%#x NVBase:%#x NVMaxIndices:%d LatencyProfile:%q EKKind:%q}",
		c.SRKHandle, c.IAKHandle, c.IDevIDHandle, c.NVBase, c.NVMaxIndices, c.LatencyProfile, c.EKKind)
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
	if _, err := lookupLatency(c.LatencyProfile); err != nil {
		return err
	}
	return nil
}

// Latency is the time a real chip needs for the operations FACTS.md
// measured (wolfTPM published figures).
type Latency struct {
	// ECCKeygen is an ECC P-256 key generation (TPM2_Create/CreatePrimary).
	ECCKeygen time.Duration
	// Sign is an ECDSA P-256 signature (TPM2_Sign, TPM2_Certify).
	Sign time.Duration
	// RSAKeygen is an RSA-2048 key generation.
	RSAKeygen time.Duration
}

// LatencyProfiles maps profile names to chip latencies.
//
// How the Device applies them (one wait per TPM command of the kind named):
//   - ECCKeygen: TPM2_Create of the IAK and of the IDevID, TPM2_CreatePrimary
//     of the SRK and of an ECC EK that is not persisted.
//   - RSAKeygen: TPM2_CreatePrimary of an RSA EK that is not persisted.
//   - Sign: TPM2_Sign (SignDigest, Signer, CSR) and TPM2_Certify.
//   - Sign, as an estimate for operations the table does not list:
//     TPM2_ActivateCredential, each TPM2_NV_Write and TPM2_NV_Read command
//     (chain and EK certificate, each chunk of at most TPM_PT_NV_BUFFER_MAX),
//     each TPM2_NV_WriteLock.
//
// Other commands (ReadPublic, GetCapability, FlushContext, EvictControl,
// NV_ReadPublic, NV_DefineSpace) are not delayed.
var LatencyProfiles = map[string]Latency{
	"slb9670": {ECCKeygen: 231 * time.Millisecond, Sign: 68900 * time.Microsecond, RSAKeygen: 2200 * time.Millisecond},
	"slb9672": {ECCKeygen: 136 * time.Millisecond, Sign: 35600 * time.Microsecond, RSAKeygen: 1600 * time.Millisecond},
	"st33":    {ECCKeygen: 220 * time.Millisecond, Sign: 42300 * time.Microsecond, RSAKeygen: 7500 * time.Millisecond},
	"npct750": {ECCKeygen: 84 * time.Millisecond, Sign: 56400 * time.Microsecond, RSAKeygen: 3400 * time.Millisecond},
	"attpm20": {ECCKeygen: 153 * time.Millisecond, Sign: 58700 * time.Microsecond, RSAKeygen: 5300 * time.Millisecond},
}

func lookupLatency(name string) (Latency, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if n == "" || n == "none" || n == "off" {
		return Latency{}, nil
	}
	l, ok := LatencyProfiles[n]
	if !ok {
		names := make([]string, 0, len(LatencyProfiles))
		for k := range LatencyProfiles {
			names = append(names, k)
		}
		sort.Strings(names)
		return Latency{}, fmt.Errorf("unknown latency profile %q (known: %s)", name, strings.Join(names, ", "))
	}
	return l, nil
}

// GoString is String for %#v, so that authorization values never print.
func (c Config) GoString() string { return c.String() }
