package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"testing"
)

// TestProofOIDs issues one certificate per proof and checks that each
// carries its own certificate policy and hwType, that a request naming no
// proof is labelled unattested (never TPM), that an unknown proof is
// refused, and that a profile's oidArc moves every wsc OID under it.
func TestProofOIDs(t *testing.T) {
	c, _ := newTestCA(t)
	issue := func(proof string, prof *Profile) (*x509.Certificate, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
		if err != nil {
			t.Fatal(err)
		}
		chain, err := c.Issue(context.Background(), csr, IssueRequest{DeviceSerial: "DEV-1", Proof: proof, Profile: prof})
		if err != nil {
			return nil, err
		}
		return chain[0], nil
	}
	arc := DefaultOIDArc
	sub := func(a ...int) asn1.ObjectIdentifier { return append(append(asn1.ObjectIdentifier{}, arc...), a...) }
	for _, tc := range []struct {
		proof, want string
		hw          asn1.ObjectIdentifier
	}{
		{ProofTPM, ProofTPM, OIDTPM20HWType},
		{ProofATECC608, ProofATECC608, sub(2, 2)},
		{ProofUnattested, ProofUnattested, sub(2, 3)},
		{"", ProofUnattested, sub(2, 3)},
	} {
		leaf, err := issue(tc.proof, nil)
		if err != nil {
			t.Fatalf("proof %q: %v", tc.proof, err)
		}
		if got := CertificateProof(leaf, nil); got != tc.want {
			t.Errorf("proof %q: certificate says %q", tc.proof, got)
		}
		hw, err := HardwareModuleNames(leaf)
		if err != nil || len(hw) != 1 || !hw[0].Type.Equal(tc.hw) {
			t.Errorf("proof %q: hwType %+v %v, want %s", tc.proof, hw, err, tc.hw)
		}
	}
	if _, err := issue("TPM", nil); !errors.Is(err, ErrIssueRequest) {
		t.Errorf("unknown proof \"TPM\": %v, want ErrIssueRequest", err)
	}
	prof := DefaultProfile()
	prof.Name, prof.OIDArc, prof.compiled = "own-arc", "1.3.6.1.4.1.99999.7", false
	leaf, err := issue(ProofATECC608, prof)
	if err != nil {
		t.Fatal(err)
	}
	own := asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 7}
	if got := CertificateProof(leaf, own); got != ProofATECC608 {
		t.Errorf("oidArc: certificate says %q under %s (policies %v)", got, own, leaf.Policies)
	}
	if got := CertificateProof(leaf, nil); got != "" {
		t.Errorf("oidArc: the default arc still matched %q", got)
	}
}
