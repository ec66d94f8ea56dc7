package wasmsign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

// compileAndCall checks that a (signed) module is still valid WebAssembly:
// wazero compiles and instantiates it and add(2, 3) returns 5.
func compileAndCall(t *testing.T, module []byte) {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	mod, err := rt.Instantiate(ctx, module)
	if err != nil {
		t.Fatalf("wazero rejects the signed module: %v", err)
	}
	out, err := mod.ExportedFunction("add").Call(ctx, 2, 3)
	if err != nil || len(out) != 1 || out[0] != 5 {
		t.Fatalf("add(2,3) = %v, %v; want 5", out, err)
	}
}

func signECDSA(t testing.TB, module []byte, key crypto.Signer, chain ...*x509.Certificate) []byte {
	t.Helper()
	out, err := Sign(module, key, chain, nil)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return out
}

func wantValid(t testing.TB, res *Result, err error) {
	t.Helper()
	if err != nil || res.Status != StatusValid {
		t.Fatalf("want valid, got %v (%v)", res.Status, err)
	}
}

func wantErr(t testing.TB, res *Result, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("want %v, got %v", target, err)
	}
	if res == nil || res.Status == StatusValid {
		t.Fatalf("result %+v for a failed verification", res)
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	p := newPKI(t, "rt")
	key, leaf := p.leaf(t, leafOpts{device: "TPM-A1B2C3D4E5F60718"})
	signed := signECDSA(t, addModule, key, leaf, p.inter)
	if signed[8] != 0 || !bytes.Contains(signed[:40], []byte(SignatureSectionName)) {
		t.Fatal("signature section is not the first section")
	}
	res, err := Verify(signed, p.policy())
	wantValid(t, res, err)
	if res.DeviceSerial != "TPM-A1B2C3D4E5F60718" || res.SignerSerial != opensslSerial(leaf) || res.ReasonCode != ReasonOK {
		t.Fatalf("result %+v", res)
	}
	if len(res.Chain) != 3 || !res.Chain[2].Equal(p.root) || res.AtExplicit {
		t.Fatalf("chain/time in result: %d certs, explicit %v", len(res.Chain), res.AtExplicit)
	}
	// Streaming path gives the same answer.
	res, err = VerifyReader(bytes.NewReader(signed), p.policy())
	wantValid(t, res, err)
	compileAndCall(t, signed)
	// The unsigned module is not signed.
	res, err = Verify(addModule, p.policy())
	wantErr(t, res, err, ErrNotSigned)
}

func TestSignDigestFunc(t *testing.T) {
	p := newPKI(t, "digest")
	key, leaf := p.leaf(t, leafOpts{})
	chain := []*x509.Certificate{leaf, p.inter}
	for name, f := range map[string]DigestSignFunc{
		"asn1": func(d []byte) ([]byte, error) {
			if len(d) != 32 {
				t.Fatalf("digest of %d bytes", len(d))
			}
			return ecdsa.SignASN1(rand.Reader, key, d)
		},
		"raw": func(d []byte) ([]byte, error) {
			r, s, err := ecdsa.Sign(rand.Reader, key, d)
			if err != nil {
				return nil, err
			}
			raw := make([]byte, 64)
			r.FillBytes(raw[:32])
			s.FillBytes(raw[32:])
			return raw, nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			signed, err := SignDigestFunc(addModule, f, chain, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Verify(signed, p.policy())
			wantValid(t, res, err)
		})
	}
	other := detKey(t, elliptic.P256(), "someone else")
	_, err := SignDigestFunc(addModule, func(d []byte) ([]byte, error) { return ecdsa.SignASN1(rand.Reader, other, d) }, chain, nil)
	if err == nil {
		t.Fatal("a signature by another key than the leaf's was embedded")
	}
	if _, err := Sign(addModule, other, chain, nil); err == nil {
		t.Fatal("Sign accepted a signer that does not match chain[0]")
	}
	p384 := detKey(t, elliptic.P384(), "p384")
	if _, err := Sign(addModule, p384, chain, nil); err == nil {
		t.Fatal("Sign accepted a P-384 signer")
	}
}

