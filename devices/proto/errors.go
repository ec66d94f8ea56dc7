package proto

import (
	"errors"
	"fmt"
)

// ErrorCode is the code of an error reply. Codes are values that implement
// error, so callers branch with errors.Is(err, proto.ErrBusy) on whatever a
// Client call returned.
type ErrorCode uint16

// Error codes. Values are part of the wire format; never renumber.
const (
	ErrBadRequest     ErrorCode = 1 // the request payload is malformed or invalid
	ErrUnsupported    ErrorCode = 2 // unknown message type or unsupported operation on this backend
	ErrDevice         ErrorCode = 3 // the TPM / secure element reported a failure
	ErrBusy           ErrorCode = 4 // the device is busy; retry later
	ErrNotProvisioned ErrorCode = 5 // keys or chain not present yet
	ErrInternal       ErrorCode = 6 // agent bug or unexpected failure
	ErrLocked         ErrorCode = 7 // provisioning storage is locked
	ErrTooLarge       ErrorCode = 8 // a payload exceeds a protocol or device limit
	ErrVersion        ErrorCode = 9 // no common protocol version, or a frame of an unknown version
)

var codeNames = map[ErrorCode]string{
	ErrBadRequest:     "bad request",
	ErrUnsupported:    "unsupported",
	ErrDevice:         "device error",
	ErrBusy:           "busy",
	ErrNotProvisioned: "not provisioned",
	ErrInternal:       "internal error",
	ErrLocked:         "locked",
	ErrTooLarge:       "too large",
	ErrVersion:        "version mismatch",
}

// Error returns the code's name, so that an ErrorCode is itself an error.
func (c ErrorCode) Error() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("error code %d", uint16(c))
}

// Error is an error reply from the agent: a code to branch on and a sentence
// for the operator.
type Error struct {
	Code    ErrorCode
	Message string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Message == "" {
		return "agent: " + e.Code.Error()
	}
	return "agent: " + e.Code.Error() + ": " + e.Message
}

// Is matches an ErrorCode equal to e.Code, or an *Error with the same code.
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case ErrorCode:
		return e.Code == t
	case *Error:
		return t != nil && e.Code == t.Code
	}
	return false
}

// Errorf builds an *Error with a formatted operator message; agent handlers
// return it to choose the code of their reply.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Local failures of a Client.
var (
	// ErrTimeout reports that no valid response arrived within the message
	// type's timeout, after all retries.
	ErrTimeout = errors.New("proto: no response from agent")
	// ErrClosed reports use of a closed Client, or a line that failed.
	ErrClosed = errors.New("proto: connection closed")
	// ErrUnknownType reports a message type this package does not define.
	ErrUnknownType = errors.New("proto: unknown message type")
	// ErrProtocol reports a response that violates the protocol (wrong type,
	// undecodable payload, version not offered).
	ErrProtocol = errors.New("proto: protocol violation")
)
