package proto

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"
)

// noisyPair connects a Client and a Server through two ptys and a Relay
// that damages the bytes in between:
//
//	Client ─ master A │ slave A ─ Relay(faults) ─ master B │ slave B ─ Server
func noisyPair(t *testing.T, f Faults, h Handler, copts ...ClientOption) (*Client, *Server) {
	t.Helper()
	ma, sa := openPty(t)
	mb, sb := openPty(t)
	stop := Relay(sa, mb, f)
	t.Cleanup(stop)
	srv := startServer(t, sb, h)
	return newClientOn(t, ma, copts...), srv
}

func TestRelayCopiesAndDelays(t *testing.T) {
	ma, sa := openPty(t)
	mb, sb := openPty(t)
	const delay = 30 * time.Millisecond
	stop := Relay(sa, mb, Faults{Delay: delay})
	msg := filled(3000, 7)
	for i := range msg {
		if msg[i] == 0 {
			msg[i] = 1
		}
	}
	start := time.Now()
	go func() { _, _ = ma.Write(msg) }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(sb, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("relay without faults changed bytes")
	}
	if el := time.Since(start); el < delay {
		t.Fatalf("arrived after %v, want >= %v", el, delay)
	}
	// And back.
	go func() { _, _ = sb.Write(msg[:100]) }()
	if _, err := io.ReadFull(ma, got[:100]); err != nil || !bytes.Equal(got[:100], msg[:100]) {
		t.Fatalf("reverse direction: %v", err)
	}
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("stop did not return")
	}
}

// TestNoisyLine1e4: at a byte error rate of 1e-4 (each of bit flip, drop and
// duplicate), a long run of realistic calls all succeed thanks to CRC
// detection, retries and the agent's replay cache; no key is created twice.
func TestNoisyLine1e4(t *testing.T) {
	dev := newFakeDevice()
	// Short attempt timeouts keep the test fast (a dropped frame costs one
	// timeout). Under qemu-user (the non-amd64 runs of the test script)
	// everything is several times slower, so attempts get longer there.
	attempt := 250 * time.Millisecond
	if runtime.GOARCH != "amd64" {
		attempt = time.Second
	}
	c, srv := noisyPair(t, Faults{BitFlipRate: 1e-4, DropRate: 1e-4, DuplicateRate: 1e-4, Seed: 42}, dev,
		WithTimeouts(map[MsgType]time.Duration{MsgSignDigest: attempt, MsgCreateKeys: attempt,
			MsgInstallChain: attempt, MsgReadChain: attempt}),
		WithRetries(8))
	ctx := context.Background()
	x := dev.data
	const rounds = 100
	start := time.Now()
	failed := 0
	for i := range rounds {
		var err error
		switch i % 4 {
		case 0:
			_, err = c.CreateKeys(ctx, CreateKeysRequest{Nonce: x.nonce})
		case 1:
			_, err = c.InstallChain(ctx, InstallChainRequest{Chain: x.chain})
		case 2:
			var rc *ReadChainResponse
			rc, err = c.ReadChain(ctx)
			if err == nil && (len(rc.Chain) != 2 || !bytes.Equal(rc.Chain[0], x.chain[0])) {
				t.Fatalf("round %d: corrupted chain delivered", i)
			}
		case 3:
			_, err = c.SignDigest(ctx, SignDigestRequest{Digest: x.digest})
		}
		if err != nil {
			failed++
			t.Errorf("round %d: %v", i, err)
		}
	}
	cs, ss := c.Stats(), srv.Stats()
	t.Logf("%d calls in %v, %d failed; wire %d B out, %d B in; client: %d retries, %d timeouts, %d dropped frames, %d stale, %d NAKs; server: %d dropped, %d replays",
		rounds, time.Since(start).Round(time.Millisecond), failed, cs.BytesOut, cs.BytesIn,
		cs.Retries, cs.Timeouts, cs.Dropped, cs.Stale, cs.NAKs, ss.Dropped, ss.Replays)
	if ss.Dropped+cs.Dropped == 0 {
		t.Errorf("no frame was damaged: the relay did not inject faults")
	}
	// CreateKeys ran once per call that reached the handler fresh, never
	// twice for one request id: the handler count never exceeds the calls.
	if n := dev.count(MsgCreateKeys); n != rounds/4 {
		t.Errorf("CreateKeys executed %d times for %d calls", n, rounds/4)
	}
}

// TestNoisyLine1e2: at 1e-2 nothing gets through, and every call fails with
// ErrTimeout within its retry budget instead of hanging.
func TestNoisyLine1e2(t *testing.T) {
	dev := newFakeDevice()
	const timeout = 150 * time.Millisecond
	const retries = 2
	c, srv := noisyPair(t, Faults{BitFlipRate: 1e-2, DropRate: 1e-2, DuplicateRate: 1e-2, Seed: 7}, dev,
		WithTimeouts(map[MsgType]time.Duration{MsgCreateKeys: timeout, MsgReadChain: timeout}), WithRetries(retries))
	budget := time.Duration(retries+1)*timeout + 500*time.Millisecond
	for i := range 4 {
		start := time.Now()
		var err error
		if i%2 == 0 {
			_, err = c.CreateKeys(context.Background(), CreateKeysRequest{Nonce: dev.data.nonce})
		} else {
			_, err = c.ReadChain(context.Background())
		}
		el := time.Since(start)
		if err == nil {
			// Possible in principle (a lucky attempt); it must then be correct,
			// which the CRC guarantees. Not expected at this rate.
			t.Logf("call %d succeeded despite the noise", i)
			continue
		}
		if !errors.Is(err, ErrTimeout) {
			t.Errorf("call %d: %v, want ErrTimeout", i, err)
		}
		if el > budget {
			t.Errorf("call %d took %v, budget %v", i, el, budget)
		}
	}
	cs, ss := c.Stats(), srv.Stats()
	t.Logf("client: %d retries, %d timeouts, %d dropped; server: %d dropped, %d handled, %d replays",
		cs.Retries, cs.Timeouts, cs.Dropped, ss.Dropped, ss.Handled, ss.Replays)
	if cs.Dropped+ss.Dropped == 0 {
		t.Errorf("no damaged frame counted")
	}
}
