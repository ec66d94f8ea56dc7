package wasmsign

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	largeModuleSize = 200 << 20 // 200 MiB custom section payload
	maxChildRSS     = 64 << 20
)

// writeLargeModule writes addModule followed by a custom section of size
// bytes, without holding it in memory.
func writeLargeModule(t testing.TB, path string, size int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	name := appendVec(nil, []byte("blob"))
	w.Write(addModule)
	w.Write(appendLEB([]byte{0}, uint32(len(name)+size)))
	w.Write(name)
	chunk := bytes.Repeat([]byte("wsc-large-module"), (1<<20)/16)
	for n := 0; n < size; n += len(chunk) {
		w.Write(chunk[:min(len(chunk), size-n)])
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestStreamVerifyLargeModuleMemory signs a 200 MiB module as a stream and
// verifies it in a child process whose peak RSS (VmHWM) must stay within
// 64 MiB; in this process, the verification's total allocation is checked.
func TestStreamVerifyLargeModuleMemory(t *testing.T) {
	p := newPKI(t, "large")
	key, leaf := p.leaf(t, leafOpts{device: "DEV-LARGE"})
	dir := t.TempDir()
	plain, signed := filepath.Join(dir, "plain.wasm"), filepath.Join(dir, "signed.wasm")
	writeLargeModule(t, plain, largeModuleSize)
	in, err := os.Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(signed)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	if err := SignStream(bw, in, key, []*x509.Certificate{leaf, p.inter}, nil); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	out.Close()
	in.Close()
	os.Remove(plain)

	// In process: the streamed verification allocates a few buffers only.
	v, _ := NewVerifier(p.policy())
	var before, after runtimeMem
	before.read()
	start := time.Now()
	res, err := v.VerifyFile(signed)
	elapsed := time.Since(start)
	after.read()
	wantValid(t, res, err)
	alloc := after.total - before.total
	t.Logf("in-process: %d MiB verified in %v (%.0f MB/s), %d KiB allocated", largeModuleSize>>20, elapsed,
		float64(largeModuleSize)/elapsed.Seconds()/1e6, alloc>>10)
	if alloc > 4<<20 {
		t.Fatalf("streamed verification allocated %d bytes", alloc)
	}

	// Child process: peak resident set of a fresh process verifying it.
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.root.Raw})
	for _, crl := range p.crls {
		rootPEM = append(rootPEM, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw})...)
	}
	bundle := filepath.Join(dir, "bundle.pem")
	writeFile(t, bundle, rootPEM)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperVerifyLarge$", "-test.v")
	cmd.Env = append(os.Environ(), "WASMSIGN_HELPER_MODULE="+signed, "WASMSIGN_HELPER_BUNDLE="+bundle)
	outb, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, outb)
	}
	m := regexp.MustCompile(`HELPER result=(\w+) vmhwm_kb=(\d+)`).FindSubmatch(outb)
	if m == nil {
		t.Fatalf("child output:\n%s", outb)
	}
	hwm, _ := strconv.Atoi(string(m[2]))
	t.Logf("child: result=%s peak RSS %d KiB (limit %d KiB)", m[1], hwm, maxChildRSS>>10)
	if string(m[1]) != "valid" || hwm*1024 > maxChildRSS {
		t.Fatalf("child: result %s, peak RSS %d KiB", m[1], hwm)
	}
}

// TestHelperVerifyLarge is the child of TestStreamVerifyLargeModuleMemory;
// it does nothing unless started by it.
func TestHelperVerifyLarge(t *testing.T) {
	mod, bundle := os.Getenv("WASMSIGN_HELPER_MODULE"), os.Getenv("WASMSIGN_HELPER_BUNDLE")
	if mod == "" {
		return
	}
	pemBytes, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := LoadTrustBundle(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(pol)
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.VerifyFile(mod)
	if err != nil {
		t.Logf("verify: %v", err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	hwm := "0"
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			hwm = strings.Fields(l)[1]
		}
	}
	fmt.Printf("HELPER result=%s vmhwm_kb=%s\n", res.Status, hwm)
}
