package se

import (
	"errors"
	"fmt"
)

// Status is the status byte of a 4-byte ATECC608 status packet. Statuses
// other than StatusOK are errors; a command that fails returns a
// *CommandError wrapping one, so callers write
// errors.Is(err, se.StatusExecution).
type Status uint8

// Status codes from the ATECC608 datasheet ("Status/Error Codes").
const (
	StatusOK         Status = 0x00 // command executed successfully
	StatusMiscompare Status = 0x01 // Verify (or CheckMac) miscompare
	StatusParse      Status = 0x03 // bad opcode, mode, address or length
	StatusECCFault   Status = 0x05 // ECC computation failed (invalid key or input)
	StatusSelfTest   Status = 0x07 // a self test failed
	StatusHealthTest Status = 0x08 // the random number generator's health test failed
	StatusExecution  Status = 0x0F // command not allowed now (locks, permissions, state)
	StatusAfterWake  Status = 0x11 // first status after a wake: nothing executed yet
	StatusWatchdog   Status = 0xEE // watchdog about to expire: command not started
	StatusCRC        Status = 0xFF // bad CRC or other communication error in the command
)

var statusText = map[Status]string{
	StatusOK:         "success",
	StatusMiscompare: "miscompare",
	StatusParse:      "parse error",
	StatusECCFault:   "ECC fault",
	StatusSelfTest:   "self test error",
	StatusHealthTest: "health test error",
	StatusExecution:  "execution error",
	StatusAfterWake:  "after wake",
	StatusWatchdog:   "watchdog about to expire",
	StatusCRC:        "CRC or communication error",
}

// Error implements error.
func (s Status) Error() string {
	if t, ok := statusText[s]; ok {
		return fmt.Sprintf("atecc status 0x%02x (%s)", uint8(s), t)
	}
	return fmt.Sprintf("atecc status 0x%02x", uint8(s))
}

// CommandError is a command that the chip answered with a non-zero status.
type CommandError struct {
	Op     Opcode
	Status Status
}

// Error implements error.
func (e *CommandError) Error() string {
	return fmt.Sprintf("%s: %v", e.Op, e.Status)
}

// Is reports whether target is the error's Status, so that
// errors.Is(err, se.StatusExecution) works.
func (e *CommandError) Is(target error) bool {
	s, ok := target.(Status)
	return ok && s == e.Status
}

// Unwrap returns the status.
func (e *CommandError) Unwrap() error { return e.Status }

// Errors of the driver and the certificate codec.
var (
	// ErrNACK is returned by the emulator's Tx when no device acknowledges
	// the address: the chip is asleep, busy executing, or absent. Real
	// buses return their own error for this; the driver treats any Tx error
	// while polling the same way.
	ErrNACK = errors.New("i2c: address not acknowledged")
	// ErrWake: the chip did not answer a wake token with 04 11 33 43.
	ErrWake = errors.New("atecc: no valid wake response")
	// ErrResponseCRC: a response failed its CRC check even after re-reads.
	ErrResponseCRC = errors.New("atecc: response CRC mismatch")
	// ErrTimeout: the chip did not answer within its maximum execution time.
	ErrTimeout = errors.New("atecc: no response within the command's maximum execution time")
	// ErrBadResponse: a response with an impossible length.
	ErrBadResponse = errors.New("atecc: malformed response")
	// ErrConfigMismatch: a chip whose locked configuration differs from the
	// provisioning configuration it is asked to serve.
	ErrConfigMismatch = errors.New("atecc: locked configuration differs from the provisioning configuration")
	// ErrNotCompressible: a certificate that cannot be stored in Microchip's
	// 72-byte compressed form and rebuilt byte for byte. The wrapping error
	// says why.
	ErrNotCompressible = errors.New("certificate not compressible")
	// ErrNoCertificate: the certificate slots hold no compressed certificate.
	ErrNoCertificate = errors.New("no compressed certificate stored")
)

// notCompressible returns an error wrapping ErrNotCompressible with a reason.
func notCompressible(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotCompressible, fmt.Sprintf(format, args...))
}
