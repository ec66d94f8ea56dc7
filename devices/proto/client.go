package proto

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// DefaultRetries is how many times a Client sends a request again
	// before giving up (so 3 attempts in all).
	DefaultRetries = 2

	// fastRetryGap is the minimum time between sending a request and
	// sending it again because a corrupted frame arrived, so that one burst
	// of noise does not use up all retries at once.
	fastRetryGap = 20 * time.Millisecond
)

// Client is the station end of the protocol. It sends one request at a time
// (concurrent calls are serialised), retries with the same request id on
// timeout or when a corrupted frame arrives while it waits, and ignores
// responses whose id is not the one it waits for.
type Client struct {
	conn      *Conn
	rw        io.ReadWriter
	log       *slog.Logger
	timeouts  map[MsgType]time.Duration
	retries   int
	chunkSize int
	versions  []uint8

	callMu  sync.Mutex // one call in flight
	nextID  uint32     // guarded by callMu
	version atomic.Uint32

	pmu     sync.Mutex
	pending *pendingCall

	done      chan struct{} // closed when the reader goroutine exits
	readErr   error         // set before done is closed
	closeOnce sync.Once
	closed    atomic.Bool

	retriesN, timeoutsN, staleN, naksN, busyN atomic.Uint64
	keepalive                                 atomic.Bool  // the agent announced CapKeepalive
	inCall                                    atomic.Int64 // ns spent in exchange
}

type pendingCall struct {
	id       uint32
	answered bool          // guarded by Client.pmu
	resp     chan Message  // capacity 1: the first valid response
	kick     chan struct{} // capacity 1: a corrupted frame arrived
	busy     chan struct{} // capacity 1: the agent says it is still working
}

// NewClient returns a Client on rw and starts its reader goroutine. The
// Client owns rw from then on: Close closes it if it is an io.Closer, which
// is what stops the reader.
func NewClient(rw io.ReadWriter, opts ...ClientOption) *Client {
	c := &Client{
		conn:      NewConn(rw),
		rw:        rw,
		log:       slog.Default(),
		timeouts:  map[MsgType]time.Duration{},
		retries:   DefaultRetries,
		chunkSize: DefaultChunkSize,
		versions:  []uint8{CurrentVersion},
		done:      make(chan struct{}),
	}
	for _, o := range opts {
		o.applyClient(c)
	}
	// Start ids at a random value so that a station restarted mid-session
	// does not reuse ids the agent still has cached responses for.
	var b [4]byte
	_, _ = rand.Read(b[:])
	c.nextID = binary.BigEndian.Uint32(b[:])
	c.conn.onDrop = c.onDrop
	go c.readLoop()
	return c
}

// Timeout returns the per-attempt timeout the client uses for t.
func (c *Client) Timeout(t MsgType) time.Duration {
	if d, ok := c.timeouts[t]; ok {
		return d
	}
	return DefaultTimeout(t)
}

// Version returns the protocol version negotiated by Hello, or 0 before a
// successful Hello.
func (c *Client) Version() uint8 { return uint8(c.version.Load()) }

// Stats returns a snapshot of the client's counters.
func (c *Client) Stats() Stats {
	s := c.conn.Stats()
	s.Retries = c.retriesN.Load()
	s.Timeouts = c.timeoutsN.Load()
	s.Stale = c.staleN.Load()
	s.Busy = c.busyN.Load()
	s.InCall = time.Duration(c.inCall.Load())
	s.NAKs = c.naksN.Load()
	return s
}

// Close stops the client: it closes rw if rw is an io.Closer, which ends the
// reader goroutine, and makes calls fail with ErrClosed. A call in flight
// returns ErrClosed.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if cl, ok := c.rw.(io.Closer); ok {
			err = cl.Close()
		}
	})
	if err != nil {
		return fmt.Errorf("proto: close client: %w", err)
	}
	return nil
}

