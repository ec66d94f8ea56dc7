// Package pkcs11 keeps a device's identity key and certificate chain in a
// PKCS#11 token: the key pair is generated on the token (CKA_SENSITIVE
// true, CKA_EXTRACTABLE false, CKA_TOKEN true), signatures are made by the
// token (CKM_ECDSA over a SHA-256 digest), and the chain is stored as
// CKO_CERTIFICATE objects.
//
// Real platforms reach their key store through a PKCS#11 module: OP-TEE's
// PKCS#11 trusted application through libckteec.so, SGX enclaves through
// PKCS#11 token libraries, HSMs, smart cards; tests use SoftHSM2.
//
// Tokens are named by RFC 7512 URIs (see ParseURI). Talking to a module
// needs cgo, so everything but the URI parser is behind the build tags
// `cgo && pkcs11`; the default agent build stays pure Go.
package pkcs11
