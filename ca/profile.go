package ca

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrProfile reports an invalid certificate profile.
var ErrProfile = errors.New("ca: invalid certificate profile")

// OIDTPM20HWType is the hwType used in HardwareModuleName for TPM 2.0
// devices (TCG OID 2.23.133.1.2, as used by the TCG IDevID specification).
var OIDTPM20HWType = asn1.ObjectIdentifier{2, 23, 133, 1, 2}

// Profile is the device certificate profile, kept as data (a YAML or JSON
// file) so security staff can review it without reading code.
//
// Example (JSON; the YAML form uses the same keys):
//
//	{
//	  "name": "tpm-device",
//	  "validity": "10y",
//	  "extKeyUsages": ["codeSigning", "clientAuth"],
//	  "crlDistributionPoints": ["http://pki.example/wsc-int.crl"],
//	  "organization": "Example Devices Ltd",
//	  "commonName": "{{.Serial}}",
//	  "dnsNames": ["{{.Serial | lower}}.devices.wsc.local"],
//	  "hwModuleOID": "2.23.133.1.2"
//	}
//
// Templates are Go text/template strings over NameData.
type Profile struct {
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	// Validity is how long device certificates are valid: a duration
	// ("15y", "90d", "720h"), or "until-issuer-expiry" (the issuing
	// intermediate's notAfter). A duration the intermediate cannot cover is
	// refused when the CA opens with the profile (CheckValidity), never
	// shortened. Leave it empty when NotAfter is set.
	Validity Duration `json:"validity,omitempty" yaml:"validity,omitempty"`
	// NotAfter "99991231235959Z" gives device certificates the IEEE 802.1AR
	// / RFC 5280 §4.1.2.5 value for "no well-defined expiration date"
	// (a DevID lives as long as the device). No other value is accepted.
	NotAfter              string   `json:"notAfter,omitempty" yaml:"notAfter,omitempty"`
	ExtKeyUsages          []string `json:"extKeyUsages,omitempty" yaml:"extKeyUsages,omitempty"`
	CRLDistributionPoints []string `json:"crlDistributionPoints,omitempty" yaml:"crlDistributionPoints,omitempty"`
	Organization          string   `json:"organization,omitempty" yaml:"organization,omitempty"`
	CommonName            string   `json:"commonName,omitempty" yaml:"commonName,omitempty"`
	DNSNames              []string `json:"dnsNames,omitempty" yaml:"dnsNames,omitempty"`
	// HWModuleOID is the hwType of secure-element (atecc608) certificates;
	// TPM certificates always carry TCG's 2.23.133.1.2 and unattested ones
	// oidArc.2.3 (see OIDsFor).
	HWModuleOID string `json:"hwModuleOID,omitempty" yaml:"hwModuleOID,omitempty"`
	// OIDArc is the arc of wsc's certificate-policy and hwType OIDs
	// (default DefaultOIDArc; docs/certificate-profile.md).
	OIDArc string `json:"oidArc,omitempty" yaml:"oidArc,omitempty"`

	mu       sync.Mutex // guards compilation of a Profile built in Go
	compiled bool
	ekus     []x509.ExtKeyUsage
	cnTmpl   *template.Template
	dnTmpl   []*template.Template
	hwOID    asn1.ObjectIdentifier // secure-element hwType; nil: the arc's
	oidArc   asn1.ObjectIdentifier
}

// NameData is the data the profile name templates are evaluated with. It is
// station data (scanned labels, work order, Hello reply), never CSR content.
type NameData struct {
	Serial    string
	Model     string
	Backend   string
	WorkOrder string
}

// Duration is a time.Duration that reads "720h", "90d" or "10y" (365 days) in JSON.
type Duration time.Duration

// ValidityUntilIssuerExpiry is the Duration of `validity:
// until-issuer-expiry`: device certificates end when their issuing
// intermediate ends.
const ValidityUntilIssuerExpiry Duration = -1

// UntilIssuerExpiry is the profile spelling of ValidityUntilIssuerExpiry.
const UntilIssuerExpiry = "until-issuer-expiry"

// NoWellDefinedExpiry is the only NotAfter value a profile accepts: the
// GeneralizedTime 99991231235959Z of IEEE 802.1AR and RFC 5280 §4.1.2.5.
const NoWellDefinedExpiry = "99991231235959Z"

