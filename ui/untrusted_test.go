package ui

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/wsc-project/wsc/station"
)

func TestUntrusted(t *testing.T) {
	big := strings.Repeat("A", 200<<10)
	tests := []struct {
		name, in, want string
	}{
		{"plain serial", "TPM-00A1B2C3D4E5F601", "TPM-00A1B2C3D4E5F601"},
		{"printable unicode kept", "Müller 東京 ✓", "Müller 東京 ✓"},
		{"screen clear and forged line", "SIM\x1b[2J\nFORGED 0 failed", `SIM\x1b[2J\nFORGED 0 failed`},
		{"bidi override", "CN=\u202egnp.exe", `CN=\u202egnp.exe`},
		{"bidi isolates and marks", "\u2066a\u2069\u200f", `\u2066a\u2069\u200f`},
		{"invalid UTF-8", "SIM-\xff\xfe-01", `SIM-\xff\xfe-01`},
		{"truncated rune", "ok\xe2\x82", `ok\xe2\x82`},
		{"tab CR NUL DEL", "a\tb\rc\x00d\x7f", `a\tb\rc\x00d\x7f`},
		{"C1 CSI", "x\u009b31m", `x\u009b31m`},
		{"line and paragraph separators", "a\u2028b\u2029", `a\u2028b\u2029`},
		{"zero width and BOM", "a\u200bb\ufeff", `a\u200bb\ufeff`},
		{"tag character", "a\U000E0041", `a\U000e0041`},
		{"backslash doubled", `C:\fw`, `C:\\fw`},
		{"literal escape text is not an escape", `\x1b`, `\\x1b`},
		{"200 KB", big, strings.Repeat("A", UntrustedMax) + fmt.Sprintf("…[+%d bytes]", len(big)-UntrustedMax)},
		{"cut between escapes", strings.Repeat("\x1b", 200), strings.Repeat(`\x1b`, UntrustedMax/4) + fmt.Sprintf("…[+%d bytes]", 200-UntrustedMax/4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Untrusted(tt.in)
			if got != tt.want {
				t.Fatalf("Untrusted(%q) = %q, want %q", tt.in, got, tt.want)
			}
			checkDisplaySafe(t, got)
		})
	}
}

// checkDisplaySafe asserts on bytes what Untrusted promises: valid UTF-8,
// no control byte (no ESC, no newline, no C1), only printable runes or
// space, and a bounded length.
func checkDisplaySafe(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("output is not valid UTF-8: %q", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			t.Fatalf("output holds control byte %#x at %d: %q", c, i, s)
		}
	}
	for _, r := range s {
		if r != ' ' && !unicode.IsPrint(r) {
			t.Fatalf("output holds non-printable rune %U: %q", r, s)
		}
	}
	if len(s) > UntrustedMax+len("…[+ bytes]")+20 {
		t.Fatalf("output is %d bytes, over the cap", len(s))
	}
}

// FuzzUntrusted: whatever the input, the output is safe to print, and an
// input that is short and safe already comes back unchanged.
func FuzzUntrusted(f *testing.F) {
	for _, s := range []string{"SIM\x1b[2J\nFORGED 0 failed", "\u202e", "\xff", `\`, "plain", "\u009b", strings.Repeat("é", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := Untrusted(in)
		checkDisplaySafe(t, out)
		if len(in) <= UntrustedMax/4 && !strings.Contains(out, "…[+") && !bytes.ContainsAny([]byte(in), `\`) {
			safe := utf8.ValidString(in)
			for _, r := range in {
				safe = safe && (r == ' ' || unicode.IsPrint(r))
			}
			if safe && out != in {
				t.Fatalf("safe input %q changed to %q", in, out)
			}
		}
	})
}

// TestBenchEscapesDeviceText: serials a device reports (escape sequence
// and newline, bidi override, invalid UTF-8, 200 KB) and error text that
// embeds them reach the operator screen escaped, in the cards, the list
// and the detail lines.
func TestBenchEscapesDeviceText(t *testing.T) {
	huge := "SIM-" + strings.Repeat("9", 200<<10)
	serials := []string{hostileSerial, "TPM-\u202e1000", "SE-\xff\xfe", huge}
	for _, tt := range []struct {
		name string
		w, h int
		n    int
	}{
		{"cards", 120, 40, 4},
		{"list", 80, 24, 8},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeBench(tt.n)
			m := NewBenchModel(BenchOptions{Control: f, WorkOrder: "WO-1", Station: "ST-01", Operator: "alice", Now: fixedClock(t0)})
			m = settle(t, m, tea.WindowSizeMsg{Width: tt.w, Height: tt.h}, SnapshotMsg{Slots: f.Snapshot(), At: t0})
			m = settle(t, m,
				ev(1, 1, station.StateRunning, station.StepConnect, serials[0]),
				ev(2, 1, station.StateRunning, station.StepConnect, serials[1]),
				passEv(2, 2, serials[1], "5f3a\x1b[31m"),
				ev(3, 1, station.StateRunning, station.StepConnect, serials[2]),
				failEv(3, 2, station.StepKeys, serials[2], fmt.Errorf("device %s said: %s", serials[2], "bad\x1b]0;title\x07"), "Reseat "+serials[2]+"\nFORGED"),
				ev(4, 1, station.StateRunning, station.StepConnect, serials[3]))
			for _, slot := range []string{"1", "2", "3", "4"} {
				m = settle(t, m, keyRunes(slot))
				v := m.View()
				mustBeDisplaySafe(t, v)
				if len(v) > 32<<10 {
					t.Fatalf("slot %s: the 200 KB serial reached the screen (%d bytes)", slot, len(v))
				}
				if strings.Contains(v, "\n\xff") || strings.Contains(v, "\xfe") {
					t.Fatalf("slot %s: raw invalid UTF-8 on screen", slot)
				}
				switch slot {
				case "1":
					mustContain(t, v, `SIM\x1b[2J\nFORGED 0 failed`)
				case "2":
					mustContain(t, v, `TPM-\u202e1000 passed`, `certificate 5f3a\x1b[31m`)
				case "3":
					mustContain(t, v, `SE-\xff\xfe`, `device SE-\xff\xfe said: bad\x1b]0;title\x07`, `→ Reseat SE-\xff\xfe\nFORGED`)
				}
			}
		})
	}
}

// BenchmarkUntrusted: the common case (a plain serial) and a hostile 200
// KB string.
func BenchmarkUntrusted(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"plain serial", "TPM-00A1B2C3D4E5F601"},
		{"hostile 200KB", strings.Repeat("SIM\x1b[2J\n\u202e\xff", 200<<10/12)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = Untrusted(bc.in)
			}
		})
	}
}
