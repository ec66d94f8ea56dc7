package se

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// CompressedSize is the size of a compressed certificate: one 72-byte slot.
const CompressedSize = 72

// Compressed is a certificate in Microchip's compressed form (atcacert,
// format version 0):
//
//	bytes  0-63  signature r || s, 32 bytes each, big-endian
//	bytes 64-66  encoded dates: issue year-2000 (5 bits), month (4),
//	             day (5), hour (5), expire years (5; 0 = no expiry,
//	             notAfter 9999-12-31 23:59:59)
//	bytes 67-68  signer id
//	byte  69     template id (high nibble) | chain id (low nibble)
//	byte  70     serial number source (high nibble) | format version (low, 0)
//	byte  71     reserved, 0
//
// Everything else is rebuilt from a Template and the public key.
type Compressed [CompressedSize]byte

// Signature returns r || s.
func (c *Compressed) Signature() [64]byte {
	var rs [64]byte
	copy(rs[:], c[:64])
	return rs
}

// EncodedDates returns bytes 64-66.
func (c *Compressed) EncodedDates() [3]byte { return [3]byte{c[64], c[65], c[66]} }

// SignerID returns bytes 67-68.
func (c *Compressed) SignerID() [2]byte { return [2]byte{c[67], c[68]} }

// TemplateID returns the high nibble of byte 69.
func (c *Compressed) TemplateID() uint8 { return c[69] >> 4 }

// ChainID returns the low nibble of byte 69.
func (c *Compressed) ChainID() uint8 { return c[69] & 0xF }

// SNSource returns the high nibble of byte 70.
func (c *Compressed) SNSource() SNSource { return SNSource(c[70] >> 4) }

// FormatVersion returns the low nibble of byte 70 (0).
func (c *Compressed) FormatVersion() uint8 { return c[70] & 0xF }

// SNSource is where a certificate's serial number comes from (atcacert's
// sn_source values).
type SNSource uint8

// Serial number sources wsc uses.
const (
	// SNStored: the serial number is fixed bytes of the template (atcacert
	// "stored" serial; wsc stores it with the definition). Used for the
	// signer certificate, whose serial the CA chose.
	SNStored SNSource = 0x0
	// SNPubKeyHash: the serial is the first 16 bytes of SHA-256(public key
	// X || Y || encoded dates), top bit cleared and next bit set so that the
	// DER INTEGER is positive, 16 bytes long, without a leading zero
	// (atcacert SNSRC_PUB_KEY_HASH). Used for device certificates.
	SNPubKeyHash SNSource = 0xA
)

// DeviceSerialSize is the length of a derived device certificate serial.
const DeviceSerialSize = 16

// DeviceCertSerial is the serial number a device certificate must carry to
// be compressible: SHA-256(X || Y || encoded dates) truncated to 16 bytes,
// with bit 7 of the first byte cleared and bit 6 set (SNPubKeyHash). The CA
// issues the certificate with exactly this serial.
func DeviceCertSerial(pub *ecdsa.PublicKey, enc [3]byte) ([]byte, error) {
	xy, err := PublicKeyBytes(pub)
	if err != nil {
		return nil, fmt.Errorf("device certificate serial: %w", err)
	}
	h := sha256.Sum256(append(xy, enc[:]...))
	sn := h[:DeviceSerialSize]
	sn[0] = sn[0]&0x7F | 0x40
	return sn, nil
}

// noExpiry is the notAfter of certificates with expire years 0 (RFC 5280
// 99991231235959Z).
var noExpiry = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// EncodeDates encodes an issue date and a validity in whole years as the
// compressed form's 3 bytes. notBefore must be in 2000-2031 and on a whole
// hour (minutes and seconds are not stored); expireYears 0-31, 0 meaning no
// expiry.
func EncodeDates(notBefore time.Time, expireYears int) ([3]byte, error) {
	var e [3]byte
	t := notBefore.UTC()
	if t.Year() < 2000 || t.Year() > 2031 {
		return e, notCompressible("notBefore year %d outside 2000-2031", t.Year())
	}
	if t.Minute() != 0 || t.Second() != 0 || t.Nanosecond() != 0 {
		return e, notCompressible("notBefore %s not on an hour boundary", t.Format(time.RFC3339))
	}
	if expireYears < 0 || expireYears > 31 {
		return e, notCompressible("validity of %d years outside 0-31", expireYears)
	}
	v := uint32(t.Year()-2000)<<19 | uint32(t.Month())<<15 | uint32(t.Day())<<10 | uint32(t.Hour())<<5 | uint32(expireYears)
	return [3]byte{byte(v >> 16), byte(v >> 8), byte(v)}, nil
}

