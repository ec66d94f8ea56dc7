package se

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestEncodeDates(t *testing.T) {
	nb := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	enc, err := EncodeDates(nb, 10)
	if err != nil {
		t.Fatal(err)
	}
	// yyyyy mmmm ddddd hhhhh eeeee = 11010 1011 11110 00011 01010
	want := [3]byte{0b11010101, 0b11111000, 0b01101010}
	if enc != want {
		t.Fatalf("EncodeDates = %08b, want %08b", enc, want)
	}
	y, m, d, h, e := DecodeDates(enc)
	if y != 2026 || m != 11 || d != 30 || h != 3 || e != 10 {
		t.Fatalf("DecodeDates = %d-%d-%d %d +%d", y, m, d, h, e)
	}
	for _, bad := range []struct {
		nb    time.Time
		years int
		why   string
	}{
		{nb.Add(30 * time.Minute), 1, "hour boundary"},
		{time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC), 1, "2000-2031"},
		{time.Date(2032, 1, 1, 0, 0, 0, 0, time.UTC), 1, "2000-2031"},
		{nb, 32, "0-31"},
	} {
		if _, err := EncodeDates(bad.nb, bad.years); !errors.Is(err, ErrNotCompressible) || !strings.Contains(err.Error(), bad.why) {
			t.Fatalf("EncodeDates(%v, %d) = %v, want %q", bad.nb, bad.years, err, bad.why)
		}
	}
	if _, _, _, err := DeviceCertValidity(time.Date(2028, 2, 29, 10, 0, 0, 0, time.UTC), 1); !errors.Is(err, ErrNotCompressible) {
		t.Fatalf("29 February + 1 year: %v", err)
	}
	nb2, na2, _, err := DeviceCertValidity(time.Date(2028, 2, 29, 10, 17, 3, 0, time.UTC), 4)
	if err != nil || !nb2.Equal(time.Date(2028, 2, 29, 10, 0, 0, 0, time.UTC)) || !na2.Equal(time.Date(2032, 2, 29, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("DeviceCertValidity: %v %v %v", nb2, na2, err)
	}
	_, na0, _, _ := DeviceCertValidity(nb, 0)
	if !na0.Equal(noExpiry) {
		t.Fatalf("no-expiry notAfter %v", na0)
	}
}