// TestEveryByteChangeRejected flips every byte of a small signed module in
// two ways; each variant must be rejected.
func TestEveryByteChangeRejected(t *testing.T) {
	p := newPKI(t, "flip")
	key, leaf := p.leaf(t, leafOpts{})
	signed := signECDSA(t, addModule, key, leaf, p.inter)
	v, err := NewVerifier(p.policy())
	if err != nil {
		t.Fatal(err)
	}
	isValid(t)((v.Verify(signed)))

	edKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	edSigned, err := Sign(addModule, edKey, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	edPub := edKey.Public().(ed25519.PublicKey)
	isValid(t)((VerifyEd25519(edSigned, edPub)))

	mod := make([]byte, len(signed))
	for i := range signed {
		for _, x := range []byte{0x01, 0x80} {
			copy(mod, signed)
			mod[i] ^= x
			if res, err := v.Verify(mod); err == nil || res.Status == StatusValid {
				t.Fatalf("offset %d xor %#x: accepted", i, x)
			}
			if res, err := v.VerifyReader(bytes.NewReader(mod)); err == nil || res.Status == StatusValid {
				t.Fatalf("offset %d xor %#x: accepted by the stream verifier", i, x)
			}
		}
	}
	edMod := make([]byte, len(edSigned))
	for i := range edSigned {
		for _, x := range []byte{0x01, 0x80} {
			copy(edMod, edSigned)
			edMod[i] ^= x
			if res, err := VerifyEd25519(edMod, edPub); err == nil || res.Status == StatusValid {
				t.Fatalf("ed25519 offset %d xor %#x: accepted", i, x)
			}
		}
	}
	t.Logf("%d ECDSA and %d Ed25519 variants rejected", 2*len(signed), 2*len(edSigned))
}

// isValid lets a (result, error) pair be checked in one call.
func isValid(t testing.TB) func(*Result, error) {
	return func(res *Result, err error) { t.Helper(); wantValid(t, res, err) }
}

func TestTruncationAndExtension(t *testing.T) {
	p := newPKI(t, "trunc")
	key, leaf := p.leaf(t, leafOpts{})
	v, _ := NewVerifier(p.policy())
	signed := signECDSA(t, addModule, key, leaf, p.inter)
	for n := 0; n < len(signed); n++ {
		if _, err := v.Verify(signed[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
	// Appended sections: custom, delimiter, standard.
	for name, extra := range map[string][]byte{
		"custom":    customSection("name", []byte{0, 1, 2}),
		"delimiter": DelimiterSection([16]byte{1}),
		"empty":     customSection("x", nil),
	} {
		res, err := v.Verify(cat(signed, extra))
		wantErr(t, res, err, ErrHashMismatch)
		_ = name
	}

	// A module signed over two ranges must not verify when cut at the
	// delimiter, nor when sections are added after it.
	delim := DelimiterSection([16]byte{0xde, 0x11})
	twoPart := cat(addModule[:8+9], delim, addModule[8+9:])
	signed2 := signECDSA(t, twoPart, key, leaf, p.inter)
	isValid(t)((v.Verify(signed2)))
	compileAndCall(t, signed2)
	sigLen := len(signed2) - len(twoPart)
	cut := signed2[:8+sigLen+9+len(delim)]
	res, err := v.Verify(cut)
	wantErr(t, res, err, ErrHashMismatch)
	// Ending with a delimiter: the module hash list has no final entry.
	endDelim := cat(addModule, delim)
	s3 := signECDSA(t, endDelim, key, leaf, p.inter)
	isValid(t)((v.Verify(s3)))
	res, err = v.Verify(s3[:len(s3)-len(delim)])
	wantErr(t, res, err, ErrHashMismatch)
}

func TestSignatureSectionPlacement(t *testing.T) {
	p := newPKI(t, "place")
	key, leaf := p.leaf(t, leafOpts{})
	v, _ := NewVerifier(p.policy())
	signed := signECDSA(t, addModule, key, leaf, p.inter)
	sigSec := signed[8 : len(signed)-(len(addModule)-8)]
	body := addModule[8:]
	typeSec := body[:9]

	res, err := v.Verify(cat(wasmHeader[:], typeSec, sigSec, body[9:]))
	wantErr(t, res, err, ErrMalformed)
	res, err = v.Verify(cat(wasmHeader[:], body, sigSec))
	wantErr(t, res, err, ErrMalformed)
	res, err = v.Verify(cat(wasmHeader[:], sigSec, sigSec, body))
	wantErr(t, res, err, ErrMalformed)

	// A signature section taken from another module does not apply.
	other := cat(addModule, customSection("build", []byte("v2")))
	otherSigned := signECDSA(t, other, key, leaf, p.inter)
	otherSig := otherSigned[8 : len(otherSigned)-(len(other)-8)]
	res, err = v.Verify(cat(wasmHeader[:], otherSig, body))
	wantErr(t, res, err, ErrHashMismatch)
}

func TestChainPolicy(t *testing.T) {
	p := newPKI(t, "policy")
	other := newPKI(t, "other")
	now := time.Now()
	freshCRL := func(revoked ...*x509.Certificate) *x509.RevocationList {
		return p.crl(t, now.Add(-time.Hour), now.Add(24*time.Hour), revoked...)
	}
	key, leaf := p.leaf(t, leafOpts{})
	_, revokedLeaf := p.leaf(t, leafOpts{})

	type tc struct {
		name    string
		sign    func() []byte
		policy  func(*TrustPolicy)
		want    error
		explict bool
	}
	std := func() []byte { return signECDSA(t, addModule, key, leaf, p.inter) }
	withLeaf := func(o leafOpts) func() []byte {
		return func() []byte {
			k, l := p.leaf(t, o)
			return signECDSA(t, addModule, k, l, p.inter)
		}
	}
	tests := []tc{
		{name: "valid", sign: std},
		{name: "valid with fresh CRL", sign: std, policy: func(tp *TrustPolicy) {
			tp.CRLs = []*x509.RevocationList{freshCRL(), p.rootCRL(t, now.Add(-time.Hour), now.Add(time.Hour))}
		}},
		{name: "CRL valid until exactly the verification time", sign: std, policy: func(tp *TrustPolicy) {
			at := now.Truncate(time.Second) // CRL times have whole seconds
			tp.At, tp.AtExplicit = at, true
			tp.CRLs = []*x509.RevocationList{p.crl(t, at.Add(-time.Hour), at), p.rootCRL(t, at.Add(-time.Hour), at)}
		}, explict: true},
		{name: "CRL expired one second before the verification time", sign: std, policy: func(tp *TrustPolicy) {
			at := now.Truncate(time.Second)
			tp.At, tp.AtExplicit = at.Add(time.Second), true
			tp.CRLs = []*x509.RevocationList{p.crl(t, at.Add(-time.Hour), at), p.rootCRL(t, at.Add(-time.Hour), at.Add(time.Hour))}
		}, want: ErrCRLStale, explict: true},
		{name: "revoked intermediate", sign: std, policy: func(tp *TrustPolicy) {
			tp.CRLs = []*x509.RevocationList{p.rootCRL(t, now.Add(-time.Hour), now.Add(time.Hour), p.inter)}
		}, want: ErrRevoked},
		{name: "root embedded", sign: func() []byte { return signECDSA(t, addModule, key, leaf, p.inter, p.root) }},
		{name: "intermediate from the bundle", sign: func() []byte { return signECDSA(t, addModule, key, leaf) },
			policy: func(tp *TrustPolicy) { tp.Intermediates = []*x509.Certificate{p.inter} }},
		{name: "intermediate missing", sign: func() []byte { return signECDSA(t, addModule, key, leaf) }, want: ErrUntrusted},
		{name: "chain from another root", sign: func() []byte {
			k, l := other.leaf(t, leafOpts{})
			return signECDSA(t, addModule, k, l, other.inter)
		}, want: ErrUntrusted},
		{name: "other root's intermediate appended", sign: func() []byte { return signECDSA(t, addModule, key, leaf, p.inter, other.inter) }, want: ErrUntrusted},
		{name: "expired leaf", sign: withLeaf(leafOpts{label: "old", notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)}), want: ErrExpired},
		{name: "not yet valid leaf", sign: withLeaf(leafOpts{label: "future", notBefore: now.Add(time.Hour)}), want: ErrExpired},
		{name: "revoked leaf", sign: func() []byte {
			return signECDSA(t, addModule, detKey(t, elliptic.P256(), p.name+"/leaf"), revokedLeaf, p.inter)
		}, policy: func(tp *TrustPolicy) { tp.CRLs = []*x509.RevocationList{freshCRL(revokedLeaf)} }, want: ErrRevoked},
		{name: "stale CRL", sign: std, policy: func(tp *TrustPolicy) {
			tp.CRLs = []*x509.RevocationList{p.crl(t, now.Add(-48*time.Hour), now.Add(-time.Hour))}
		}, want: ErrCRLStale},
		{name: "CRL older than MaxCRLAge", sign: std, policy: func(tp *TrustPolicy) {
			tp.CRLs = []*x509.RevocationList{p.crl(t, now.Add(-48*time.Hour), now.Add(30*24*time.Hour))}
			tp.MaxCRLAge = 24 * time.Hour
		}, want: ErrCRLStale},
		{name: "CRL of another issuer is ignored", sign: std, policy: func(tp *TrustPolicy) {
			tp.CRLs = append(tp.CRLs, other.crl(t, now.Add(-48*time.Hour), now.Add(-time.Hour), leaf))
		}},
		{name: "no CRL at all", sign: std, policy: func(tp *TrustPolicy) { tp.CRLs = nil }, want: ErrCRLMissing},
		{name: "CRL of the intermediate but not of the root", sign: std, policy: func(tp *TrustPolicy) {
			tp.CRLs = []*x509.RevocationList{freshCRL()}
		}, want: ErrCRLMissing},
		{name: "CRL of the root but not of the intermediate", sign: std, policy: func(tp *TrustPolicy) {
			tp.CRLs = []*x509.RevocationList{p.rootCRL(t, now.Add(-time.Hour), now.Add(time.Hour))}
		}, want: ErrCRLMissing},
		{name: "stale root CRL", sign: std, policy: func(tp *TrustPolicy) {
			tp.CRLs = []*x509.RevocationList{freshCRL(), p.rootCRL(t, now.Add(-48*time.Hour), now.Add(-time.Hour))}
		}, want: ErrCRLStale},
		{name: "CRL not yet valid", sign: std, policy: func(tp *TrustPolicy) {
			tp.CRLs = []*x509.RevocationList{p.crl(t, now.Add(time.Hour), now.Add(48*time.Hour)), p.rootCRL(t, now.Add(-time.Hour), now.Add(time.Hour))}
		}, want: ErrCRLStale},
		{name: "intermediate CRL signed by the wrong key", sign: std, policy: func(tp *TrustPolicy) {
			// Issuer name and authority key id of the intermediate, signed
			// with another key: the bundle was edited.
			tp.CRLs = []*x509.RevocationList{forgedCRL(t, p.inter, other.interKey, now), p.rootCRL(t, now.Add(-time.Hour), now.Add(time.Hour))}
		}, want: ErrCRLSignature},
		{name: "forged CRL beside a genuine one", sign: std, policy: func(tp *TrustPolicy) {
			tp.CRLs = append(tp.CRLs, forgedCRL(t, p.root, other.rootKey, now))
		}, want: ErrCRLSignature},
		{name: "forged CRL is refused even when missing CRLs are allowed", sign: std, policy: func(tp *TrustPolicy) {
			tp.CRLs = []*x509.RevocationList{forgedCRL(t, p.inter, other.interKey, now)}
			tp.AllowMissingCRL = true
		}, want: ErrCRLSignature},
		{name: "stale CRL is refused even when missing CRLs are allowed", sign: std, policy: func(tp *TrustPolicy) {
			tp.CRLs = []*x509.RevocationList{p.crl(t, now.Add(-48*time.Hour), now.Add(-time.Hour))}
			tp.AllowMissingCRL = true
		}, want: ErrCRLStale},
		{name: "revoked leaf, root CRL missing but allowed", sign: func() []byte {
			return signECDSA(t, addModule, detKey(t, elliptic.P256(), p.name+"/leaf"), revokedLeaf, p.inter)
		}, policy: func(tp *TrustPolicy) {
			tp.CRLs = []*x509.RevocationList{freshCRL(revokedLeaf)}
			tp.AllowMissingCRL = true
		}, want: ErrRevoked},
		{name: "revoked intermediate, its own CRL missing", sign: std, policy: func(tp *TrustPolicy) {
			tp.CRLs = []*x509.RevocationList{p.rootCRL(t, now.Add(-time.Hour), now.Add(time.Hour), p.inter)}
		}, want: ErrRevoked},
		{name: "leaf without EKU", sign: withLeaf(leafOpts{label: "noeku", noEKU: true}), want: ErrKeyUsage},
		{name: "leaf with serverAuth only", sign: withLeaf(leafOpts{label: "tls", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}), want: ErrKeyUsage},
		{name: "leaf with any EKU only", sign: withLeaf(leafOpts{label: "any", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}), want: ErrKeyUsage},
		{name: "leaf without digitalSignature", sign: withLeaf(leafOpts{label: "ke", ku: x509.KeyUsageKeyAgreement}), want: ErrKeyUsage},
		{name: "leaf is a CA", sign: withLeaf(leafOpts{label: "ca", isCA: true, ku: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}), want: ErrKeyUsage},
		{name: "explicit time inside validity", sign: withLeaf(leafOpts{label: "old2", notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)}),
			policy: func(tp *TrustPolicy) { tp.At, tp.AtExplicit = now.Add(-24*time.Hour), true }, explict: true},
		{name: "explicit time before validity", sign: std,
			policy: func(tp *TrustPolicy) { tp.At, tp.AtExplicit = leafNotBefore.Add(-time.Hour), true }, want: ErrExpired, explict: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mod := tt.sign()
			pol := p.policy()
			if tt.policy != nil {
				tt.policy(pol)
			}
			res, err := Verify(mod, pol)
			if tt.want == nil {
				wantValid(t, res, err)
			} else {
				wantErr(t, res, err, tt.want)
				if res.SignerSerial == "" || res.Reason == "" {
					t.Fatalf("failed result without signer or reason: %+v", res)
				}
			}
			if res.AtExplicit != tt.explict {
				t.Fatalf("AtExplicit = %v", res.AtExplicit)
			}
		})
	}

	t.Run("missing CRLs", func(t *testing.T) {
		// A revoked device's module with a bundle that lacks CRLs: refused
		// by default, naming the CA; accepted only with AllowMissingCRL,
		// and then the result says revocation was not checked.
		mod := signECDSA(t, addModule, detKey(t, elliptic.P256(), p.name+"/leaf"), revokedLeaf, p.inter)
		pol := p.policy()
		pol.CRLs = nil
		res, err := Verify(mod, pol)
		wantErr(t, res, err, ErrCRLMissing)
		var ce *CRLError
		if !errors.As(err, &ce) || len(ce.CAs) != 2 || !ce.CAs[0].Equal(p.inter) || !ce.CAs[1].Equal(p.root) {
			t.Fatalf("error %v does not name the intermediate and the root as the CAs without CRL", err)
		}
		if res.RevocationUnchecked {
			t.Fatal("refused result marked revocation_unchecked")
		}
		pol.AllowMissingCRL = true
		res, err = Verify(mod, pol)
		wantValid(t, res, err)
		if !res.RevocationUnchecked || len(res.NoCRLFor) != 2 || res.NoCRLFor[0] != p.inter.Subject.String() ||
			res.NoCRLFor[1] != p.root.Subject.String() || !strings.Contains(res.Warning, "revocation not checked") {
			t.Fatalf("accepted without CRLs but the result does not say so: %+v", res)
		}
		// Root CRL present, intermediate's missing: only the intermediate
		// is named.
		pol.CRLs = []*x509.RevocationList{p.rootCRL(t, now.Add(-time.Hour), now.Add(time.Hour))}
		res, err = Verify(mod, pol)
		wantValid(t, res, err)
		if len(res.NoCRLFor) != 1 || res.NoCRLFor[0] != p.inter.Subject.String() {
			t.Fatalf("no_crl_for = %q", res.NoCRLFor)
		}
		// With every CRL present the flag changes nothing: revoked.
		pol.CRLs = []*x509.RevocationList{freshCRL(revokedLeaf), p.rootCRL(t, now.Add(-time.Hour), now.Add(time.Hour))}
		res, err = Verify(mod, pol)
		wantErr(t, res, err, ErrRevoked)
		// And a valid module with all CRLs is not flagged.
		res, err = Verify(std(), pol)
		wantValid(t, res, err)
		if res.RevocationUnchecked || res.NoCRLFor != nil || res.Warning != "" {
			t.Fatalf("fully checked result flagged: %+v", res)
		}
	})

	t.Run("non-P-256 leaf", func(t *testing.T) {
		k, l := p.leaf(t, leafOpts{label: "p384", curve: elliptic.P384()})
		if _, err := Sign(addModule, k, []*x509.Certificate{l, p.inter}, nil); err == nil {
			t.Fatal("signed with a P-384 key")
		}
		// Build the record by hand: the verifier must refuse the leaf.
		sc, err := scanModule(&bytesSource{b: addModule}, true)
		if err != nil {
			t.Fatal(err)
		}
		d := &sigData{}
		d.add(sc.hashes, record{keyID: make([]byte, keyIDLen), alg: AlgECDSAP256Chain, sig: make([]byte, 64),
			extra: encodeChain([][]byte{l.Raw, p.inter.Raw})})
		mod := cat(wasmHeader[:], signatureSection(d.encode()), addModule[8:])
		res, err := Verify(mod, p.policy())
		wantErr(t, res, err, ErrKeyUsage)
	})

	t.Run("policy errors", func(t *testing.T) {
		signed := std()
		if _, err := Verify(signed, &TrustPolicy{}); !errors.Is(err, ErrPolicy) {
			t.Fatalf("no roots: %v", err)
		}
		pol := p.policy()
		pol.At = now
		if _, err := Verify(signed, pol); !errors.Is(err, ErrPolicy) {
			t.Fatalf("At without AtExplicit: %v", err)
		}
	})
}

func TestOversizedCountsNoHugeAllocation(t *testing.T) {
	big5 := []byte{0xff, 0xff, 0xff, 0xff, 0x0f} // 2^32-1
	hdr := []byte{specVersion, contentType, hashSHA256}
	rawSig := func(payload []byte) []byte {
		// Signature section with a lying payload (no length checks here).
		return cat(wasmHeader[:], customSection(SignatureSectionName, payload), addModule[8:])
	}
	rec := func(extra []byte) []byte {
		return cat([]byte{keyIDLen}, make([]byte, keyIDLen), []byte{AlgECDSAP256Chain, 64}, make([]byte, 64), extra)
	}
	set := func(r []byte) []byte {
		return cat([]byte{1}, make([]byte, 32), []byte{1}, appendVec(nil, r))
	}
	cases := map[string][]byte{
		"section size 4 GiB":        cat(wasmHeader[:], []byte{0}, big5, []byte{9}, []byte(SignatureSectionName)),
		"standard section 4 GiB":    cat(wasmHeader[:], []byte{1}, big5, []byte{0x60}),
		"name length 4 GiB":         cat(wasmHeader[:], []byte{0, 10}, big5, []byte("abc")),
		"LEB overflow":              cat(wasmHeader[:], []byte{1, 0xff, 0xff, 0xff, 0xff, 0x7f}),
		"LEB too long":              cat(wasmHeader[:], []byte{1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}),
		"set count 4 G":             rawSig(cat(hdr, big5)),
		"set length 4 G":            rawSig(cat(hdr, []byte{1}, big5)),
		"hash count 4 G":            rawSig(cat(hdr, []byte{1}, appendVec(nil, cat(big5, make([]byte, 40))))),
		"hash count 64 short":       rawSig(cat(hdr, []byte{1}, appendVec(nil, []byte{64, 1, 2, 3}))),
		"signature count 4 G":       rawSig(cat(hdr, []byte{1}, appendVec(nil, cat([]byte{1}, make([]byte, 32), big5)))),
		"signature count 256 short": rawSig(cat(hdr, []byte{1}, appendVec(nil, cat([]byte{1}, make([]byte, 32), []byte{0x80, 0x02}, make([]byte, 16))))),
		"record length 4 G":         rawSig(cat(hdr, []byte{1}, appendVec(nil, cat([]byte{1}, make([]byte, 32), []byte{1}, big5)))),
		"chain count 4 G":           rawSig(cat(hdr, []byte{1}, appendVec(nil, set(rec(big5))))),
		"chain count 9":             rawSig(cat(hdr, []byte{1}, appendVec(nil, set(rec([]byte{9, 1, 0x30}))))),
		"certificate length 4 G":    rawSig(cat(hdr, []byte{1}, appendVec(nil, set(rec(cat([]byte{1}, big5)))))),
		"certificate 64 KiB":        rawSig(cat(hdr, []byte{1}, appendVec(nil, set(rec(cat([]byte{1}, appendLEB(nil, 64<<10), make([]byte, 64<<10))))))),
		"key id length 4 G":         rawSig(cat(hdr, []byte{1}, appendVec(nil, cat([]byte{1}, make([]byte, 32), []byte{1}, appendVec(nil, cat(big5, []byte{1})))))),
		"signature length 4 G":      rawSig(cat(hdr, []byte{1}, appendVec(nil, cat([]byte{1}, make([]byte, 32), []byte{1}, appendVec(nil, cat([]byte{0, 1}, big5)))))),
		"too many delimiters": cat(wasmHeader[:], customSection(SignatureSectionName, nil),
			bytes.Repeat(DelimiterSection([16]byte{}), MaxHashes+1)),
	}
	p := newPKI(t, "bounds")
	v, _ := NewVerifier(p.policy())
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			var before, after runtimeMem
			before.read()
			res, err := v.VerifyReader(bytes.NewReader(mod))
			after.read()
			wantErr(t, res, err, ErrMalformed)
			t.Logf("%v", err)
			if d := after.total - before.total; d > 2*MaxSignatureSectionSize {
				t.Fatalf("verification allocated %d bytes", d)
			}
			res, err = v.Verify(mod)
			wantErr(t, res, err, ErrMalformed)
		})
	}
}

