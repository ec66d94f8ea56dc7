// Package se drives an ATECC608-class secure element over I2C and emulates
// one byte for byte.
//
// The driver (Chip) speaks the chip's I2C protocol on periph.io's i2c.Bus:
// the wake token and wake status, idle and sleep, command packets with
// CRC-16 (polynomial 0x8005, as cryptoauthlib computes it), polling a busy
// chip within each command's maximum execution time, resending a command
// the chip received with a bad CRC and re-reading a response that arrived
// with one. Chip statuses come back as *CommandError wrapping a Status, so
// callers write errors.Is(err, se.StatusExecution).
//
// The Emulator implements the same i2c.Bus and behaves as the datasheet
// says (zones, locks, key slots, real P-256 ECDSA, statuses, optional
// execution times); the driver's tests run against it. It persists its
// non-volatile state to a file, so a "power cycle" keeps keys and locks.
//
// Personalize writes the documented provisioning configuration (device key
// in slot 0, never readable; certificates in Microchip's slots 10-12) and
// locks the chip. Compress and Decompress implement Microchip's 72-byte
// compressed certificate format (atcacert), with a Template (certificate
// definition) that rebuilds the full X.509 certificate byte for byte.
//
// Key attestation: Manufacture is a chip vendor's factory step (attestation
// key in SlotAttestationKey, its manufacturer certificates compressed in
// slots 13-15, zones locked); Chip.AttestKey runs Nonce, GenKey in digest
// mode and Sign internal, and KeyAttestation.Message rebuilds the signed
// message exactly as cryptoauthlib's atcah_* host helpers do.
package se
