package wasmsign

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// ManifestSectionName is the name of the custom section that carries a
// module's manifest. It is an ordinary custom section: every signature
// over the module covers it, like any other section. AddManifest puts it
// first (right after the signature section, once signed) so that a
// streaming verifier meets it before the code.
const ManifestSectionName = "wsc.manifest"

// Manifest limits, checked before anything is decoded or encoded.
const (
	// MaxManifestSize bounds the manifest section payload (after its name).
	MaxManifestSize = 16 << 10
	// MaxManifestSerials bounds the device serial allowlist.
	MaxManifestSerials = 256
	// MaxManifestString bounds the component id, the device class and
	// each serial, in bytes.
	MaxManifestString = 128
	// ManifestFormat is the only manifest format this package writes and
	// accepts (key 0 of the CBOR map).
	ManifestFormat = 1
)

// ErrManifest reports a manifest that is missing where one is required,
// does not decode strictly, or violates a rule of Manifest.Validate.
var ErrManifest = errors.New("invalid module manifest")

// Manifest is the signed description of a firmware module: what it is,
// which version, and which devices may run it. It is encoded as a CBOR map
// with small integer keys in core deterministic encoding
// (docs/signature-format.md, "Manifest").
type Manifest struct {
	// Format is ManifestFormat.
	Format uint64 `cbor:"0,keyasint" json:"format"`
	// Component names the firmware component ("sensor-fw").
	Component string `cbor:"1,keyasint" json:"component"`
	// Version is the release's version, a number that grows with every
	// release of the component.
	Version uint64 `cbor:"2,keyasint" json:"version"`
	// MinVersion is the release's rollback floor: once a device commits
	// this release, it refuses every module of a lower version. It is at
	// most Version; Version when the signer does not set it.
	MinVersion uint64 `cbor:"3,keyasint" json:"min_version"`
	// DeviceClass is the class of device the module is built for; a
	// device accepts only its own class (held in its chip).
	DeviceClass string `cbor:"4,keyasint" json:"device_class"`
	// Serials, when not empty, is the allowlist of device serials that may
	// run the module.
	Serials []string `cbor:"5,keyasint,omitempty" json:"serials,omitempty"`
	// Expires, when not zero, is the Unix time (seconds, UTC) after which
	// the module is no longer accepted. Devices compare it with a signed
	// time (the CRL's thisUpdate), never with their own clock.
	Expires int64 `cbor:"6,keyasint,omitempty" json:"expires,omitempty"`
}

var (
	manifestEnc cbor.EncMode
	manifestDec cbor.DecMode
)

func init() {
	var err error
	if manifestEnc, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	manifestDec, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   4,
		MaxArrayElements:  MaxManifestSerials,
		MaxMapPairs:       16,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Validate checks the rules every manifest obeys: the format, a non-empty
// component and device class of printable text, MinVersion <= Version,
// bounded and non-empty serials without duplicates, a non-negative expiry.
func (m *Manifest) Validate() error {
	if m == nil {
		return fmt.Errorf("%w: no manifest", ErrManifest)
	}
	if m.Format != ManifestFormat {
		return fmt.Errorf("%w: format %d, want %d", ErrManifest, m.Format, ManifestFormat)
	}
	if err := manifestString("component", m.Component); err != nil {
		return err
	}
	if err := manifestString("device class", m.DeviceClass); err != nil {
		return err
	}
	if m.MinVersion > m.Version {
		return fmt.Errorf("%w: minimum version %d above version %d", ErrManifest, m.MinVersion, m.Version)
	}
	if len(m.Serials) > MaxManifestSerials {
		return fmt.Errorf("%w: %d serials, at most %d", ErrManifest, len(m.Serials), MaxManifestSerials)
	}
	seen := make(map[string]bool, len(m.Serials))
	for _, s := range m.Serials {
		if err := manifestString("serial", s); err != nil {
			return err
		}
		if seen[s] {
			return fmt.Errorf("%w: serial %q listed twice", ErrManifest, s)
		}
		seen[s] = true
	}
	if m.Expires < 0 {
		return fmt.Errorf("%w: negative expiry", ErrManifest)
	}
	return nil
}

func manifestString(what, s string) error {
	if s == "" || len(s) > MaxManifestString {
		return fmt.Errorf("%w: %s must be 1..%d bytes", ErrManifest, what, MaxManifestString)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrManifest, what)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w: %s holds a control character", ErrManifest, what)
		}
	}
	return nil
}