// DecodeDates decodes the compressed form's 3 date bytes into the issue
// date's fields and the validity in years. The fields are returned as they
// are stored (not normalised by time.Date).
func DecodeDates(enc [3]byte) (year, month, day, hour, expireYears int) {
	v := uint32(enc[0])<<16 | uint32(enc[1])<<8 | uint32(enc[2])
	return 2000 + int(v>>19&0x1F), int(v >> 15 & 0xF), int(v >> 10 & 0x1F), int(v >> 5 & 0x1F), int(v & 0x1F)
}

// DeviceCertValidity returns the validity of a compressible device
// certificate issued at t for years whole years: notBefore is t truncated
// to the hour, notAfter the same month, day and hour years later (or
// 9999-12-31 23:59:59 for years 0), with the encoded dates. It refuses an
// issue date on 29 February when notAfter's year has none.
func DeviceCertValidity(t time.Time, years int) (notBefore, notAfter time.Time, enc [3]byte, err error) {
	notBefore = t.UTC().Truncate(time.Hour)
	if enc, err = EncodeDates(notBefore, years); err != nil {
		return
	}
	if years == 0 {
		return notBefore, noExpiry, enc, nil
	}
	notAfter = time.Date(notBefore.Year()+years, notBefore.Month(), notBefore.Day(), notBefore.Hour(), 0, 0, 0, time.UTC)
	if notAfter.Day() != notBefore.Day() {
		err = notCompressible("issue date %s has no anniversary in %d", notBefore.Format(time.DateOnly), notBefore.Year()+years)
	}
	return
}

// DeviceCertParams is what a CA needs to issue a compressible device
// certificate for pub at time now valid for years whole years (0: no
// expiry): the serial number (DeviceCertSerial over the encoded dates) and
// the exact validity (DeviceCertValidity). The CA must use these values
// unchanged — no backdating, no rounding.
func DeviceCertParams(pub *ecdsa.PublicKey, now time.Time, years int) (serial *big.Int, notBefore, notAfter time.Time, err error) {
	notBefore, notAfter, enc, err := DeviceCertValidity(now, years)
	if err != nil {
		return nil, time.Time{}, time.Time{}, err
	}
	sn, err := DeviceCertSerial(pub, enc)
	if err != nil {
		return nil, time.Time{}, time.Time{}, err
	}
	return new(big.Int).SetBytes(sn), notBefore, notAfter, nil
}

// CertKind says which certificate of the chain a template describes.
type CertKind uint8

// Certificate kinds.
const (
	KindDevice CertKind = 1 // the device (leaf) certificate
	KindSigner CertKind = 2 // the signer (issuing CA) certificate
)

// Loc is a field's position in a template's TBSCertificate: Count bytes at
// Offset. Count 0 means the field is not rebuilt: its bytes are fixed in
// the template (atcacert's "element not present").
type Loc struct {
	Offset int `json:"offset"`
	Count  int `json:"count"`
}

func (l Loc) present() bool { return l.Count > 0 }