// noExpiryTime is NoWellDefinedExpiry as a time.
var noExpiryTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// ErrValidity: the profile's validity cannot be honoured by the issuer.
var ErrValidity = errors.New("ca: device validity cannot be honoured")

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string: %w", err)
	}
	if s == UntilIssuerExpiry {
		*d = ValidityUntilIssuerExpiry
		return nil
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("duration must be a string: %w", err)
	}
	if s == UntilIssuerExpiry {
		*d = ValidityUntilIssuerExpiry
		return nil
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	if d == ValidityUntilIssuerExpiry {
		return json.Marshal(UntilIssuerExpiry)
	}
	return json.Marshal(time.Duration(d).String())
}

// ParseDuration is time.ParseDuration plus the suffixes "d" (day) and "y" (365 days).
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "y": 365 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.Atoi(n)
			if err != nil {
				return 0, fmt.Errorf("duration %q: %w", s, ErrProfile)
			}
			return time.Duration(v) * unit, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: %w", s, ErrProfile)
	}
	return v, nil
}

// DefaultProfile returns the built-in device profile: valid until the
// issuing intermediate expires, EKU codeSigning + clientAuth, CN = device
// serial, no DNS names, TPM 2.0 hwType.
func DefaultProfile() *Profile {
	p := &Profile{
		Name:         "default",
		Validity:     ValidityUntilIssuerExpiry,
		ExtKeyUsages: []string{"codeSigning", "clientAuth"},
		CommonName:   "{{.Serial}}",
	}
	if err := p.compile(); err != nil {
		panic(err) // static data
	}
	return p
}

// LoadProfile reads and validates a profile file: YAML for *.yaml/*.yml,
// JSON otherwise.
func LoadProfile(path string) (*Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load profile: %w", err)
	}
	if ext := strings.ToLower(filepath.Ext(path)); ext == ".yaml" || ext == ".yml" {
		return ParseProfileYAML(b)
	}
	return ParseProfile(b)
}

// ParseProfileYAML parses and validates a YAML profile; unknown keys are refused.
func ParseProfileYAML(b []byte) (*Profile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("parse profile: %w: %w", ErrProfile, err)
	}
	if err := p.compile(); err != nil {
		return nil, err
	}
	return &p, nil
}

// ParseProfile parses and validates a JSON profile. Unknown fields are refused
// so a typo cannot silently drop a constraint.
func ParseProfile(b []byte) (*Profile, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("parse profile: %w: %w", ErrProfile, err)
	}
	if err := p.compile(); err != nil {
		return nil, err
	}
	return &p, nil
}

var ekuNames = map[string]x509.ExtKeyUsage{
	"codeSigning":     x509.ExtKeyUsageCodeSigning,
	"clientAuth":      x509.ExtKeyUsageClientAuth,
	"serverAuth":      x509.ExtKeyUsageServerAuth,
	"emailProtection": x509.ExtKeyUsageEmailProtection,
	"timeStamping":    x509.ExtKeyUsageTimeStamping,
	"ocspSigning":     x509.ExtKeyUsageOCSPSigning,
}

var tmplFuncs = template.FuncMap{"lower": strings.ToLower, "upper": strings.ToUpper}

