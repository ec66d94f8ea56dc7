package wasmsign

import (
	"fmt"
	"io"
)

// maxLEB32 is the longest LEB128 encoding of a 32-bit value.
const maxLEB32 = 5

// appendLEB appends the minimal unsigned LEB128 encoding of v.
func appendLEB(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// lebLen is the length of the minimal LEB128 encoding of v.
func lebLen(v uint32) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// decodeLEB reads an unsigned 32-bit LEB128 value through next. With
// canonical set, encodings longer than necessary are rejected, so that one
// value has exactly one byte representation.
func decodeLEB(next func() (byte, error), canonical bool) (v uint32, n int, err error) {
	var shift uint
	for {
		c, err := next()
		if err != nil {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, n, err
		}
		n++
		if n == maxLEB32 && c > 0x0f {
			// Fifth byte: only 4 bits left for a 32-bit value, no continuation.
			return 0, n, fmt.Errorf("%w: LEB128 value overflows 32 bits", ErrMalformed)
		}
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			if canonical && n > 1 && c == 0 {
				return 0, n, fmt.Errorf("%w: non-canonical LEB128 encoding", ErrMalformed)
			}
			return v, n, nil
		}
		shift += 7
	}
}

// sliceReader decodes the signature section payload, which is held in
// memory (it is bounded by MaxSignatureSectionSize).
type sliceReader struct {
	b   []byte
	off int
}

func (r *sliceReader) remaining() int { return len(r.b) - r.off }

func (r *sliceReader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

// leb reads a canonical LEB128 value.
func (r *sliceReader) leb(what string) (uint32, error) {
	v, _, err := decodeLEB(r.byte, true)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return 0, fmt.Errorf("%w: truncated %s", ErrMalformed, what)
		}
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return v, nil
}

// bytes returns the next n bytes (a sub-slice, not a copy).
func (r *sliceReader) bytes(n uint32, what string) ([]byte, error) {
	if uint64(n) > uint64(r.remaining()) {
		return nil, fmt.Errorf("%w: %s length %d exceeds the %d bytes left", ErrMalformed, what, n, r.remaining())
	}
	b := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return b, nil
}

// vec reads a LEB128 length bounded by max and that many bytes.
func (r *sliceReader) vec(max uint32, what string) ([]byte, error) {
	n, err := r.leb(what + " length")
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, fmt.Errorf("%w: %s length %d exceeds the limit %d", ErrMalformed, what, n, max)
	}
	return r.bytes(n, what)
}