// Template is a certificate definition in the sense of Microchip's
// atcacert_def_t: the DER TBSCertificate of a certificate with the fields
// that vary zeroed, where those fields are, and the signature algorithm.
// Rebuilding a certificate from a template, a Compressed and the subject's
// public key fills in:
//
//	Serial          from SNSource (SNPubKeyHash: DeviceCertSerial)
//	NotBefore       the encoded issue date, minutes and seconds 00
//	NotAfter        issue date + expire years (or 99991231235959Z)
//	PublicKey       the 64-byte X || Y in the SubjectPublicKeyInfo
//	SubjectKeyID    derived from X || Y by KeyIDMethod, if present
//	AuthorityKeyID  derived from the signer's X || Y by KeyIDMethod, if present
//	ChipSerial      the chip's serial number in hex, if present
//
// and appends the signature algorithm and the signature (DER
// ECDSA-Sig-Value from r || s; the outer lengths follow the signature's
// length, the TBS has a fixed length). Times keep the template's encoding
// (UTCTime, 13 bytes, or GeneralizedTime, 15 bytes).
type Template struct {
	Kind           CertKind `json:"kind"`
	TemplateID     uint8    `json:"template_id"`
	ChainID        uint8    `json:"chain_id"`
	SNSource       SNSource `json:"sn_source"`
	TBS            []byte   `json:"tbs"`
	SigAlg         []byte   `json:"sig_alg"`
	Serial         Loc      `json:"serial"`
	NotBefore      Loc      `json:"not_before"`
	NotAfter       Loc      `json:"not_after"`
	PublicKey      Loc      `json:"public_key"`
	SubjectKeyID   Loc      `json:"subject_key_id"`
	AuthorityKeyID Loc      `json:"authority_key_id"`
	// ChipSerial, when present, is where the chip's 9-byte serial number
	// appears in the subject as 18 upper-case hex digits (Microchip's
	// device certificates carry it in the subject; atcacert rebuilds it
	// from the chip's config zone). Such a template rebuilds with
	// DecompressChip.
	ChipSerial Loc `json:"chip_serial"`
	// SKIMethod and AKIMethod say how the rebuilt key identifiers are
	// derived (KeyIDSHA1 or KeyIDSHA256).
	SKIMethod KeyIDMethod `json:"ski_method,omitempty"`
	AKIMethod KeyIDMethod `json:"aki_method,omitempty"`
}

// certParts splits a certificate's DER into TBS, signature algorithm and
// signature (the BIT STRING's content without the unused-bits byte).
func certParts(der []byte) (tbs, sigAlg, sig []byte, err error) {
	in := cryptobyte.String(der)
	var cert cryptobyte.String
	if !in.ReadASN1(&cert, asn1.SEQUENCE) || !in.Empty() {
		return nil, nil, nil, errors.New("malformed certificate")
	}
	var t, a, bits cryptobyte.String
	if !cert.ReadASN1Element(&t, asn1.SEQUENCE) || !cert.ReadASN1Element(&a, asn1.SEQUENCE) ||
		!cert.ReadASN1(&bits, asn1.BIT_STRING) || !cert.Empty() {
		return nil, nil, nil, errors.New("malformed certificate")
	}
	if len(bits) < 1 || bits[0] != 0 {
		return nil, nil, nil, errors.New("malformed certificate signature")
	}
	return t, a, bits[1:], nil
}

// tbsFields are the variable fields found in a DER TBSCertificate.
type tbsFields struct {
	serial, notBefore, notAfter, pub, ski, aki Loc
	notBeforeTag, notAfterTag                  asn1.Tag
}

func offsetIn(full, sub []byte) int { return cap(full) - cap(sub) }

