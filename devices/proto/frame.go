package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Frame layout constants. See docs/protocol.md for the byte-by-byte layout.
const (
	// Delimiter ends (and, as written by this package, also starts) every
	// frame on the wire. COBS guarantees it never appears inside a frame.
	Delimiter byte = 0x00

	// MaxFrameSize bounds the COBS-encoded size of one frame (the bytes between
	// two delimiters). The reader refuses to buffer more than this and skips
	// to the next delimiter instead, so a line that never sends 0x00 cannot
	// make it allocate more.
	MaxFrameSize = 64 * 1024

	// MaxChunkSize is the largest payload carried by one frame; it keeps every
	// encoded frame within MaxFrameSize.
	MaxChunkSize = 63 * 1024

	// DefaultChunkSize is the payload size per frame used by Client and
	// Server unless configured otherwise. Small chunks keep a corrupted
	// frame cheap to retransmit on a noisy serial line, at about 1.5 %
	// framing overhead.
	DefaultChunkSize = 1024

	// MaxMessageSize bounds a reassembled (possibly chunked) payload.
	MaxMessageSize = 1 << 20

	// headerSize is version, flags, request id and message type.
	headerSize = 1 + 1 + 4 + 1
	// crcSize is the CRC-32C trailer.
	crcSize = 4
	// minFrameSize is the smallest valid decoded frame (empty payload).
	minFrameSize = headerSize + crcSize
)

// Flag bits of the second byte of a frame.
const (
	// FlagResponse marks a frame sent by the agent (a response); requests
	// from the station have it clear. Receivers drop frames of the wrong
	// direction, which also makes an echoing line harmless.
	FlagResponse uint8 = 0x01
	// FlagMore says that more chunks of the same message follow.
	FlagMore uint8 = 0x02
	// chunkShift positions the 6-bit chunk sequence number in bits 2..7.
	chunkShift = 2
	// chunkMask masks the chunk sequence number after shifting.
	chunkMask = 0x3F
)

