package wasmsign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fuzzFixture is a deterministic PKI (keys derived from labels) with a CRL
// and an explicit verification time, so that the seed corpus in
// testdata/fuzz/FuzzVerify stays verifiable across runs.
func fuzzFixture(t testing.TB) (*Verifier, ed25519.PublicKey, func() [][]byte) {
	p := newPKI(t, "fuzz")
	pol := p.policy()
	pol.At, pol.AtExplicit = fuzzAt, true
	pol.CRLs = []*x509.RevocationList{p.crl(t, fuzzAt.Add(-time.Hour), fuzzAt.Add(30*24*time.Hour)), p.rootCRL(t, fuzzAt.Add(-time.Hour), fuzzAt.Add(30*24*time.Hour))}
	v, err := NewVerifier(pol)
	if err != nil {
		t.Fatal(err)
	}
	ed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0xf0}, 32))
	seeds := func() [][]byte {
		key, leaf := p.leaf(t, leafOpts{label: "leaf", device: "FUZZ-1"})
		signed := signECDSA(t, addModule, key, leaf, p.inter)
		delim := cat(addModule[:17], DelimiterSection([16]byte{1}), addModule[17:])
		signed2 := signECDSA(t, delim, key, leaf, p.inter)
		both, err := Sign(signed2, ed, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		edOnly, err := Sign(addModule, ed, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return [][]byte{signed, both, edOnly, addModule, signed[:40]}
	}
	return v, ed.Public().(ed25519.PublicKey), seeds
}

// FuzzVerify feeds arbitrary bytes to the parser and both verifiers. They
// must never panic, must classify every failure under a sentinel, and must
// only accept what a fresh verification of the same bytes accepts.
//
//	go test -run '^$' -fuzz FuzzVerify -fuzztime 1000000x ./wasmsign/
func FuzzVerify(f *testing.F) {
	v, edPub, seeds := fuzzFixture(f)
	for _, s := range seeds() {
		f.Add(s)
	}
	sentinels := []error{ErrMalformed, ErrNotSigned, ErrHashMismatch, ErrNoSignature, ErrBadSignature,
		ErrUntrusted, ErrExpired, ErrKeyUsage, ErrRevoked, ErrCRLStale, ErrCRLMissing, ErrCRLSignature}
	classified := func(err error) bool {
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return true
			}
		}
		return false
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := v.Verify(data)
		if err != nil && !classified(err) {
			t.Fatalf("unclassified error: %v", err)
		}
		if (err == nil) != (res.Status == StatusValid) {
			t.Fatalf("status %s with error %v", res.Status, err)
		}
		res2, err2 := v.VerifyReader(bytes.NewReader(data))
		if (err == nil) != (err2 == nil) || res.Status != res2.Status {
			t.Fatalf("bytes and stream verification disagree: %v / %v", err, err2)
		}
		if _, err := VerifyEd25519(data, edPub); err != nil && !classified(err) {
			t.Fatalf("unclassified Ed25519 error: %v", err)
		}
		if sr, err := NewSectionReader(bytes.NewReader(data)); err == nil {
			for {
				if _, err := sr.Next(); err != nil {
					break
				}
			}
		}
	})
}

// TestFuzzSeedsVerify checks that the committed seed corpus still holds a
// module the fuzz fixture accepts (the corpus was written by
// WASMSIGN_WRITE_FUZZ_SEEDS=1 go test -run TestFuzzSeedsVerify).
func TestFuzzSeedsVerify(t *testing.T) {
	v, edPub, seeds := fuzzFixture(t)
	dir := filepath.Join("testdata", "fuzz", "FuzzVerify")
	if os.Getenv("WASMSIGN_WRITE_FUZZ_SEEDS") == "1" {
		for i, s := range seeds() {
			writeFile(t, filepath.Join(dir, "seed"+string(rune('0'+i))), []byte("go test fuzz v1\n[]byte("+quoteBytes(s)+")\n"))
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("seed corpus missing: %v", err)
	}
	valid, edValid := 0, 0
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		data, err := parseFuzzBytes(b)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if res, err := v.Verify(data); err == nil && res.Status == StatusValid {
			valid++
		}
		if _, err := VerifyEd25519(data, edPub); err == nil {
			edValid++
		}
	}
	if valid < 2 || edValid < 2 {
		t.Fatalf("seed corpus: %d modules valid under the fixture policy, %d under the Ed25519 key", valid, edValid)
	}
}