func TestEd25519Compatibility(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x42}, 32))
	pub := priv.Public().(ed25519.PublicKey)
	signed, err := Sign(addModule, priv, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Rebuild the expected section independently, byte by byte, from the
	// wasmsign2 layout.
	h := sha256.Sum256(addModule[8:])
	msg := cat([]byte("wasmsig"), []byte{1, 1, 1}, h[:])
	mac := hmac.New(sha256.New, pub)
	mac.Write([]byte("key_id"))
	keyID := mac.Sum(nil)[:12]
	rec := cat([]byte{12}, keyID, []byte{0x01, 64}, ed25519.Sign(priv, msg))
	set := cat([]byte{1}, h[:], []byte{1}, appendVec(nil, rec))
	payload := cat([]byte{1, 1, 1, 1}, appendVec(nil, set))
	want := cat(wasmHeader[:], []byte{0}, appendLEB(nil, uint32(10+len(payload))), []byte{9}, []byte("signature"), payload, addModule[8:])
	if !bytes.Equal(signed, want) {
		t.Fatalf("Ed25519 signed module differs from the wasmsign2 layout\n got %x\nwant %x", signed, want)
	}
	spki, _ := x509.MarshalPKIXPublicKey(pub)
	for name, in := range map[string][]byte{
		"raw": pub, "wasmsign2 key file": cat([]byte{0x01}, pub), "DER": spki,
		"PEM": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}),
	} {
		if k, err := ParseEd25519PublicKey(in); err != nil || !k.Equal(pub) {
			t.Fatalf("ParseEd25519PublicKey(%s): %v", name, err)
		}
	}
	if _, err := ParseEd25519PublicKey([]byte{0x02, 1, 2}); err == nil {
		t.Fatal("garbage parsed as a key")
	}
	gotID, _ := KeyID(pub)
	if !bytes.Equal(gotID, keyID) {
		t.Fatal("KeyID differs from wasmsign2's default key id")
	}
	isValid(t)((VerifyEd25519(signed, pub)))
	compileAndCall(t, signed)

	// A record without key id (wasmsign2 without --key-id... ) verifies.
	noID := cat([]byte{0}, []byte{0x01, 64}, ed25519.Sign(priv, msg))
	payload2 := cat([]byte{1, 1, 1, 1}, appendVec(nil, cat([]byte{1}, h[:], []byte{1}, appendVec(nil, noID))))
	mod2 := cat(wasmHeader[:], customSection("signature", payload2), addModule[8:])
	isValid(t)((VerifyEd25519(mod2, pub)))

	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x43}, 32)).Public().(ed25519.PublicKey)
	res, err := VerifyEd25519(signed, other)
	wantErr(t, res, err, ErrNoSignature)
	res, err = VerifyEd25519(mod2, other)
	wantErr(t, res, err, ErrBadSignature)

	// An Ed25519 record is no certificate: the trust policy refuses it.
	p := newPKI(t, "ed")
	res, err = Verify(signed, p.policy())
	wantErr(t, res, err, ErrNoSignature)

	// Streaming signer gives the same bytes (Ed25519 is deterministic).
	var buf bytes.Buffer
	if err := SignStream(&buf, bytes.NewReader(addModule), priv, nil, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), signed) {
		t.Fatal("SignStream output differs from Sign")
	}
}

