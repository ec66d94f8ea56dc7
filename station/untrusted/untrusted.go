// Package untrusted holds the one escaping rule of wsc for text that a
// device or a certificate chose, before it reaches a terminal. It is a leaf
// package (standard library only), so that light binaries — the QA screen
// in the lean wsc front — use the same rule as the station, which
// delegates to it (station.Untrusted).
package untrusted

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Max is the most bytes String returns before it cuts the text
// and says how much it left out (the escapes count, the marker does not).
const Max = 512

// String makes text that a device or a certificate chose safe to show
// on a terminal. Devices are hostile and certificates in a signed module
// say whatever their signer wanted: a serial such as "SIM\x1b[2J\nFORGED"
// would clear an operator's screen or forge a log line, and a right-to-left
// override (U+202E) would reorder what the operator reads.
//
// Every rune that is not printable (unicode.IsPrint: control characters,
// C1 controls, format characters such as the bidi overrides and zero-width
// joiners, line and paragraph separators, unassigned code points) and every
// byte that is not valid UTF-8 is shown as an escape, as Go writes it:
// \n, \r, \t, \x1b, \x00, \u202e, \U000e0001. A backslash is doubled, so
// an escape in the output always means the byte or rune itself was there.
// Space is kept. The result is at most Max bytes plus a marker
// "…[+N bytes]" telling how much of the input was left out.
//
// Use it wherever device- or certificate-controlled text reaches a
// terminal (tables, TUI views, headless log lines). Machine formats keep
// the exact text and escape it their own way (JSON, XML).
func String(s string) string {
	if isPlain(s) {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), Max) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var esc string
		switch {
		case r == utf8.RuneError && size == 1:
			esc = fmt.Sprintf(`\x%02x`, s[i])
		case r == '\\':
			esc = `\\`
		case r == '\n':
			esc = `\n`
		case r == '\r':
			esc = `\r`
		case r == '\t':
			esc = `\t`
		case r == ' ' || unicode.IsPrint(r):
			esc = s[i : i+size]
		case r < 0x80:
			esc = fmt.Sprintf(`\x%02x`, r)
		case r <= 0xffff:
			esc = fmt.Sprintf(`\u%04x`, r)
		default:
			esc = fmt.Sprintf(`\U%08x`, r)
		}
		if b.Len()+len(esc) > Max {
			fmt.Fprintf(&b, "…[+%d bytes]", len(s)-i)
			break
		}
		b.WriteString(esc)
		i += size
	}
	return b.String()
}

// isPlain reports whether s is short printable ASCII without a backslash,
// which String returns unchanged (the common case: serials, hex).
func isPlain(s string) bool {
	if len(s) > Max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '\\' {
			return false
		}
	}
	return true
}
