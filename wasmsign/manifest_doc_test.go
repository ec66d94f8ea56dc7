package wasmsign

import (
	"encoding/hex"
	"testing"
)

// TestManifestDocExample pins the byte-level example of
// docs/signature-format.md §9a.
func TestManifestDocExample(t *testing.T) {
	b, err := MarshalManifest(&Manifest{Format: 1, Component: "fw", Version: 7, MinVersion: 7, DeviceClass: "gw"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(b), "a500010162667702070307046267"+"77"; got != want {
		t.Fatalf("encoding %s, want %s", got, want)
	}
}
