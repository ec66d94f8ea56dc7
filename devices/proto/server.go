package proto

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCacheSize is how many recent responses a Server keeps for
// answering repeated request ids.
const DefaultCacheSize = 16

// nakInterval rate-limits NAKs, so that a burst of line noise costs the
// station at most a few NAK frames per second of return bandwidth.
const nakInterval = 50 * time.Millisecond

// maxErrorMessage bounds the operator message of an error reply.
const maxErrorMessage = 512

// Handler executes requests on the agent. payload is the request's CBOR,
// already checked to decode strictly into the request struct of t (decode it
// with Unmarshal). It returns the response struct (value or pointer; nil for
// an empty response) or an error: an *Error (possibly wrapped) chooses the
// code and operator message of the reply; any other error becomes
// ErrInternal with the error's text as the message, so keep secrets out of
// it. A response that does not encode to the response struct of t is
// replaced by ErrInternal. For MsgHello the Server fills in
// HelloResponse.Version itself.
type Handler interface {
	Handle(ctx context.Context, t MsgType, payload []byte) (resp any, err error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, t MsgType, payload []byte) (any, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, t MsgType, payload []byte) (any, error) {
	return f(ctx, t, payload)
}

// Server is the agent end of the protocol. It processes requests one at a
// time, in arrival order, and answers a repeated request id with the same
// request bytes from a small cache of recent responses without calling the
// Handler again — a station retrying a CreateKeys whose response was lost
// gets the keys created the first time.
type Server struct {
	conn      *Conn
	h         Handler
	log       *slog.Logger
	chunkSize int
	versions  []uint8
	cache     replayCache

	startOnce sync.Once
	msgs      chan Message
	readDone  chan struct{}
	readErr   error

	serveMu  sync.Mutex // one Serve at a time
	replays  atomic.Uint64
	handledN atomic.Uint64
	naks     atomic.Uint64
	busyN    atomic.Uint64
	lastNAK  time.Time // used by the reading goroutine only
}

// NewServer returns a Server answering requests read from rw with h.
func NewServer(rw io.ReadWriter, h Handler, opts ...ServerOption) *Server {
	s := &Server{
		conn:      NewConn(rw),
		h:         h,
		log:       slog.Default(),
		chunkSize: DefaultChunkSize,
		versions:  []uint8{CurrentVersion},
		cache:     replayCache{size: DefaultCacheSize},
		msgs:      make(chan Message),
		readDone:  make(chan struct{}),
	}
	for _, o := range opts {
		o.applyServer(s)
	}
	s.conn.onDrop = s.onDrop
	return s
}

// onDrop answers a frame damaged on the line with a NAK: an MsgError reply
// with request id 0 and code ErrBadRequest. The station cannot tell which
// request was lost either, but it knows which one it is waiting for and
// sends it again at once instead of waiting for its timeout. Garbage that
// does not look like a frame (oversize) gets no NAK.
func (s *Server) onDrop(r dropReason) {
	if r != dropCRC && r != dropMalformed {
		return
	}
	now := time.Now()
	if now.Sub(s.lastNAK) < nakInterval {
		return
	}
	s.lastNAK = now
	payload, _ := Marshal(ErrorResponse{Code: uint16(ErrBadRequest), Message: "corrupted frame"})
	if err := s.conn.WriteMessage(Message{Version: BaseVersion, Response: true, ID: 0, Type: MsgError, Payload: payload}, s.chunkSize); err != nil {
		s.log.Debug("proto cannot send NAK", "err", err)
		return
	}
	s.naks.Add(1)
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	st := s.conn.Stats()
	st.Replays = s.replays.Load()
	st.Handled = s.handledN.Load()
	st.NAKs = s.naks.Load()
	st.Busy = s.busyN.Load()
	return st
}

// Serve answers requests until ctx is cancelled (it returns ctx.Err()) or
// reading or writing rw fails (it returns that error; io.EOF when the line
// closed). Reading happens in a goroutine owned by the Server that lives
// until rw's Read fails, so Serve may be called again after it returned (a
// request read meanwhile is held for the next Serve); close rw to end that
// goroutine.
func (s *Server) Serve(ctx context.Context) error {
	s.serveMu.Lock()
	defer s.serveMu.Unlock()
	s.startOnce.Do(func() { go s.readLoop() })
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.readDone:
			return fmt.Errorf("proto: serve: read: %w", s.readErr)
		case m := <-s.msgs:
			if err := s.handle(ctx, m); err != nil {
				return err
			}
		}
	}
}

