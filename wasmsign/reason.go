package wasmsign

import (
	"errors"
	"math/big"
	"strings"
)

// Reason codes of verification results (Result.ReasonCode, the JSON
// "reason_code"): stable words a script branches on, listed in
// docs/reason-codes.md. The human Reason may change between releases; a
// code keeps its meaning.
const (
	// ReasonOK: the module is valid.
	ReasonOK = "ok"
	// ReasonMalformed: ErrMalformed.
	ReasonMalformed = "malformed"
	// ReasonNotSigned: ErrNotSigned.
	ReasonNotSigned = "not-signed"
	// ReasonHashMismatch: ErrHashMismatch.
	ReasonHashMismatch = "hash-mismatch"
	// ReasonNoSignature: ErrNoSignature (no record of the accepted kind).
	ReasonNoSignature = "no-signature"
	// ReasonOnlyEd25519: ErrOnlyEd25519, a certificate chain was required
	// and the module holds only wasmsign2 (Ed25519) records.
	ReasonOnlyEd25519 = "only-ed25519-signatures"
	// ReasonRecordsDropped: ErrRecordsDropped.
	ReasonRecordsDropped = "signature-records-dropped"
	// ReasonBadSignature: ErrBadSignature.
	ReasonBadSignature = "bad-signature"
	// ReasonUntrusted: ErrUntrusted.
	ReasonUntrusted = "chain-untrusted"
	// ReasonExpired: ErrExpired (expired or not yet valid).
	ReasonExpired = "certificate-not-valid-now"
	// ReasonKeyUsage: ErrKeyUsage.
	ReasonKeyUsage = "not-code-signing"
	// ReasonRevoked: ErrRevoked.
	ReasonRevoked = "certificate-revoked"
	// ReasonCRLStale: ErrCRLStale.
	ReasonCRLStale = "crl-stale"
	// ReasonCRLMissing: ErrCRLMissing.
	ReasonCRLMissing = "crl-missing"
	// ReasonCRLSignature: ErrCRLSignature.
	ReasonCRLSignature = "crl-signature-invalid"
	// ReasonManifest: ErrManifest.
	ReasonManifest = "manifest-invalid"
	// ReasonPolicy: ErrPolicy.
	ReasonPolicy = "trust-policy-invalid"
	// ReasonUnreadable: the module could not be read (StatusError).
	ReasonUnreadable = "unreadable"
)

// reasonTable maps sentinels to codes, most specific first: a manifest
// error is also malformed, ErrOnlyEd25519 comes with ErrNoSignature.
var reasonTable = []struct {
	err  error
	code string
}{
	{ErrRecordsDropped, ReasonRecordsDropped},
	{ErrOnlyEd25519, ReasonOnlyEd25519},
	{ErrManifest, ReasonManifest},
	{ErrRevoked, ReasonRevoked},
	{ErrCRLSignature, ReasonCRLSignature},
	{ErrCRLStale, ReasonCRLStale},
	{ErrCRLMissing, ReasonCRLMissing},
	{ErrExpired, ReasonExpired},
	{ErrKeyUsage, ReasonKeyUsage},
	{ErrUntrusted, ReasonUntrusted},
	{ErrBadSignature, ReasonBadSignature},
	{ErrNoSignature, ReasonNoSignature},
	{ErrHashMismatch, ReasonHashMismatch},
	{ErrNotSigned, ReasonNotSigned},
	{ErrMalformed, ReasonMalformed},
	{ErrPolicy, ReasonPolicy},
}

// ReasonCode returns the reason code of a verification error: ReasonOK for
// nil, ReasonUnreadable for an error wrapping none of this package's
// sentinels (a file that cannot be read).
func ReasonCode(err error) string {
	if err == nil {
		return ReasonOK
	}
	for _, r := range reasonTable {
		if errors.Is(err, r.err) {
			return r.code
		}
	}
	return ReasonUnreadable
}

// ReasonCodes lists every code ReasonCode returns (docs/reason-codes.md
// holds the same list; a test keeps them in step).
func ReasonCodes() []string {
	codes := []string{ReasonOK}
	for _, r := range reasonTable {
		codes = append(codes, r.code)
	}
	return append(codes, ReasonUnreadable)
}

// FormatSerial spells a certificate serial number as openssl prints it
// (`openssl x509 -serial`): upper-case hexadecimal with an even number of
// digits, no prefix ("0CA5B1B8…"). A zero serial is "00"; a negative one
// (which RFC 5280 forbids, but a parser may meet) keeps its sign.
func FormatSerial(n *big.Int) string {
	if n == nil {
		return ""
	}
	sign := ""
	if n.Sign() < 0 {
		sign = "-"
	}
	b := new(big.Int).Abs(n).Bytes()
	if len(b) == 0 {
		return "00"
	}
	return sign + strings.ToUpper(hexString(b))
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&0xf]
	}
	return string(out)
}
