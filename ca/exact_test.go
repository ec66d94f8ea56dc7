package ca

import (
	"context"
	"errors"
	"math/big"
	"testing"
	"time"
)

// TestIssueExactSerialAndDates: a caller-given serial number and validity
// are used exactly (no backdate, no rounding); openssl still verifies.
func TestIssueExactSerialAndDates(t *testing.T) {
	c, dir := newTestCA(t)
	key := p256(t)
	nb := time.Now().UTC().Truncate(time.Hour)
	na := time.Date(nb.Year()+2, nb.Month(), nb.Day(), nb.Hour(), 0, 0, 0, time.UTC)
	sn, _ := new(big.Int).SetString("40112233445566778899aabbccddeeff", 16)
	chain, err := c.Issue(context.Background(), makeCSR(t, key, "x"), IssueRequest{
		DeviceSerial: "0123AABBCCDDEEFF01", SerialNumber: sn, NotBefore: nb, NotAfter: na,
	})
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	if leaf.SerialNumber.Cmp(sn) != 0 {
		t.Errorf("serial %x, want %x", leaf.SerialNumber, sn)
	}
	if !leaf.NotBefore.Equal(nb) || !leaf.NotAfter.Equal(na) {
		t.Errorf("validity %v .. %v, want %v .. %v", leaf.NotBefore, leaf.NotAfter, nb, na)
	}
	if out, err := opensslVerify(t, dir, c.Roots(), chain[1:], leaf, "-purpose", "sslclient"); err != nil {
		t.Errorf("openssl verify: %v\n%s", err, out)
	}
}

// TestIssueExactRefusals: exact parameters the CA cannot honour are refused,
// never adjusted.
func TestIssueExactRefusals(t *testing.T) {
	c, _ := newTestCA(t)
	iss := c.Issuer()
	now := time.Now().UTC().Truncate(time.Hour)
	later := now.Add(24 * time.Hour)
	big21 := new(big.Int).Lsh(big.NewInt(1), 159) // 20 bytes with the top bit set: 21 octets in DER
	tests := []struct {
		name string
		req  IssueRequest
	}{
		{"only NotBefore", IssueRequest{NotBefore: now}},
		{"only NotAfter", IssueRequest{NotAfter: later}},
		{"dates and Validity", IssueRequest{NotBefore: now, NotAfter: later, Validity: time.Hour}},
		{"NotAfter before NotBefore", IssueRequest{NotBefore: later, NotAfter: now}},
		{"outlives the issuer", IssueRequest{NotBefore: now, NotAfter: iss.NotAfter.Add(time.Hour)}},
		{"backdated", IssueRequest{NotBefore: now.Add(-2 * time.Hour), NotAfter: later}},
		{"already expired", IssueRequest{NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(-time.Minute)}},
		{"zero serial", IssueRequest{SerialNumber: big.NewInt(0)}},
		{"negative serial", IssueRequest{SerialNumber: big.NewInt(-5)}},
		{"serial over 20 octets", IssueRequest{SerialNumber: big21}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			req.DeviceSerial = "DEV-1"
			_, err := c.Issue(context.Background(), makeCSR(t, p256(t), "x"), req)
			if !errors.Is(err, ErrIssueRequest) {
				t.Fatalf("err = %v, want ErrIssueRequest", err)
			}
		})
	}
	// 20 octets with the top bit clear is the largest serial allowed.
	ok := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 159), big.NewInt(1))
	if _, err := c.Issue(context.Background(), makeCSR(t, p256(t), "x"), IssueRequest{DeviceSerial: "DEV-2", SerialNumber: ok, Validity: time.Hour}); err != nil {
		t.Fatalf("20-octet serial refused: %v", err)
	}
}
