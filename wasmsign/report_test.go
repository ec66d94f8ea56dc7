package wasmsign

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"
	"time"
)

// TestReportsCarryHostileTextSafely: file names, serials and reasons that
// hold control characters, XML-forbidden characters and a bidi override
// give a JSON report that decodes to the exact text and a JUnit report
// that is well-formed XML 1.0 without a control byte; a result accepted
// without a CRL check is marked in both.
func TestReportsCarryHostileTextSafely(t *testing.T) {
	hostile := "SIM\x1b[2J\nFORGED 0 failed\x00\x0c\ufffe\u202e<b>&\"'"
	results := []Result{
		{File: "fw\x1b.wasm", SignerSerial: "01", DeviceSerial: hostile, Status: StatusInvalid, Reason: "revoked: " + hostile,
			VerifiedAt: time.Unix(0, 0)},
		{File: "ok.wasm", SignerSerial: "02", DeviceSerial: "SIM-2", Status: StatusValid, VerifiedAt: time.Unix(0, 0),
			RevocationUnchecked: true, NoCRLFor: []string{"CN=root"}, Warning: "revocation not checked: no CRL for CN=root"},
	}
	rep := NewReport(results)
	if rep.RevocationUnchecked != 1 {
		t.Fatalf("RevocationUnchecked = %d", rep.RevocationUnchecked)
	}

	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Results[0].DeviceSerial != hostile || back.Results[0].File != "fw\x1b.wasm" {
		t.Fatalf("JSON changed the text: %q", back.Results[0].DeviceSerial)
	}
	if !back.Results[1].RevocationUnchecked || back.Results[1].NoCRLFor[0] != "CN=root" || back.RevocationUnchecked != 1 {
		t.Fatalf("JSON lost the CRL flag: %+v", back.Results[1])
	}
	if bytes.ContainsAny(js.Bytes(), "\x1b\x00\x0c") {
		t.Fatal("JSON holds a raw control byte")
	}

	var x bytes.Buffer
	if err := rep.WriteJUnit(&x); err != nil {
		t.Fatal(err)
	}
	for i, c := range x.Bytes() {
		if (c < 0x20 && c != '\n' && c != '\t' && c != '\r') || c == 0x7f {
			t.Fatalf("JUnit holds control byte %#x at %d:\n%s", c, i, x.Bytes())
		}
	}
	if strings.Contains(x.String(), "\ufffe") || strings.Contains(x.String(), "<b>") {
		t.Fatalf("JUnit holds an XML-forbidden character or unescaped markup:\n%s", x.Bytes())
	}
	var suites struct {
		Suites []struct {
			Cases []struct {
				Name    string `xml:"name,attr"`
				Out     string `xml:"system-out"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(x.Bytes(), &suites); err != nil {
		t.Fatalf("JUnit is not well-formed: %v\n%s", err, x.Bytes())
	}
	cs := suites.Suites[0].Cases
	if len(cs) != 2 || cs[0].Failure == nil || !strings.Contains(cs[0].Failure.Message, "FORGED 0 failed") ||
		!strings.Contains(cs[0].Failure.Message, "\n") {
		t.Fatalf("JUnit case 0: %+v", cs[0])
	}
	if !strings.Contains(cs[1].Out, "revocation_unchecked=true") || !strings.Contains(cs[1].Out, "WARNING: revocation not checked") {
		t.Fatalf("JUnit case 1 does not say revocation was not checked: %q", cs[1].Out)
	}
}
