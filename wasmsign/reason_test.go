package wasmsign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"
)

// TestReasonCodesDocumented: every code ReasonCode returns is in the
// firmware-verification table of docs/reason-codes.md, and the table names
// no code the function does not return.
func TestReasonCodesDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/reason-codes.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "## Firmware verification")
	if !ok {
		t.Fatal("docs/reason-codes.md has no \"## Firmware verification\" section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	documented := map[string]bool{}
	for _, line := range strings.Split(sec, "\n") {
		if strings.HasPrefix(line, "| `") {
			code, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "`")
			documented[code] = true
		}
	}
	for _, c := range ReasonCodes() {
		if !documented[c] {
			t.Errorf("reason code %q is not in docs/reason-codes.md", c)
		}
		delete(documented, c)
	}
	for c := range documented {
		t.Errorf("docs/reason-codes.md lists %q, which ReasonCode never returns", c)
	}
}

// TestReasonCodeMostSpecific: wrapped errors get the most specific code.
func TestReasonCodeMostSpecific(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, ReasonOK},
		{fmt.Errorf("x: %w: %w", ErrMalformed, ErrManifest), ReasonManifest},
		{fmt.Errorf("%w: %w", ErrNoSignature, ErrOnlyEd25519), ReasonOnlyEd25519},
		{fmt.Errorf("set 0: %w", ErrRecordsDropped), ReasonRecordsDropped},
		{&CRLError{Err: ErrCRLStale}, ReasonCRLStale},
		{fmt.Errorf("open module: %w", io.ErrUnexpectedEOF), ReasonUnreadable},
	} {
		if got := ReasonCode(c.err); got != c.want {
			t.Errorf("ReasonCode(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

// TestFormatSerial: serials are spelled as openssl prints them.
func TestFormatSerial(t *testing.T) {
	for in, want := range map[string]string{"0": "00", "ca5": "0CA5", "ca5b1b8": "0CA5B1B8", "ff": "FF", "100": "0100"} {
		n, _ := new(big.Int).SetString(in, 16)
		if got := FormatSerial(n); got != want {
			t.Errorf("FormatSerial(0x%s) = %s, want %s", in, got, want)
		}
	}
}

// TestCheckSigningChain: the preflight refuses, with verification's
// sentinel, each leaf that verification would reject, and passes a good one.
func TestCheckSigningChain(t *testing.T) {
	p := newPKI(t, "preflight")
	_, good := p.leaf(t, leafOpts{label: "good"})
	_, noEKU := p.leaf(t, leafOpts{label: "noeku", noEKU: true})
	_, serverAuth := p.leaf(t, leafOpts{label: "tls", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	_, expired := p.leaf(t, leafOpts{label: "old", notBefore: leafNotBefore, notAfter: time.Now().Add(-time.Hour)})
	_, revoked := p.leaf(t, leafOpts{label: "revoked"})
	other := newPKI(t, "preflight-other")
	policy := p.policy()
	policy.CRLs = append(policy.CRLs, p.crl(t, time.Now().Add(-time.Minute), caNotAfter, revoked))
	noCRL := &TrustPolicy{Roots: []*x509.Certificate{p.root}}
	for _, c := range []struct {
		name   string
		chain  []*x509.Certificate
		policy *TrustPolicy
		want   error
	}{
		{"good, no bundle", []*x509.Certificate{good, p.inter}, nil, nil},
		{"good, bundle", []*x509.Certificate{good, p.inter}, policy, nil},
		{"no EKU", []*x509.Certificate{noEKU, p.inter}, nil, ErrKeyUsage},
		{"serverAuth only", []*x509.Certificate{serverAuth, p.inter}, policy, ErrKeyUsage},
		{"expired, no bundle", []*x509.Certificate{expired, p.inter}, nil, ErrExpired},
		{"expired, bundle", []*x509.Certificate{expired, p.inter}, policy, ErrExpired},
		{"revoked", []*x509.Certificate{revoked, p.inter}, policy, ErrRevoked},
		{"other root", []*x509.Certificate{good, p.inter}, other.policy(), ErrUntrusted},
		{"bundle without CRLs", []*x509.Certificate{good, p.inter}, noCRL, ErrCRLMissing},
		{"chain out of order", []*x509.Certificate{good, other.inter}, nil, ErrUntrusted},
	} {
		err := CheckSigningChain(c.chain, c.policy)
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// TestSignStreamManifest: SignStream with a manifest option gives the
// same bytes as AddManifest then Sign (Ed25519 is deterministic), and
// refuses a signed module with ErrManifest.
func TestSignStreamManifest(t *testing.T) {
	ed := newEd(t)
	m := &Manifest{Format: ManifestFormat, Component: "fw", Version: 3, MinVersion: 3, DeviceClass: "gw"}
	withM, err := AddManifest(addModule, m)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Sign(withM, ed, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := SignStream(&got, bytes.NewReader(addModule), ed, nil, &SignOptions{Manifest: m}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatal("SignStream with a manifest differs from AddManifest + Sign")
	}
	if err := SignStream(io.Discard, bytes.NewReader(want), ed, nil, &SignOptions{Manifest: m}); !errors.Is(err, ErrManifest) {
		t.Fatalf("manifest into a signed module: %v, want ErrManifest", err)
	}
	if err := SignStream(io.Discard, bytes.NewReader(withM), ed, nil, &SignOptions{Manifest: m}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("second manifest: %v, want ErrMalformed", err)
	}
}

func newEd(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x11}, 32))
}
