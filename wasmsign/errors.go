package wasmsign

import "errors"

// Sentinel errors. Verification and parsing errors wrap exactly one of them
// (with context), so callers branch with errors.Is.
var (
	// ErrMalformed reports a module or signature section that violates the
	// format: bad header, truncated data, an out-of-bounds count or size, a
	// non-canonical LEB128, a misplaced or duplicated signature section.
	ErrMalformed = errors.New("malformed module")
	// ErrNotSigned reports a module without a signature section (or, for
	// detached verification, an empty signature).
	ErrNotSigned = errors.New("module is not signed")
	// ErrHashMismatch reports that no signed hash set equals the hash list
	// computed from the module: the module was modified, truncated or
	// extended after signing.
	ErrHashMismatch = errors.New("module content does not match any signed hash set")
	// ErrNoSignature reports that a matching hash set carries no record of
	// the kind the verifier accepts (e.g. only Ed25519 records when a
	// certificate chain is required, or no record for the given key).
	ErrNoSignature = errors.New("no usable signature record")
	// ErrBadSignature reports a signature that does not verify with the
	// record's public key.
	ErrBadSignature = errors.New("signature verification failed")
	// ErrUntrusted reports a certificate chain that does not lead to a
	// pinned root, or whose certificates do not form the embedded path.
	ErrUntrusted = errors.New("certificate chain not trusted")
	// ErrExpired reports a certificate in the chain that is not valid at the
	// verification time.
	ErrExpired = errors.New("certificate not valid at verification time")
	// ErrKeyUsage reports a leaf that is not fit for code signing: no
	// code-signing EKU, no digitalSignature key usage, a CA certificate, or
	// a key that is not ECDSA P-256.
	ErrKeyUsage = errors.New("certificate not allowed to sign code")
	// ErrRevoked reports a certificate listed on a CRL of the trust bundle.
	ErrRevoked = errors.New("certificate revoked")
	// ErrCRLStale reports a CRL that is past its nextUpdate, older than the
	// policy's MaxCRLAge, or not yet valid at the verification time.
	// Verification fails closed, whatever the policy.
	ErrCRLStale = errors.New("revocation list is stale")
	// ErrCRLMissing reports a CA on the path (intermediate or root) for
	// which the trust bundle holds no CRL. Verification fails closed unless
	// the policy sets AllowMissingCRL.
	ErrCRLMissing = errors.New("revocation list missing")
	// ErrCRLSignature reports a CRL that names a CA on the path as its
	// issuer but whose signature does not verify with that CA's key: the
	// trust bundle was edited or mixed up. Fails closed, whatever the
	// policy.
	ErrCRLSignature = errors.New("revocation list signature invalid")
	// ErrRecordsDropped reports a hash set left without any signature
	// record. Only a tool that does not know wsc's records makes one:
	// wasmsign2 drops every record of an algorithm it does not know when it
	// re-signs a module, so a wsc record signed before a wasmsign2
	// signature over other content (e.g. wasmsign2 --split) disappears and
	// leaves its set empty. Sign with wasmsign2 first, then wsc sign.
	ErrRecordsDropped = errors.New("signature records were dropped from the module")
	// ErrOnlyEd25519 reports (beside ErrNoSignature) a module whose matching
	// hash set holds Ed25519 (wasmsign2) records but no certificate-chain
	// record. The bytes are the same whether wsc never signed it or
	// wasmsign2 signed after wsc sign and dropped wsc's record; the reason
	// says both.
	ErrOnlyEd25519 = errors.New("only Ed25519 (wasmsign2) signatures")
	// ErrCannotSign reports a module that cannot be signed as asked: an
	// embedded signature section in detached mode, the same signature
	// twice, a full hash set or section.
	ErrCannotSign = errors.New("module cannot be signed as asked")
	// ErrPolicy reports an unusable trust policy (no roots, an 'at' time
	// without the explicit flag).
	ErrPolicy = errors.New("invalid trust policy")
)