func TestMultipleSignatureSets(t *testing.T) {
	p := newPKI(t, "multi")
	keyA, leafA := p.leaf(t, leafOpts{label: "a", device: "DEV-A"})
	keyB, leafB := p.leaf(t, leafOpts{label: "b", device: "DEV-B"})
	ed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))

	// A signs the module ending with a delimiter, so that it may be extended.
	base := cat(addModule, DelimiterSection([16]byte{1, 2, 3}))
	s1 := signECDSA(t, base, keyA, leafA, p.inter)
	s2, err := Sign(s1, ed, nil, nil) // same hash set, second record
	if err != nil {
		t.Fatal(err)
	}
	res, err := Verify(s2, p.policy())
	wantValid(t, res, err)
	if res.DeviceSerial != "DEV-A" {
		t.Fatalf("signer %q", res.DeviceSerial)
	}
	isValid(t)((VerifyEd25519(s2, ed.Public().(ed25519.PublicKey))))
	if _, err := Sign(s2, ed, nil, nil); err == nil {
		t.Fatal("the same Ed25519 signature was added twice")
	}

	// Extended after the delimiter, then signed by B: a second set.
	ext := cat(s2, customSection("provenance", []byte("line 3")))
	res, err = Verify(ext, p.policy())
	wantErr(t, res, err, ErrHashMismatch) // A's set does not cover the tail
	s3 := signECDSA(t, ext, keyB, leafB, p.inter)
	d := mustSigData(t, s3)
	if len(d.sets) != 2 || len(d.sets[0].records) != 2 || len(d.sets[1].hashes) != 2 {
		t.Fatalf("sets: %d", len(d.sets))
	}
	info, err := Inspect(bytes.NewReader(s3), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Sets) != 2 || info.Sets[0].MatchesModule || !info.Sets[1].MatchesModule ||
		info.Sets[0].Records[1].Algorithm != AlgEd25519 || info.Sets[1].Records[0].Chain[0].Subject.SerialNumber != "DEV-B" {
		t.Fatalf("inspect: %+v", info)
	}
	res, err = Verify(s3, p.policy())
	wantValid(t, res, err)
	if res.DeviceSerial != "DEV-B" {
		t.Fatalf("signer %q, want DEV-B", res.DeviceSerial)
	}
	res, err = VerifyEd25519(s3, ed.Public().(ed25519.PublicKey))
	wantErr(t, res, err, ErrNoSignature)
	compileAndCall(t, s3)
}

