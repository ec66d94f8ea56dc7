// Package anchors is the device's firmware trust policy as it is stored in
// the chip (a TPM NV index or an ATECC608 data slot): the fingerprints of
// the firmware-signing roots the device accepts, the minimum CRL number per
// issuer, the device class, a policy version and the base of the
// anti-rollback counter. The station encodes it at end of line and the
// agent decodes it before accepting firmware; both use this package, which
// imports nothing of the project.
//
// Encoding (all integers big-endian):
//
//	offset  size  field
//	0       4     magic "WSCA"
//	4       2     format (1)
//	6       4     policy version
//	10      8     counter base: the chip counter's value when the policy was
//	              written; firmware version v is stored as counter base + v
//	18      1     n = length of the device class (1..64)
//	19      n     device class (UTF-8, printable)
//	.       1     r = number of root fingerprints (1..8)
//	.       32·r  SHA-256 of each root certificate's DER, sorted, distinct
//	.       1     c = number of CRL floors (0..8)
//	.       40·c  per floor: SHA-256 of the issuer's subject DN (DER, 32
//	              bytes) || minimum CRL number (8); sorted by issuer, distinct
//	.       32    SHA-256 of every preceding byte
//
// The encoding is canonical: Parse rejects anything Marshal would not have
// produced (unsorted or duplicated lists, trailing bytes, a bad checksum),
// so the station's read-back comparison is a byte comparison.
package anchors

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// Limits of the encoding.
const (
	Magic        = "WSCA"
	Format       = 1
	MaxClassLen  = 64
	MaxRoots     = 8
	MaxCRLFloors = 8
	// MaxSize is the largest encoding (fits a 1 KiB NV index and the
	// ATECC608's 416-byte slot 8 with up to 4 roots and 4 floors).
	MaxSize = 4 + 2 + 4 + 8 + 1 + MaxClassLen + 1 + 32*MaxRoots + 1 + 40*MaxCRLFloors + 32
)

// ErrInvalid reports an encoding or a policy that breaks a rule above.
var ErrInvalid = errors.New("invalid trust anchors")

// Fingerprint is a SHA-256 digest.
type Fingerprint [32]byte

// CRLFloor is the minimum CRL number a device accepts from one issuer.
type CRLFloor struct {
	// Issuer is IssuerID of the CA that signs the CRL.
	Issuer Fingerprint
	// MinNumber is the lowest CRL number accepted from it.
	MinNumber uint64
}

// Policy is the trust policy a device holds in its chip.
type Policy struct {
	// Version numbers the policy (the station's trust configuration).
	Version uint32
	// CounterBase is the anti-rollback counter's value when the policy
	// was written (a TPM NV counter starts at the highest value any
	// counter of that TPM ever held, not at 0).
	CounterBase uint64
	// DeviceClass is the class a module's manifest must name.
	DeviceClass string
	// Roots are RootFingerprint of each accepted firmware-signing root.
	Roots []Fingerprint
	// CRLFloors are the minimum CRL numbers per issuer.
	CRLFloors []CRLFloor
}

// RootFingerprint is the SHA-256 of a certificate's DER encoding.
func RootFingerprint(c *x509.Certificate) Fingerprint { return sha256.Sum256(c.Raw) }

// IssuerID identifies a CRL issuer: the SHA-256 of its subject DN in DER
// (a CA certificate's RawSubject, a CRL's RawIssuer).
func IssuerID(rawSubject []byte) Fingerprint { return sha256.Sum256(rawSubject) }

// HasRoot reports whether fp is an accepted root.
func (p *Policy) HasRoot(fp Fingerprint) bool { return slices.Contains(p.Roots, fp) }

// MinCRLNumber returns the floor for an issuer (0 when none is held).
func (p *Policy) MinCRLNumber(issuer Fingerprint) uint64 {
	for _, f := range p.CRLFloors {
		if f.Issuer == issuer {
			return f.MinNumber
		}
	}
	return 0
}

