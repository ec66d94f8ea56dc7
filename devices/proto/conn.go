package proto

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Stats counts traffic and faults. Conn, Client and Server each return one;
// fields that do not apply to the returning side stay zero.
type Stats struct {
	BytesIn     uint64 // bytes read from the line, garbage and delimiters included
	BytesOut    uint64 // bytes written to the line
	FramesIn    uint64 // valid frames received
	FramesOut   uint64 // frames written
	MessagesIn  uint64 // complete (reassembled) messages received
	MessagesOut uint64 // messages written (a retry or replay counts again)
	PayloadIn   uint64 // CBOR payload bytes of MessagesIn
	PayloadOut  uint64 // CBOR payload bytes of MessagesOut

	Dropped     uint64 // frames dropped for any reason below
	CRCErrors   uint64 // CRC-32C mismatch
	Malformed   uint64 // invalid COBS, too short, truncated at end of stream
	Oversize    uint64 // more than MaxFrameSize bytes without a delimiter
	ChunkErrors uint64 // chunk out of sequence, abandoned, or message over MaxMessageSize
	WrongDir    uint64 // a request where a response was expected, or vice versa

	Retries  uint64 // Client: requests sent again with the same id
	Timeouts uint64 // Client: attempts that timed out
	Stale    uint64 // Client: responses whose id is not the one awaited
	Replays  uint64 // Server: responses answered from the replay cache
	Handled  uint64 // Server: requests passed to the Handler
	NAKs     uint64 // Server: NAKs sent for damaged frames; Client: NAKs received
	Busy     uint64 // Server: Busy frames sent; Client: Busy frames received

	// InCall is the Client's total time inside Call: on the wire and in the
	// device. Wall time minus InCall is what the station itself spent.
	InCall time.Duration
}

// dropReason says why a frame was dropped.
type dropReason int

const (
	dropCRC dropReason = iota
	dropMalformed
	dropOversize
	dropChunk
	dropWrongDir
)

// corrupt reports whether the reason means bytes were damaged on the line
// (as opposed to a consequence of an earlier loss).
func (r dropReason) corrupt() bool {
	return r == dropCRC || r == dropMalformed || r == dropOversize
}

func (r dropReason) String() string {
	switch r {
	case dropCRC:
		return "crc"
	case dropMalformed:
		return "malformed"
	case dropOversize:
		return "oversize"
	case dropChunk:
		return "chunk"
	case dropWrongDir:
		return "direction"
	}
	return "unknown"
}

type counters struct {
	bytesIn, bytesOut, framesIn, framesOut         atomic.Uint64
	messagesIn, messagesOut, payloadIn, payloadOut atomic.Uint64
	dropped, crc, malformed, oversize, chunk       atomic.Uint64
	wrongDir                                       atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(),
		FramesIn: c.framesIn.Load(), FramesOut: c.framesOut.Load(),
		MessagesIn: c.messagesIn.Load(), MessagesOut: c.messagesOut.Load(),
		PayloadIn: c.payloadIn.Load(), PayloadOut: c.payloadOut.Load(),
		Dropped: c.dropped.Load(), CRCErrors: c.crc.Load(), Malformed: c.malformed.Load(),
		Oversize: c.oversize.Load(), ChunkErrors: c.chunk.Load(), WrongDir: c.wrongDir.Load(),
	}
}

// Message is a complete (reassembled) message as carried by a Conn.
type Message struct {
	Version  uint8
	Response bool
	ID       uint32
	Type     MsgType
	Payload  []byte
}

// Conn frames messages on a byte stream. Writes are safe for concurrent use;
// reads (ReadFrame, ReadMessage) must come from one goroutine at a time.
type Conn struct {
	rw io.ReadWriter

	wmu  sync.Mutex
	wbuf []byte

	rbuf       []byte // raw bytes read from rw
	rpos, rend int
	fbuf       []byte // bytes of the frame being received; cap never exceeds MaxFrameSize
	discarding bool   // the current frame exceeded MaxFrameSize: skip to the next delimiter
	asm        assembly

	st     counters
	peak   atomic.Int64     // largest capacity fbuf ever had
	onDrop func(dropReason) // called from the reading goroutine
}

