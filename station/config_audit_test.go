package station

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
)

// The audit section: the pin, the witness path, and a station key that is not pinned.
func TestAuditConfigPinAndWitness(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if err := os.MkdirAll(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	pass := []byte("audit passphrase")
	key, fp, err := CreateAuditKey(caDir, pass)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := CreateAuditKey(caDir, pass); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second creation: %v", err)
	}
	cfg := filepath.Join(dir, "station.yaml")
	if err := os.WriteFile(cfg, []byte("station: s1\ndatabase: station.db\nca: {dir: ca}\naudit:\n  key_fingerprints: [\""+
		strings.ToUpper(fp[:2])+":"+fp[2:]+"\"]\n  witness: usb/line.witness\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := LoadAuditConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if f.Database != filepath.Join(dir, "station.db") || f.CADir != caDir || f.Audit.WitnessPath(f.CADir) != filepath.Join(dir, "usb", "line.witness") {
		t.Fatalf("paths %+v", f)
	}
	if err := f.Audit.Check(); err != nil {
		t.Fatal(err)
	}
	opts, err := f.Audit.StoreOptions(f.CADir, key)
	if err != nil || len(opts) != 2 {
		t.Fatalf("store options: %d %v", len(opts), err)
	}
	// The options give a store that signs and witnesses.
	if err := os.MkdirAll(filepath.Join(dir, "usb"), 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := db.Open(f.Database, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Audit(t.Context(), "test", "t", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if w, err := db.ReadWitness(filepath.Join(dir, "usb", "line.witness")); err != nil || len(w.Lines) != 1 {
		t.Fatalf("witness: %v", err)
	}
	// Another key (audit.key replaced) is refused with an instruction.
	other := t.TempDir()
	okey, _, err := CreateAuditKey(other, pass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Audit.StoreOptions(f.CADir, okey); err == nil || !strings.Contains(err.Error(), "not the one pinned") {
		t.Fatalf("unpinned key: %v", err)
	}
	// Default witness beside the CA keys; no pin or a malformed one is refused.
	var empty AuditConfig
	if empty.WitnessPath(caDir) != filepath.Join(caDir, DefaultWitnessFile) {
		t.Fatal(empty.WitnessPath(caDir))
	}
	if err := empty.Check(); err == nil || !strings.Contains(err.Error(), "pin the audit key") {
		t.Fatalf("no pin: %v", err)
	}
	bad := AuditConfig{KeyFingerprints: []string{"abcd"}}
	if err := bad.Check(); err == nil {
		t.Fatal("short fingerprint accepted")
	}
	if _, err := ca.AuditKey(t.TempDir(), pass); !errors.Is(err, ca.ErrAuditKeyMissing) {
		t.Fatalf("missing key: %v", err)
	}
}