// Frame decoding errors. A Conn counts and drops such frames; DecodeFrame
// returns them wrapped.
var (
	// ErrFrameTooLarge reports a frame longer than MaxFrameSize.
	ErrFrameTooLarge = errors.New("proto: frame exceeds maximum size")
	// ErrMalformedFrame reports invalid COBS or a frame too short to hold a
	// header and CRC.
	ErrMalformedFrame = errors.New("proto: malformed frame")
	// ErrCRC reports a CRC-32C mismatch.
	ErrCRC = errors.New("proto: frame CRC mismatch")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Frame is one decoded frame: the unit protected by a CRC on the wire. A
// message larger than one frame travels as several frames (chunks) that share
// the request id and type.
type Frame struct {
	Version uint8   // protocol version the sender speaks in this frame
	Flags   uint8   // FlagResponse, FlagMore and the chunk sequence number
	ID      uint32  // request id, echoed in the response
	Type    MsgType // message type
	Payload []byte  // CBOR payload bytes (a chunk of them when chunked)
}

// Response reports whether the frame travels from agent to station.
func (f Frame) Response() bool { return f.Flags&FlagResponse != 0 }

// More reports whether more chunks of the same message follow.
func (f Frame) More() bool { return f.Flags&FlagMore != 0 }

// Chunk returns the frame's chunk sequence number (0 for the first chunk,
// then 1..63, wrapping from 63 back to 1).
func (f Frame) Chunk() uint8 { return (f.Flags >> chunkShift) & chunkMask }

// chunkFlags builds the flag byte of chunk number seq.
func chunkFlags(response, more bool, seq uint8) uint8 {
	var fl uint8
	if response {
		fl |= FlagResponse
	}
	if more {
		fl |= FlagMore
	}
	return fl | (seq&chunkMask)<<chunkShift
}

// nextChunk returns the sequence number following seq; 0 is reserved for the
// first chunk, so the sequence wraps from 63 to 1.
func nextChunk(seq uint8) uint8 { return seq%chunkMask + 1 }

// EncodeFrame appends the wire form of f to dst: COBS(header | payload |
// CRC-32C) followed by the 0x00 delimiter. It returns an error when the
// payload exceeds MaxChunkSize.
func EncodeFrame(dst []byte, f Frame) ([]byte, error) {
	if len(f.Payload) > MaxChunkSize {
		return dst, fmt.Errorf("encode %s frame: payload of %d bytes exceeds %d: %w", f.Type, len(f.Payload), MaxChunkSize, ErrFrameTooLarge)
	}
	var hdr [headerSize]byte
	hdr[0] = f.Version
	hdr[1] = f.Flags
	binary.BigEndian.PutUint32(hdr[2:6], f.ID)
	hdr[6] = uint8(f.Type)
	crc := crc32.Update(0, castagnoli, hdr[:])
	crc = crc32.Update(crc, castagnoli, f.Payload)
	var tail [crcSize]byte
	binary.BigEndian.PutUint32(tail[:], crc)

	var e cobsEncoder
	dst = e.begin(dst)
	dst = e.write(dst, hdr[:])
	dst = e.write(dst, f.Payload)
	dst = e.write(dst, tail[:])
	dst = e.end(dst)
	return append(dst, Delimiter), nil
}

// DecodeFrame decodes one COBS-encoded frame, without its delimiter, and
// checks its length and CRC. The returned payload does not alias enc.
func DecodeFrame(enc []byte) (Frame, error) {
	if len(enc) > MaxFrameSize {
		return Frame{}, fmt.Errorf("decode frame of %d bytes: %w", len(enc), ErrFrameTooLarge)
	}
	buf := make([]byte, len(enc))
	copy(buf, enc)
	f, err := decodeInPlace(buf)
	if err != nil {
		return Frame{}, err
	}
	return f, nil
}

// decodeInPlace COBS-decodes buf over itself and parses the frame. The
// payload of the result aliases buf.
func decodeInPlace(buf []byte) (Frame, error) {
	dec, err := cobsDecode(buf)
	if err != nil {
		return Frame{}, err
	}
	if len(dec) < minFrameSize {
		return Frame{}, fmt.Errorf("decode frame: %d bytes, need at least %d: %w", len(dec), minFrameSize, ErrMalformedFrame)
	}
	body := dec[:len(dec)-crcSize]
	want := binary.BigEndian.Uint32(dec[len(dec)-crcSize:])
	if got := crc32.Checksum(body, castagnoli); got != want {
		return Frame{}, fmt.Errorf("decode frame: crc %08x, want %08x: %w", got, want, ErrCRC)
	}
	return Frame{
		Version: body[0],
		Flags:   body[1],
		ID:      binary.BigEndian.Uint32(body[2:6]),
		Type:    MsgType(body[6]),
		Payload: body[headerSize:],
	}, nil
}

// cobsEncoder streams Consistent Overhead Byte Stuffing into a byte slice:
// every run of up to 254 non-zero bytes is prefixed by a code byte giving the
// distance to the next (implied) zero.
type cobsEncoder struct {
	codeIdx int
	code    byte
}

func (e *cobsEncoder) begin(dst []byte) []byte {
	e.codeIdx = len(dst)
	e.code = 1
	return append(dst, 0)
}

func (e *cobsEncoder) write(dst, src []byte) []byte {
	for _, b := range src {
		if b == 0 {
			dst[e.codeIdx] = e.code
			e.codeIdx = len(dst)
			dst = append(dst, 0)
			e.code = 1
			continue
		}
		dst = append(dst, b)
		e.code++
		if e.code == 0xFF {
			dst[e.codeIdx] = e.code
			e.codeIdx = len(dst)
			dst = append(dst, 0)
			e.code = 1
		}
	}
	return dst
}

func (e *cobsEncoder) end(dst []byte) []byte {
	dst[e.codeIdx] = e.code
	return dst
}

// cobsDecode decodes COBS in place and returns the decoded prefix of buf.
// Decoding never writes ahead of the read position, so in-place is safe.
func cobsDecode(buf []byte) ([]byte, error) {
	out := 0
	for i := 0; i < len(buf); {
		code := buf[i]
		if code == 0 {
			return nil, fmt.Errorf("cobs: zero byte at offset %d: %w", i, ErrMalformedFrame)
		}
		i++
		n := int(code) - 1
		if i+n > len(buf) {
			return nil, fmt.Errorf("cobs: block at offset %d overruns frame: %w", i-1, ErrMalformedFrame)
		}
		for _, b := range buf[i : i+n] {
			if b == 0 {
				return nil, fmt.Errorf("cobs: zero byte inside block at offset %d: %w", i-1, ErrMalformedFrame)
			}
		}
		out += copy(buf[out:], buf[i:i+n])
		i += n
		if code != 0xFF && i < len(buf) {
			buf[out] = 0
			out++
		}
	}
	return buf[:out], nil
}
