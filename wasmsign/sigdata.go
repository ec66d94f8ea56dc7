package wasmsign

import (
	"bytes"
	"fmt"
)

// Format constants of the signature section (docs/signature-format.md).
const (
	specVersion = 0x01
	contentType = 0x01 // a WebAssembly module
	hashSHA256  = 0x01
	hashSize    = 32
	domain      = "wasmsig"
)

// Algorithm ids of signature records.
const (
	// AlgEd25519 is wasmsign2's Ed25519 record: a 64-byte signature over the
	// message, nothing after it.
	AlgEd25519 byte = 0x01
	// AlgECDSAP256Chain is wsc's record: ECDSA P-256 over SHA-256 of the
	// message, signature as raw r||s (64 bytes), followed by the certificate
	// chain, leaf first. Chosen in 0xE0–0xEF, a range wsc reserves for its
	// own records, far from wasmsign2's next free ids (0x02 upwards); a
	// wasmsign2 verifier skips the record as unknown.
	AlgECDSAP256Chain byte = 0xE1
)

// record is one signature record of a hash set.
type record struct {
	keyID []byte
	alg   byte
	sig   []byte
	// extra is what follows the signature: the encoded chain for
	// AlgECDSAP256Chain, empty for AlgEd25519, opaque for other ids.
	extra []byte
	// chain is the decoded extra of an AlgECDSAP256Chain record (DER).
	chain [][]byte
}

type hashSet struct {
	hashes  [][hashSize]byte
	records []record
}

// sigData is the decoded payload of a signature section.
type sigData struct {
	sets []hashSet
}

// decodeSigData parses a signature section payload strictly: fixed header
// bytes, bounded counts, every length-prefixed item consumed exactly, no
// trailing bytes. The returned slices alias p.
func decodeSigData(p []byte) (*sigData, error) {
	if len(p) > MaxSignatureSectionSize {
		return nil, fmt.Errorf("%w: signature section of %d bytes exceeds %d", ErrMalformed, len(p), MaxSignatureSectionSize)
	}
	r := &sliceReader{b: p}
	for _, f := range []struct {
		what string
		want byte
	}{{"spec version", specVersion}, {"content type", contentType}, {"hash function", hashSHA256}} {
		c, err := r.byte()
		if err != nil {
			return nil, fmt.Errorf("%w: truncated signature section header", ErrMalformed)
		}
		if c != f.want {
			return nil, fmt.Errorf("%w: unsupported signature %s 0x%02x", ErrMalformed, f.what, c)
		}
	}
	nsets, err := r.leb("hash set count")
	if err != nil {
		return nil, err
	}
	if nsets == 0 || nsets > MaxHashSets {
		return nil, fmt.Errorf("%w: hash set count %d outside 1..%d", ErrMalformed, nsets, MaxHashSets)
	}
	d := &sigData{sets: make([]hashSet, 0, nsets)}
	for i := uint32(0); i < nsets; i++ {
		b, err := r.vec(MaxSignatureSectionSize, "hash set")
		if err != nil {
			return nil, fmt.Errorf("hash set %d: %w", i, err)
		}
		s, err := decodeHashSet(b)
		if err != nil {
			return nil, fmt.Errorf("hash set %d: %w", i, err)
		}
		d.sets = append(d.sets, s)
	}
	if r.remaining() != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes in signature section", ErrMalformed, r.remaining())
	}
	return d, nil
}

func decodeHashSet(b []byte) (hashSet, error) {
	var s hashSet
	r := &sliceReader{b: b}
	n, err := r.leb("hash count")
	if err != nil {
		return s, err
	}
	if n == 0 || n > MaxHashes {
		return s, fmt.Errorf("%w: hash count %d outside 1..%d", ErrMalformed, n, MaxHashes)
	}
	if uint64(n)*hashSize > uint64(r.remaining()) {
		return s, fmt.Errorf("%w: %d hashes overrun the set", ErrMalformed, n)
	}
	s.hashes = make([][hashSize]byte, n)
	for i := range s.hashes {
		h, _ := r.bytes(hashSize, "hash")
		copy(s.hashes[i][:], h)
	}
	nsig, err := r.leb("signature count")
	if err != nil {
		return s, err
	}
	if nsig == 0 {
		// A set without record is what wasmsign2 leaves when it re-signs
		// other content and drops the records it does not know (§6 of
		// docs/signature-format.md): say so rather than "malformed".
		return s, fmt.Errorf("%w: a hash set holds no signature record (wasmsign2 drops wsc's records when it signs "+
			"after wsc sign: sign with wasmsign2 first, then wsc sign)", ErrRecordsDropped)
	}
	if nsig > MaxSignaturesPerSet {
		return s, fmt.Errorf("%w: signature count %d outside 1..%d", ErrMalformed, nsig, MaxSignaturesPerSet)
	}
	// Each record takes at least 4 bytes (length, key id length, alg,
	// signature length): bound the allocation by what is left.
	if uint64(nsig)*4 > uint64(r.remaining()) {
		return s, fmt.Errorf("%w: %d signature records overrun the set", ErrMalformed, nsig)
	}
	s.records = make([]record, 0, nsig)
	for i := uint32(0); i < nsig; i++ {
		rb, err := r.vec(MaxSignatureSectionSize, "signature record")
		if err != nil {
			return s, fmt.Errorf("record %d: %w", i, err)
		}
		rec, err := decodeRecord(rb)
		if err != nil {
			return s, fmt.Errorf("record %d: %w", i, err)
		}
		s.records = append(s.records, rec)
	}
	if r.remaining() != 0 {
		return s, fmt.Errorf("%w: %d trailing bytes in hash set", ErrMalformed, r.remaining())
	}
	return s, nil
}

