package tpm

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// DeriveSerial returns the device serial used when none is configured:
// "TPM-" followed by the upper-case hex of the first 8 bytes of the SHA-256
// of the EK public area (marshalled TPM2B_PUBLIC as returned by EK).
func DeriveSerial(ekPublic []byte) string {
	sum := sha256.Sum256(ekPublic)
	return "TPM-" + strings.ToUpper(hex.EncodeToString(sum[:8]))
}