func (p *Policy) normalize() error {
	if p == nil {
		return fmt.Errorf("%w: no policy", ErrInvalid)
	}
	if n := len(p.DeviceClass); n == 0 || n > MaxClassLen || !utf8.ValidString(p.DeviceClass) {
		return fmt.Errorf("%w: device class must be 1..%d bytes of UTF-8", ErrInvalid, MaxClassLen)
	}
	for _, r := range p.DeviceClass {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: device class holds a control character", ErrInvalid)
		}
	}
	if len(p.Roots) == 0 || len(p.Roots) > MaxRoots {
		return fmt.Errorf("%w: %d roots, want 1..%d", ErrInvalid, len(p.Roots), MaxRoots)
	}
	if len(p.CRLFloors) > MaxCRLFloors {
		return fmt.Errorf("%w: %d CRL floors, at most %d", ErrInvalid, len(p.CRLFloors), MaxCRLFloors)
	}
	slices.SortFunc(p.Roots, func(a, b Fingerprint) int { return bytes.Compare(a[:], b[:]) })
	slices.SortFunc(p.CRLFloors, func(a, b CRLFloor) int { return bytes.Compare(a.Issuer[:], b.Issuer[:]) })
	for i := 1; i < len(p.Roots); i++ {
		if p.Roots[i] == p.Roots[i-1] {
			return fmt.Errorf("%w: root %x listed twice", ErrInvalid, p.Roots[i][:8])
		}
	}
	for i := 1; i < len(p.CRLFloors); i++ {
		if p.CRLFloors[i].Issuer == p.CRLFloors[i-1].Issuer {
			return fmt.Errorf("%w: CRL issuer %x listed twice", ErrInvalid, p.CRLFloors[i].Issuer[:8])
		}
	}
	return nil
}

// Marshal checks p, sorts its lists and returns the encoding.
func (p *Policy) Marshal() ([]byte, error) {
	if err := p.normalize(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, MaxSize)
	b = append(b, Magic...)
	b = binary.BigEndian.AppendUint16(b, Format)
	b = binary.BigEndian.AppendUint32(b, p.Version)
	b = binary.BigEndian.AppendUint64(b, p.CounterBase)
	b = append(b, byte(len(p.DeviceClass)))
	b = append(b, p.DeviceClass...)
	b = append(b, byte(len(p.Roots)))
	for _, r := range p.Roots {
		b = append(b, r[:]...)
	}
	b = append(b, byte(len(p.CRLFloors)))
	for _, f := range p.CRLFloors {
		b = append(b, f.Issuer[:]...)
		b = binary.BigEndian.AppendUint64(b, f.MinNumber)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...), nil
}

// Parse decodes and checks an encoding. Whatever comes out of a chip is
// checked like hostile input: every length is bounded before use, and the
// result must re-encode to the same bytes.
func Parse(b []byte) (*Policy, error) {
	if len(b) > MaxSize || len(b) < 4+2+4+8+1+1+1+32+1+32 {
		return nil, fmt.Errorf("%w: %d bytes", ErrInvalid, len(b))
	}
	body, sum := b[:len(b)-32], b[len(b)-32:]
	if s := sha256.Sum256(body); !bytes.Equal(s[:], sum) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrInvalid)
	}
	if string(body[:4]) != Magic || binary.BigEndian.Uint16(body[4:]) != Format {
		return nil, fmt.Errorf("%w: bad magic or format", ErrInvalid)
	}
	p := &Policy{Version: binary.BigEndian.Uint32(body[6:]), CounterBase: binary.BigEndian.Uint64(body[10:])}
	r := body[18:]
	take := func(n int) ([]byte, error) {
		if n > len(r) {
			return nil, fmt.Errorf("%w: truncated", ErrInvalid)
		}
		v := r[:n]
		r = r[n:]
		return v, nil
	}
	n, err := take(1)
	if err != nil {
		return nil, err
	}
	cls, err := take(int(n[0]))
	if err != nil {
		return nil, err
	}
	p.DeviceClass = string(cls)
	if n, err = take(1); err != nil {
		return nil, err
	}
	if int(n[0]) > MaxRoots {
		return nil, fmt.Errorf("%w: %d roots", ErrInvalid, n[0])
	}
	for range int(n[0]) {
		v, err := take(32)
		if err != nil {
			return nil, err
		}
		p.Roots = append(p.Roots, Fingerprint(v))
	}
	if n, err = take(1); err != nil {
		return nil, err
	}
	if int(n[0]) > MaxCRLFloors {
		return nil, fmt.Errorf("%w: %d CRL floors", ErrInvalid, n[0])
	}
	for range int(n[0]) {
		v, err := take(40)
		if err != nil {
			return nil, err
		}
		p.CRLFloors = append(p.CRLFloors, CRLFloor{Issuer: Fingerprint(v[:32]), MinNumber: binary.BigEndian.Uint64(v[32:])})
	}
	if len(r) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrInvalid, len(r))
	}
	again, err := p.Marshal()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, b) {
		return nil, fmt.Errorf("%w: not in canonical form", ErrInvalid)
	}
	return p, nil
}