func findFields(tbs []byte) (*tbsFields, error) {
	bad := errors.New("malformed TBSCertificate")
	f := &tbsFields{}
	in := cryptobyte.String(tbs)
	var t cryptobyte.String
	if !in.ReadASN1(&t, asn1.SEQUENCE) || !in.Empty() {
		return nil, bad
	}
	var skip cryptobyte.String
	if !t.SkipOptionalASN1(asn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, bad
	}
	var serial cryptobyte.String
	if !t.ReadASN1(&serial, asn1.INTEGER) {
		return nil, bad
	}
	f.serial = Loc{offsetIn(tbs, serial), len(serial)}
	// signature AlgorithmIdentifier, then issuer Name.
	for range 2 {
		if !t.ReadASN1(&skip, asn1.SEQUENCE) {
			return nil, bad
		}
	}
	var validity cryptobyte.String
	if !t.ReadASN1(&validity, asn1.SEQUENCE) {
		return nil, bad
	}
	var nb, na cryptobyte.String
	if !validity.ReadAnyASN1(&nb, &f.notBeforeTag) || !validity.ReadAnyASN1(&na, &f.notAfterTag) {
		return nil, bad
	}
	f.notBefore = Loc{offsetIn(tbs, nb), len(nb)}
	f.notAfter = Loc{offsetIn(tbs, na), len(na)}
	if !t.ReadASN1(&skip, asn1.SEQUENCE) {
		return nil, bad
	}
	var spki, bits cryptobyte.String
	if !t.ReadASN1(&spki, asn1.SEQUENCE) || !spki.ReadASN1(&skip, asn1.SEQUENCE) || !spki.ReadASN1(&bits, asn1.BIT_STRING) {
		return nil, bad
	}
	if len(bits) == 66 && bits[0] == 0 && bits[1] == 4 {
		f.pub = Loc{offsetIn(tbs, bits) + 2, 64}
	}
	t.SkipOptionalASN1(asn1.Tag(1).ContextSpecific())
	t.SkipOptionalASN1(asn1.Tag(2).ContextSpecific())
	var exts cryptobyte.String
	var has bool
	if !t.ReadOptionalASN1(&exts, &has, asn1.Tag(3).Constructed().ContextSpecific()) {
		return nil, bad
	}
	if has {
		var list cryptobyte.String
		if !exts.ReadASN1(&list, asn1.SEQUENCE) {
			return nil, bad
		}
		for !list.Empty() {
			var ext, oidBytes, val cryptobyte.String
			if !list.ReadASN1(&ext, asn1.SEQUENCE) || !ext.ReadASN1(&oidBytes, asn1.OBJECT_IDENTIFIER) {
				return nil, bad
			}
			ext.SkipOptionalASN1(asn1.BOOLEAN)
			if !ext.ReadASN1(&val, asn1.OCTET_STRING) {
				return nil, bad
			}
			switch {
			case bytes.Equal(oidBytes, oidSKI):
				var id cryptobyte.String
				if val.ReadASN1(&id, asn1.OCTET_STRING) {
					f.ski = Loc{offsetIn(tbs, id), len(id)}
				}
			case bytes.Equal(oidBytes, oidAKI):
				var seq, id cryptobyte.String
				if val.ReadASN1(&seq, asn1.SEQUENCE) && seq.ReadASN1(&id, asn1.Tag(0).ContextSpecific()) {
					f.aki = Loc{offsetIn(tbs, id), len(id)}
				}
			}
		}
	}
	return f, nil
}

var (
	oidSKI = []byte{0x55, 0x1D, 0x0E} // 2.5.29.14
	oidAKI = []byte{0x55, 0x1D, 0x23} // 2.5.29.35
)

// KeyIDMethod is how a key identifier is derived from a public key.
type KeyIDMethod uint8

// Key identifier methods.
const (
	// KeyIDSHA1 is SHA-1 of the subjectPublicKey bits (04 || X || Y), RFC
	// 5280 4.2.1.2 method 1: Microchip's templates, smallstep, OpenSSL.
	KeyIDSHA1 KeyIDMethod = 1
	// KeyIDSHA256 is the first 160 bits of SHA-256 of the same bits, RFC
	// 7093 method 1: what Go's x509.CreateCertificate uses since Go 1.25.
	KeyIDSHA256 KeyIDMethod = 2
)

// keyID derives a key identifier from X || Y.
func keyID(m KeyIDMethod, xy []byte) []byte {
	pt := append([]byte{0x04}, xy...)
	switch m {
	case KeyIDSHA1:
		h := sha1.Sum(pt)
		return h[:]
	case KeyIDSHA256:
		h := sha256.Sum256(pt)
		return h[:20]
	}
	return nil
}

// keyIDMethod returns the method that derives id from xy, or 0.
func keyIDMethod(id, xy []byte) KeyIDMethod {
	for _, m := range []KeyIDMethod{KeyIDSHA1, KeyIDSHA256} {
		if bytes.Equal(id, keyID(m, xy)) {
			return m
		}
	}
	return 0
}

