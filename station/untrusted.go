package station

import "github.com/wsc-project/wsc/station/untrusted"

// UntrustedMax is the most bytes Untrusted returns before it cuts the text
// and says how much it left out (untrusted.Max).
const UntrustedMax = untrusted.Max

// Untrusted makes text that a device or a certificate chose safe to show
// on a terminal: every rune that is not printable and every byte that is
// not valid UTF-8 is shown as a Go escape, a backslash is doubled, and the
// result is cut at UntrustedMax bytes with a marker. The rule lives in the
// leaf package station/untrusted (untrusted.String), so that light
// binaries share it; see there for the reasoning.
func Untrusted(s string) string { return untrusted.String(s) }
