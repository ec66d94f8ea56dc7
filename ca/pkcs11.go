//go:build cgo

package ca

// PKCS#11 tokens are reached through go.step.sm/crypto's pkcs11 KMS, which
// needs cgo (dlopen of the module). The wsc binary is built with cgo anyway
// (SQLite); a pure-Go build of this package reports that token keys are
// unsupported instead of failing to build.
import _ "go.step.sm/crypto/kms/pkcs11"