// NewTemplate derives a certificate definition from an issued certificate.
// For KindDevice every varying field must be rebuildable: dates in whole
// years from an hour boundary, serial = DeviceCertSerial, P-256 key; the
// subject key id, when present, must be derived from the key; the authority
// key id is rebuilt from signerPub when it is derived from it, else kept.
// For KindSigner the serial is stored in the template and the dates are
// stored too when they are not whole years from an hour boundary (a CA's
// validity rarely is). Errors wrap ErrNotCompressible.
func NewTemplate(cert *x509.Certificate, kind CertKind, signerPub *ecdsa.PublicKey) (*Template, error) {
	return newTemplate(cert, kind, signerPub, nil)
}

// NewChipTemplate is NewTemplate for a device certificate whose subject
// carries the chip's serial number sn as 18 upper-case hex digits (exactly
// once in the TBSCertificate): the template leaves it out and
// DecompressChip puts it back from the chip's serial. This is the shape of
// a chip manufacturer's device certificate.
func NewChipTemplate(cert *x509.Certificate, signerPub *ecdsa.PublicKey, sn [9]byte) (*Template, error) {
	return newTemplate(cert, KindDevice, signerPub, &sn)
}

// ChipSerialText is the form of a chip serial number in a certificate
// subject: 18 upper-case hex digits.
func ChipSerialText(sn [9]byte) string { return strings.ToUpper(hex.EncodeToString(sn[:])) }

func newTemplate(cert *x509.Certificate, kind CertKind, signerPub *ecdsa.PublicKey, chipSN *[9]byte) (*Template, error) {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, notCompressible("%s: public key is not P-256 ECDSA", certName(cert))
	}
	xy, _ := PublicKeyBytes(pub)
	tbs, sigAlg, _, err := certParts(cert.Raw)
	if err != nil {
		return nil, notCompressible("%s: %v", certName(cert), err)
	}
	f, err := findFields(tbs)
	if err != nil {
		return nil, notCompressible("%s: %v", certName(cert), err)
	}
	if !f.pub.present() {
		return nil, notCompressible("%s: public key is not an uncompressed P-256 point", certName(cert))
	}
	t := &Template{Kind: kind, TemplateID: 0, ChainID: 0, SigAlg: append([]byte(nil), sigAlg...), PublicKey: f.pub}
	datesOK := datesCompressible(cert, f) == nil
	switch kind {
	case KindDevice:
		t.TemplateID = 1
		if err := datesCompressible(cert, f); err != nil {
			return nil, fmt.Errorf("%s: %w", certName(cert), err)
		}
		t.SNSource = SNPubKeyHash
		t.Serial = f.serial
		if f.serial.Count != DeviceSerialSize {
			return nil, notCompressible("%s: serial is %d bytes, not derived from the public key and dates (se.DeviceCertSerial)", certName(cert), f.serial.Count)
		}
		if f.ski.present() {
			if t.SKIMethod = keyIDMethod(cert.SubjectKeyId, xy); t.SKIMethod == 0 {
				return nil, notCompressible("%s: subject key id is not derived from the public key (SHA-1 or truncated SHA-256)", certName(cert))
			}
			t.SubjectKeyID = f.ski
		}
		if signerPub != nil && f.aki.present() {
			if sxy, err := PublicKeyBytes(signerPub); err == nil {
				if t.AKIMethod = keyIDMethod(cert.AuthorityKeyId, sxy); t.AKIMethod != 0 {
					t.AuthorityKeyID = f.aki
				}
			}
		}
	case KindSigner:
		t.TemplateID = 2
		t.SNSource = SNStored
		if f.ski.present() {
			if t.SKIMethod = keyIDMethod(cert.SubjectKeyId, xy); t.SKIMethod != 0 {
				t.SubjectKeyID = f.ski
			}
		}
	default:
		return nil, fmt.Errorf("template: unknown certificate kind %d", kind)
	}
	if datesOK {
		t.NotBefore, t.NotAfter = f.notBefore, f.notAfter
	}
	if chipSN != nil {
		txt := []byte(ChipSerialText(*chipSN))
		i := bytes.Index(tbs, txt)
		if i < 0 || bytes.Count(tbs, txt) != 1 {
			return nil, notCompressible("%s: the chip serial %s does not appear exactly once in the certificate", certName(cert), txt)
		}
		t.ChipSerial = Loc{i, len(txt)}
	}
	t.TBS = append([]byte(nil), tbs...)
	for _, l := range []Loc{t.Serial, t.NotBefore, t.NotAfter, t.PublicKey, t.SubjectKeyID, t.AuthorityKeyID, t.ChipSerial} {
		clear(t.TBS[l.Offset : l.Offset+l.Count])
	}
	// The template must rebuild this very certificate.
	if _, err := Compress(cert, t); err != nil {
		return nil, err
	}
	return t, nil
}