// keepWriteBuffer is the largest write buffer a Conn keeps between writes.
const keepWriteBuffer = 16 << 10

// assembly is the state of a chunked message being reassembled.
type assembly struct {
	active   bool
	version  uint8
	response bool
	id       uint32
	typ      MsgType
	next     uint8
	buf      []byte
}

// NewConn returns a Conn on rw. rw is typically a serial port or a
// pseudo-terminal in raw mode.
func NewConn(rw io.ReadWriter) *Conn {
	return &Conn{rw: rw, rbuf: make([]byte, 4096)}
}

// Stats returns a snapshot of the connection's counters.
func (c *Conn) Stats() Stats { return c.st.snapshot() }

// frameBufPeak returns the largest capacity the frame buffer ever had; the
// read bound keeps it at or below MaxFrameSize.
func (c *Conn) frameBufPeak() int64 { return c.peak.Load() }

func (c *Conn) drop(r dropReason) {
	c.st.dropped.Add(1)
	switch r {
	case dropCRC:
		c.st.crc.Add(1)
	case dropMalformed:
		c.st.malformed.Add(1)
	case dropOversize:
		c.st.oversize.Add(1)
	case dropChunk:
		c.st.chunk.Add(1)
	case dropWrongDir:
		c.st.wrongDir.Add(1)
	}
	if c.onDrop != nil {
		c.onDrop(r)
	}
}

// WriteFrame writes one frame, preceded by a delimiter that flushes any
// partial garbage out of the receiver.
func (c *Conn) WriteFrame(f Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	buf := append(c.wbuf[:0], Delimiter)
	buf, err := EncodeFrame(buf, f)
	if err != nil {
		return err
	}
	c.wbuf = buf
	return c.flush(1, len(f.Payload))
}

