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

// ReadBundle collects the trust bundle from the CA folder without
// unlocking any key: roots, current, retired and cross certificates, and
// the last CRL made per issuer (CRLDir). Regenerate CRLs first (CA.CRLs)
// when they are due.
func ReadBundle(dir string) (*Bundle, error) {
	roots, err := readCerts(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	b := &Bundle{Roots: roots}
	seen := map[string]bool{}
	add := func(cs ...*x509.Certificate) {
		for _, x := range cs {
			if !seen[string(x.Raw)] {
				seen[string(x.Raw)] = true
				b.Intermediates = append(b.Intermediates, x)
			}
		}
	}
	chain, err := readCerts(filepath.Join(dir, IntermediateCertFile))
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	add(chain...)
	ents, _ := os.ReadDir(filepath.Join(dir, RetiredDir))
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".crt") && !strings.HasPrefix(n, "root-") {
			cs, err := readCerts(filepath.Join(dir, RetiredDir, n))
			if err != nil {
				return nil, fmt.Errorf("bundle: %w", err)
			}
			add(cs...)
		}
	}
	for _, f := range []string{"new-by-old.crt", "old-by-new.crt"} {
		if cs, err := readCerts(filepath.Join(dir, CrossDir, f)); err == nil {
			add(cs...)
		}
	}
	ents, _ = os.ReadDir(filepath.Join(dir, CRLDir))
	for _, e := range ents {
		raw, err := os.ReadFile(filepath.Join(dir, CRLDir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		blk, _ := pem.Decode(raw)
		if blk == nil || blk.Type != "X509 CRL" {
			continue
		}
		crl, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("bundle: %s: %w", e.Name(), err)
		}
		b.CRLs = append(b.CRLs, crl)
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

// CRLInfo describes the last CRL published for one issuer.
type CRLInfo struct {
	IssuerKeyID string    `json:"issuerKeyId"`
	Issuer      string    `json:"issuer"`
	Number      string    `json:"number"`
	Entries     int       `json:"entries"`
	ThisUpdate  time.Time `json:"thisUpdate"`
	NextUpdate  time.Time `json:"nextUpdate"`
}

// Status is the CA status report (`wsc ca status`). It holds no secrets.
type Status struct {
	Dir                 string     `json:"dir"`
	Roots               []CertInfo `json:"roots"`
	Issuer              CertInfo   `json:"issuer"`
	RetiredIssuers      []CertInfo `json:"retiredIssuers,omitempty"`
	PermittedDNSDomains []string   `json:"permittedDnsDomains"`
	Profile             string     `json:"profile,omitempty"`
	RevocationStore     bool       `json:"revocationStore"`
	// RootKey and IssuerKey say where the keys are: "encrypted file",
	// "pkcs11 token" or "absent" (root kept on the ceremony machine).
	RootKey   string `json:"rootKey"`
	IssuerKey string `json:"issuerKey"`
	// PendingIntermediate: a key made by `intermediate csr` awaits its certificate.
	PendingIntermediate bool `json:"pendingIntermediate"`
	// CRLs are the last CRLs made per issuer (CRLDir); NextCRLDue is the
	// earliest nextUpdate among them (zero when no CRL was made yet).
	CRLs       []CRLInfo `json:"crls,omitempty"`
	NextCRLDue time.Time `json:"nextCrlDue,omitzero"`
	Warnings   []string  `json:"warnings,omitempty"`
}

// CRLDir holds the last CRL made per issuer, crl/<issuer key id>.pem: what
// `wsc ca status` reports as next CRL due, and what `wsc ca bundle` ships
// when it cannot regenerate.
const CRLDir = "crl"

// ExpiryWarning is how close to expiry a CA certificate triggers a warning.
const ExpiryWarning = 90 * 24 * time.Hour

// CRLWarning is how close to its nextUpdate a CRL triggers a warning.
const CRLWarning = 24 * time.Hour

func certInfo(x *x509.Certificate, now time.Time) CertInfo {
	return CertInfo{
		Subject:   x.Subject.String(),
		KeyID:     hex.EncodeToString(x.SubjectKeyId),
		NotBefore: x.NotBefore,
		NotAfter:  x.NotAfter,
		DaysLeft:  int(x.NotAfter.Sub(now).Hours() / 24),
	}
}

func keyStorage(keyPath string) string {
	switch {
	case IsTokenKey(keyPath):
		return "pkcs11 token"
	case keyExists(keyPath):
		return "encrypted file"
	default:
		return "absent"
	}
}

// Status reports the CA's certificates, expiry and configuration.
func (c *CA) Status() Status {
	now := c.now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := Status{
		Dir:                 c.dir,
		Issuer:              certInfo(c.issuerChain[0], now),
		PermittedDNSDomains: c.issuerChain[0].PermittedDNSDomains,
		Profile:             c.profile.Name,
		RevocationStore:     c.revocations != nil,
	}
	for _, r := range c.roots {
		s.Roots = append(s.Roots, certInfo(r, now))
	}
	for _, r := range c.retired {
		s.RetiredIssuers = append(s.RetiredIssuers, certInfo(r.cert, now))
	}
	s.folder(c.dir, now)
	s.warn(append([]*x509.Certificate{c.issuerChain[0]}, c.roots...), now)
	if c.signer == nil {
		s.Warnings = append(s.Warnings, "issuing key is locked (CA closed)")
	}
	return s
}

// ReadStatus reports on the CA folder dir without unlocking any key (no
// passphrase needed): certificates and their expiry, where the keys are,
// a pending intermediate, the last CRL per issuer and when the next is due.
func ReadStatus(dir string, now time.Time) (Status, error) {
	roots, err := readCerts(filepath.Join(dir, RootCertFile))
	if err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	chain, err := readCerts(filepath.Join(dir, IntermediateCertFile))
	if err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	s := Status{Dir: dir, Issuer: certInfo(chain[0], now), PermittedDNSDomains: chain[0].PermittedDNSDomains}
	for _, r := range roots {
		s.Roots = append(s.Roots, certInfo(r, now))
	}
	ents, _ := os.ReadDir(filepath.Join(dir, RetiredDir))
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".crt") && !strings.HasPrefix(n, "root-") {
			if cs, err := readCerts(filepath.Join(dir, RetiredDir, n)); err == nil && !bytes.Equal(cs[0].SubjectKeyId, chain[0].SubjectKeyId) {
				s.RetiredIssuers = append(s.RetiredIssuers, certInfo(cs[0], now))
			}
		}
	}
	s.folder(dir, now)
	s.warn(append([]*x509.Certificate{chain[0]}, roots...), now)
	return s, nil
}

