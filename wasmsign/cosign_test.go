package wasmsign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"testing"
)

// wasmsign2Sign re-implements, for this test only, what wasmsign2's
// SecretKey::sign_multi (src/lib/src/signature/multi.rs) does to an
// already-signed module: it decodes the existing signature section with
// SignedHashes::deserialize, which keeps only records whose alg id is
// Ed25519 (0x01) and silently drops every other record
// (sig_sections.rs: `if let Ok(signature) = SignatureForHashes::deserialize`),
// adds its Ed25519 record to the set with equal hashes (or a new set) and
// writes the section again. delimit inserts a signature_delimiter before
// hashing, which is what `wasmsign2 sign --split` (allow_extensions) does
// to the content. No wasmsign2 binary is used (none is installed here).
func wasmsign2Sign(t *testing.T, module []byte, priv ed25519.PrivateKey, delimit bool) []byte {
	t.Helper()
	var secs [][]byte
	var prev []byte
	b := module[8:]
	for i := 0; len(b) > 0; i++ {
		id := b[0]
		size, n := readLEBForTest(t, b[1:])
		end := 1 + n + int(size)
		s := b[:end]
		b = b[end:]
		if id == 0 {
			nl, m := readLEBForTest(t, s[1+n:])
			name := string(s[1+n+m : 1+n+m+int(nl)])
			if name == "signature" {
				if i != 0 {
					t.Fatal("signature section not first")
				}
				prev = s[1+n+m+int(nl):]
				continue
			}
		}
		secs = append(secs, s)
	}
	if delimit {
		secs = append(secs, customSection("signature_delimiter", bytes.Repeat([]byte{7}, 16)))
	}
	h := sha256.New()
	for _, s := range secs {
		h.Write(s)
	}
	// One hash: the module ends with the delimiter or has none.
	hashes := [][]byte{h.Sum(nil)}
	type set struct {
		hashes [][]byte
		recs   [][]byte
	}
	var sets []set
	if prev != nil {
		p := prev[3:]
		nsets, n := readLEBForTest(t, p)
		p = p[n:]
		for range nsets {
			l, n := readLEBForTest(t, p)
			sb := p[n : n+int(l)]
			p = p[n+int(l):]
			hc, n := readLEBForTest(t, sb)
			sb = sb[n:]
			var s set
			for range hc {
				s.hashes = append(s.hashes, sb[:32])
				sb = sb[32:]
			}
			rc, n := readLEBForTest(t, sb)
			sb = sb[n:]
			for range rc {
				l, n := readLEBForTest(t, sb)
				rb := sb[n : n+int(l)]
				sb = sb[n+int(l):]
				kl, m := readLEBForTest(t, rb)
				alg := rb[m+int(kl)]
				if alg != 0x01 {
					continue // dropped, as wasmsign2 does
				}
				s.recs = append(s.recs, rb)
			}
			sets = append(sets, s)
		}
	}
	msg := append([]byte("wasmsig\x01\x01\x01"), hashes[0]...)
	id, _ := KeyID(priv.Public())
	rec := cat(appendVec(nil, id), []byte{0x01}, appendVec(nil, ed25519.Sign(priv, msg)))
	added := false
	for i := range sets {
		if len(sets[i].hashes) == 1 && bytes.Equal(sets[i].hashes[0], hashes[0]) {
			sets[i].recs = append(sets[i].recs, rec)
			added = true
		}
	}
	if !added {
		sets = append(sets, set{hashes: hashes, recs: [][]byte{rec}})
	}
	payload := appendLEB([]byte{1, 1, 1}, uint32(len(sets)))
	for _, s := range sets {
		sb := appendLEB(nil, uint32(len(s.hashes)))
		for _, h := range s.hashes {
			sb = append(sb, h...)
		}
		sb = appendLEB(sb, uint32(len(s.recs)))
		for _, r := range s.recs {
			sb = appendVec(sb, r)
		}
		payload = appendVec(payload, sb)
	}
	return cat(wasmHeader[:], customSection("signature", payload), cat(secs...))
}

func readLEBForTest(t *testing.T, b []byte) (uint32, int) {
	t.Helper()
	var v uint32
	for i := 0; i < 5 && i < len(b); i++ {
		v |= uint32(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	t.Fatal("bad LEB128")
	return 0, 0
}

// TestCoSignOrderWithWasmsign2 shows both orders of co-signing a module
// with wasmsign2 (Ed25519) and wsc sign (ECDSA + chain), as
// docs/signature-format.md §6a states them.
func TestCoSignOrderWithWasmsign2(t *testing.T) {
	p := newPKI(t, "cosign")
	key, leaf := p.leaf(t, leafOpts{})
	chain := []*x509.Certificate{leaf, p.inter}
	ed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	edPub := ed.Public().(ed25519.PublicKey)

	// wasmsign2 first, then wsc sign: both signatures verify (wsc keeps
	// the Ed25519 record and adds its own to the same set).
	first := wasmsign2Sign(t, addModule, ed, false)
	both, err := Sign(first, key, chain, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Verify(both, p.policy())
	wantValid(t, res, err)
	isValid(t)(VerifyEd25519(both, edPub))
	// What wasmsign2 itself would keep of it: the Ed25519 record is
	// still there after wasmsign2's lenient decoding (re-signing it with
	// another key keeps it and drops only wsc's record).
	info, err := Inspect(bytes.NewReader(both), nil)
	if err != nil || len(info.Sets) != 1 || len(info.Sets[0].Records) != 2 {
		t.Fatalf("co-signed module: %+v, %v", info, err)
	}

	// wsc sign first, then wasmsign2: wasmsign2 drops wsc's record; the
	// bytes are those of a module wsc never signed, and verification says
	// which case it is rather than a generic failure.
	wscFirst := signECDSA(t, addModule, key, leaf, p.inter)
	after := wasmsign2Sign(t, wscFirst, ed, false)
	res, err = Verify(after, p.policy())
	wantErr(t, res, err, ErrNoSignature)
	if !errors.Is(err, ErrOnlyEd25519) || res.ReasonCode != ReasonOnlyEd25519 || !bytes.Contains([]byte(res.Reason), []byte("sign with wasmsign2 first")) {
		t.Fatalf("wsc then wasmsign2: %q (%s), want %s with the instruction", res.Reason, res.ReasonCode, ReasonOnlyEd25519)
	}
	isValid(t)(VerifyEd25519(after, edPub))

	// wsc sign first, then wasmsign2 over extended content (--split):
	// wsc's set is left without any record, which the bytes do tell.
	split := wasmsign2Sign(t, wscFirst, ed, true)
	res, err = Verify(split, p.policy())
	wantErr(t, res, err, ErrRecordsDropped)
	if res.ReasonCode != ReasonRecordsDropped || res.Status != StatusInvalid {
		t.Fatalf("wsc then wasmsign2 --split: %s %s %q", res.Status, res.ReasonCode, res.Reason)
	}
}