func (c *Client) readLoop() {
	defer close(c.done)
	for {
		m, err := c.conn.ReadMessage()
		if err != nil {
			c.readErr = err
			c.log.Debug("proto client reader stopped", "err", err)
			return
		}
		if !m.Response {
			c.conn.drop(dropWrongDir)
			continue
		}
		if m.ID == 0 && m.Type == MsgError {
			// The agent's NAK: it received a corrupted frame, probably our
			// request. Same effect as a corrupted frame seen here.
			c.naksN.Add(1)
			c.onDrop(dropCRC)
			continue
		}
		if m.Type == MsgBusy {
			c.busyN.Add(1)
			c.pmu.Lock()
			if p := c.pending; p != nil && p.id == m.ID && !p.answered {
				select {
				case p.busy <- struct{}{}:
				default:
				}
			}
			c.pmu.Unlock()
			continue
		}
		c.pmu.Lock()
		p := c.pending
		fresh := p != nil && p.id == m.ID && !p.answered
		if fresh {
			p.answered = true
			p.resp <- m // capacity 1, first and only send
		}
		c.pmu.Unlock()
		if !fresh {
			// A late answer to an earlier call, or a duplicate produced by
			// a retry that the agent answered from its cache.
			c.staleN.Add(1)
			c.log.Debug("proto client ignored stale response", "id", m.ID, "type", m.Type)
		}
	}
}

