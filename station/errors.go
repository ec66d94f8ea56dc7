package station

import (
	"errors"
	"fmt"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/se"
)

// Sentinel errors a slot can fail with; match them with errors.Is.
var (
	// ErrLabelMismatch: the scanned label and the device's serial differ.
	ErrLabelMismatch = errors.New("label does not match device serial")
	// ErrAttestation: the device could not prove its key is in its chip.
	ErrAttestation = errors.New("attestation failed")
	// ErrReadBack: the chain read back from the device differs.
	ErrReadBack = errors.New("read-back mismatch")
	// ErrEndOfLine: the end-of-line signature check failed.
	ErrEndOfLine = errors.New("end-of-line check failed")
)

// instruction is the sentence the operator screen shows for a failure.
func instruction(s Step, err error, slot int) string {
	if t := trustInstruction(err, slot); t != "" {
		return t
	}
	switch {
	case errors.Is(err, ErrSerialInvalid):
		return fmt.Sprintf("The device on slot %d reports a serial the station does not accept: put it in the red bin and call the shift lead (its firmware or label data is wrong). Nothing was recorded.", slot)
	case errors.Is(err, ErrNoProof):
		return fmt.Sprintf("The device on slot %d cannot give a proof this work order accepts (wrong board or wrong work order): put it aside and call the shift lead. No key was made.", slot)
	case errors.Is(err, ErrRedBin):
		return fmt.Sprintf("RED BIN: the device on slot %d is held in the red bin (see why on screen). Put it back in the red bin; only a supervisor can release it.", slot)
	case errors.Is(err, ErrChipMismatch):
		return fmt.Sprintf("The device on slot %d claims a serial that belongs to another chip (or its chip already has another serial): put it in the red bin and call a supervisor. A board whose chip was replaced needs a supervisor's rework with its label scanned.", slot)
	case errors.Is(err, ErrKeyPolicy):
		return fmt.Sprintf("The device on slot %d offered a key the station does not certify (only ECDSA P-256): put it in the red bin and call the shift lead. Nothing was issued.", slot)
	case errors.Is(err, db.ErrKeyRevoked):
		return fmt.Sprintf("The key of the device on slot %d was revoked and the device cannot make a new one itself: call the shift lead for re-work.", slot)
	case errors.Is(err, ErrReadBack), errors.Is(err, ErrEndOfLine), errors.Is(err, ErrDelivery):
		return fmt.Sprintf("The device on slot %d did not keep or use its certificate as issued: its certificate was revoked. Put it in the red bin and call the shift lead.", slot)
	case errors.Is(err, ErrLabelMismatch):
		return fmt.Sprintf("The label does not match the device on slot %d: check you scanned the right board, then rescan and press r.", slot)
	case errors.Is(err, ErrAttestation):
		return fmt.Sprintf("The device on slot %d failed attestation: do not retry; put it in the red bin.", slot)
	case errors.Is(err, db.ErrQuotaExceeded) || errors.Is(err, ca.ErrQuotaExceeded):
		return "The work order's quantity is reached: stop the work order (s) and ask the shift lead for the next one. The device is safe to provision later."
	case errors.Is(err, se.ErrNotCompressible):
		return "This work order's certificate profile cannot be stored in the secure element (it must be valid for whole years): stop the work order and call the shift lead. Retrying will not help."
	case errors.Is(err, db.ErrDiskFull):
		return "The station's disk is full: call the shift lead. Nothing was half-written; the device is safe to retry."
	case errors.Is(err, db.ErrKeyConflict) || errors.Is(err, ca.ErrKeyConflict):
		return fmt.Sprintf("The device on slot %d presents a key already certified for another device: put it in the red bin and call the shift lead.", slot)
	}
	switch s {
	case StepConnect:
		return fmt.Sprintf("Cannot open the port of slot %d: check the USB cable and adapter, then press r.", slot)
	case StepIssue, StepDone:
		return "The station could not issue or record the certificate: call the shift lead (the device is safe to retry)."
	default:
		return fmt.Sprintf("Reseat the cable on slot %d and press r.", slot)
	}
}
