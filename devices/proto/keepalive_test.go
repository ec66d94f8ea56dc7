package proto

import (
	"context"
	"errors"
	"io"
	"strings"
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

// cuttableLine starts a fake agent whose operations take delay, behind a real
// pty whose agent-to-station direction can be cut, and a client that has
// said Hello (so it knows the agent sends keepalives).
func cuttableLine(tb testing.TB, delay time.Duration) (*Client, *cutLine, *fakeDevice) {
	tb.Helper()
	dev := newFakeDevice()
	dev.delay, dev.fastHello = delay, true
	m, s := openPty(tb)
	line := &cutLine{ReadWriter: s}
	startServer(tb, line, dev)
	c := newClientOn(tb, m)
	if _, err := c.Hello(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return c, line, dev
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
// the station gives up after KeepaliveTimeout of silence, not after the
// operation's 30 s timeout and not after one silence per attempt: with the
// default retries it sends the request once more half-way through the
// silence (a lost request would be answered then) and gives up when the
// silence reaches KeepaliveTimeout, with attempts to spare.
func TestKeepaliveDetectsPulledCable(t *testing.T) {
	c, line, _ := cuttableLine(t, 5*time.Second)
	ctx := context.Background()
	line.cut.Store(true)
	start := time.Now()
	_, err := c.CreateKeys(ctx, CreateKeysRequest{Nonce: make([]byte, 32)})
	elapsed := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "cable pulled") {
		t.Fatalf("err = %v, want ErrTimeout saying the cable may be pulled", err)
	}
	if elapsed < KeepaliveTimeout {
		t.Fatalf("gave up after %v, before %v of silence", elapsed, KeepaliveTimeout)
	}
	st := c.Stats()
	if st.Retries != 1 || st.Timeouts != 1 {
		t.Fatalf("retries %d, timeouts %d: want the request sent once more half-way and one silence timeout (of %d retries allowed)",
			st.Retries, st.Timeouts, DefaultRetries)
	}
}

// TestKeepaliveQuietThenBack: the agent's Busy frames are lost for a while
// (the request is sent again half-way through the silence), then the line
// comes back before KeepaliveTimeout of silence: the call succeeds and the
// operation ran once (the agent replays its answer to the repeated request).
func TestKeepaliveQuietThenBack(t *testing.T) {
	c, line, dev := cuttableLine(t, 4*time.Second)
	ctx := context.Background()
	line.cut.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := c.CreateKeys(ctx, CreateKeysRequest{Nonce: make([]byte, 32)})
		done <- err
	}()
	// The line comes back as soon as the station has sent the request again.
	for c.Stats().Retries == 0 {
		select {
		case err := <-done:
			t.Fatalf("call ended before the repeat: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	line.cut.Store(false)
	if err := <-done; err != nil {
		t.Fatalf("CreateKeys after a quiet line: %v", err)
	}
	if got := dev.count(MsgCreateKeys); got != 1 {
		t.Fatalf("handler ran %d times, want 1", got)
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

// BenchmarkPulledCableNoticed: how long a station takes, from the cable
// pulled in the middle of a long request, to give up on it (the operator's
// spinner turns into the reseat instruction then). Default retries.
func BenchmarkPulledCableNoticed(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		// An operation longer than the silence; short enough for clean-up.
		c, line, _ := cuttableLine(b, KeepaliveTimeout+2*time.Second)
		line.cut.Store(true)
		b.StartTimer()
		if _, err := c.CreateKeys(context.Background(), CreateKeysRequest{Nonce: make([]byte, 32)}); !errors.Is(err, ErrTimeout) {
			b.Fatalf("err = %v", err)
		}
	}
}