func certName(cert *x509.Certificate) string {
	if cert.Subject.CommonName != "" {
		return fmt.Sprintf("certificate %q", cert.Subject.CommonName)
	}
	return fmt.Sprintf("certificate %x", cert.SerialNumber)
}

// datesCompressible checks that notBefore/notAfter can be rebuilt from the
// encoded dates.
func datesCompressible(cert *x509.Certificate, f *tbsFields) error {
	years, err := expireYears(cert.NotBefore, cert.NotAfter)
	if err != nil {
		return err
	}
	if _, err := EncodeDates(cert.NotBefore, years); err != nil {
		return err
	}
	if f != nil && (f.notBefore.Count != timeLen(f.notBeforeTag) || f.notAfter.Count != timeLen(f.notAfterTag)) {
		return notCompressible("validity times are not in canonical UTCTime/GeneralizedTime form")
	}
	return nil
}

func timeLen(tag asn1.Tag) int {
	switch tag {
	case asn1.UTCTime:
		return 13
	case asn1.GeneralizedTime:
		return 15
	}
	return -1
}

// expireYears returns the validity in whole years, or an error wrapping
// ErrNotCompressible.
func expireYears(nb, na time.Time) (int, error) {
	nb, na = nb.UTC(), na.UTC()
	if na.Equal(noExpiry) {
		return 0, nil
	}
	years := na.Year() - nb.Year()
	if years < 1 || years > 31 || na.Month() != nb.Month() || na.Day() != nb.Day() || na.Hour() != nb.Hour() ||
		na.Minute() != 0 || na.Second() != 0 || na.Nanosecond() != 0 {
		return 0, notCompressible("validity %s to %s is not a whole number of years (1-31) from an hour boundary",
			nb.Format(time.RFC3339), na.Format(time.RFC3339))
	}
	return years, nil
}

// Compress returns the 72-byte compressed form of cert under tmpl and
// checks that Decompress rebuilds cert byte for byte. Errors wrap
// ErrNotCompressible and say why (validity not whole years, notBefore not
// on an hour boundary, serial not derived, signature not P-256-sized, the
// certificate's fixed fields differ from the template's...).
func Compress(cert *x509.Certificate, tmpl *Template) (Compressed, error) {
	var c Compressed
	if tmpl == nil {
		return c, errors.New("compress: nil template")
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return c, notCompressible("%s: public key is not P-256 ECDSA", certName(cert))
	}
	tbs, _, sig, err := certParts(cert.Raw)
	if err != nil {
		return c, notCompressible("%s: %v", certName(cert), err)
	}
	var chipSN []byte
	if l := tmpl.ChipSerial; l.present() {
		if l.Offset < 0 || l.Offset+l.Count > len(tbs) {
			return c, notCompressible("%s: chip serial field outside the certificate", certName(cert))
		}
		chipSN = tbs[l.Offset : l.Offset+l.Count]
		if _, err := parseChipSerial(chipSN); err != nil {
			return c, notCompressible("%s: %v", certName(cert), err)
		}
	}
	rs, err := derToRaw(sig)
	if err != nil {
		return c, notCompressible("%s: signature: %v (a P-256 r || s is 64 bytes)", certName(cert), err)
	}
	if !bytes.Equal(rawToDER(rs), sig) {
		return c, notCompressible("%s: signature is not in minimal DER", certName(cert))
	}
	var enc [3]byte
	if tmpl.NotBefore.present() || tmpl.SNSource == SNPubKeyHash {
		years, err := expireYears(cert.NotBefore, cert.NotAfter)
		if err != nil {
			return c, fmt.Errorf("%s: %w", certName(cert), err)
		}
		if enc, err = EncodeDates(cert.NotBefore, years); err != nil {
			return c, fmt.Errorf("%s: %w", certName(cert), err)
		}
	}
	if tmpl.SNSource == SNPubKeyHash {
		want, err := DeviceCertSerial(pub, enc)
		if err != nil {
			return c, notCompressible("%s: %v", certName(cert), err)
		}
		if got := cert.SerialNumber.Bytes(); !bytes.Equal(got, want) {
			return c, notCompressible("%s: serial %x is not derived from the public key and dates (want %x, se.DeviceCertSerial)", certName(cert), got, want)
		}
	}
	copy(c[:64], rs[:])
	copy(c[64:67], enc[:])
	var id []byte
	if tmpl.Kind == KindSigner {
		id = cert.SubjectKeyId
	} else {
		id = cert.AuthorityKeyId
	}
	copy(c[67:69], id)
	c[69] = tmpl.TemplateID<<4 | tmpl.ChainID&0xF
	c[70] = uint8(tmpl.SNSource) << 4
	c[71] = 0
	der, err := build(&c, tmpl, pub, cert.AuthorityKeyId, chipSN)
	if err != nil {
		return c, notCompressible("%s: %v", certName(cert), err)
	}
	if !bytes.Equal(der, cert.Raw) {
		i := 0
		for i < len(der) && i < len(cert.Raw) && der[i] == cert.Raw[i] {
			i++
		}
		return c, notCompressible("%s: rebuilt certificate differs from the issued one at byte %d", certName(cert), i)
	}
	return c, nil
}

