package ui

import "github.com/wsc-project/wsc/station"

// UntrustedMax is the most bytes Untrusted returns before it cuts the text
// (station.UntrustedMax).
const UntrustedMax = station.UntrustedMax

// Untrusted makes text that a device or a certificate chose safe to show
// on a terminal; see station.Untrusted, the one escaping rule of the
// product (the station's headless lines use it too).
func Untrusted(s string) string { return station.Untrusted(s) }
