package proto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"testing"
)

func TestCOBSBoundaries(t *testing.T) {
	// Sizes around the 254-byte block limit, with and without zeros.
	for _, n := range []int{0, 1, 2, 243, 244, 245, 253, 254, 255, 256, 507, 508, 509, 1024, MaxChunkSize} {
		for _, fill := range []string{"nonzero", "zeros", "mixed"} {
			p := make([]byte, n)
			for i := range p {
				switch fill {
				case "nonzero":
					p[i] = byte(i%255 + 1)
				case "mixed":
					p[i] = byte(i % 7)
				}
			}
			f := Frame{Version: 1, Flags: chunkFlags(true, true, 33), ID: 0xdeadbeef, Type: MsgReadChain, Payload: p}
			enc, err := EncodeFrame(nil, f)
			if err != nil {
				t.Fatalf("n=%d %s: %v", n, fill, err)
			}
			if i := bytes.IndexByte(enc, 0); i != len(enc)-1 {
				t.Fatalf("n=%d %s: zero byte at %d of %d", n, fill, i, len(enc))
			}
			if len(enc)-1 > MaxFrameSize {
				t.Fatalf("n=%d %s: encoded %d bytes, over MaxFrameSize", n, fill, len(enc)-1)
			}
			// COBS overhead is at most one byte per 254 plus one.
			if over := len(enc) - 1 - (n + minFrameSize); over > (n+minFrameSize)/254+1 {
				t.Fatalf("n=%d %s: COBS overhead %d", n, fill, over)
			}
			got, err := DecodeFrame(enc[:len(enc)-1])
			if err != nil {
				t.Fatalf("n=%d %s: decode: %v", n, fill, err)
			}
			if got.Version != 1 || got.ID != 0xdeadbeef || got.Type != MsgReadChain || !got.Response() || !got.More() ||
				got.Chunk() != 33 || !bytes.Equal(got.Payload, p) {
				t.Fatalf("n=%d %s: round trip mismatch: %+v", n, fill, got)
			}
		}
	}
}

func TestDecodeFrameErrors(t *testing.T) {
	good, _ := EncodeFrame(nil, Frame{Version: 1, ID: 5, Type: MsgGetEK, Payload: []byte{0xa0}})
	good = good[:len(good)-1]
	// A valid encoding of a frame whose payload was changed after the CRC.
	dec := []byte{1, 0, 0, 0, 0, 5, byte(MsgGetEK), 0xa0}
	dec = binaryAppendCRC(dec)
	dec[7] = 0xa1
	flip := rawFrame(dec)
	flip = flip[:len(flip)-1]
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformedFrame},
		{"short", []byte{0x04, 1, 2, 3}, ErrMalformedFrame},
		{"code overruns", []byte{0x40, 1, 2}, ErrMalformedFrame},
		{"zero inside", append([]byte{0x03, 1, 0}, good...), ErrMalformedFrame},
		{"bit flip", flip, ErrCRC},
		{"truncated", good[:len(good)-2], nil}, // CRC or malformed, both fine
		{"too large", bytes.Repeat([]byte{0xff}, MaxFrameSize+1), ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeFrame(tt.in)
			if err == nil {
				t.Fatal("decoded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := EncodeFrame(nil, Frame{Payload: make([]byte, MaxChunkSize+1)}); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("encode oversize payload: %v", err)
	}
}

func TestChunkSequenceWraps(t *testing.T) {
	seq := uint8(0)
	seen := map[uint8]bool{}
	for range 200 {
		seq = nextChunk(seq)
		if seq == 0 || seq > chunkMask {
			t.Fatalf("chunk number %d out of range", seq)
		}
		seen[seq] = true
	}
	if len(seen) != chunkMask {
		t.Fatalf("sequence visits %d numbers, want %d", len(seen), chunkMask)
	}
}

// TestReaderBound feeds a Conn a stream that never sends a delimiter: the
// reader must drop the frame once it passes MaxFrameSize and never buffer
// more, whatever the stream's length.
func TestReaderBound(t *testing.T) {
	stream := io.MultiReader(
		bytes.NewReader(bytes.Repeat([]byte{0x41}, 16<<20)), // 16 MiB without a delimiter
		bytes.NewReader(append([]byte{Delimiter}, mustFrame(t, Frame{Version: 1, ID: 1, Type: MsgLock, Payload: []byte{0xa0}})...)),
	)
	c := NewConn(struct {
		io.Reader
		io.Writer
	}{stream, io.Discard})
	f, err := c.ReadFrame()
	if err != nil {
		t.Fatalf("ReadFrame: %v", err)
	}
	if f.Type != MsgLock || f.ID != 1 {
		t.Fatalf("frame %+v", f)
	}
	st := c.Stats()
	if st.Oversize != 1 || st.Dropped != 1 {
		t.Fatalf("stats %+v, want exactly one oversize drop", st)
	}
	if peak := c.frameBufPeak(); peak > MaxFrameSize {
		t.Fatalf("frame buffer peaked at %d bytes, bound %d", peak, MaxFrameSize)
	}
	// EOF in the middle of a frame counts as a truncated frame.
	c = NewConn(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader([]byte{0x05, 1, 2}), io.Discard})
	if _, err := c.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("ReadFrame at EOF: %v", err)
	}
	if c.Stats().Malformed != 1 {
		t.Fatalf("truncated frame at EOF not counted: %+v", c.Stats())
	}
}