func (s *Server) readLoop() {
	defer close(s.readDone)
	for {
		m, err := s.conn.ReadMessage()
		if err != nil {
			s.readErr = err
			return
		}
		if m.Response {
			s.conn.drop(dropWrongDir) // our own echo, or a confused peer
			continue
		}
		s.msgs <- m
	}
}

// handle answers one request.
func (s *Server) handle(ctx context.Context, m Message) error {
	log := s.log.With("type", m.Type, "id", m.ID)
	// Hello always travels in BaseVersion frames, whatever the agent speaks.
	if !slices.Contains(s.versions, m.Version) && (m.Type != MsgHello || m.Version != BaseVersion) {
		log.Warn("proto request of unsupported version", "version", m.Version)
		return s.reply(m, BaseVersion, MsgError, ErrorResponse{Code: uint16(ErrVersion),
			Message: fmt.Sprintf("frame version %d not supported (agent speaks %v)", m.Version, s.versions)}, false)
	}
	digest := requestDigest(m)
	if e, ok := s.cache.get(m.ID, digest); ok {
		s.replays.Add(1)
		log.Debug("proto replaying cached response", "resp_type", e.typ)
		return s.write(Message{Version: e.version, Response: true, ID: m.ID, Type: e.typ, Payload: e.payload})
	}

	if !m.Type.Known() {
		log.Warn("proto unknown message type")
		return s.reply(m, m.Version, MsgError, ErrorResponse{Code: uint16(ErrUnsupported),
			Message: fmt.Sprintf("unknown message type 0x%02x", uint8(m.Type))}, true)
	}
	req, err := DecodeRequest(m.Type, m.Payload)
	if err != nil {
		log.Warn("proto malformed request", "err", err)
		return s.reply(m, m.Version, MsgError, ErrorResponse{Code: uint16(ErrBadRequest),
			Message: truncate(fmt.Sprintf("malformed %s request: %v", m.Type, err))}, true)
	}
	var chosen uint8
	if m.Type == MsgHello {
		chosen = s.negotiate(req.(*HelloRequest).Versions)
		if chosen == 0 {
			log.Warn("proto no common version", "offered", req.(*HelloRequest).Versions, "supported", s.versions)
			return s.reply(m, m.Version, MsgError, ErrorResponse{Code: uint16(ErrVersion),
				Message: fmt.Sprintf("no common protocol version: station offers %v, agent speaks %v",
					req.(*HelloRequest).Versions, s.versions)}, true)
		}
	}

	s.handledN.Add(1)
	stopBusy := s.keepalive(m)
	resp, herr := s.call(ctx, m)
	stopBusy()
	if herr != nil {
		var pe *Error
		if !errors.As(herr, &pe) {
			pe = &Error{Code: ErrInternal, Message: herr.Error()}
		}
		log.Warn("proto request failed", "code", uint16(pe.Code), "err", herr)
		return s.reply(m, m.Version, MsgError, ErrorResponse{Code: uint16(pe.Code), Message: truncate(pe.Message)}, true)
	}
	if m.Type == MsgHello {
		hr, ok := withVersion(resp, chosen)
		if !ok {
			log.Error("proto handler returned a wrong type for Hello", "resp_type", fmt.Sprintf("%T", resp))
			return s.reply(m, m.Version, MsgError, ErrorResponse{Code: uint16(ErrInternal),
				Message: "agent produced an invalid Hello response"}, true)
		}
		resp = hr
		log.Info("proto hello", "version", chosen)
	}
	if resp == nil {
		resp = struct{}{}
	}
	return s.reply(m, m.Version, m.Type, resp, true)
}

// keepalive sends a Busy frame for m every KeepaliveInterval until the
// returned stop is called; stop returns once no Busy frame is being written,
// so the real response never interleaves with one.
func (s *Server) keepalive(m Message) (stop func()) {
	if m.Type == MsgHello {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		start := time.Now()
		t := time.NewTicker(KeepaliveInterval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				payload, err := Marshal(BusyResponse{ElapsedMS: uint32(time.Since(start).Milliseconds())})
				if err != nil {
					return
				}
				if err := s.write(Message{Version: m.Version, Response: true, ID: m.ID, Type: MsgBusy, Payload: payload}); err != nil {
					s.log.Debug("proto cannot send busy", "err", err)
					return
				}
				s.busyN.Add(1)
			}
		}
	}()
	return func() { close(quit); <-done }
}

