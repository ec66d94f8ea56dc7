package station

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiscoverSlotsGlob: ports found by glob become slots 1..N in sorted
// order; nothing found is a clear error.
func TestDiscoverSlotsGlob(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"bench-c", "bench-a", "bench-b"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	slots, err := DiscoverSlots(Discover{Globs: []string{filepath.Join(dir, "bench-*"), filepath.Join(dir, "bench-a")}})
	if err != nil {
		t.Fatal(err)
	}
	if len(slots) != 3 {
		t.Fatalf("%d slots, want 3 (a port matched twice counts once)", len(slots))
	}
	for i, want := range []string{"bench-a", "bench-b", "bench-c"} {
		if slots[i].Slot != i+1 || filepath.Base(slots[i].Port) != want {
			t.Errorf("slot %d = %+v, want %s", i+1, slots[i], want)
		}
	}
	if _, err := DiscoverSlots(Discover{Globs: []string{filepath.Join(dir, "none-*")}}); err == nil || !strings.Contains(err.Error(), "no serial port found") {
		t.Fatalf("nothing to discover: %v", err)
	}
}

// TestConfigSlotsOrDiscover: a config needs slots or discovery, not both.
func TestConfigSlotsOrDiscover(t *testing.T) {
	dir := t.TempDir()
	base := "station: s\ndatabase: d.db\nca: {dir: ca, passphrase: env:X}\naudit: {key_fingerprints: [abababababababababababababababababababababababababababababababab]}\ntpm_vendor_roots: [v.pem]\nwork_order: {id: W, quantity: 1}\n"
	for name, tc := range map[string]struct {
		extra string
		ok    bool
	}{
		"neither":  {"", false},
		"both":     {"slots: [{slot: 1, port: /dev/ttyUSB0}]\ndiscover: {globs: [ports/*]}\n", false},
		"slots":    {"slots: [{slot: 1, port: /dev/ttyUSB0}]\n", true},
		"discover": {"discover: {globs: [ports/*], usb: [\"0403:6001\"]}\n", true},
	} {
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte(base+tc.extra), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(p)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", name, err)
		}
		if name == "discover" && err == nil && cfg.Discover.Globs[0] != filepath.Join(dir, "ports/*") {
			t.Errorf("glob not made relative to the config: %q", cfg.Discover.Globs[0])
		}
	}
}

// TestConfigProofPolicy checks the proof policy is data checked at load:
// the default is [tpm] and needs TPM vendor roots; unknown or repeated
// proofs and a proof without its vendor roots are refused with the key
// named; unattested is accepted only when listed.
func TestConfigProofPolicy(t *testing.T) {
	dir := t.TempDir()
	base := "station: s\ndatabase: d.db\nca: {dir: ca, passphrase: env:X}\naudit: {key_fingerprints: [abababababababababababababababababababababababababababababababab]}\nslots: [{slot: 1, port: /dev/ttyUSB0}]\n"
	for name, tc := range map[string]struct {
		yaml string
		want []string // nil: refused
		msg  string
	}{
		"default tpm":         {"tpm_vendor_roots: [v.pem]\nwork_order: {id: W, quantity: 1}\n", []string{"tpm"}, ""},
		"default needs roots": {"work_order: {id: W, quantity: 1}\n", nil, "tpm needs tpm_vendor_roots"},
		"se needs roots":      {"work_order: {id: W, quantity: 1, proofs: [atecc608]}\n", nil, "atecc608 needs se_vendor_roots"},
		"unknown":             {"tpm_vendor_roots: [v.pem]\nwork_order: {id: W, quantity: 1, proofs: [tpm, TPM]}\n", nil, `unknown proof "TPM"`},
		"twice":               {"tpm_vendor_roots: [v.pem]\nwork_order: {id: W, quantity: 1, proofs: [tpm, tpm]}\n", nil, "listed twice"},
		"unattested listed":   {"work_order: {id: W, quantity: 1, proofs: [unattested]}\n", []string{"unattested"}, ""},
		"mix":                 {"tpm_vendor_roots: [v.pem]\nse_vendor_roots: [s.pem]\nwork_order: {id: W, quantity: 1, proofs: [tpm, atecc608]}\n", []string{"tpm", "atecc608"}, ""},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		if err := os.WriteFile(p, []byte(base+tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(p)
		if tc.want == nil {
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("%s: err = %v, want one saying %q", name, err, tc.msg)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if strings.Join(cfg.WorkOrder.Proofs, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: proofs %v, want %v", name, cfg.WorkOrder.Proofs, tc.want)
		}
	}
}

// TestConfigAuditPinRequired: a station config without a pinned audit key
// is refused at load, with the key named.
func TestConfigAuditPinRequired(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.yaml")
	y := "station: s\ndatabase: d.db\nca: {dir: ca, passphrase: env:X}\ntpm_vendor_roots: [v.pem]\nwork_order: {id: W, quantity: 1}\nslots: [{slot: 1, port: /dev/ttyUSB0}]\n"
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), "audit.key_fingerprints") {
		t.Fatalf("config without an audit pin: %v", err)
	}
}

// TestCheckConfigNamesLines: every problem of a config file is reported
// with the line of the key it concerns — YAML type errors and unknown keys
// first (the file does not decode), then value checks and the files the
// station would load.
func TestCheckConfigNamesLines(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	lines := func(errs []*ConfigError) map[int]string {
		m := map[int]string{}
		for _, e := range errs {
			m[e.Line] += e.Err.Error() + ";"
		}
		return m
	}
	_, errs := CheckConfig(write("types.yaml", "station: s\ndatabase: d.db\ncolour: red\nwork_order: {id: W, quantity: lots}\n"))
	got := lines(errs)
	if len(errs) != 2 || !strings.Contains(got[3], "colour") || !strings.Contains(got[4], "lots") {
		t.Fatalf("decode errors: %v", errs)
	}
	_, errs = CheckConfig(write("values.yaml", `station: s
database: d.db
ca: {dir: ca, passphrase: "env:X"}
tpm_vendor_roots: [missing.pem]
work_order:
  id: W
  quantity: 5
  lock: sometimes
  proofs: [tpm, floppy]
slots:
  - {slot: 1, port: /dev/ttyUSB0}
  - {slot: 1, port: /dev/ttyUSB1}
audit: {key_fingerprints: [abababababababababababababababababababababababababababababababab]}
`))
	got = lines(errs)
	for line, want := range map[int]string{3: "root.crt", 4: "missing.pem", 8: "sometimes", 9: "floppy", 12: "unique"} {
		if !strings.Contains(got[line], want) {
			t.Errorf("line %d: got %q, want it to mention %q", line, got[line], want)
		}
	}
	if len(errs) != 5 {
		t.Errorf("%d problems, want 5: %v", len(errs), errs)
	}
	for i := 1; i < len(errs); i++ {
		if errs[i].Line < errs[i-1].Line {
			t.Fatalf("not sorted by line: %v", errs)
		}
	}
	// LoadConfig refuses the same file, and its message is the checks' own.
	if _, err := LoadConfig(filepath.Join(dir, "values.yaml")); err == nil || !strings.Contains(err.Error(), "work_order.lock") {
		t.Fatalf("LoadConfig: %v", err)
	}
}