func mustSigData(t *testing.T, mod []byte) *sigData {
	t.Helper()
	sc, err := scanModule(&bytesSource{b: mod}, true)
	if err != nil {
		t.Fatal(err)
	}
	d, err := decodeSigData(sc.sig)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDetached(t *testing.T) {
	p := newPKI(t, "detached")
	key, leaf := p.leaf(t, leafOpts{})
	sig, err := Sign(addModule, key, []*x509.Certificate{leaf, p.inter}, &SignOptions{Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := VerifyDetached(bytes.NewReader(addModule), sig, p.policy())
	wantValid(t, res, err)
	mod := bytes.Clone(addModule)
	mod[len(mod)-3] = 0x6b // i32.add -> i32.sub
	res, err = VerifyDetached(bytes.NewReader(mod), sig, p.policy())
	wantErr(t, res, err, ErrHashMismatch)
	signed := signECDSA(t, addModule, key, leaf, p.inter)
	res, err = VerifyDetached(bytes.NewReader(signed), sig, p.policy())
	wantErr(t, res, err, ErrMalformed)
	if _, err := Sign(signed, key, []*x509.Certificate{leaf}, &SignOptions{Detached: true}); err == nil {
		t.Fatal("detached signing of a signed module")
	}
	res, err = VerifyDetached(bytes.NewReader(addModule), nil, p.policy())
	wantErr(t, res, err, ErrNotSigned)

	ed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, 32))
	edSig, err := Sign(addModule, ed, nil, &SignOptions{Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	isValid(t)((VerifyEd25519Reader(bytes.NewReader(addModule), edSig, ed.Public().(ed25519.PublicKey))))
}

func TestNonCanonicalLEB(t *testing.T) {
	// The type section size padded to five bytes, as some linkers write it.
	padded := cat(addModule[:9], []byte{0x87, 0x80, 0x80, 0x80, 0x00}, addModule[10:])
	p := newPKI(t, "leb")
	key, leaf := p.leaf(t, leafOpts{})
	res, err := Verify(cat(wasmHeader[:], padded[8:]), p.policy())
	wantErr(t, res, err, ErrMalformed)
	signed := signECDSA(t, padded, key, leaf, p.inter)
	isValid(t)((Verify(signed, p.policy())))
	if !bytes.HasSuffix(signed, addModule[8:]) {
		t.Fatal("signing did not re-encode the padded size canonically")
	}
	// Once signed, a padded re-encoding is refused.
	sigLen := len(signed) - len(addModule)
	repadded := cat(signed[:8+sigLen], padded[8:])
	res, err = Verify(repadded, p.policy())
	wantErr(t, res, err, ErrMalformed)
	compileAndCall(t, signed)
}

func TestLoadTrustBundle(t *testing.T) {
	p := newPKI(t, "bundle")
	crl := p.crl(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	rootCRL := p.rootCRL(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	var b bytes.Buffer
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: p.root.Raw})
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: p.inter.Raw})
	pem.Encode(&b, &pem.Block{Type: "X509 CRL", Bytes: crl.Raw})
	withoutRootCRL := bytes.Clone(b.Bytes())
	pem.Encode(&b, &pem.Block{Type: "X509 CRL", Bytes: rootCRL.Raw})
	tp, err := LoadTrustBundle(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(tp.Roots) != 1 || !tp.Roots[0].Equal(p.root) || len(tp.Intermediates) != 1 || len(tp.CRLs) != 2 {
		t.Fatalf("bundle: %d roots, %d intermediates, %d CRLs", len(tp.Roots), len(tp.Intermediates), len(tp.CRLs))
	}
	key, leaf := p.leaf(t, leafOpts{})
	isValid(t)((Verify(signECDSA(t, addModule, key, leaf), tp)))
	// The same bundle without the root's CRL: refused, naming the root.
	tp, err = LoadTrustBundle(withoutRootCRL)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Verify(signECDSA(t, addModule, key, leaf), tp)
	wantErr(t, res, err, ErrCRLMissing)
	var ce *CRLError
	if !errors.As(err, &ce) || len(ce.CAs) != 1 || !ce.CAs[0].Equal(p.root) {
		t.Fatalf("error does not name the root: %v", err)
	}

	_, plainLeaf := p.leaf(t, leafOpts{label: "in-bundle"})
	good := b.Bytes()
	bad := map[string][]byte{
		"key block":              pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}),
		"garbage after":          append(bytes.Clone(good), "junk"...),
		"garbage before":         append([]byte("junk\n"), good...),
		"garbage between blocks": bytes.Replace(bytes.Clone(good), []byte("-----\n-----BEGIN X509 CRL"), []byte("-----\nnote\n-----BEGIN X509 CRL"), 1),
		"truncated block":        good[:len(good)-40],
		"bad base64":             bytes.Replace(bytes.Clone(good), []byte("-----BEGIN X509 CRL-----\n"), []byte("-----BEGIN X509 CRL-----\n!!!!"), 1),
		"PEM headers":            pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: p.root.Raw}),
		"leaf certificate":       append(bytes.Clone(good), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: plainLeaf.Raw})...),
		"no root":                pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.inter.Raw}),
		"bad cert":               pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0}}),
		"bad CRL":                append(bytes.Clone(good), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte{0x30, 0}})...),
		"empty input":            nil,
	}
	for name, in := range bad {
		if _, err := LoadTrustBundle(in); !errors.Is(err, ErrPolicy) {
			t.Errorf("%s: %v, want ErrPolicy", name, err)
		}
	}
}

