package main

import (
	"fmt"
	"strings"

	"github.com/wsc-project/wsc/station"
	"github.com/wsc-project/wsc/ui"
)

// headlessLine renders a station event as one headless log line, in the
// format of station.Event.String, with every device-controlled field
// (serial, detail, error text) escaped by ui.Untrusted: a serial such as
// "SIM\x1b[2J\nFORGED 0 failed" can neither clear the terminal nor start
// a line of its own. The error keeps its double quotes; a quote inside it
// is escaped.
func headlessLine(e station.Event) string {
	serial := ui.Untrusted(e.Serial)
	if serial == "" {
		serial = "-"
	}
	s := fmt.Sprintf("%s slot=%d device=%s step=%s state=%s", e.Time.Format("15:04:05.000"), e.Slot, serial,
		ui.Untrusted(string(e.Step)), ui.Untrusted(string(e.State)))
	if e.Detail != "" {
		s += " " + ui.Untrusted(headlessInstruction(e.Detail, false))
	}
	if e.Err != nil {
		s += ` error="` + strings.ReplaceAll(ui.Untrusted(e.Err.Error()), `"`, `\"`) + `"`
	}
	if e.LabelErr != nil {
		s += ` label-error="` + strings.ReplaceAll(ui.Untrusted(e.LabelErr.Error()), `"`, `\"`) + `"`
	}
	return s
}

// untrustedError is an error whose text embeds what a device said; its
// message is escaped (ui.Untrusted) for the terminal, and errors.Is/As
// still see the error it wraps.
type untrustedError struct{ err error }

func (e untrustedError) Error() string { return ui.Untrusted(e.err.Error()) }
func (e untrustedError) Unwrap() error { return e.err }

// Headless, nobody presses keys: the operator screen's "press r" and "(s)"
// become what works without a screen. On a headless bench a failed slot
// runs its device again by itself once it is reseated; a one-shot command
// (wsc provision) is simply run again.
var (
	headlessBench = strings.NewReplacer(
		"then rescan and press r.", "then put the right board on the slot and reseat it (the station runs it again by itself).",
		", then press r.", "; the station tries again by itself once the cable is back.",
		" and press r.", ": the station runs it again by itself once it is plugged back in.",
		"stop the work order (s)", "stop the station (ctrl+c)",
	)
	headlessOnce = strings.NewReplacer(
		"then rescan and press r.", "then run wsc provision again with the right --label.",
		", then press r.", ", then run wsc provision again.",
		" and press r.", " and run wsc provision again.",
		"stop the work order (s)", "stop provisioning",
	)
)

// headlessInstruction rewrites an operator instruction for output without
// a screen; once is set for a one-device command.
func headlessInstruction(s string, once bool) string {
	if once {
		return headlessOnce.Replace(s)
	}
	return headlessBench.Replace(s)
}
