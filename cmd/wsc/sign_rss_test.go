//go:build linux

package main

import (
	"bytes"
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestSignLargeModulePeakRSS: `wsc sign` streams the module. Signing a
// 300 MiB module (a small module plus a 300 MiB custom section, stored as
// a sparse file) keeps the process's peak RSS at most 64 MiB, and the
// signed module verifies.
func TestSignLargeModulePeakRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 300 MiB signed module; run without -short")
	}
	wsc, _ := buildBinaries(t)
	dir := t.TempDir()
	pass := []byte("large module passphrase")
	if err := os.WriteFile(filepath.Join(dir, "pass"), pass, 0o600); err != nil {
		t.Fatal(err)
	}
	pki := filepath.Join(dir, "pki")
	if _, err := signPKI(pki, pass); err != nil {
		t.Fatal(err)
	}
	// testModule, then a custom section "blob" of 300 MiB of zeros: the
	// header is written, the payload is a hole (ftruncate), so the file
	// costs no disk and reading it costs no I/O.
	const blob = 300 << 20
	in := filepath.Join(dir, "big.wasm")
	name := []byte{4, 'b', 'l', 'o', 'b'}
	head := append(append(append(append([]byte{}, testModule...), 0), uleb(uint32(blob+len(name)))...), name...)
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(head); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(len(head) + blob)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "signed", "big.wasm")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(wsc, "sign", "--key", filepath.Join(pki, "good.key"), "--chain", filepath.Join(pki, "good.pem"),
		"--trust", filepath.Join(pki, "bundle.pem"), "--passphrase-source", "file:"+filepath.Join(dir, "pass"), in, "-o", out)
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	// wsc's own peak (VmHWM), not getrusage's (see testenv.RunPeakRSS),
	// which is logged for comparison only.
	hwm, err := testenv.RunPeakRSS(cmd)
	if err != nil {
		t.Fatalf("wsc sign of a 300 MiB module: %v\n%s", err, outb.Bytes())
	}
	if hwm == 0 {
		t.Fatal("no VmHWM read from /proc for wsc sign")
	}
	var maxrss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		maxrss = ru.Maxrss << 10
	}
	t.Logf("wsc sign of a 300 MiB module: peak RSS (VmHWM) %.1f MiB; getrusage ru_maxrss %.1f MiB (includes the test binary's pre-exec memory)",
		float64(hwm)/(1<<20), float64(maxrss)/(1<<20))
	if hwm > 64<<20 {
		t.Fatalf("wsc sign peak RSS %s bytes > 64 MiB", strconv.FormatInt(hwm, 10))
	}
	st, err := os.Stat(out)
	if err != nil || st.Size() < blob {
		t.Fatalf("signed module: %v, %d bytes", err, st.Size())
	}
	// No temporary file is left in the output folder.
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 1 {
		t.Fatalf("output folder holds %d entries, want the signed module only", len(ents))
	}
	b, err := exec.Command(wsc, "verify", "--trust", filepath.Join(pki, "bundle.pem"), out).CombinedOutput()
	if err != nil || !strings.Contains(string(b), "1 valid") {
		t.Fatalf("wsc verify of the signed 300 MiB module: %v\n%s", err, b)
	}
}
