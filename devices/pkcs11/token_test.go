//go:build cgo && pkcs11

package pkcs11

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestTokenKeyIsNotExtractable(t *testing.T) {
	uri := newSoftHSM(t)
	tok, err := Open(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	if info := tok.Info(); info.Label != "wsc" || info.Serial == "" || !strings.Contains(info.Manufacturer, "SoftHSM") {
		t.Fatalf("info %+v", info)
	}
	if _, err := tok.FindKey(); !errors.Is(err, ErrNoKey) {
		t.Fatalf("FindKey on an empty token: %v", err)
	}
	k, err := tok.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := k.Attributes()
	if err != nil {
		t.Fatal(err)
	}
	want := KeyAttributes{Token: true, Private: true, Sensitive: true, Extractable: false, AlwaysSensitive: true, NeverExtractable: true}
	if a != want {
		t.Fatalf("attributes %+v, want %+v", a, want)
	}
	if v, err := k.PrivateValue(); !IsSensitiveRefusal(err) || v != nil {
		t.Fatalf("private value readable: %d bytes, %v", len(v), err)
	}
	digest := sha256.Sum256([]byte("m"))
	sig, err := k.Sign(rand.Reader, digest[:], nil)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatal("token signature does not verify")
	}
	// The key persists on the token: a new session finds the same key.
	tok.Close()
	tok2, err := Open(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer tok2.Close()
	k2, err := tok2.FindKey()
	if err != nil || !k2.pub.Equal(k.pub) {
		t.Fatalf("FindKey after reopen: %v", err)
	}
	if _, err := Open(strings.Replace(uri, "token=wsc", "token=other", 1)); err == nil {
		t.Fatal("opened a token that does not exist")
	}
}

func TestTokenChain(t *testing.T) {
	tok, err := Open(newSoftHSM(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	if _, err := tok.ReadChain(); !errors.Is(err, ErrNoChain) {
		t.Fatalf("ReadChain on an empty token: %v", err)
	}
	k, err := tok.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	chain := testChain(t, k)
	if err := tok.WriteChain(chain, false); err != nil {
		t.Fatal(err)
	}
	got, err := tok.ReadChain()
	if err != nil || len(got) != 2 || !bytes.Equal(got[0], chain[0]) || !bytes.Equal(got[1], chain[1]) {
		t.Fatalf("read chain: %v", err)
	}
	// Replace with a shorter chain: no stale certificate stays behind.
	if err := tok.WriteChain(chain[:1], false); err != nil {
		t.Fatal(err)
	}
	if got, _ := tok.ReadChain(); len(got) != 1 {
		t.Fatalf("%d certificates after replace", len(got))
	}
	if err := tok.WriteChain(chain, false); err != nil {
		t.Fatal(err)
	}
	if err := tok.LockChain(); err != nil {
		t.Fatal(err)
	}
	if err := tok.WriteChain(chain[:1], false); !errors.Is(err, ErrLocked) {
		t.Fatalf("write over a locked chain: %v", err)
	}
	if got, _ := tok.ReadChain(); len(got) != 2 || !bytes.Equal(got[0], chain[0]) {
		t.Fatal("locked chain changed")
	}
}

// testChain issues a leaf for k under a throwaway CA.
func testChain(t testing.TB, k *Key) [][]byte {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	ct := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: now, NotAfter: now.AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ct, ct, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{SerialNumber: "P11"}}, k)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(csrDER)
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	lt := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "device"}, NotBefore: now, NotAfter: now.AddDate(1, 0, 0)}
	leaf, err := x509.CreateCertificate(rand.Reader, lt, ca, csr.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{leaf, caDER}
}
