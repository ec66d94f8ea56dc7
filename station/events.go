package station

import (
	"fmt"
	"time"
)

// Step is one step of the provisioning sequence (ARCHITECTURE.md §4).
type Step string

// The steps, in order.
const (
	StepConnect  Step = "connect"
	StepHello    Step = "hello"
	StepEK       Step = "ek"
	StepKeys     Step = "keys"
	StepAttest   Step = "attest"
	StepActivate Step = "activate"
	StepIssue    Step = "issue"
	StepInstall  Step = "install"
	StepReadBack Step = "readback"
	StepEOL      Step = "eol"
	StepLock     Step = "lock"
	StepDone     Step = "done"
)

// Steps lists the steps in the order they run.
var Steps = []Step{StepConnect, StepHello, StepEK, StepKeys, StepAttest, StepActivate, StepIssue, StepInstall, StepReadBack, StepEOL, StepLock, StepDone}

// Index returns the position of s in Steps, or -1.
func (s Step) Index() int {
	if p, ok := subStepOf[s]; ok {
		s = p
	}
	for i, x := range Steps {
		if x == s {
			return i
		}
	}
	return -1
}

// State is the state of a slot.
type State string

// Slot states.
const (
	StateIdle        State = "idle"
	StateRunning     State = "running"
	StatePassed      State = "passed"
	StateFailed      State = "failed"
	StateQuarantined State = "quarantined"
)

// Event tells what happened on a slot. The bench sends them in order per
// slot; the operator view and the headless printer consume them.
type Event struct {
	Time   time.Time
	Slot   int
	Port   string
	Serial string
	Step   Step
	State  State
	// Detail is a short human sentence ("certificate 5F3A… issued").
	Detail string
	// Err is set when State is StateFailed.
	Err error
	// Result is set when State is StatePassed.
	Result *Result
	// ChipID is the device's proven chip identity, once the proof passed.
	ChipID []byte
	// LabelErr, on a passed event, says why the device's label was not
	// printed (the device passed all the same).
	LabelErr error
}

// String renders the event as one headless log line.
func (e Event) String() string {
	serial := e.Serial
	if serial == "" {
		serial = "-"
	}
	// The serial and the details may hold text a device chose: quoted
	// when they are not plain, so that no device forges a line.
	s := fmt.Sprintf("%s slot=%d device=%s step=%s state=%s", e.Time.Format("15:04:05.000"), e.Slot, Untrusted(serial), e.Step, e.State)
	if e.Detail != "" {
		s += " " + Untrusted(e.Detail)
	}
	if e.Err != nil {
		s += " error=" + fmt.Sprintf("%q", e.Err.Error())
	}
	return s
}
