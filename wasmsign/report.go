package wasmsign

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"time"
)

// Report is a batch verification report.
type Report struct {
	// VerifiedAt is the instant certificates were checked against.
	VerifiedAt time.Time `json:"verified_at"`
	// AtExplicit tells that VerifiedAt was chosen explicitly (not "now").
	AtExplicit bool `json:"at_explicit"`
	// Total, Valid, Invalid and Errors count the results.
	Total   int `json:"total"`
	Valid   int `json:"valid"`
	Invalid int `json:"invalid"`
	Errors  int `json:"errors"`
	// RevocationUnchecked counts the results accepted without a CRL for
	// some CA on their path (the policy's AllowMissingCRL); each of those
	// results says so itself.
	RevocationUnchecked int `json:"revocation_unchecked"`
	// Results holds one entry per module.
	Results []Result `json:"results"`
}

// NewReport summarises results. The verification time and its explicit
// flag are taken from the results (a batch shares one Verifier).
func NewReport(results []Result) *Report {
	r := &Report{Results: results, Total: len(results)}
	if r.Results == nil {
		r.Results = []Result{}
	}
	for i, res := range results {
		if i == 0 || res.AtExplicit {
			r.VerifiedAt, r.AtExplicit = res.VerifiedAt, res.AtExplicit
		}
		if res.RevocationUnchecked {
			r.RevocationUnchecked++
		}
		switch res.Status {
		case StatusValid:
			r.Valid++
		case StatusInvalid:
			r.Invalid++
		default:
			r.Errors++
		}
	}
	return r
}

// OK reports whether every module is valid.
func (r *Report) OK() bool { return r.Valid == r.Total }

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write JSON report: %w", err)
	}
	return nil
}

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the report as JUnit XML: one test case per module, an
// invalid module is a failure, an unreadable one an error (each case's
// system-out names the signer serial, the result and its reason_code); the verification
// time, its explicit flag and the number of results accepted without a CRL
// check are suite properties, and each such result's system-out carries
// its warning. Text from modules and certificates goes through
// encoding/xml, which escapes markup and replaces every character XML 1.0
// forbids (C0 controls other than tab and newlines, U+FFFE/U+FFFF, invalid
// UTF-8) with U+FFFD, so the file stays well-formed whatever a certificate
// says.
func (r *Report) WriteJUnit(w io.Writer) error {
	s := junitSuite{
		Name: "wasmsign.verify", Tests: r.Total, Failures: r.Invalid, Errors: r.Errors,
		Timestamp: r.VerifiedAt.UTC().Format(time.RFC3339),
		Properties: []junitProperty{
			{Name: "verified_at", Value: r.VerifiedAt.UTC().Format(time.RFC3339)},
			{Name: "at_explicit", Value: fmt.Sprint(r.AtExplicit)},
			{Name: "revocation_unchecked", Value: fmt.Sprint(r.RevocationUnchecked)},
		},
	}
	for _, res := range r.Results {
		c := junitCase{Name: res.File, Classname: "wasmsign.verify",
			SystemOut: fmt.Sprintf("signer_serial=%s device_serial=%s result=%s reason_code=%s revocation_unchecked=%t",
				res.SignerSerial, res.DeviceSerial, res.Status, res.ReasonCode, res.RevocationUnchecked)}
		if res.Warning != "" {
			c.SystemOut += "\nWARNING: " + res.Warning
		}
		p := &junitProblem{Message: res.Reason, Type: string(res.Status), Text: res.Reason}
		switch res.Status {
		case StatusValid:
		case StatusInvalid:
			c.Failure = p
		default:
			c.Error = p
		}
		s.Cases = append(s.Cases, c)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("write JUnit report: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(junitSuites{Suites: []junitSuite{s}}); err != nil {
		return fmt.Errorf("write JUnit report: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// WriteJSON writes results as a JSON report.
func WriteJSON(w io.Writer, results []Result) error { return NewReport(results).WriteJSON(w) }

// WriteJUnit writes results as a JUnit XML report.
func WriteJUnit(w io.Writer, results []Result) error { return NewReport(results).WriteJUnit(w) }