// AllowsSerial reports whether the manifest lets the device with this
// serial run the module (an empty allowlist allows every device of the
// class).
func (m *Manifest) AllowsSerial(serial string) bool {
	if len(m.Serials) == 0 {
		return true
	}
	for _, s := range m.Serials {
		if s == serial {
			return true
		}
	}
	return false
}

// ExpiresAt returns the expiry as a time, and false when there is none.
func (m *Manifest) ExpiresAt() (time.Time, bool) {
	if m.Expires == 0 {
		return time.Time{}, false
	}
	return time.Unix(m.Expires, 0).UTC(), true
}

// MarshalManifest validates m and returns its deterministic CBOR encoding.
func MarshalManifest(m *Manifest) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := manifestEnc.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: encode: %v", ErrManifest, err)
	}
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, at most %d", ErrManifest, len(b), MaxManifestSize)
	}
	return b, nil
}

// ParseManifest decodes a manifest section payload strictly (no unknown
// or duplicate keys, no indefinite lengths or tags, canonical encoding:
// re-encoding must give the same bytes) and validates it.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrManifest, len(b), MaxManifestSize)
	}
	var m Manifest
	if err := manifestDec.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: decode: %v", ErrManifest, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	again, err := manifestEnc.Marshal(&m)
	if err != nil || !bytes.Equal(again, b) {
		// One encoding per manifest: a reader never has to guess which of
		// two spellings of the same map was signed.
		return nil, fmt.Errorf("%w: not in core deterministic encoding", ErrManifest)
	}
	return &m, nil
}

// AddManifest returns module with m inserted as a ManifestSectionName
// custom section before its first section. The module must be unsigned
// (adding a section would invalidate a signature) and must not carry a
// manifest yet. Sign the result: the signature then covers the manifest.
func AddManifest(module []byte, m *Manifest) ([]byte, error) {
	enc, err := MarshalManifest(m)
	if err != nil {
		return nil, err
	}
	sc, err := scanModule(&bytesSource{b: module}, false)
	if err != nil {
		return nil, fmt.Errorf("add manifest: %w", err)
	}
	if sc.sig != nil {
		return nil, fmt.Errorf("add manifest: %w: the module is already signed; add the manifest before signing", ErrManifest)
	}
	if sc.manifest != nil {
		return nil, fmt.Errorf("add manifest: %w: the module already carries a manifest", ErrManifest)
	}
	out := make([]byte, 0, len(module)+len(enc)+32)
	out = append(out, wasmHeader[:]...)
	out = append(out, encodeCustomSection(ManifestSectionName, enc)...)
	w := &writerBuf{b: out}
	if err := writeSections(&bytesSource{b: module}, w); err != nil {
		return nil, fmt.Errorf("add manifest: %w", err)
	}
	return w.b, nil
}

// encodeCustomSection encodes a complete custom section.
func encodeCustomSection(name string, payload []byte) []byte {
	inner := uint32(lebLen(uint32(len(name)))+len(name)) + uint32(len(payload))
	b := appendLEB([]byte{0}, inner)
	b = appendVec(b, []byte(name))
	return append(b, payload...)
}

// ReadManifest returns the manifest a module carries, without verifying
// any signature (nil, nil when it has none). Use Result.Manifest of a
// valid verification to act on a manifest; this is for display.
func ReadManifest(r io.Reader) (*Manifest, error) {
	src := pooledStreamSource(r)
	defer src.release()
	sc, err := scanModule(src, true)
	if err != nil {
		return nil, err
	}
	if sc.manifest == nil {
		return nil, nil
	}
	return ParseManifest(sc.manifest)
}

// Summary is a one-line description for reports: component, version,
// minimum version, device class, allowlist size and expiry. The text
// comes from the module: escape it before showing it on a terminal.
func (m *Manifest) Summary() string {
	if m == nil {
		return ""
	}
	s := fmt.Sprintf("manifest: %s v%d (min %d) class %s", m.Component, m.Version, m.MinVersion, m.DeviceClass)
	if len(m.Serials) > 0 {
		s += fmt.Sprintf(", %d allowed serials", len(m.Serials))
	}
	if t, ok := m.ExpiresAt(); ok {
		s += ", expires " + t.Format(time.RFC3339)
	}
	return s
}
