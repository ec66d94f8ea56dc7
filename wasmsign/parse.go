package wasmsign

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"sync"
	"unicode/utf8"
)

// Bounds enforced while parsing, before anything is allocated. They are part
// of the format (docs/signature-format.md, "Limits").
const (
	// MaxSignatureSectionSize bounds the payload of the signature section
	// (and of a detached signature).
	MaxSignatureSectionSize = 1 << 20
	// MaxCustomNameLen bounds the name of a custom section.
	MaxCustomNameLen = 1024
	// MaxHashSets bounds the number of signed hash sets in a section.
	MaxHashSets = 64
	// MaxHashes bounds the number of hashes in a set, and therefore the
	// number of signature_delimiter sections a module may contain (wasmsign2
	// uses the same limit).
	MaxHashes = 64
	// MaxSignaturesPerSet bounds the number of records in one set.
	MaxSignaturesPerSet = 256
	// MaxKeyIDLen bounds a record's key id.
	MaxKeyIDLen = 64
	// MaxSignatureLen bounds a record's signature field.
	MaxSignatureLen = 1024
	// MaxChainLen bounds the number of certificates in an ECDSA record.
	MaxChainLen = 8
	// MaxCertSize bounds one DER certificate in an ECDSA record.
	MaxCertSize = 16 << 10
)

// Custom section names with a meaning for signatures.
const (
	// SignatureSectionName is the custom section holding the signatures.
	SignatureSectionName = "signature"
	// DelimiterSectionName is the custom section at which the rolling hash
	// is snapshotted.
	DelimiterSectionName = "signature_delimiter"
)

// maxSectionID is the highest standard section id known (13 = tag).
const maxSectionID = 13

var wasmHeader = [8]byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// source is where the parser takes module bytes from: a byte slice (no
// copies) or a buffered stream (constant memory).
type source interface {
	readByte() (byte, error)
	// readN returns the next n bytes; the slice is only valid until the
	// next call. Callers bound n.
	readN(n int) ([]byte, error)
	// copyN sends the next n bytes to w (discarded when w is nil).
	copyN(w io.Writer, n int64) error
	offset() int64
}

type bytesSource struct {
	b   []byte
	off int
}

func (s *bytesSource) readByte() (byte, error) {
	if s.off >= len(s.b) {
		return 0, io.EOF
	}
	c := s.b[s.off]
	s.off++
	return c, nil
}

func (s *bytesSource) readN(n int) ([]byte, error) {
	if n < 0 || len(s.b)-s.off < n {
		s.off = len(s.b)
		return nil, io.ErrUnexpectedEOF
	}
	b := s.b[s.off : s.off+n]
	s.off += n
	return b, nil
}

func (s *bytesSource) copyN(w io.Writer, n int64) error {
	if n < 0 || int64(len(s.b)-s.off) < n {
		s.off = len(s.b)
		return io.ErrUnexpectedEOF
	}
	b := s.b[s.off : s.off+int(n)]
	s.off += int(n)
	if w != nil {
		_, err := w.Write(b)
		return err
	}
	return nil
}

func (s *bytesSource) offset() int64 { return int64(s.off) }

// streamBufSize is the read buffer of a streamed module; with the copy
// buffer it is the whole per-module memory besides the signature section.
const streamBufSize = 64 << 10

type streamSource struct {
	br   *bufio.Reader
	off  int64
	copy []byte
}

func newStreamSource(r io.Reader) *streamSource {
	return &streamSource{br: bufio.NewReaderSize(r, streamBufSize)}
}

// streamPool recycles stream buffers: a batch of small modules would
// otherwise allocate (and zero) 128 KiB per module and spend its time in GC.
var streamPool = sync.Pool{New: func() any {
	return &streamSource{br: bufio.NewReaderSize(nil, streamBufSize), copy: make([]byte, streamBufSize)}
}}