func (c *Client) onDrop(r dropReason) {
	if !r.corrupt() {
		return
	}
	c.pmu.Lock()
	p := c.pending
	c.pmu.Unlock()
	if p != nil {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

func (c *Client) setPending(p *pendingCall) {
	c.pmu.Lock()
	c.pending = p
	c.pmu.Unlock()
}

// Call sends a request of type t with payload req (a request struct, or nil
// for an empty one) and decodes the response into resp (a pointer to the
// response struct, or nil to discard it). A retry reuses the request id, so
// the agent answers it from its cache instead of executing it twice. An
// error reply is returned as *Error; no response after all attempts is
// ErrTimeout.
func (c *Client) Call(ctx context.Context, t MsgType, req, resp any) error {
	if req == nil {
		req = struct{}{}
	}
	payload, err := Marshal(req)
	if err != nil {
		return fmt.Errorf("%s request: %w", t, err)
	}
	if len(payload) > MaxMessageSize {
		return fmt.Errorf("%s request of %d bytes exceeds %d: %w", t, len(payload), MaxMessageSize, ErrFrameTooLarge)
	}

	c.callMu.Lock()
	defer c.callMu.Unlock()
	if c.closed.Load() {
		return fmt.Errorf("%s request: %w", t, ErrClosed)
	}
	select {
	case <-c.done:
		return c.closedErr(t)
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s request: %w", t, err)
	}
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1 // 0 is reserved
	}
	id := c.nextID
	version := BaseVersion
	if v := c.Version(); v != 0 && t != MsgHello {
		version = v
	}
	t0 := time.Now()
	m, err := c.exchange(ctx, Message{Version: version, ID: id, Type: t, Payload: payload})
	c.inCall.Add(int64(time.Since(t0)))
	if err != nil {
		return err
	}
	if m.Type == MsgError {
		var er ErrorResponse
		if err := Unmarshal(m.Payload, &er); err != nil {
			return fmt.Errorf("%s request %08x: error reply: %w: %w", t, id, ErrProtocol, err)
		}
		return &Error{Code: ErrorCode(er.Code), Message: er.Message}
	}
	if m.Type != t {
		return fmt.Errorf("%s request %08x: response of type %s: %w", t, id, m.Type, ErrProtocol)
	}
	if resp == nil {
		return nil
	}
	if err := Unmarshal(m.Payload, resp); err != nil {
		return fmt.Errorf("%s request %08x: %w: %w", t, id, ErrProtocol, err)
	}
	return nil
}

// exchange sends m and waits for its response, retrying as configured.
func (c *Client) exchange(ctx context.Context, m Message) (Message, error) {
	p := &pendingCall{id: m.ID, resp: make(chan Message, 1), kick: make(chan struct{}, 1), busy: make(chan struct{}, 1)}
	c.setPending(p)
	defer c.setPending(nil)

	timeout := c.Timeout(m.Type)
	start := time.Now()
	attempts := c.retries + 1
	// heard is when the agent last showed it is there for this call (the
	// first send, then every frame for it): silence is measured across
	// attempts, so a pulled cable costs KeepaliveTimeout, not one per attempt.
	var heard time.Time
	for attempt := 1; attempt <= attempts; attempt++ {
		if attempt > 1 {
			c.retriesN.Add(1)
		}
		select { // forget corruption seen before this send
		case <-p.kick:
		default:
		}
		timer := time.NewTimer(timeout)
		sent := time.Now()
		c.log.Debug("proto request", "type", m.Type, "id", m.ID, "attempt", attempt, "payload_len", len(m.Payload))
		if err := c.send(ctx, m, timer); err != nil {
			timer.Stop()
			if errors.Is(err, ErrTimeout) {
				c.timeoutsN.Add(1)
				c.log.Warn("proto request write stalled", "type", m.Type, "id", m.ID, "attempt", attempt)
				continue
			}
			return Message{}, err
		}
		if heard.IsZero() {
			heard = time.Now()
		}
		r, done, err := c.wait(ctx, p, m, timer, sent, &heard, attempt == attempts)
		if done {
			if err == nil {
				c.log.Debug("proto response", "type", r.Type, "id", r.ID, "attempt", attempt,
					"payload_len", len(r.Payload), "elapsed", time.Since(start))
			}
			return r, err
		}
	}
	limit := timeout.String()
	if c.keepalive.Load() && m.Type != MsgHello {
		limit = fmt.Sprintf("%v (or %v of silence)", timeout, KeepaliveTimeout)
	}
	return Message{}, fmt.Errorf("%s request %08x: %d attempts of %s: %w", m.Type, m.ID, attempts, limit, ErrTimeout)
}

// wait waits for the response to one attempt. It returns done=false when
// the attempt should be repeated: on timeout, or soon after a corrupted frame
// arrived (which is most likely the response, or the agent's NAK of our
// request) — but never sooner than fastRetryGap after sending, so that one
// burst of noise does not use up all retries.
//
// With an agent that sends Busy frames, silence is the failure to look for: a
// pulled cable is noticed after KeepaliveTimeout without a frame for this
// call (heard), not after the operation's full timeout (sized for the slowest
// real chip), and not once per attempt. Half-way through the silence the
// request is sent again (a request lost on the line is answered at once; a
// finished one is replayed from the agent's cache); a whole KeepaliveTimeout
// of silence ends the call.
func (c *Client) wait(ctx context.Context, p *pendingCall, m Message, timer *time.Timer, sent time.Time, heard *time.Time, last bool) (Message, bool, error) {
	defer timer.Stop()
	var fast <-chan time.Time
	var idle <-chan time.Time
	var idleTimer *time.Timer
	untilIdle := func() time.Duration {
		silent := time.Since(*heard)
		if !last && silent < KeepaliveTimeout/2 {
			return KeepaliveTimeout/2 - silent
		}
		return max(KeepaliveTimeout-silent, 0)
	}
	if c.keepalive.Load() && m.Type != MsgHello {
		idleTimer = time.NewTimer(untilIdle())
		defer idleTimer.Stop()
		idle = idleTimer.C
	}
	for {
		select {
		case r := <-p.resp:
			return r, true, nil
		case <-p.busy:
			if idleTimer != nil {
				*heard = time.Now()
				idleTimer.Reset(untilIdle())
			}
		case <-idle:
			if silent := time.Since(*heard); silent >= KeepaliveTimeout {
				c.timeoutsN.Add(1)
				c.log.Warn("proto agent silent", "type", m.Type, "id", m.ID, "silence", silent)
				return Message{}, true, fmt.Errorf("%s request %08x: no frame from the agent for %v (cable pulled or agent stopped): %w",
					m.Type, m.ID, KeepaliveTimeout, ErrTimeout)
			}
			c.log.Warn("proto agent quiet, sending again", "type", m.Type, "id", m.ID, "silence", time.Since(*heard))
			return Message{}, false, nil
		case <-p.kick:
			if idleTimer != nil { // bytes arrive: the cable is in
				*heard = time.Now()
				idleTimer.Reset(untilIdle())
			}
			if last || fast != nil {
				continue
			}
			fast = time.After(max(fastRetryGap-time.Since(sent), 0))
		case <-fast:
			c.log.Warn("proto corrupted frame while waiting, sending again", "type", m.Type, "id", m.ID)
			return Message{}, false, nil
		case <-timer.C:
			c.timeoutsN.Add(1)
			c.log.Warn("proto request timed out", "type", m.Type, "id", m.ID, "timeout", c.Timeout(m.Type))
			return Message{}, false, nil
		case <-ctx.Done():
			return Message{}, true, fmt.Errorf("%s request %08x: %w", m.Type, m.ID, ctx.Err())
		case <-c.done:
			return Message{}, true, c.closedErr(m.Type)
		}
	}
}

// send writes m without letting a stalled line block the caller beyond the
// attempt's timer. A stalled write keeps the write lock; later attempts
// queue behind it and Close releases them.
func (c *Client) send(ctx context.Context, m Message, timer *time.Timer) error {
	errc := make(chan error, 1)
	go func() { errc <- c.conn.WriteMessage(m, c.chunkSize) }()
	select {
	case err := <-errc:
		if err != nil && c.closed.Load() {
			return fmt.Errorf("%s request: %w: %w", m.Type, ErrClosed, err)
		}
		if err != nil {
			return fmt.Errorf("%s request %08x: %w", m.Type, m.ID, err)
		}
		return nil
	case <-timer.C:
		return ErrTimeout
	case <-ctx.Done():
		return fmt.Errorf("%s request %08x: %w", m.Type, m.ID, ctx.Err())
	case <-c.done:
		return c.closedErr(m.Type)
	}
}

func (c *Client) closedErr(t MsgType) error {
	<-c.done
	if c.readErr != nil && !errors.Is(c.readErr, io.EOF) {
		return fmt.Errorf("%s request: %w: %w", t, ErrClosed, c.readErr)
	}
	return fmt.Errorf("%s request: %w", t, ErrClosed)
}

// Hello offers the client's versions and records the one the agent chose.
func (c *Client) Hello(ctx context.Context) (*HelloResponse, error) {
	var resp HelloResponse
	if err := c.Call(ctx, MsgHello, HelloRequest{Versions: c.versions}, &resp); err != nil {
		return nil, err
	}
	if !slices.Contains(c.versions, resp.Version) {
		return nil, fmt.Errorf("hello: agent chose version %d, offered %v: %w", resp.Version, c.versions, ErrProtocol)
	}
	c.version.Store(uint32(resp.Version))
	c.keepalive.Store(slices.Contains(resp.Capabilities, CapKeepalive))
	c.log.Info("proto session", "version", resp.Version, "backend", resp.Backend, "serial", resp.Serial, "model", resp.Model)
	return &resp, nil
}

// GetEK returns the device's endorsement key and certificate.
func (c *Client) GetEK(ctx context.Context) (*GetEKResponse, error) {
	var resp GetEKResponse
	if err := c.Call(ctx, MsgGetEK, GetEKRequest{}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// CreateKeys has the device create or reuse its keys and returns the
// attestation evidence and CSR.
func (c *Client) CreateKeys(ctx context.Context, req CreateKeysRequest) (*CreateKeysResponse, error) {
	var resp CreateKeysResponse
	if err := c.Call(ctx, MsgCreateKeys, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ActivateCredential has the device recover a credential's secret.
func (c *Client) ActivateCredential(ctx context.Context, req ActivateCredentialRequest) (*ActivateCredentialResponse, error) {
	var resp ActivateCredentialResponse
	if err := c.Call(ctx, MsgActivateCredential, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// InstallChain writes a certificate chain into the device.
func (c *Client) InstallChain(ctx context.Context, req InstallChainRequest) (*InstallChainResponse, error) {
	var resp InstallChainResponse
	if err := c.Call(ctx, MsgInstallChain, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ReadChain reads the stored certificate chain back.
func (c *Client) ReadChain(ctx context.Context) (*ReadChainResponse, error) {
	var resp ReadChainResponse
	if err := c.Call(ctx, MsgReadChain, ReadChainRequest{}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// SignDigest has the identity key sign a digest.
func (c *Client) SignDigest(ctx context.Context, req SignDigestRequest) (*SignDigestResponse, error) {
	var resp SignDigestResponse
	if err := c.Call(ctx, MsgSignDigest, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Lock locks the device's provisioning state.
func (c *Client) Lock(ctx context.Context) error {
	return c.Call(ctx, MsgLock, LockRequest{}, &LockResponse{})
}

// Reset discards the device's provisioning state.
func (c *Client) Reset(ctx context.Context) error {
	return c.Call(ctx, MsgReset, ResetRequest{}, &ResetResponse{})
}