// CheckCompressible reports whether cert can be stored compressed under
// tmpl and rebuilt byte for byte; errors wrap ErrNotCompressible.
func CheckCompressible(cert *x509.Certificate, tmpl *Template) error {
	_, err := Compress(cert, tmpl)
	return err
}

// CheckDeviceChain is what the station calls before it writes a chain to an
// SE device: the leaf must verify under the signer, it must compress under a device template derived from
// itself (whole-year validity from an hour boundary, derived serial, P-256)
// and the signer under a signer template. Errors wrap ErrNotCompressible.
func CheckDeviceChain(leaf, signer *x509.Certificate) error {
	if err := leaf.CheckSignatureFrom(signer); err != nil {
		return fmt.Errorf("device certificate not signed by the signer certificate: %w", err)
	}
	signerPub, _ := signer.PublicKey.(*ecdsa.PublicKey)
	if _, err := NewTemplate(leaf, KindDevice, signerPub); err != nil {
		return err
	}
	if _, err := NewTemplate(signer, KindSigner, nil); err != nil {
		return err
	}
	return nil
}

// Decompress rebuilds a certificate's DER from its compressed form, its
// template, the subject's public key (for a device certificate the chip's
// GenKey public key; for a signer the public key in SlotSignerPubKey) and,
// when the template rebuilds the authority key id, the signer's public key.
func Decompress(c *Compressed, tmpl *Template, pub, signerPub *ecdsa.PublicKey) ([]byte, error) {
	return decompress(c, tmpl, pub, signerPub, nil)
}

// DecompressChip is Decompress for a template with a ChipSerial field (a
// chip manufacturer's device certificate): sn is the serial number from the
// chip's config zone.
func DecompressChip(c *Compressed, tmpl *Template, pub, signerPub *ecdsa.PublicKey, sn [9]byte) ([]byte, error) {
	return decompress(c, tmpl, pub, signerPub, []byte(ChipSerialText(sn)))
}

// parseChipSerial parses 18 upper-case hex digits.
func parseChipSerial(txt []byte) ([9]byte, error) {
	var sn [9]byte
	if len(txt) != 18 || strings.ToUpper(string(txt)) != string(txt) {
		return sn, fmt.Errorf("chip serial %q is not 18 upper-case hex digits", txt)
	}
	if _, err := hex.Decode(sn[:], txt); err != nil {
		return sn, fmt.Errorf("chip serial %q is not 18 upper-case hex digits", txt)
	}
	return sn, nil
}

