// Package wasmsign signs and verifies WebAssembly modules in the wasmsign2
// layout, extended with an ECDSA P-256 record that carries the signer's
// X.509 certificate chain.
//
// The signature lives in a custom section named "signature" that must be the
// first section of the module. Every other section is hashed, as
// id || LEB128 size || payload, into a rolling SHA-256 whose state is
// snapshotted at each "signature_delimiter" custom section; the list of
// snapshots (plus the final state when the module does not end with a
// delimiter) is what a signature covers:
//
//	message = "wasmsig" || 0x01 || 0x01 || 0x01 || hash_1 || ... || hash_n
//
// Two record kinds are understood:
//
//   - AlgEd25519 (0x01), the wasmsign2 record, verified with a raw Ed25519
//     public key (VerifyEd25519).
//   - AlgECDSAP256Chain (0xE1), an ECDSA P-256/SHA-256 signature as raw r||s
//     followed by the certificate chain, leaf first, verified against a
//     TrustPolicy of pinned roots and CRLs (Verify, Verifier, BatchVerify).
//
// Verification is strict: the hash list computed from the module must equal
// a signed set exactly (a module truncated at a delimiter, or extended after
// the signed part, is rejected), every length is bounded before anything is
// allocated, and modules are read as a stream in constant memory.
//
// Certificate chains fail closed on revocation data too: every CA on a
// verified path (intermediates and the pinned root) must have a CRL in the
// TrustPolicy that is fresh at the verification time and signed by that
// CA (ErrCRLMissing, ErrCRLStale, ErrCRLSignature, each as a CRLError
// naming the CA). TrustPolicy.AllowMissingCRL is the only way around a
// missing CRL, and every result that relied on it says so.
//
// Every result carries a stable ReasonCode beside its human Reason
// (docs/reason-codes.md), and certificate serials are spelled as openssl
// prints them (FormatSerial). Ed25519 keys are read in wasmsign2's formats
// (ParseEd25519PrivateKey, ParseEd25519PublicKey). CheckSigningChain lets a
// signer refuse a chain that verification would reject, before signing.
//
// The byte-level format is specified in docs/signature-format.md.
package wasmsign