func decodeRecord(b []byte) (record, error) {
	var rec record
	r := &sliceReader{b: b}
	var err error
	if rec.keyID, err = r.vec(MaxKeyIDLen, "key id"); err != nil {
		return rec, err
	}
	if rec.alg, err = r.byte(); err != nil {
		return rec, fmt.Errorf("%w: truncated algorithm id", ErrMalformed)
	}
	if rec.sig, err = r.vec(MaxSignatureLen, "signature"); err != nil {
		return rec, err
	}
	rec.extra = b[r.off:]
	switch rec.alg {
	case AlgEd25519:
		if len(rec.sig) != 64 {
			return rec, fmt.Errorf("%w: Ed25519 signature of %d bytes", ErrMalformed, len(rec.sig))
		}
		if len(rec.extra) != 0 {
			return rec, fmt.Errorf("%w: %d bytes after an Ed25519 signature", ErrMalformed, len(rec.extra))
		}
	case AlgECDSAP256Chain:
		if len(rec.sig) != 64 {
			return rec, fmt.Errorf("%w: ECDSA P-256 signature of %d bytes, want 64 (r||s)", ErrMalformed, len(rec.sig))
		}
		if len(rec.keyID) != keyIDLen {
			return rec, fmt.Errorf("%w: ECDSA record key id of %d bytes, want %d", ErrMalformed, len(rec.keyID), keyIDLen)
		}
		if rec.chain, err = decodeChain(rec.extra); err != nil {
			return rec, err
		}
	}
	return rec, nil
}

func decodeChain(b []byte) ([][]byte, error) {
	r := &sliceReader{b: b}
	n, err := r.leb("certificate count")
	if err != nil {
		return nil, err
	}
	if n == 0 || n > MaxChainLen {
		return nil, fmt.Errorf("%w: certificate count %d outside 1..%d", ErrMalformed, n, MaxChainLen)
	}
	chain := make([][]byte, 0, n)
	for i := uint32(0); i < n; i++ {
		c, err := r.vec(MaxCertSize, "certificate")
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i, err)
		}
		if len(c) == 0 {
			return nil, fmt.Errorf("%w: empty certificate %d", ErrMalformed, i)
		}
		chain = append(chain, c)
	}
	if r.remaining() != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after the certificate chain", ErrMalformed, r.remaining())
	}
	return chain, nil
}

func encodeChain(chain [][]byte) []byte {
	b := appendLEB(nil, uint32(len(chain)))
	for _, c := range chain {
		b = appendLEB(b, uint32(len(c)))
		b = append(b, c...)
	}
	return b
}

func appendVec(b, v []byte) []byte {
	return append(appendLEB(b, uint32(len(v))), v...)
}

func (rec *record) encode() []byte {
	b := appendVec(nil, rec.keyID)
	b = append(b, rec.alg)
	b = appendVec(b, rec.sig)
	return append(b, rec.extra...)
}

func (s *hashSet) encode() []byte {
	b := appendLEB(nil, uint32(len(s.hashes)))
	for _, h := range s.hashes {
		b = append(b, h[:]...)
	}
	b = appendLEB(b, uint32(len(s.records)))
	for i := range s.records {
		b = appendVec(b, s.records[i].encode())
	}
	return b
}

func (d *sigData) encode() []byte {
	b := []byte{specVersion, contentType, hashSHA256}
	b = appendLEB(b, uint32(len(d.sets)))
	for i := range d.sets {
		b = appendVec(b, d.sets[i].encode())
	}
	return b
}

// add puts rec into the set whose hash list equals hashes, or into a new
// set, as wasmsign2 does.
func (d *sigData) add(hashes [][hashSize]byte, rec record) error {
	for i := range d.sets {
		s := &d.sets[i]
		if !equalHashes(s.hashes, hashes) {
			continue
		}
		if len(s.records) >= MaxSignaturesPerSet {
			return fmt.Errorf("%w: hash set already holds %d signatures", ErrCannotSign, len(s.records))
		}
		for _, o := range s.records {
			if o.alg == rec.alg && bytes.Equal(o.keyID, rec.keyID) && bytes.Equal(o.sig, rec.sig) {
				return fmt.Errorf("%w: module is already signed with this signature", ErrCannotSign)
			}
		}
		s.records = append(s.records, rec)
		return nil
	}
	if len(d.sets) >= MaxHashSets {
		return fmt.Errorf("%w: signature section already holds %d hash sets", ErrCannotSign, len(d.sets))
	}
	d.sets = append(d.sets, hashSet{hashes: hashes, records: []record{rec}})
	return nil
}

func equalHashes(a, b [][hashSize]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// message is the byte string every record signs.
func message(hashes [][hashSize]byte) []byte {
	m := make([]byte, 0, len(domain)+3+len(hashes)*hashSize)
	m = append(m, domain...)
	m = append(m, specVersion, contentType, hashSHA256)
	for _, h := range hashes {
		m = append(m, h[:]...)
	}
	return m
}