// folder fills what Status learns from the CA folder itself.
func (s *Status) folder(dir string, now time.Time) {
	s.RootKey = keyStorage(filepath.Join(dir, RootKeyFile))
	s.IssuerKey = keyStorage(filepath.Join(dir, IntermediateKeyFile))
	s.PendingIntermediate = keyExists(filepath.Join(dir, NextIntermediateKeyFile))
	type issuer struct {
		CertInfo
		required bool // intermediates must publish CRLs; a root's CRL is optional
	}
	issuers := []issuer{{s.Issuer, true}}
	for _, r := range s.RetiredIssuers {
		issuers = append(issuers, issuer{r, true})
	}
	for _, r := range s.Roots {
		issuers = append(issuers, issuer{r, false})
	}
	for _, is := range issuers {
		id, subj := is.KeyID, is.Subject
		b, err := os.ReadFile(filepath.Join(dir, CRLDir, id+".pem"))
		if err != nil {
			if is.required {
				s.Warnings = append(s.Warnings, fmt.Sprintf("no CRL made yet for %s: run `wsc ca crl`", subj))
			}
			continue
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			continue
		}
		crl, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			continue
		}
		s.CRLs = append(s.CRLs, CRLInfo{IssuerKeyID: id, Issuer: subj, Number: crl.Number.String(),
			Entries: len(crl.RevokedCertificateEntries), ThisUpdate: crl.ThisUpdate, NextUpdate: crl.NextUpdate})
		if s.NextCRLDue.IsZero() || crl.NextUpdate.Before(s.NextCRLDue) {
			s.NextCRLDue = crl.NextUpdate
		}
		switch left := crl.NextUpdate.Sub(now); {
		case left <= 0:
			s.Warnings = append(s.Warnings, fmt.Sprintf("CRL of %s expired on %s: run `wsc ca crl`", subj, crl.NextUpdate.Format(time.RFC3339)))
		case left < CRLWarning:
			s.Warnings = append(s.Warnings, fmt.Sprintf("CRL of %s is due on %s", subj, crl.NextUpdate.Format(time.RFC3339)))
		}
	}
	if s.PendingIntermediate {
		s.Warnings = append(s.Warnings, "an intermediate key awaits its certificate (`wsc ca intermediate install`)")
	}
}

// warn adds expiry warnings for CA certificates.
func (s *Status) warn(certs []*x509.Certificate, now time.Time) {
	for _, x := range certs {
		switch left := x.NotAfter.Sub(now); {
		case left <= 0:
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s expired on %s", x.Subject.CommonName, x.NotAfter.Format(time.DateOnly)))
		case left < ExpiryWarning:
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s expires on %s (%d days): rotate it", x.Subject.CommonName, x.NotAfter.Format(time.DateOnly), int(left.Hours()/24)))
		}
	}
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
	if s.Profile != "" {
		fmt.Fprintf(&b, "profile:   %s\n", s.Profile)
	}
	fmt.Fprintf(&b, "keys:      root %s, issuer %s\n", s.RootKey, s.IssuerKey)
	if s.PendingIntermediate {
		fmt.Fprintf(&b, "pending:   intermediate key awaiting its certificate\n")
	}
	for _, c := range s.CRLs {
		fmt.Fprintf(&b, "crl:       %s (key %s) number %s, %d entries, next update %s\n", c.Issuer, c.IssuerKeyID, c.Number, c.Entries, c.NextUpdate.Format(time.RFC3339))
	}
	if !s.NextCRLDue.IsZero() {
		fmt.Fprintf(&b, "next CRL due: %s\n", s.NextCRLDue.Format(time.RFC3339))
	}
	for _, w := range s.Warnings {
		fmt.Fprintf(&b, "WARNING:   %s\n", w)
	}
	return b.String()
}
