package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Bundle is a trust bundle for verifiers (QA station, wasmsign verify,
// the plant's systems): roots, all intermediates and cross-certificates
// the CA ever used, and optionally one CRL per issuer.
type Bundle struct {
	Roots         []*x509.Certificate
	Intermediates []*x509.Certificate
	CRLs          []*x509.RevocationList
}

// BuildBundle collects the trust bundle. With withCRLs it also generates a
// fresh CRL for every issuer (needs a RevocationStore).
func (c *CA) BuildBundle(ctx context.Context, withCRLs bool) (*Bundle, error) {
	b := &Bundle{Roots: c.Roots()}
	seen := map[string]bool{}
	add := func(cs ...*x509.Certificate) {
		for _, x := range cs {
			if !seen[string(x.Raw)] {
				seen[string(x.Raw)] = true
				b.Intermediates = append(b.Intermediates, x)
			}
		}
	}
	add(c.Intermediates()...)
	c.mu.RLock()
	for _, r := range c.retired {
		add(r.cert)
	}
	c.mu.RUnlock()
	for _, f := range []string{"new-by-old.crt", "old-by-new.crt"} {
		if cs, err := readCerts(filepath.Join(c.dir, CrossDir, f)); err == nil {
			add(cs...)
		}
	}
	if withCRLs {
		crls, err := c.CRLs(ctx)
		if err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		b.CRLs = crls
	}
	return b, nil
}

// PEM encodes the bundle: roots, then intermediates, then X509 CRL blocks.
func (b *Bundle) PEM() []byte {
	var buf bytes.Buffer
	for _, c := range append(append([]*x509.Certificate(nil), b.Roots...), b.Intermediates...) {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	for _, crl := range b.CRLs {
		pem.Encode(&buf, &pem.Block{Type: "X509 CRL", Bytes: crl.Raw})
	}
	return buf.Bytes()
}

// RootPool returns the roots as a CertPool.
func (b *Bundle) RootPool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range b.Roots {
		p.AddCert(c)
	}
	return p
}

// IntermediatePool returns the intermediates and cross-certificates as a CertPool.
func (b *Bundle) IntermediatePool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range b.Intermediates {
		p.AddCert(c)
	}
	return p
}

// WriteFiles writes roots.pem, intermediates.pem and one crl-<skid>.pem per
// CRL into dir (the layout `wsc ca bundle --out DIR` publishes).
func (b *Bundle) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	if err := writeCerts(filepath.Join(dir, "roots.pem"), b.Roots...); err != nil {
		return err
	}
	if err := writeCerts(filepath.Join(dir, "intermediates.pem"), b.Intermediates...); err != nil {
		return err
	}
	for _, crl := range b.CRLs {
		name := "crl-" + hex.EncodeToString(crl.AuthorityKeyId) + ".pem"
		if err := writeFileAtomic(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw}), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// CertInfo summarises one CA certificate for the status report.
type CertInfo struct {
	Subject   string    `json:"subject"`
	KeyID     string    `json:"keyId"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	DaysLeft  int       `json:"daysLeft"`
}

// Status is the CA status report (`wsc ca status`). It holds no secrets.
type Status struct {
	Dir                 string     `json:"dir"`
	Roots               []CertInfo `json:"roots"`
	Issuer              CertInfo   `json:"issuer"`
	RetiredIssuers      []CertInfo `json:"retiredIssuers,omitempty"`
	PermittedDNSDomains []string   `json:"permittedDnsDomains"`
	Profile             string     `json:"profile"`
	RevocationStore     bool       `json:"revocationStore"`
	Warnings            []string   `json:"warnings,omitempty"`
}

// ExpiryWarning is how close to expiry a CA certificate triggers a warning.
const ExpiryWarning = 90 * 24 * time.Hour

// Status reports the CA's certificates, expiry and configuration.
func (c *CA) Status() Status {
	now := c.now()
	info := func(x *x509.Certificate) CertInfo {
		return CertInfo{
			Subject:   x.Subject.String(),
			KeyID:     hex.EncodeToString(x.SubjectKeyId),
			NotBefore: x.NotBefore,
			NotAfter:  x.NotAfter,
			DaysLeft:  int(x.NotAfter.Sub(now).Hours() / 24),
		}
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := Status{
		Dir:                 c.dir,
		Issuer:              info(c.issuerChain[0]),
		PermittedDNSDomains: c.issuerChain[0].PermittedDNSDomains,
		Profile:             c.profile.Name,
		RevocationStore:     c.revocations != nil,
	}
	for _, r := range c.roots {
		s.Roots = append(s.Roots, info(r))
	}
	for _, r := range c.retired {
		s.RetiredIssuers = append(s.RetiredIssuers, info(r.cert))
	}
	for _, x := range append([]*x509.Certificate{c.issuerChain[0]}, c.roots...) {
		switch left := x.NotAfter.Sub(now); {
		case left <= 0:
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s expired on %s", x.Subject.CommonName, x.NotAfter.Format(time.DateOnly)))
		case left < ExpiryWarning:
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s expires on %s: rotate it", x.Subject.CommonName, x.NotAfter.Format(time.DateOnly)))
		}
	}
	if c.signer == nil {
		s.Warnings = append(s.Warnings, "issuing key is locked (CA closed)")
	}
	return s
}

// String renders the status report as text.
func (s Status) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "CA folder: %s\n", s.Dir)
	for _, r := range s.Roots {
		fmt.Fprintf(&b, "root:      %s (key %s) until %s, %d days left\n", r.Subject, r.KeyID, r.NotAfter.Format(time.DateOnly), r.DaysLeft)
	}
	fmt.Fprintf(&b, "issuer:    %s (key %s) until %s, %d days left\n", s.Issuer.Subject, s.Issuer.KeyID, s.Issuer.NotAfter.Format(time.DateOnly), s.Issuer.DaysLeft)
	for _, r := range s.RetiredIssuers {
		fmt.Fprintf(&b, "retired:   %s (key %s) until %s\n", r.Subject, r.KeyID, r.NotAfter.Format(time.DateOnly))
	}
	fmt.Fprintf(&b, "names:     %s\n", strings.Join(s.PermittedDNSDomains, ", "))
	fmt.Fprintf(&b, "profile:   %s\n", s.Profile)
	fmt.Fprintf(&b, "revocation store: %v\n", s.RevocationStore)
	for _, w := range s.Warnings {
		fmt.Fprintf(&b, "WARNING:   %s\n", w)
	}
	return b.String()
}
