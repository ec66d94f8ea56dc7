package tpm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/wsc-project/wsc/devices/sim/testenv"
)

// TestAnchorsAndCounter: anchors are written, read back, locked with a
// non-empty owner auth (a rewrite then fails with TPM_RC_NV_LOCKED, the
// same bytes are accepted again), the counter only goes up; tpm2-tools,
// an independent reader, sees the lock, the content and the counter.
func TestAnchorsAndCounter(t *testing.T) {
	testenv.NeedTools(t, "tpm2_nvreadpublic", "tpm2_nvread")
	s := startSWTPM(t)
	tr := s.open(t)
	d, err := New(tr, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.ReadAnchors(); !errors.Is(err, ErrNoAnchors) {
		t.Fatalf("fresh TPM anchors: %v", err)
	}
	if _, err := d.Counter(); !errors.Is(err, ErrNoCounter) {
		t.Fatalf("fresh TPM counter: %v", err)
	}
	auth := []byte("0123456789abcdef0123456789abcdef")
	if err := d.ChangeOwnerAuth(auth); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(d.String(), string(auth)) || strings.Contains(fmt.Sprintf("%#v %+v", d, d.Config()), string(auth)) {
		t.Fatal("owner auth printed")
	}
	base, err := d.SetupCounter()
	if err != nil {
		t.Fatal(err)
	}
	if again, err := d.SetupCounter(); err != nil || again != base {
		t.Fatalf("second SetupCounter = %d, %v; want %d", again, err, base)
	}
	enc := bytes.Repeat([]byte("anchor"), 100) // 600 bytes: more than one NV buffer on small TPMs
	if err := d.WriteAnchors(enc); err != nil {
		t.Fatal(err)
	}
	got, locked, err := d.ReadAnchors()
	if err != nil || locked || !bytes.Equal(got, enc) {
		t.Fatalf("read back: locked %v, equal %v, %v", locked, bytes.Equal(got, enc), err)
	}
	// A second policy before the lock replaces the first (a resized index).
	enc = append(enc, "-v2"...)
	if err := d.WriteAnchors(enc); err != nil {
		t.Fatal(err)
	}
	if err := d.LockAnchors(); err != nil {
		t.Fatal(err)
	}
	if err := d.LockAnchors(); err != nil {
		t.Fatalf("second lock: %v", err)
	}
	if err := d.WriteAnchors(append(bytes.Clone(enc[:len(enc)-1]), 'X')); !errors.Is(err, tpm2.TPMRCNVLocked) {
		t.Fatalf("rewrite after lock: %v", err)
	}
	if err := d.WriteAnchors(enc); err != nil {
		t.Fatalf("same anchors after lock: %v", err)
	}
	got, locked, err = d.ReadAnchors()
	if err != nil || !locked || !bytes.Equal(got, enc) {
		t.Fatalf("after lock: locked %v, %v", locked, err)
	}
	for i := range 3 {
		v, err := d.IncrementCounter()
		if err != nil || v != base+uint64(i)+1 {
			t.Fatalf("increment %d = %d, %v", i, v, err)
		}
	}

	// Independent reader: tpm2-tools on the same swtpm (the Device's
	// connection is closed first; swtpm serves one client at a time).
	d.Close()
	tr.Close()
	// The swtpm TCTI finds the control channel at PATH.ctrl (simtest links it).
	tcti := "swtpm:path=" + s.sock
	pubOut := tpm2Tool(t, tcti, "tpm2_nvreadpublic", fmt.Sprintf("%#x", DefaultAnchorsIndex))
	if !strings.Contains(pubOut, "writelocked") || !strings.Contains(pubOut, "writedefine") || !strings.Contains(pubOut, fmt.Sprintf("size: %d", len(enc))) {
		t.Fatalf("tpm2_nvreadpublic does not show the locked anchors:\n%s", pubOut)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "anchors.bin")
	tpm2Tool(t, tcti, "tpm2_nvread", "-C", fmt.Sprintf("%#x", DefaultAnchorsIndex), "-o", out, fmt.Sprintf("%#x", DefaultAnchorsIndex))
	if b, err := os.ReadFile(out); err != nil || !bytes.Equal(b, enc) {
		t.Fatalf("tpm2_nvread content differs: %v", err)
	}
	cpub := tpm2Tool(t, tcti, "tpm2_nvreadpublic", fmt.Sprintf("%#x", DefaultCounterIndex))
	if !strings.Contains(cpub, "nt=0x1") && !strings.Contains(cpub, "counter") {
		t.Fatalf("counter index is not TPM_NT_COUNTER:\n%s", cpub)
	}
	cout := filepath.Join(dir, "counter.bin")
	tpm2Tool(t, tcti, "tpm2_nvread", "-C", fmt.Sprintf("%#x", DefaultCounterIndex), "-o", cout, fmt.Sprintf("%#x", DefaultCounterIndex))
	b, err := os.ReadFile(cout)
	if err != nil || len(b) != 8 || binary.BigEndian.Uint64(b) != base+3 {
		t.Fatalf("tpm2_nvread counter = %x, %v; want %d", b, err, base+3)
	}
	// The owner auth is really set: tpm2-tools without it cannot lock.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tpm2_nvwritelock", "-C", "o", fmt.Sprintf("%#x", DefaultAnchorsIndex))
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+tcti)
	if b, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("owner-authorized command with the empty auth succeeded:\n%s", b)
	}
}

func tpm2Tool(t *testing.T, tcti string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+tcti)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return string(b)
}
