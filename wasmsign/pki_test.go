package wasmsign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// Fixed validity windows so that seed corpora signed once stay meaningful.
var (
	caNotBefore   = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	caNotAfter    = time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)
	leafNotBefore = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	leafNotAfter  = time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC)
	// fuzzAt is the explicit verification time of the fuzz target.
	fuzzAt = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
)

var serialCounter atomic.Int64

// detKey derives a P-256 key from a label, so that a test PKI has the same
// keys in every run (certificates differ only in their random signatures).
func detKey(t testing.TB, curve elliptic.Curve, label string) *ecdsa.PrivateKey {
	t.Helper()
	size := (curve.Params().BitSize + 7) / 8
	var seed []byte
	for i := byte(0); len(seed) < size; i++ {
		h := sha256.Sum256(append([]byte(label), i))
		seed = append(seed, h[:]...)
	}
	k, err := ecdsa.ParseRawPrivateKey(curve, seed[:size])
	if err != nil {
		t.Fatalf("derive key %q: %v", label, err)
	}
	return k
}

// testPKI is root -> intermediate, P-256, as the station's CA builds it.
type testPKI struct {
	name              string
	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
	// crls are empty CRLs of the root and the intermediate, fresh from
	// caNotBefore to caNotAfter.
	crls []*x509.RevocationList
}

func mustCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatalf("create certificate %s: %v", tmpl.Subject, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return c
}

func newPKI(t testing.TB, name string) *testPKI {
	t.Helper()
	p := &testPKI{name: name,
		rootKey:  detKey(t, elliptic.P256(), name+"/root"),
		interKey: detKey(t, elliptic.P256(), name+"/intermediate"),
	}
	rootTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"wsc test"}, CommonName: name + " Root CA"},
		NotBefore:             caNotBefore,
		NotAfter:              caNotAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	p.root = mustCert(t, rootTmpl, rootTmpl, &p.rootKey.PublicKey, p.rootKey)
	interTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{Organization: []string{"wsc test"}, CommonName: name + " Station Intermediate"},
		NotBefore:             caNotBefore,
		NotAfter:              caNotAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	p.inter = mustCert(t, interTmpl, p.root, &p.interKey.PublicKey, p.rootKey)
	p.crls = []*x509.RevocationList{p.rootCRL(t, caNotBefore, caNotAfter), p.crl(t, caNotBefore, caNotAfter)}
	return p
}

type leafOpts struct {
	label     string // key derivation label; default "leaf"
	curve     elliptic.Curve
	device    string
	notBefore time.Time
	notAfter  time.Time
	eku       []x509.ExtKeyUsage
	noEKU     bool
	ku        x509.KeyUsage
	isCA      bool
}

// leaf issues a device certificate; the zero leafOpts is the station's
// profile: P-256, digitalSignature, codeSigning, subject serialNumber.
func (p *testPKI) leaf(t testing.TB, o leafOpts) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	if o.label == "" {
		o.label = "leaf"
	}
	if o.curve == nil {
		o.curve = elliptic.P256()
	}
	if o.device == "" {
		o.device = "TPM-0011223344556677"
	}
	if o.notBefore.IsZero() {
		o.notBefore = leafNotBefore
	}
	if o.notAfter.IsZero() {
		o.notAfter = leafNotAfter
	}
	if o.eku == nil && !o.noEKU {
		o.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}
	}
	if o.ku == 0 {
		o.ku = x509.KeyUsageDigitalSignature
	}
	key := detKey(t, o.curve, p.name+"/"+o.label)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1000 + serialCounter.Add(1)),
		Subject:               pkix.Name{Organization: []string{"wsc test"}, CommonName: o.device, SerialNumber: o.device},
		NotBefore:             o.notBefore,
		NotAfter:              o.notAfter,
		KeyUsage:              o.ku,
		ExtKeyUsage:           o.eku,
		BasicConstraintsValid: true,
		IsCA:                  o.isCA,
	}
	return key, mustCert(t, tmpl, p.inter, &key.PublicKey, p.interKey)
}

// crl is a CRL of the intermediate.
func (p *testPKI) crl(t testing.TB, thisUpdate, nextUpdate time.Time, revoked ...*x509.Certificate) *x509.RevocationList {
	t.Helper()
	return crlBy(t, p.inter, p.interKey, thisUpdate, nextUpdate, revoked...)
}

// rootCRL is a CRL of the root (for intermediates).
func (p *testPKI) rootCRL(t testing.TB, thisUpdate, nextUpdate time.Time, revoked ...*x509.Certificate) *x509.RevocationList {
	t.Helper()
	return crlBy(t, p.root, p.rootKey, thisUpdate, nextUpdate, revoked...)
}

func crlBy(t testing.TB, issuer *x509.Certificate, key *ecdsa.PrivateKey, thisUpdate, nextUpdate time.Time, revoked ...*x509.Certificate) *x509.RevocationList {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(serialCounter.Add(1)), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: thisUpdate})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		t.Fatalf("create CRL: %v", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("parse CRL: %v", err)
	}
	return crl
}

// policy pins the root and carries a CRL of each CA (root and
// intermediate), fresh over the CAs' whole validity, as a bundle from
// `wsc ca bundle` does: verification requires both.
func (p *testPKI) policy() *TrustPolicy {
	return &TrustPolicy{Roots: []*x509.Certificate{p.root}, CRLs: slices.Clone(p.crls)}
}

// addModule is a hand-assembled module exporting add(i32, i32) i32.
var addModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x07, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f, // type: (i32,i32)->i32
	0x03, 0x02, 0x01, 0x00, // function: type 0
	0x07, 0x07, 0x01, 0x03, 'a', 'd', 'd', 0x00, 0x00, // export "add" func 0
	0x0a, 0x09, 0x01, 0x07, 0x00, 0x20, 0x00, 0x20, 0x01, 0x6a, 0x0b, // code
}

// section returns the bytes of one section.
func section(id byte, payload []byte) []byte {
	return append(appendLEB([]byte{id}, uint32(len(payload))), payload...)
}

// customSection returns a custom section with name and payload.
func customSection(name string, payload []byte) []byte {
	p := appendVec(nil, []byte(name))
	return section(0, append(p, payload...))
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// forgedCRL is a CRL that carries issuer's name and authority key id but is
// signed with key, which is not issuer's: what an edited bundle holds.
func forgedCRL(t testing.TB, issuer *x509.Certificate, key *ecdsa.PrivateKey, now time.Time) *x509.RevocationList {
	t.Helper()
	fake := *issuer
	fake.PublicKey = &key.PublicKey
	tmpl := &x509.RevocationList{Number: big.NewInt(serialCounter.Add(1)), ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(time.Hour)}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, &fake, key)
	if err != nil {
		t.Fatalf("create forged CRL: %v", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("parse forged CRL: %v", err)
	}
	if !bytes.Equal(crl.AuthorityKeyId, issuer.SubjectKeyId) || !bytes.Equal(crl.RawIssuer, issuer.RawSubject) {
		t.Fatal("forged CRL does not carry the issuer's name and key id")
	}
	return crl
}