// pooledStreamSource returns a recycled source; call release when no slice
// returned by readN is in use any more.
func pooledStreamSource(r io.Reader) *streamSource {
	s := streamPool.Get().(*streamSource)
	s.br.Reset(r)
	s.off = 0
	return s
}

func (s *streamSource) release() {
	s.br.Reset(nil)
	streamPool.Put(s)
}

func (s *streamSource) readByte() (byte, error) {
	c, err := s.br.ReadByte()
	if err == nil {
		s.off++
	}
	return c, err
}

func (s *streamSource) readN(n int) ([]byte, error) {
	if n <= s.br.Size() {
		b, err := s.br.Peek(n)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		_, _ = s.br.Discard(n)
		s.off += int64(n)
		return b, nil
	}
	// Only the signature section payload is larger than the buffer; its
	// size was checked against MaxSignatureSectionSize by the caller.
	b := make([]byte, n)
	m, err := io.ReadFull(s.br, b)
	s.off += int64(m)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

func (s *streamSource) copyN(w io.Writer, n int64) error {
	if w == nil {
		for n > 0 {
			chunk := n
			if chunk > 1<<30 {
				chunk = 1 << 30
			}
			m, err := s.br.Discard(int(chunk))
			s.off += int64(m)
			n -= int64(m)
			if err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		return nil
	}
	if s.copy == nil {
		s.copy = make([]byte, streamBufSize)
	}
	for n > 0 {
		buf := s.copy
		if int64(len(buf)) > n {
			buf = buf[:n]
		}
		m, err := s.br.Read(buf)
		if m > 0 {
			s.off += int64(m)
			n -= int64(m)
			if _, werr := w.Write(buf[:m]); werr != nil {
				return werr
			}
		}
		if err != nil {
			if n == 0 {
				return nil
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

func (s *streamSource) offset() int64 { return s.off }

// Section describes one module section as the parser meets it.
type Section struct {
	// ID is the section id (0 for custom sections).
	ID byte
	// Name is the custom section name; empty for standard sections.
	Name string
	// Size is the payload size as encoded in the section header.
	Size uint32
	// Offset is the position of the id byte in the module.
	Offset int64

	header [1 + 2*maxLEB32 + MaxCustomNameLen]byte
	hlen   int   // canonical header length in header
	rest   int64 // payload bytes after the custom section name
}

// HeaderBytes returns the canonical encoding of the section up to its
// payload: id, LEB128 size and, for custom sections, the LEB128 name length
// and the name. These bytes, followed by the rest of the payload, are what
// the rolling hash covers.
func (s *Section) HeaderBytes() []byte { return s.header[:s.hlen] }

// PayloadLen returns the number of payload bytes that follow HeaderBytes
// (for custom sections: after the name).
func (s *Section) PayloadLen() int64 { return s.rest }

// SectionReader reads a WebAssembly module one section at a time from a
// stream. It checks the module header, bounds every length before using it,
// and never holds more than one buffer of payload in memory.
type SectionReader struct {
	src       source
	canonical bool
	cur       Section
	pending   int64 // unread payload bytes of the current section
	err       error
}

// NewSectionReader checks the 8-byte module header (magic and version 1) and
// returns a reader positioned before the first section. LEB128 values in
// section headers must be minimally encoded.
func NewSectionReader(r io.Reader) (*SectionReader, error) {
	return newSectionReader(newStreamSource(r), true)
}

func newSectionReader(src source, canonical bool) (*SectionReader, error) {
	h, err := src.readN(len(wasmHeader))
	if err != nil {
		return nil, fmt.Errorf("%w: module shorter than its 8-byte header", ErrMalformed)
	}
	if !bytes.Equal(h, wasmHeader[:]) {
		return nil, fmt.Errorf("%w: not a WebAssembly version 1 module header", ErrMalformed)
	}
	return &SectionReader{src: src, canonical: canonical}, nil
}

// Next skips what is left of the current section's payload and parses the
// next section header. It returns io.EOF after the last section. The
// returned Section is overwritten by the following call.
func (r *SectionReader) Next() (*Section, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.pending > 0 {
		if err := r.src.copyN(nil, r.pending); err != nil {
			return nil, r.fail(r.truncated(err, "section payload"))
		}
		r.pending = 0
	}
	s := &r.cur
	s.Offset = r.src.offset()
	id, err := r.src.readByte()
	if err == io.EOF {
		r.err = io.EOF
		return nil, io.EOF
	}
	if err != nil {
		return nil, r.fail(fmt.Errorf("read section id: %w", err))
	}
	if id > maxSectionID {
		return nil, r.fail(fmt.Errorf("%w: unknown section id %d at offset %d", ErrMalformed, id, s.Offset))
	}
	size, _, err := decodeLEB(r.src.readByte, r.canonical)
	if err != nil {
		return nil, r.fail(r.truncated(err, "section size"))
	}
	s.ID, s.Size, s.Name = id, size, ""
	s.rest = int64(size)
	if id != 0 {
		s.hlen = len(appendLEB(append(s.header[:0], id), size))
		r.pending = s.rest
		return s, nil
	}
	nameLen, n, err := decodeLEB(r.src.readByte, r.canonical)
	if err != nil {
		return nil, r.fail(r.truncated(err, "custom section name length"))
	}
	if nameLen > MaxCustomNameLen {
		return nil, r.fail(fmt.Errorf("%w: custom section name of %d bytes exceeds %d", ErrMalformed, nameLen, MaxCustomNameLen))
	}
	if int64(n)+int64(nameLen) > int64(size) {
		return nil, r.fail(fmt.Errorf("%w: custom section name overruns its section at offset %d", ErrMalformed, s.Offset))
	}
	name, err := r.src.readN(int(nameLen))
	if err != nil {
		return nil, r.fail(r.truncated(err, "custom section name"))
	}
	if !utf8.Valid(name) {
		return nil, r.fail(fmt.Errorf("%w: custom section name is not UTF-8 at offset %d", ErrMalformed, s.Offset))
	}
	s.Name = string(name)
	s.rest = int64(size) - int64(n) - int64(nameLen)
	// Canonical header: the size is re-encoded for the canonical name
	// length, which only differs from the input when canonical is off.
	canonSize := uint32(lebLen(nameLen)) + nameLen + uint32(s.rest)
	b := appendLEB(append(s.header[:0], 0), canonSize)
	b = appendLEB(b, nameLen)
	b = append(b, name...)
	s.hlen = len(b)
	r.pending = s.rest
	return s, nil
}

// Read reads payload bytes of the current section (after the name for
// custom sections) and returns io.EOF at its end.
func (r *SectionReader) Read(p []byte) (int, error) {
	if r.pending == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.pending {
		p = p[:r.pending]
	}
	b, err := r.src.readN(min(len(p), streamBufSize))
	if err != nil {
		return 0, r.fail(r.truncated(err, "section payload"))
	}
	n := copy(p, b)
	r.pending -= int64(n)
	return n, nil
}

// copyPayload sends the rest of the current payload to w.
func (r *SectionReader) copyPayload(w io.Writer) error {
	if err := r.src.copyN(w, r.pending); err != nil {
		return r.fail(r.truncated(err, "section payload"))
	}
	r.pending = 0
	return nil
}

// readPayload returns the rest of the current payload, which the caller has
// bounded.
func (r *SectionReader) readPayload() ([]byte, error) {
	b, err := r.src.readN(int(r.pending))
	if err != nil {
		return nil, r.fail(r.truncated(err, "section payload"))
	}
	r.pending = 0
	return b, nil
}

func (r *SectionReader) fail(err error) error {
	r.err = err
	return err
}

func (r *SectionReader) truncated(err error, what string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: module truncated in %s at offset %d", ErrMalformed, what, r.src.offset())
	}
	return fmt.Errorf("read %s: %w", what, err)
}
