package se

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// testPKI is a throwaway two-level CA shaped like wsc's: a root and a
// station intermediate (validity now-5min .. +5*365 days, as ca.Init makes
// it), both P-256.
type testPKI struct {
	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{}
	var err error
	p.rootKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.interKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wsc test root", Organization: []string{"wsc"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(20 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &p.rootKey.PublicKey, p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	p.root, _ = x509.ParseCertificate(der)
	sn, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	interTmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: "wsc test station 1", Organization: []string{"wsc"}},
		NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(5 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err = x509.CreateCertificate(rand.Reader, interTmpl, p.root, &p.interKey.PublicKey, p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	p.inter, _ = x509.ParseCertificate(der)
	return p
}

type leafOpts struct {
	notBefore, notAfter time.Time
	serial              *big.Int
	signer              crypto.Signer
	issuer              *x509.Certificate
}

// issueDevice issues a device certificate for pub the way the station must
// for an SE device: whole-year validity from an hour boundary and the
// serial from DeviceCertSerial; o overrides fields to break those rules.
func (p *testPKI) issueDevice(t testing.TB, pub *ecdsa.PublicKey, serial string, o leafOpts) *x509.Certificate {
	t.Helper()
	nb, na, enc, err := DeviceCertValidity(time.Now(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if !o.notBefore.IsZero() {
		nb, na = o.notBefore, o.notAfter
		if y, err := expireYears(nb, na); err == nil {
			enc, _ = EncodeDates(nb, y)
		}
	}
	sn := o.serial
	if sn == nil {
		b, err := DeviceCertSerial(pub, enc)
		if err != nil {
			t.Fatal(err)
		}
		sn = new(big.Int).SetBytes(b)
	}
	xy, _ := PublicKeyBytes(pub)
	ski := sha1.Sum(append([]byte{4}, xy...))
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: "device " + serial, SerialNumber: serial, Organization: []string{"wsc"}},
		NotBefore: nb, NotAfter: na, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageCodeSigning},
		DNSNames:    []string{serial + ".devices.example"}, SubjectKeyId: ski[:]}
	issuer, signer := p.inter, crypto.Signer(p.interKey)
	if o.signer != nil {
		issuer, signer = o.issuer, o.signer
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