// WriteMessage writes m, split into frames of at most chunkSize payload
// bytes (DefaultChunkSize when chunkSize <= 0), in a single Write.
func (c *Conn) WriteMessage(m Message, chunkSize int) error {
	if chunkSize <= 0 {
		chunkSize = DefaultChunkSize
	}
	chunkSize = min(chunkSize, MaxChunkSize)
	if len(m.Payload) > MaxMessageSize {
		return fmt.Errorf("write %s message: payload of %d bytes exceeds %d: %w", m.Type, len(m.Payload), MaxMessageSize, ErrFrameTooLarge)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	buf := append(c.wbuf[:0], Delimiter)
	p := m.Payload
	var seq uint8
	frames := 0
	for {
		n := min(len(p), chunkSize)
		more := n < len(p)
		var err error
		buf, err = EncodeFrame(buf, Frame{
			Version: m.Version,
			Flags:   chunkFlags(m.Response, more, seq),
			ID:      m.ID,
			Type:    m.Type,
			Payload: p[:n],
		})
		if err != nil {
			return err
		}
		frames++
		p = p[n:]
		seq = nextChunk(seq)
		if !more {
			break
		}
	}
	c.wbuf = buf
	if err := c.flush(frames, len(m.Payload)); err != nil {
		return err
	}
	return nil
}

// flush writes c.wbuf; c.wmu must be held.
func (c *Conn) flush(frames, payload int) error {
	n, err := c.rw.Write(c.wbuf)
	c.st.bytesOut.Add(uint64(n))
	if cap(c.wbuf) > keepWriteBuffer {
		c.wbuf = nil // do not pin a large buffer after a big message
	}
	if err != nil {
		return fmt.Errorf("proto: write: %w", err)
	}
	c.st.framesOut.Add(uint64(frames))
	c.st.messagesOut.Add(1)
	c.st.payloadOut.Add(uint64(payload))
	return nil
}

// ReadFrame returns the next valid frame. Invalid frames (bad CRC, bad COBS,
// too short, longer than MaxFrameSize) are counted and skipped; the reader
// resynchronises at the next delimiter. It returns an error only when the
// underlying Read fails. The payload is a fresh slice.
func (c *Conn) ReadFrame() (Frame, error) {
	for {
		if c.rpos == c.rend {
			n, err := c.rw.Read(c.rbuf)
			c.st.bytesIn.Add(uint64(n))
			if n == 0 {
				if err == nil {
					continue
				}
				if len(c.fbuf) > 0 || c.discarding {
					c.fbuf = c.fbuf[:0]
					c.discarding = false
					c.drop(dropMalformed) // truncated by the end of the stream
				}
				return Frame{}, err
			}
			c.rpos, c.rend = 0, n
		}
		chunk := c.rbuf[c.rpos:c.rend]
		i := bytes.IndexByte(chunk, Delimiter)
		if i < 0 {
			c.accumulate(chunk)
			c.rpos = c.rend
			continue
		}
		c.accumulate(chunk[:i])
		c.rpos += i + 1
		if c.discarding {
			c.discarding = false
			continue
		}
		if len(c.fbuf) == 0 {
			continue // back-to-back delimiters
		}
		f, err := decodeInPlace(c.fbuf)
		c.fbuf = c.fbuf[:0]
		if err != nil {
			switch {
			case errors.Is(err, ErrCRC):
				c.drop(dropCRC)
			default:
				c.drop(dropMalformed)
			}
			continue
		}
		f.Payload = bytes.Clone(f.Payload)
		if f.Payload == nil {
			f.Payload = []byte{}
		}
		c.st.framesIn.Add(1)
		return f, nil
	}
}

// accumulate appends b to the frame buffer unless that would exceed
// MaxFrameSize, in which case the frame is dropped and the reader skips to
// the next delimiter. The check happens before any allocation.
func (c *Conn) accumulate(b []byte) {
	if c.discarding || len(b) == 0 {
		return
	}
	need := len(c.fbuf) + len(b)
	if need > MaxFrameSize {
		c.fbuf = c.fbuf[:0]
		c.discarding = true
		c.drop(dropOversize)
		return
	}
	if need > cap(c.fbuf) {
		nc := min(max(2*cap(c.fbuf), need, 512), MaxFrameSize)
		nb := make([]byte, len(c.fbuf), nc)
		copy(nb, c.fbuf)
		c.fbuf = nb
		c.peak.Store(int64(nc))
	}
	c.fbuf = append(c.fbuf, b...)
}

// ReadMessage returns the next complete message, reassembling chunks.
// Chunks out of sequence and messages over MaxMessageSize are counted and
// dropped. It returns an error only when the underlying Read fails.
func (c *Conn) ReadMessage() (Message, error) {
	for {
		f, err := c.ReadFrame()
		if err != nil {
			if c.asm.active {
				c.asm = assembly{}
				c.drop(dropChunk)
			}
			return Message{}, err
		}
		seq := f.Chunk()
		if seq == 0 {
			if c.asm.active {
				c.asm = assembly{}
				c.drop(dropChunk) // abandoned by a new message or a retransmission
			}
			if !f.More() {
				return c.deliver(Message{Version: f.Version, Response: f.Response(), ID: f.ID, Type: f.Type, Payload: f.Payload}), nil
			}
			c.asm = assembly{active: true, version: f.Version, response: f.Response(), id: f.ID, typ: f.Type,
				next: nextChunk(0), buf: f.Payload}
			continue
		}
		a := &c.asm
		if !a.active || a.id != f.ID || a.typ != f.Type || a.response != f.Response() || a.version != f.Version || a.next != seq {
			c.asm = assembly{}
			c.drop(dropChunk)
			continue
		}
		need := len(a.buf) + len(f.Payload)
		if need > MaxMessageSize {
			c.asm = assembly{}
			c.drop(dropChunk)
			continue
		}
		if need > cap(a.buf) {
			nb := make([]byte, len(a.buf), min(max(2*cap(a.buf), need), MaxMessageSize))
			copy(nb, a.buf)
			a.buf = nb
		}
		a.buf = append(a.buf, f.Payload...)
		a.next = nextChunk(seq)
		if f.More() {
			continue
		}
		m := Message{Version: a.version, Response: a.response, ID: a.id, Type: a.typ, Payload: a.buf}
		c.asm = assembly{}
		return c.deliver(m), nil
	}
}

func (c *Conn) deliver(m Message) Message {
	c.st.messagesIn.Add(1)
	c.st.payloadIn.Add(uint64(len(m.Payload)))
	return m
}
