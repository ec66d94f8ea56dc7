package wasmsign

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
)

// scanned is what one pass over a module yields.
type scanned struct {
	// sig is the payload of the leading signature section (a copy), nil
	// when the module has none.
	sig []byte
	// hashes is the module's hash list: one snapshot of the rolling
	// SHA-256 per signature_delimiter, plus the final state unless the
	// module ends with a delimiter.
	hashes [][hashSize]byte
	// manifest is the payload of the ManifestSectionName custom section
	// (a copy, hashed like every other section), nil when there is none.
	manifest []byte
}

// scanModule parses every section, keeps the leading signature section,
// rejects any other signature section and hashes everything else. In
// canonical mode (verification) non-minimal LEB128 encodings are rejected;
// in signing mode they are accepted and hashed as their canonical
// re-encoding, which is what the signed output will contain.
func scanModule(src source, canonical bool) (*scanned, error) {
	sr, err := newSectionReader(src, canonical)
	if err != nil {
		return nil, err
	}
	out := &scanned{}
	h := sha256.New()
	first := true
	lastDelim := false
	for {
		s, err := sr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		isFirst := first
		first = false
		if s.ID == 0 && s.Name == SignatureSectionName {
			if !isFirst {
				return nil, fmt.Errorf("%w: signature section at offset %d is not the first section", ErrMalformed, s.Offset)
			}
			if s.PayloadLen() > MaxSignatureSectionSize {
				return nil, fmt.Errorf("%w: signature section of %d bytes exceeds %d", ErrMalformed, s.PayloadLen(), MaxSignatureSectionSize)
			}
			p, err := sr.readPayload()
			if err != nil {
				return nil, err
			}
			out.sig = bytes.Clone(p)
			if out.sig == nil {
				out.sig = []byte{}
			}
			continue
		}
		h.Write(s.HeaderBytes())
		if s.ID == 0 && s.Name == ManifestSectionName {
			if out.manifest != nil {
				return nil, fmt.Errorf("%w: second manifest section at offset %d", ErrMalformed, s.Offset)
			}
			if s.PayloadLen() > MaxManifestSize {
				return nil, fmt.Errorf("%w: manifest section of %d bytes exceeds %d", ErrMalformed, s.PayloadLen(), MaxManifestSize)
			}
			var mb bytes.Buffer
			if err := sr.copyPayload(io.MultiWriter(h, &mb)); err != nil {
				return nil, err
			}
			out.manifest = mb.Bytes()
			if out.manifest == nil {
				out.manifest = []byte{}
			}
			continue
		}
		if err := sr.copyPayload(h); err != nil {
			return nil, err
		}
		lastDelim = s.ID == 0 && s.Name == DelimiterSectionName
		if lastDelim {
			if len(out.hashes) == MaxHashes {
				return nil, fmt.Errorf("%w: more than %d signature delimiters", ErrMalformed, MaxHashes)
			}
			out.hashes = append(out.hashes, [hashSize]byte(h.Sum(nil)))
		}
	}
	if !lastDelim {
		if len(out.hashes) == MaxHashes {
			return nil, fmt.Errorf("%w: more than %d signed section ranges", ErrMalformed, MaxHashes)
		}
		out.hashes = append(out.hashes, [hashSize]byte(h.Sum(nil)))
	}
	return out, nil
}

// writeSections copies every section except the signature section to w, in
// canonical encoding.
func writeSections(src source, w io.Writer) error {
	sr, err := newSectionReader(src, false)
	if err != nil {
		return err
	}
	for {
		s, err := sr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if s.ID == 0 && s.Name == SignatureSectionName {
			continue
		}
		if _, err := w.Write(s.HeaderBytes()); err != nil {
			return err
		}
		if err := sr.copyPayload(w); err != nil {
			return err
		}
	}
}

// signatureSection encodes a complete custom section holding payload.
func signatureSection(payload []byte) []byte {
	inner := uint32(lebLen(uint32(len(SignatureSectionName)))+len(SignatureSectionName)) + uint32(len(payload))
	b := appendLEB([]byte{0}, inner)
	b = appendVec(b, []byte(SignatureSectionName))
	return append(b, payload...)
}

// DelimiterSection returns a signature_delimiter custom section with the
// given 16-byte (by convention random) payload, ready to be inserted between
// sections of a module so that a later signer may sign a longer prefix.
func DelimiterSection(nonce [16]byte) []byte {
	inner := uint32(1+len(DelimiterSectionName)) + 16
	b := appendLEB([]byte{0}, inner)
	b = appendVec(b, []byte(DelimiterSectionName))
	return append(b, nonce[:]...)
}