func (p *Profile) compile() error {
	switch {
	case p.NotAfter != "" && p.NotAfter != NoWellDefinedExpiry:
		return fmt.Errorf("profile %q: notAfter %q: only %s (802.1AR no well-defined expiration) is accepted: %w", p.Name, p.NotAfter, NoWellDefinedExpiry, ErrProfile)
	case p.NotAfter != "" && p.Validity != 0:
		return fmt.Errorf("profile %q: give validity or notAfter, not both: %w", p.Name, ErrProfile)
	case p.NotAfter == "" && p.Validity == 0:
		return fmt.Errorf("profile %q: validity is required (a duration such as 5y, or %s), or notAfter: %s: %w", p.Name, UntilIssuerExpiry, NoWellDefinedExpiry, ErrProfile)
	case p.Validity < 0 && p.Validity != ValidityUntilIssuerExpiry:
		return fmt.Errorf("profile %q: validity must be > 0: %w", p.Name, ErrProfile)
	}
	if len(p.ExtKeyUsages) == 0 {
		p.ExtKeyUsages = []string{"codeSigning", "clientAuth"}
	}
	p.ekus = p.ekus[:0]
	for _, n := range p.ExtKeyUsages {
		e, ok := ekuNames[n]
		if !ok {
			return fmt.Errorf("profile %q: unknown extKeyUsage %q: %w", p.Name, n, ErrProfile)
		}
		p.ekus = append(p.ekus, e)
	}
	if p.CommonName == "" {
		p.CommonName = "{{.Serial}}"
	}
	var err error
	if p.cnTmpl, err = template.New("cn").Funcs(tmplFuncs).Option("missingkey=error").Parse(p.CommonName); err != nil {
		return fmt.Errorf("profile %q: commonName: %w: %w", p.Name, ErrProfile, err)
	}
	p.dnTmpl = nil
	for i, s := range p.DNSNames {
		t, err := template.New("dns").Funcs(tmplFuncs).Option("missingkey=error").Parse(s)
		if err != nil {
			return fmt.Errorf("profile %q: dnsNames[%d]: %w: %w", p.Name, i, ErrProfile, err)
		}
		p.dnTmpl = append(p.dnTmpl, t)
	}
	p.hwOID, p.oidArc = nil, nil
	if p.OIDArc != "" {
		arc, err := parseOID(p.OIDArc)
		if err != nil {
			return fmt.Errorf("profile %q: oidArc: %w", p.Name, err)
		}
		p.oidArc = arc
	}
	if p.HWModuleOID != "" {
		oid, err := parseOID(p.HWModuleOID)
		if err != nil {
			return fmt.Errorf("profile %q: hwModuleOID: %w", p.Name, err)
		}
		p.hwOID = oid
	}
	for _, u := range p.CRLDistributionPoints {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "ldap://") && !strings.HasPrefix(u, "file://") {
			return fmt.Errorf("profile %q: CRL distribution point %q is not a URL: %w", p.Name, u, ErrProfile)
		}
	}
	p.compiled = true
	return nil
}

// CheckValidity tells whether issuer can honour the profile's validity
// for a certificate issued at now: a fixed duration must end before the
// issuer does (the CA refuses rather than shortening it). Open runs it on
// the profile it is given, so a profile asking for 15 years under a
// 5-year intermediate is refused when the station starts.
func (p *Profile) CheckValidity(issuer *x509.Certificate, now time.Time) error {
	if p.NotAfter != "" || p.Validity == ValidityUntilIssuerExpiry || p.Validity <= 0 {
		return nil
	}
	end := now.Add(time.Duration(p.Validity))
	if end.After(issuer.NotAfter) {
		return fmt.Errorf("profile %q asks for %s of validity (until %s) but the intermediate %q expires on %s: rotate the intermediate, or set `validity: %s` or `notAfter: %s`: %w",
			p.Name, time.Duration(p.Validity), end.Format(time.DateOnly), issuer.Subject.CommonName, issuer.NotAfter.Format(time.DateOnly), UntilIssuerExpiry, NoWellDefinedExpiry, ErrValidity)
	}
	return nil
}

// Validate checks and compiles a Profile built in Go (LoadProfile and
// ParseProfile return validated profiles). Change no field after first use.
func (p *Profile) Validate() error { return p.ready() }

func (p *Profile) ready() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.compiled {
		return nil
	}
	return p.compile()
}

// Names evaluates the profile's name templates (CN and DNS SANs) for d.
func (p *Profile) Names(d NameData) (cn string, dns []string, err error) {
	if err := p.ready(); err != nil {
		return "", nil, err
	}
	var b strings.Builder
	if err := p.cnTmpl.Execute(&b, d); err != nil {
		return "", nil, fmt.Errorf("profile %q: commonName: %w", p.Name, err)
	}
	cn = b.String()
	for i, t := range p.dnTmpl {
		b.Reset()
		if err := t.Execute(&b, d); err != nil {
			return "", nil, fmt.Errorf("profile %q: dnsNames[%d]: %w", p.Name, i, err)
		}
		dns = append(dns, b.String())
	}
	return cn, dns, nil
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("OID %q: %w", s, ErrProfile)
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("OID %q: %w", s, ErrProfile)
		}
		oid[i] = v
	}
	return oid, nil
}