func TestDeviceCertSerial(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for i := range 50 {
		sn, err := DeviceCertSerial(&k.PublicKey, [3]byte{byte(i), 1, 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(sn) != 16 || sn[0]&0xC0 != 0x40 {
			t.Fatalf("serial %x: want 16 bytes, top bits 01", sn)
		}
		// The DER INTEGER has no leading zero: fixed 16-byte content.
		if len(new(big.Int).SetBytes(sn).Bytes()) != 16 {
			t.Fatal("serial shrinks as an integer")
		}
	}
}

func TestDeviceCertParams(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Date(2026, 11, 30, 3, 27, 12, 0, time.UTC)
	sn, nb, na, err := DeviceCertParams(&k.PublicKey, now, 15)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := EncodeDates(nb, 15)
	want, _ := DeviceCertSerial(&k.PublicKey, enc)
	if !bytes.Equal(sn.Bytes(), want) || !nb.Equal(time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)) || !na.Equal(time.Date(2041, 11, 30, 3, 0, 0, 0, time.UTC)) {
		t.Fatalf("params %x %v %v", sn, nb, na)
	}
	if _, _, _, err := DeviceCertParams(&k.PublicKey, now, 40); !errors.Is(err, ErrNotCompressible) {
		t.Fatalf("40 years: %v", err)
	}
}

func TestCompressRoundTrip(t *testing.T) {
	p := newTestPKI(t)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cases := map[string]leafOpts{
		"10 years UTCTime": {},
		"no expiry":        {notBefore: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC), notAfter: noExpiry},
		"GeneralizedTime notAfter": {notBefore: time.Date(2031, 6, 1, 0, 0, 0, 0, time.UTC),
			notAfter: time.Date(2051, 6, 1, 0, 0, 0, 0, time.UTC)},
	}
	for name, o := range cases {
		t.Run(name, func(t *testing.T) {
			leaf := p.issueDevice(t, &k.PublicKey, "0123AABBCCDDEEFFEE", o)
			dt, err := NewTemplate(leaf, KindDevice, &p.interKey.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			if !dt.AuthorityKeyID.present() || !dt.SubjectKeyID.present() || dt.Serial.Count != 16 || !dt.NotBefore.present() {
				t.Fatalf("device template locations %+v", dt)
			}
			comp, err := Compress(leaf, dt)
			if err != nil {
				t.Fatal(err)
			}
			if comp.TemplateID() != 1 || comp.SNSource() != SNPubKeyHash || comp.FormatVersion() != 0 || comp[71] != 0 {
				t.Fatalf("compressed header % x", comp[64:])
			}
			if sid := comp.SignerID(); !bytes.Equal(sid[:], leaf.AuthorityKeyId[:2]) {
				t.Fatalf("signer id % x", sid)
			}
			der, err := Decompress(&comp, dt, &k.PublicKey, &p.interKey.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(der, leaf.Raw) {
				t.Fatal("decompressed device certificate differs")
			}
			// The template survives JSON (how the agent stores it).
			b, _ := json.Marshal(dt)
			var dt2 Template
			if err := json.Unmarshal(b, &dt2); err != nil {
				t.Fatal(err)
			}
			if der2, err := Decompress(&comp, &dt2, &k.PublicKey, &p.interKey.PublicKey); err != nil || !bytes.Equal(der2, leaf.Raw) {
				t.Fatalf("after JSON: %v", err)
			}
			// Another key gives another (valid-looking) certificate whose
			// signature does not verify: the key is bound.
			k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			der3, err := Decompress(&comp, dt, &k2.PublicKey, &p.interKey.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			c3, err := x509.ParseCertificate(der3)
			if err != nil {
				t.Fatal(err)
			}
			if c3.CheckSignatureFrom(p.inter) == nil {
				t.Fatal("certificate rebuilt with another key verifies")
			}
		})
	}
	t.Run("signer certificate with stored dates and serial", func(t *testing.T) {
		st, err := NewTemplate(p.inter, KindSigner, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st.NotBefore.present() || st.Serial.present() || st.SNSource != SNStored {
			t.Fatalf("signer template %+v", st)
		}
		comp, err := Compress(p.inter, st)
		if err != nil {
			t.Fatal(err)
		}
		der, err := Decompress(&comp, st, &p.interKey.PublicKey, nil)
		if err != nil || !bytes.Equal(der, p.inter.Raw) {
			t.Fatalf("signer round trip: %v", err)
		}
		if err := CheckDeviceChain(p.issueDevice(t, &k.PublicKey, "X", leafOpts{}), p.inter); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNotCompressible(t *testing.T) {
	p := newTestPKI(t)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	nb := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	k384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ca384Tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "p384"}, NotBefore: nb, NotAfter: nb.AddDate(5, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, ca384Tmpl, ca384Tmpl, &k384.PublicKey, k384)
	ca384, _ := x509.ParseCertificate(der)
	cases := []struct {
		name string
		o    leafOpts
		why  string
	}{
		{"364 days", leafOpts{notBefore: nb, notAfter: nb.Add(364 * 24 * time.Hour)}, "whole number of years"},
		{"not on the hour", leafOpts{notBefore: nb.Add(90 * time.Second), notAfter: nb.Add(90*time.Second).AddDate(1, 0, 0)}, "whole number of years"},
		{"minutes", leafOpts{notBefore: nb.Add(30 * time.Minute), notAfter: nb.AddDate(2, 0, 0).Add(30 * time.Minute)}, "whole number of years"},
		{"random serial", leafOpts{serial: big.NewInt(123456789)}, "serial"},
		{"P-384 signer", leafOpts{signer: k384, issuer: ca384}, "signature"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			leaf := p.issueDevice(t, &k.PublicKey, "S1", tt.o)
			_, err := NewTemplate(leaf, KindDevice, &p.interKey.PublicKey)
			if !errors.Is(err, ErrNotCompressible) || !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("got %v, want not compressible (%s)", err, tt.why)
			}
		})
	}
	t.Run("template of another certificate", func(t *testing.T) {
		leaf := p.issueDevice(t, &k.PublicKey, "S1", leafOpts{})
		other := p.issueDevice(t, &k.PublicKey, "S2-longer", leafOpts{})
		tmpl, err := NewTemplate(leaf, KindDevice, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckCompressible(other, tmpl); !errors.Is(err, ErrNotCompressible) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestDecompressRefusesOtherDefinitions(t *testing.T) {
	p := newTestPKI(t)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := p.issueDevice(t, &k.PublicKey, "D", leafOpts{})
	dt, err := NewTemplate(leaf, KindDevice, &p.interKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	comp, _ := Compress(leaf, dt)
	other := comp
	other[69] = 0x20 // template 2
	if _, err := Decompress(&other, dt, &k.PublicKey, &p.interKey.PublicKey); err == nil {
		t.Fatal("compressed certificate of another template accepted")
	}
	other = comp
	other[70] |= 0x01 // format version 1
	if _, err := Decompress(&other, dt, &k.PublicKey, &p.interKey.PublicKey); err == nil {
		t.Fatal("unknown format version accepted")
	}
	if _, err := Decompress(&comp, dt, &k.PublicKey, nil); err == nil {
		t.Fatal("AKI rebuilt without the signer key")
	}
	if _, err := Decompress(&comp, nil, &k.PublicKey, nil); err == nil {
		t.Fatal("nil template accepted")
	}
	if err := CheckDeviceChain(leaf, leaf); err == nil {
		t.Fatal("leaf as its own signer accepted")
	}
}
