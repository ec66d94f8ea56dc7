package sim

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"
)

// TestStartErrorsCleanUp: a device or bench that cannot start returns an
// error (and cleans up what it started) instead of panicking on the way out.
func TestStartErrorsCleanUp(t *testing.T) {
	ctx := context.Background()
	if _, err := StartDevice(ctx, DeviceConfig{Dir: t.TempDir(), Kind: "floppy"}); err == nil || !strings.Contains(err.Error(), "kind") {
		t.Fatalf("unknown device kind: %v", err)
	}
	if _, err := StartDevice(ctx, DeviceConfig{Dir: t.TempDir(), Kind: KindTPM}); err == nil {
		t.Fatal("a TPM device without a manufactured TPM state started")
	}
	if _, err := StartBench(ctx, BenchConfig{Dir: t.TempDir(), N: 1, Mix: []string{"floppy"}}); err == nil {
		t.Fatal("unknown kind in the mix accepted")
	}
	if _, err := StartBench(ctx, BenchConfig{Dir: t.TempDir(), N: 0}); err == nil {
		t.Fatal("empty bench accepted")
	}
}

// TestLinkPullAndPlug: bytes cross a plugged cable between the two real
// ptys and are lost while it is pulled.
func TestLinkPullAndPlug(t *testing.T) {
	l, err := NewLink(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	open := func(path string) serial.Port {
		p, err := serial.Open(path, &serial.Mode{BaudRate: 115200})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.SetReadTimeout(300 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		return p
	}
	st, ag := open(l.StationPath), open(l.AgentPath)
	defer st.Close()
	defer ag.Close()
	read := func() string {
		buf := make([]byte, 64)
		n, _ := ag.Read(buf)
		return string(buf[:n])
	}
	if _, err := st.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "hello" {
		t.Fatalf("plugged: read %q", got)
	}
	l.SetConnected(false)
	if _, err := st.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "" {
		t.Fatalf("pulled cable delivered %q", got)
	}
	l.SetConnected(true)
	if _, err := st.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "back" {
		t.Fatalf("plugged again: read %q", got)
	}
}
