package untrusted

import (
	"strings"
	"testing"
)

// The full table of cases is in ui/untrusted_test.go (through
// station.Untrusted and ui.Untrusted, which delegate here); these are the
// rule's corners, checked where it lives.
func TestString(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"TPM-00A1B2C3D4E5F601", "TPM-00A1B2C3D4E5F601"},
		{"SIM\x1b[2J\nFORGED", `SIM\x1b[2J\nFORGED`},
		{"CN=\u202egnp.exe", `CN=\u202egnp.exe`},
		{"SIM-\xff", `SIM-\xff`},
		{`C:\fw`, `C:\\fw`},
	} {
		if got := String(tt.in); got != tt.want {
			t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	long := strings.Repeat("A", Max+10)
	if got := String(long); got != strings.Repeat("A", Max)+"…[+10 bytes]" {
		t.Errorf("String of %d bytes = %q…", len(long), got[:20])
	}
}
