//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"crypto/x509"
	"github.com/wsc-project/wsc/devices/agent"
	"github.com/wsc-project/wsc/devices/anchors"
	"github.com/wsc-project/wsc/devices/tpm"
	"github.com/wsc-project/wsc/wasmsign"
)

// TestVerifyLargeModulePeakRSS: `wsc-agent verify` and `install` of a
// 200 MiB module stream it: the process's peak RSS (getrusage maxrss of
// the child) stays at most 20 MB.
func TestVerifyLargeModulePeakRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 400 MiB of temporary files; run without -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "wsc-agent")
	if b, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	uri := startCLITPM(t)
	good := newReleasePKI(t)
	tr, err := tpm.OpenTransport(uri)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := tpm.New(tr, tpm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	be, err := agent.NewTPMBackend(dev, "DEV-RSS")
	if err != nil {
		t.Fatal(err)
	}
	base, err := be.SetupCounter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := (&anchors.Policy{Version: 1, CounterBase: base, DeviceClass: "gw-1", Roots: []anchors.Fingerprint{anchors.RootFingerprint(good.root)}}).Marshal()
	if err := be.WriteAnchors(ctx, enc); err != nil {
		t.Fatal(err)
	}
	if err := be.LockAnchors(ctx); err != nil {
		t.Fatal(err)
	}
	tr.Close()

	// Unsigned module: answerWasm with a manifest, then a 200 MiB custom
	// section appended as a stream; signed with SignStream (file to file).
	small, err := wasmsign.AddManifest(answerWasm, &wasmsign.Manifest{Format: 1, Component: "fw", Version: 1, MinVersion: 1, DeviceClass: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	unsigned := filepath.Join(dir, "big-unsigned.wasm")
	f, err := os.Create(unsigned)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.Write(small)
	const blob = 200 << 20
	name := []byte{4, 'b', 'l', 'o', 'b'}
	w.Write([]byte{0})
	w.Write(leb(uint32(blob + len(name))))
	w.Write(name)
	chunk := bytes.Repeat([]byte{0xa5}, 1<<20)
	for range blob >> 20 {
		w.Write(chunk)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	in, _ := os.Open(unsigned)
	signedPath := filepath.Join(dir, "big.wasm")
	out, _ := os.Create(signedPath)
	if err := wasmsign.SignStream(out, in, good.leafKey, []*x509.Certificate{good.leaf}, nil); err != nil {
		t.Fatal(err)
	}
	in.Close()
	out.Close()
	os.Remove(unsigned)
	bundle := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundle, good.bundle(t, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"verify", "--tpm", uri, "--device-serial", "DEV-RSS", "--bundle", bundle, signedPath},
		{"install", "--tpm", uri, "--device-serial", "DEV-RSS", "--bundle", bundle, "--slot-dir", filepath.Join(dir, "slots"), signedPath},
	} {
		cmd := exec.Command(bin, args...)
		var outb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &outb, &outb
		// The agent's own peak (VmHWM; see testenv.RunPeakRSS).
		rss, err := testenv.RunPeakRSS(cmd)
		b := outb.Bytes()
		if err != nil || !strings.Contains(string(b), "accepted") {
			t.Fatalf("wsc-agent %s: %v\n%s", args[0], err, b)
		}
		if rss == 0 {
			t.Fatalf("wsc-agent %s: no VmHWM read from /proc", args[0])
		}
		t.Logf("wsc-agent %s of a 200 MiB module: peak RSS %.1f MiB", args[0], float64(rss)/(1<<20))
		if rss > 20<<20 {
			t.Fatalf("wsc-agent %s peak RSS %s bytes > 20 MB", args[0], strconv.FormatInt(rss, 10))
		}
	}
}

func leb(v uint32) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}