// TestReassemblyLimits checks chunk sequencing and the message size bound.
func TestReassemblyLimits(t *testing.T) {
	frame := func(id uint32, more bool, seq uint8, n int) []byte {
		return mustFrame(t, Frame{Version: 1, Flags: chunkFlags(false, more, seq), ID: id, Type: MsgInstallChain, Payload: filled(n, byte(seq))})
	}
	var in bytes.Buffer
	// Message 1: chunk 2 missing -> dropped.
	in.Write(frame(1, true, 0, 100))
	in.Write(frame(1, true, 1, 100))
	in.Write(frame(1, false, 3, 100))
	// Message 2: interrupted by a new message (chunk 0 of id 3) -> abandoned.
	in.Write(frame(2, true, 0, 100))
	// Message 3: complete, 3 chunks.
	in.Write(frame(3, true, 0, 100))
	in.Write(frame(3, true, 1, 100))
	in.Write(frame(3, false, 2, 50))
	// Message 4: over MaxMessageSize -> dropped, then its remaining chunks too.
	seq := uint8(0)
	for sent := 0; sent <= MaxMessageSize; sent += MaxChunkSize {
		in.Write(frame(4, true, seq, MaxChunkSize))
		seq = nextChunk(seq)
	}
	in.Write(frame(4, false, seq, 10))
	// Message 5: a single frame.
	in.Write(frame(5, false, 0, 10))

	c := NewConn(struct {
		io.Reader
		io.Writer
	}{&in, io.Discard})
	m, err := c.ReadMessage()
	if err != nil || m.ID != 3 || len(m.Payload) != 250 {
		t.Fatalf("first message: id %d len %d err %v, want id 3 of 250 bytes", m.ID, len(m.Payload), err)
	}
	m, err = c.ReadMessage()
	if err != nil || m.ID != 5 {
		t.Fatalf("second message: id %d err %v, want id 5", m.ID, err)
	}
	st := c.Stats()
	// 1: seq 3 after 1; 2: abandoned; 4: too large, then its final chunk.
	if st.ChunkErrors != 4 {
		t.Fatalf("chunk errors %d, want 4 (%+v)", st.ChunkErrors, st)
	}
	if _, err := c.ReadMessage(); !errors.Is(err, io.EOF) {
		t.Fatalf("at end: %v", err)
	}
}

func TestErrorValues(t *testing.T) {
	e := &Error{Code: ErrNotProvisioned, Message: "no chain stored"}
	if e.Error() != "agent: not provisioned: no chain stored" {
		t.Errorf("Error() = %q", e.Error())
	}
	if !errors.Is(e, ErrNotProvisioned) || errors.Is(e, ErrDevice) {
		t.Errorf("Is by code broken")
	}
	if ErrorCode(999).Error() != "error code 999" {
		t.Errorf("unknown code text %q", ErrorCode(999).Error())
	}
	if MsgType(0x55).String() != "MsgType(0x55)" || MsgCreateKeys.String() != "CreateKeys" {
		t.Errorf("MsgType names broken")
	}
	for _, mt := range MsgTypes() {
		if DefaultTimeout(mt) <= 0 {
			t.Errorf("no timeout for %s", mt)
		}
	}
	// Real-chip sizing: RSA-2048 EK recreation takes up to 15 s.
	if DefaultTimeout(MsgCreateKeys) < 15*1e9 || DefaultTimeout(MsgSignDigest) < 190*1e6 {
		t.Errorf("timeouts too short for real chips")
	}
}

func binaryAppendCRC(b []byte) []byte {
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}