// call runs the handler, turning a panic into an ErrInternal reply so that a
// bug in one request does not take the agent off the line.
func (s *Server) call(ctx context.Context, m Message) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("proto handler panicked", "type", m.Type, "id", m.ID, "panic", r)
			resp, err = nil, &Error{Code: ErrInternal, Message: fmt.Sprintf("agent failed handling %s", m.Type)}
		}
	}()
	return s.h.Handle(ctx, m.Type, m.Payload)
}

// reply encodes and sends a response to m, caching it when cache is set.
func (s *Server) reply(m Message, version uint8, t MsgType, resp any, cache bool) error {
	payload, err := Marshal(resp)
	if err == nil && len(payload) > MaxMessageSize {
		err = fmt.Errorf("%s response of %d bytes exceeds %d", m.Type, len(payload), MaxMessageSize)
	}
	if err == nil {
		// Never send what the station's strict decoder would reject: a
		// handler returning the wrong struct is an agent bug, reported as
		// such instead of as a protocol violation on the station.
		_, err = DecodeResponse(t, payload)
	}
	if err != nil {
		s.log.Error("proto invalid response from handler", "type", m.Type, "id", m.ID, "resp_type", fmt.Sprintf("%T", resp), "err", err)
		t = MsgError
		payload, _ = Marshal(ErrorResponse{Code: uint16(ErrInternal), Message: fmt.Sprintf("agent produced an invalid %s response", m.Type)})
	}
	out := Message{Version: version, Response: true, ID: m.ID, Type: t, Payload: payload}
	if cache {
		digest := requestDigest(m)
		s.cache.put(cacheEntry{id: m.ID, digest: digest, version: version, typ: t, payload: payload})
	}
	return s.write(out)
}

func (s *Server) write(m Message) error {
	if err := s.conn.WriteMessage(m, s.chunkSize); err != nil {
		return fmt.Errorf("proto: serve: %s response %08x: %w", m.Type, m.ID, err)
	}
	return nil
}

// negotiate returns the highest version offered that the server speaks, or
// 0.
func (s *Server) negotiate(offered []uint8) uint8 {
	var best uint8
	for _, v := range offered {
		if v > best && slices.Contains(s.versions, v) {
			best = v
		}
	}
	return best
}

// withVersion sets the Version of a HelloResponse given by value or
// pointer; ok is false for any other type.
func withVersion(resp any, v uint8) (r HelloResponse, ok bool) {
	switch x := resp.(type) {
	case HelloResponse:
		r = x
	case *HelloResponse:
		if x != nil {
			r = *x
		}
	case nil:
	default:
		return r, false
	}
	r.Version = v
	if !slices.Contains(r.Capabilities, CapKeepalive) {
		r.Capabilities = append(slices.Clip(r.Capabilities), CapKeepalive)
	}
	return r, true
}

// requestDigest identifies the content of a request for the replay cache.
func requestDigest(m Message) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte{byte(m.Type)})
	h.Write(m.Payload)
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

func truncate(s string) string {
	if len(s) <= maxErrorMessage {
		return s
	}
	return s[:maxErrorMessage-3] + "..."
}

// replayCache keeps the most recent responses by request id.
type replayCache struct {
	size    int
	entries []cacheEntry // most recent last
}

type cacheEntry struct {
	id      uint32
	digest  [sha256.Size]byte // of type and request payload: a reused id with another request is not a replay
	version uint8
	typ     MsgType
	payload []byte
}

func (c *replayCache) get(id uint32, digest [sha256.Size]byte) (cacheEntry, bool) {
	for i := len(c.entries) - 1; i >= 0; i-- {
		e := c.entries[i]
		if e.id == id && e.digest == digest {
			c.entries = append(slices.Delete(c.entries, i, i+1), e) // most recently used last
			return e, true
		}
	}
	return cacheEntry{}, false
}

func (c *replayCache) put(e cacheEntry) {
	c.entries = slices.DeleteFunc(c.entries, func(x cacheEntry) bool { return x.id == e.id })
	if len(c.entries) >= c.size {
		c.entries = slices.Delete(c.entries, 0, len(c.entries)-c.size+1)
	}
	c.entries = append(c.entries, e)
}
