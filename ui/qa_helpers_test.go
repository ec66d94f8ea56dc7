package ui

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// The QA screen moved to ui/qa (with its tests); these helpers stay for
// the bench's escaping tests.

const hostileSerial = "SIM\x1b[2J\nFORGED 0 failed"

// mustBeDisplaySafe asserts on the bytes of a rendered view: no escape
// character, no C1 control, no bidi override, no invalid UTF-8, no line
// that a device string started.
func mustBeDisplaySafe(t *testing.T, view string) {
	t.Helper()
	for _, bad := range []string{"\x1b", "\u009b", "\u202e", "\r", "\x00"} {
		if strings.Contains(view, bad) {
			t.Fatalf("view holds raw %q:\n%s", bad, view)
		}
	}
	if !utf8.ValidString(view) {
		t.Fatalf("view is not valid UTF-8:\n%q", view)
	}
	for _, l := range strings.Split(view, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "FORGED") {
			t.Fatalf("a device string started a line: %q", l)
		}
	}
}
