package proto

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// cutLine wraps the agent's end of a real pty; once cut, everything the
// agent writes is lost, as on a pulled cable.
type cutLine struct {
	io.ReadWriter
	cut atomic.Bool
}

func (l *cutLine) Write(p []byte) (int, error) {
	if l.cut.Load() {
		return len(p), nil
	}
	return l.ReadWriter.Write(p)
}

// TestKeepaliveLongOperation: an operation longer than KeepaliveTimeout
// succeeds on the first attempt because the agent keeps saying it is busy.
func TestKeepaliveLongOperation(t *testing.T) {
	dev := newFakeDevice()
	dev.delay, dev.fastHello = KeepaliveTimeout+time.Second, true
	c, srv := pair(t, dev, []ClientOption{WithTimeouts(map[MsgType]time.Duration{MsgCreateKeys: 10 * time.Second})})
	ctx := context.Background()
	if _, err := c.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateKeys(ctx, CreateKeysRequest{Nonce: make([]byte, 32)}); err != nil {
		t.Fatalf("CreateKeys: %v", err)
	}
	st := c.Stats()
	if st.Retries != 0 || st.Busy < 4 {
		t.Fatalf("retries %d, busy frames %d: want 0 retries and at least 4 busy frames", st.Retries, st.Busy)
	}
	if got := dev.count(MsgCreateKeys); got != 1 {
		t.Fatalf("handler ran %d times", got)
	}
	if srv.Stats().Busy < 4 {
		t.Fatalf("server sent %d busy frames", srv.Stats().Busy)
	}
}

// TestKeepaliveDetectsPulledCable: with the agent's output cut mid-request,
// the station gives up after about KeepaliveTimeout, not after the
// operation's 30 s timeout.
func TestKeepaliveDetectsPulledCable(t *testing.T) {
	dev := newFakeDevice()
	dev.delay, dev.fastHello = 5*time.Second, true
	m, s := openPty(t)
	line := &cutLine{ReadWriter: s}
	startServer(t, line, dev)
	c := newClientOn(t, m, WithRetries(0))
	ctx := context.Background()
	if _, err := c.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	line.cut.Store(true)
	start := time.Now()
	_, err := c.CreateKeys(ctx, CreateKeysRequest{Nonce: make([]byte, 32)})
	elapsed := time.Since(start)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if elapsed < KeepaliveTimeout || elapsed > KeepaliveTimeout+2*time.Second {
		t.Fatalf("pulled cable noticed after %v, want about %v", elapsed, KeepaliveTimeout)
	}
}

// TestNoKeepaliveWithoutCapability: a station talking to an agent that did
// not announce keepalive waits for the operation's own timeout.
func TestNoKeepaliveWithoutCapability(t *testing.T) {
	dev := newFakeDevice()
	dev.delay = KeepaliveTimeout + 500*time.Millisecond
	c, _ := pair(t, dev, []ClientOption{WithRetries(0)})
	// No Hello: the client has not learnt the capability and must not
	// apply the silence timeout.
	if _, err := c.CreateKeys(context.Background(), CreateKeysRequest{Nonce: make([]byte, 32)}); err != nil {
		t.Fatalf("CreateKeys without negotiated keepalive: %v", err)
	}
}
