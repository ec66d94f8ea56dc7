package tpm

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"
)

// TestSigningKey: the LDevID is a second key, certified by the IAK like the
// IDevID (the same Certify checks pass), signs on its own, signs its CSR,
// has its own chain next to the IDevID's, and Reset removes it.
func TestSigningKey(t *testing.T) {
	d, _ := newDevice(t, DefaultConfig())
	nonce := []byte("ldevid-nonce-0123456789")
	if _, err := d.CreateSigningKey(nonce); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("signing key before the IAK: %v", err)
	}
	ev, err := d.CreateKeys(nonce)
	if err != nil {
		t.Fatal(err)
	}
	sev, err := d.CreateSigningKey(nonce)
	if err != nil || !sev.Created {
		t.Fatalf("CreateSigningKey: %v", err)
	}
	if err := verifyCertify(t, &Evidence{IAKPublic: sev.IAKPublic, IDevIDPublic: sev.LDevIDPublic, CertifyInfo: sev.CertifyInfo, CertifySignature: sev.CertifySignature}, nonce); err != nil {
		t.Fatalf("certify of the LDevID: %v", err)
	}
	if err := verifyCertify(t, &Evidence{IAKPublic: sev.IAKPublic, IDevIDPublic: sev.LDevIDPublic, CertifyInfo: sev.CertifyInfo, CertifySignature: sev.CertifySignature}, []byte("other")); err == nil {
		t.Fatal("certify accepted with another nonce")
	}
	again, err := d.CreateSigningKey(nonce)
	if err != nil || again.Created || string(again.LDevIDPublic) != string(sev.LDevIDPublic) {
		t.Fatalf("second CreateSigningKey made another key: %v", err)
	}
	lpub, ipub := mustECDSA(t, sev.LDevIDPublic), mustECDSA(t, ev.IDevIDPublic)
	if lpub.Equal(ipub) {
		t.Fatal("LDevID is the IDevID")
	}
	dg := sha256.Sum256([]byte("firmware"))
	sig, err := d.SignDigestLDevID(dg[:])
	if err != nil || !ecdsa.VerifyASN1(lpub, dg[:], sig) || ecdsa.VerifyASN1(ipub, dg[:], sig) {
		t.Fatalf("LDevID signature: %v", err)
	}
	csrDER, err := d.SigningCSR(pkix.Name{SerialNumber: "DEV"})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil || csr.CheckSignature() != nil || !lpub.Equal(csr.PublicKey) {
		t.Fatalf("signing CSR: %v", err)
	}
	ichain, lchain := makeChain(t, 2, 1), makeChain(t, 2, 3)
	if _, err := d.WriteChain(ichain); err != nil {
		t.Fatal(err)
	}
	idx, err := d.WriteSigningChain(lchain, true)
	if err != nil || idx[0] != DefaultLDevIDNVBase {
		t.Fatalf("WriteSigningChain: %#x %v", idx, err)
	}
	if got, err := d.ReadSigningChain(); err != nil || !equalChains(got, lchain) {
		t.Fatalf("ReadSigningChain: %v", err)
	}
	if got, err := d.ReadChain(); err != nil || !equalChains(got, ichain) {
		t.Fatalf("IDevID chain disturbed: %v", err)
	}
	if err := d.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadSigningChain(); !errors.Is(err, ErrNoChain) {
		t.Fatalf("signing chain after reset: %v", err)
	}
	if _, err := d.SignDigestLDevID(dg[:]); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("LDevID after reset: %v", err)
	}
}
