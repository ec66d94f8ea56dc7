package ca

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrInspect: the file holds no certificate, CSR or CRL.
var ErrInspect = errors.New("ca: not a certificate, CSR or CRL")

// Inspected is one object of a file shown by `wsc ca inspect`. Text fields
// that come from the file are escaped when rendered (String), so control
// characters in a subject cannot forge terminal output.
type Inspected struct {
	Type        string    `json:"type"` // certificate, csr, crl
	Subject     string    `json:"subject,omitempty"`
	Issuer      string    `json:"issuer,omitempty"`
	Serial      string    `json:"serial,omitempty"`
	NotBefore   time.Time `json:"not_before,omitzero"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	IsCA        bool      `json:"is_ca,omitempty"`
	PathLen     *int      `json:"path_len,omitempty"`
	KeyID       string    `json:"key_id,omitempty"`
	AuthorityID string    `json:"authority_key_id,omitempty"`
	PublicKey   string    `json:"public_key,omitempty"`
	DNSNames    []string  `json:"dns_names,omitempty"`
	Permitted   []string  `json:"permitted_dns_domains,omitempty"`
	KeyUsage    []string  `json:"key_usage,omitempty"`
	ExtKeyUsage []string  `json:"ext_key_usage,omitempty"`
	CRLNumber   string    `json:"crl_number,omitempty"`
	ThisUpdate  time.Time `json:"this_update,omitzero"`
	NextUpdate  time.Time `json:"next_update,omitzero"`
	Revoked     []string  `json:"revoked,omitempty"`
	SelfSigned  bool      `json:"self_signed,omitempty"`
	SignatureOK *bool     `json:"signature_ok,omitempty"`
	SHA256      string    `json:"sha256"`
}

// Inspect parses every certificate, CSR and CRL in raw (PEM, or a single
// DER object).
func Inspect(raw []byte) ([]Inspected, error) {
	var out []Inspected
	rest := raw
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		it, err := inspectDER(blk.Type, blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	if len(out) > 0 {
		return out, nil
	}
	for _, typ := range []string{"CERTIFICATE", "CERTIFICATE REQUEST", "X509 CRL"} {
		if it, err := inspectDER(typ, raw); err == nil {
			return []Inspected{it}, nil
		}
	}
	return nil, ErrInspect
}

func inspectDER(typ string, der []byte) (Inspected, error) {
	it := Inspected{SHA256: Fingerprint(der)}
	switch typ {
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return it, fmt.Errorf("certificate: %w", err)
		}
		it.Type = "certificate"
		it.Subject, it.Issuer, it.Serial = c.Subject.String(), c.Issuer.String(), c.SerialNumber.Text(16)
		it.NotBefore, it.NotAfter, it.IsCA = c.NotBefore, c.NotAfter, c.IsCA
		if c.IsCA && c.BasicConstraintsValid && (c.MaxPathLen > 0 || c.MaxPathLenZero) {
			n := c.MaxPathLen
			it.PathLen = &n
		}
		it.KeyID, it.AuthorityID = hex.EncodeToString(c.SubjectKeyId), hex.EncodeToString(c.AuthorityKeyId)
		it.PublicKey = describeKey(c.PublicKey)
		it.DNSNames, it.Permitted = c.DNSNames, c.PermittedDNSDomains
		it.KeyUsage = keyUsages(c.KeyUsage)
		for _, e := range c.ExtKeyUsage {
			it.ExtKeyUsage = append(it.ExtKeyUsage, ekuName(e))
		}
		if string(c.RawIssuer) == string(c.RawSubject) {
			ok := c.CheckSignatureFrom(c) == nil
			it.SelfSigned, it.SignatureOK = ok, &ok
		}
	case "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST":
		r, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return it, fmt.Errorf("CSR: %w", err)
		}
		it.Type = "csr"
		it.Subject, it.PublicKey, it.DNSNames = r.Subject.String(), describeKey(r.PublicKey), r.DNSNames
		ok := r.CheckSignature() == nil
		it.SignatureOK = &ok
	case "X509 CRL":
		l, err := x509.ParseRevocationList(der)
		if err != nil {
			return it, fmt.Errorf("CRL: %w", err)
		}
		it.Type = "crl"
		it.Issuer, it.AuthorityID = l.Issuer.String(), hex.EncodeToString(l.AuthorityKeyId)
		if l.Number != nil {
			it.CRLNumber = l.Number.String()
		}
		it.ThisUpdate, it.NextUpdate = l.ThisUpdate, l.NextUpdate
		for _, e := range l.RevokedCertificateEntries {
			it.Revoked = append(it.Revoked, fmt.Sprintf("%s %s %s", e.SerialNumber.Text(16), e.RevocationTime.UTC().Format(time.RFC3339), ReasonName(e.ReasonCode)))
		}
	default:
		return it, fmt.Errorf("PEM block %q: %w", typ, ErrInspect)
	}
	return it, nil
}

func describeKey(k any) string {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d bits", k.N.BitLen())
	default:
		return fmt.Sprintf("%T", k)
	}
}

func keyUsages(u x509.KeyUsage) []string {
	names := []string{"digitalSignature", "contentCommitment", "keyEncipherment", "dataEncipherment", "keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"}
	var out []string
	for i, n := range names {
		if u&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

func ekuName(e x509.ExtKeyUsage) string {
	for n, v := range ekuNames {
		if v == e {
			return n
		}
	}
	return fmt.Sprintf("eku(%d)", e)
}

// escape renders untrusted text with control characters visible.
func escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// String renders the object for the terminal.
func (it Inspected) String() string {
	var b strings.Builder
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "  %-14s %s\n", k+":", escape(v))
		}
	}
	fmt.Fprintf(&b, "%s\n", it.Type)
	line("subject", it.Subject)
	line("issuer", it.Issuer)
	line("serial", it.Serial)
	if !it.NotBefore.IsZero() {
		line("valid", it.NotBefore.UTC().Format(time.RFC3339)+" .. "+it.NotAfter.UTC().Format(time.RFC3339))
	}
	if it.Type == "certificate" {
		ca := "no"
		if it.IsCA {
			ca = "yes"
			if it.PathLen != nil {
				ca += fmt.Sprintf(", path length %d", *it.PathLen)
			} else {
				ca += ", no path length limit"
			}
		}
		line("CA", ca)
	}
	line("key", it.PublicKey)
	line("key id", it.KeyID)
	line("authority key", it.AuthorityID)
	line("DNS names", strings.Join(it.DNSNames, ", "))
	line("permitted DNS", strings.Join(it.Permitted, ", "))
	line("key usage", strings.Join(it.KeyUsage, ", "))
	line("ext key usage", strings.Join(it.ExtKeyUsage, ", "))
	line("CRL number", it.CRLNumber)
	if !it.ThisUpdate.IsZero() {
		line("this update", it.ThisUpdate.UTC().Format(time.RFC3339))
		line("next update", it.NextUpdate.UTC().Format(time.RFC3339))
		line("revoked", fmt.Sprintf("%d entries", len(it.Revoked)))
		for _, r := range it.Revoked {
			line("  entry", r)
		}
	}
	if it.SelfSigned {
		line("self-signed", "yes (a root)")
	}
	if it.SignatureOK != nil {
		line("signature", map[bool]string{true: "valid", false: "INVALID"}[*it.SignatureOK])
	}
	line("SHA-256", it.SHA256)
	return b.String()
}