func TestSectionReader(t *testing.T) {
	mod := cat(addModule, customSection("name", []byte{1, 2, 3}))
	sr, err := NewSectionReader(bytes.NewReader(mod))
	if err != nil {
		t.Fatal(err)
	}
	var ids []byte
	var rebuilt []byte
	for {
		s, err := sr.Next()
		if err != nil {
			break
		}
		ids = append(ids, s.ID)
		rebuilt = append(rebuilt, s.HeaderBytes()...)
		buf := make([]byte, 3)
		for {
			n, err := sr.Read(buf)
			rebuilt = append(rebuilt, buf[:n]...)
			if err != nil {
				break
			}
		}
	}
	if !bytes.Equal(ids, []byte{1, 3, 7, 10, 0}) || !bytes.Equal(rebuilt, mod[8:]) {
		t.Fatalf("ids %v, rebuilt %x", ids, rebuilt)
	}
	if _, err := NewSectionReader(bytes.NewReader([]byte("\x00asm\x02\x00\x00\x00"))); !errors.Is(err, ErrMalformed) {
		t.Fatalf("version 2 header: %v", err)
	}
}

// opensslSerial spells a serial as `openssl x509 -serial` does: upper-case
// hex of the big-endian bytes, an even number of digits (computed here
// independently of FormatSerial).
func opensslSerial(c *x509.Certificate) string {
	return strings.ToUpper(hex.EncodeToString(c.SerialNumber.Bytes()))
}
