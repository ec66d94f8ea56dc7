package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

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
// How LatencyTPM applies them (one wait per TPM command, by command code):
//   - ECCKeygen: TPM2_Create, TPM2_CreatePrimary and TPM2_CreateLoaded of an
//     ECC key (the Device makes the SRK, IAK, IDevID, LDevID and a
//     non-persisted ECC EK this way).
//   - RSAKeygen: the same commands for an RSA key (an RSA EK that is not
//     persisted).
//   - Sign: TPM2_Sign and TPM2_Certify.
//   - Sign, as an estimate for operations the table does not list:
//     TPM2_ActivateCredential, each TPM2_NV_Read and TPM2_NV_Write command
//     (each chunk of at most TPM_PT_NV_BUFFER_MAX), TPM2_NV_WriteLock,
//     TPM2_NV_Increment.
//
// Other commands (ReadPublic, GetCapability, FlushContext, EvictControl,
// NV_ReadPublic, NV_DefineSpace, policy commands) are not delayed.
var LatencyProfiles = map[string]Latency{
	"slb9670": {ECCKeygen: 231 * time.Millisecond, Sign: 68900 * time.Microsecond, RSAKeygen: 2200 * time.Millisecond},
	"slb9672": {ECCKeygen: 136 * time.Millisecond, Sign: 35600 * time.Microsecond, RSAKeygen: 1600 * time.Millisecond},
	"st33":    {ECCKeygen: 220 * time.Millisecond, Sign: 42300 * time.Microsecond, RSAKeygen: 7500 * time.Millisecond},
	"npct750": {ECCKeygen: 84 * time.Millisecond, Sign: 56400 * time.Microsecond, RSAKeygen: 3400 * time.Millisecond},
	"attpm20": {ECCKeygen: 153 * time.Millisecond, Sign: 58700 * time.Microsecond, RSAKeygen: 5300 * time.Millisecond},
}

// ErrUnknownProfile reports a latency profile name that LatencyProfiles
// does not hold.
var ErrUnknownProfile = errors.New("unknown latency profile")

// LookupLatency returns the latencies of the named chip (case-insensitive).
// "", "none" and "off" give the zero Latency: no waits.
func LookupLatency(name string) (Latency, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if n == "" || n == "none" || n == "off" {
		return Latency{}, nil
	}
	l, ok := LatencyProfiles[n]
	if !ok {
		names := slices.Sorted(maps.Keys(LatencyProfiles))
		return Latency{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownProfile, name, strings.Join(names, ", "))
	}
	return l, nil
}

// For returns how long the chip takes for cmd, a marshalled TPM command
// (header first). A command too short to read is not delayed: the TPM
// behind refuses it anyway.
func (l Latency) For(cmd []byte) time.Duration {
	if len(cmd) < 10 {
		return 0
	}
	switch tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10])) {
	case tpm2.TPMCCSign, tpm2.TPMCCCertify, tpm2.TPMCCActivateCredential,
		tpm2.TPMCCNVRead, tpm2.TPMCCNVWrite, tpm2.TPMCCNVWriteLock, tpm2.TPMCCNVIncrement:
		return l.Sign
	case tpm2.TPMCCCreate, tpm2.TPMCCCreatePrimary, tpm2.TPMCCCreateLoaded:
		switch keyType(cmd) {
		case tpm2.TPMAlgECC:
			return l.ECCKeygen
		case tpm2.TPMAlgRSA:
			return l.RSAKeygen
		}
	}
	return 0
}

// keyType reads the type of the key template in a TPM2_Create,
// TPM2_CreatePrimary or TPM2_CreateLoaded command: after the header, the one
// handle, the authorization area (when the tag says sessions) and
// inSensitive comes the public template, type first. 0 when the command is
// too short.
func keyType(cmd []byte) tpm2.TPMAlgID {
	off := 14 // header (10) + parent/primary handle (4)
	if binary.BigEndian.Uint16(cmd[0:2]) == uint16(tpm2.TPMSTSessions) {
		if len(cmd) < off+4 {
			return 0
		}
		off += 4 + int(binary.BigEndian.Uint32(cmd[off:off+4]))
	}
	if off < 0 || len(cmd) < off+2 {
		return 0
	}
	off += 2 + int(binary.BigEndian.Uint16(cmd[off:off+2])) // inSensitive
	off += 2                                                // size of inPublic / the template
	if len(cmd) < off+2 {
		return 0
	}
	return tpm2.TPMAlgID(binary.BigEndian.Uint16(cmd[off : off+2]))
}

// LatencyTPM is a transport.TPM decorator that makes a fast TPM (swtpm, the
// simulator) answer as slowly as a real chip: before it forwards a command
// it waits as long as the chip's Latency says for that command code. The
// Device above it does not know it is being slowed down; this is how a
// bench of simulated devices gives honest throughput estimates.
type LatencyTPM struct {
	next transport.TPM
	lat  Latency
	wait func(time.Duration)

	mu     sync.Mutex
	waits  map[tpm2.TPMCC]int
	waited time.Duration
}

// LatencyOption configures a LatencyTPM.
type LatencyOption func(*LatencyTPM)

// WithWaitFunc replaces time.Sleep as the way a LatencyTPM waits: a test
// passes a function that advances its own clock, so that no verdict depends
// on the machine's speed.
func WithWaitFunc(wait func(time.Duration)) LatencyOption {
	return func(t *LatencyTPM) { t.wait = wait }
}

// NewLatencyTPM wraps next so that every command waits as lat says. A zero
// Latency forwards every command at once.
func NewLatencyTPM(next transport.TPM, lat Latency, opts ...LatencyOption) *LatencyTPM {
	t := &LatencyTPM{next: next, lat: lat, wait: time.Sleep, waits: map[tpm2.TPMCC]int{}}
	for _, o := range opts {
		o(t)
	}
	return t
}

// WithLatencyProfile wraps next in a LatencyTPM for the named profile (see
// LookupLatency); with no profile ("", "none", "off") it returns next
// itself.
func WithLatencyProfile(next transport.TPMCloser, profile string) (transport.TPMCloser, error) {
	lat, err := LookupLatency(profile)
	if err != nil {
		return nil, err
	}
	if lat == (Latency{}) {
		return next, nil
	}
	return NewLatencyTPM(next, lat), nil
}

// Send sends cmd and waits as the chip would for its command code before
// returning the response. An answer "try again" (TPM_RC_RETRY, YIELDED,
// TESTING: the TPM did not execute the command; the Device re-sends it) is
// returned at once, so that an operation costs the chip's time once, as it
// does on a real chip.
func (t *LatencyTPM) Send(cmd []byte) ([]byte, error) {
	rsp, err := t.next.Send(cmd)
	d := t.lat.For(cmd)
	if d <= 0 || err != nil {
		return rsp, err
	}
	if len(rsp) >= 10 {
		switch binary.BigEndian.Uint32(rsp[6:10]) {
		case rcRetry, rcYielded, rcTesting:
			return rsp, err
		}
	}
	t.mu.Lock()
	t.waits[tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10]))]++
	t.waited += d
	t.mu.Unlock()
	t.wait(d)
	return rsp, err
}

// Close closes the wrapped transport when it can be closed.
func (t *LatencyTPM) Close() error {
	if c, ok := t.next.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Waits returns how many commands were delayed, by command code, and the
// total time waited.
func (t *LatencyTPM) Waits() (map[tpm2.TPMCC]int, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.waits), t.waited
}