func decompress(c *Compressed, tmpl *Template, pub, signerPub *ecdsa.PublicKey, chipSN []byte) ([]byte, error) {
	if tmpl == nil {
		return nil, errors.New("decompress: nil template")
	}
	if c.FormatVersion() != 0 {
		return nil, fmt.Errorf("decompress: format version %d not supported", c.FormatVersion())
	}
	if c.TemplateID() != tmpl.TemplateID&0xF || c.ChainID() != tmpl.ChainID&0xF || c.SNSource() != tmpl.SNSource {
		return nil, fmt.Errorf("decompress: compressed certificate is for template %d/chain %d/source %x, not %d/%d/%x",
			c.TemplateID(), c.ChainID(), c.SNSource(), tmpl.TemplateID, tmpl.ChainID, tmpl.SNSource)
	}
	var aki []byte
	if tmpl.AuthorityKeyID.present() {
		if signerPub == nil {
			return nil, errors.New("decompress: the template rebuilds the authority key id: signer public key needed")
		}
		sxy, err := PublicKeyBytes(signerPub)
		if err != nil {
			return nil, fmt.Errorf("decompress: signer %w", err)
		}
		aki = keyID(tmpl.AKIMethod, sxy)
	}
	if tmpl.ChipSerial.present() && chipSN == nil {
		return nil, errors.New("decompress: the template rebuilds the chip serial: use DecompressChip")
	}
	der, err := build(c, tmpl, pub, aki, chipSN)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	return der, nil
}

// build fills the template and assembles the certificate.
func build(c *Compressed, t *Template, pub *ecdsa.PublicKey, aki, chipSN []byte) ([]byte, error) {
	xy, err := PublicKeyBytes(pub)
	if err != nil {
		return nil, err
	}
	tbs := append([]byte(nil), t.TBS...)
	put := func(name string, l Loc, v []byte) error {
		if !l.present() {
			return nil
		}
		if l.Offset < 0 || l.Offset+l.Count > len(tbs) || len(v) != l.Count {
			return fmt.Errorf("template %s field: %d bytes at %d, value is %d bytes", name, l.Count, l.Offset, len(v))
		}
		copy(tbs[l.Offset:], v)
		return nil
	}
	enc := c.EncodedDates()
	if t.SNSource == SNPubKeyHash {
		sn, err := DeviceCertSerial(pub, enc)
		if err != nil {
			return nil, err
		}
		if err := put("serial", t.Serial, sn); err != nil {
			return nil, err
		}
	}
	if t.NotBefore.present() {
		y, mo, d, h, ey := DecodeDates(enc)
		if err := put("notBefore", t.NotBefore, formatTime(t.NotBefore.Count, y, mo, d, h, 0, 0)); err != nil {
			return nil, err
		}
		na := formatTime(t.NotAfter.Count, y+ey, mo, d, h, 0, 0)
		if ey == 0 {
			na = formatTime(t.NotAfter.Count, 9999, 12, 31, 23, 59, 59)
		}
		if err := put("notAfter", t.NotAfter, na); err != nil {
			return nil, err
		}
	}
	if err := put("public key", t.PublicKey, xy); err != nil {
		return nil, err
	}
	if t.SubjectKeyID.present() {
		if err := put("subject key id", t.SubjectKeyID, keyID(t.SKIMethod, xy)); err != nil {
			return nil, err
		}
	}
	if t.AuthorityKeyID.present() {
		if err := put("authority key id", t.AuthorityKeyID, aki); err != nil {
			return nil, err
		}
	}
	if t.ChipSerial.present() {
		if err := put("chip serial", t.ChipSerial, chipSN); err != nil {
			return nil, err
		}
	}
	sig := rawToDER(c.Signature())
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(t.SigAlg)
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}

// formatTime writes a UTCTime (n = 13) or GeneralizedTime (n = 15) from its
// fields, without normalising them.
func formatTime(n, y, mo, d, h, mi, s int) []byte {
	if n == 13 {
		return fmt.Appendf(nil, "%02d%02d%02d%02d%02d%02dZ", y%100, mo, d, h, mi, s)
	}
	return fmt.Appendf(nil, "%04d%02d%02d%02d%02d%02dZ", y, mo, d, h, mi, s)
}
