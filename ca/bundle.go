package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
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

// BuildBundle collects the trust bundle (as ReadBundle). With withCRLs it
// first signs a fresh CRL for every intermediate (needs a
// RevocationStore) and includes the folder's CRLs; root CRLs come from the
// root ceremony.
func (c *CA) BuildBundle(ctx context.Context, withCRLs bool) (*Bundle, error) {
	if withCRLs {
		if _, err := c.CRLs(ctx); err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
	}
	b, err := ReadBundle(c.dir)
	if err != nil {
		return nil, err
	}
	if !withCRLs {
		b.CRLs = nil
	}
	return b, nil
}

// ReadBundle collects the trust bundle from the CA folder without
// unlocking any key: the roots of root.crt, the current and retired
// intermediates, every intermediate copy and cross-certificate (cross/,
// issued/), and the last CRL made or imported per CA (CRLDir). Every read
// or parse error is an error. Certificates that only lead to a root
// retired by RetireRoot are left out. Check the CRLs with CheckCRLs.
func ReadBundle(dir string) (*Bundle, error) {
	roots, err := readCerts(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	retired, err := retiredRootIDs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	b := &Bundle{Roots: roots}
	seen := map[string]bool{}
	for _, r := range roots {
		seen[string(r.Raw)] = true
	}
	add := func(cs ...*x509.Certificate) {
		for _, x := range cs {
			if seen[string(x.Raw)] || retired[hex.EncodeToString(x.SubjectKeyId)] || retired[hex.EncodeToString(x.AuthorityKeyId)] {
				continue
			}
			if bytes.Equal(x.RawIssuer, x.RawSubject) && x.CheckSignatureFrom(x) == nil {
				continue // a self-signed root outside root.crt is not trusted
			}
			seen[string(x.Raw)] = true
			b.Intermediates = append(b.Intermediates, x)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, IntermediateCertFile)); err == nil {
		chain, err := readCerts(filepath.Join(dir, IntermediateCertFile))
		if err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		add(chain...)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	for _, sub := range []string{RetiredDir, CrossDir, IssuedDir} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		for _, e := range ents {
			n := e.Name()
			if !strings.HasSuffix(n, ".crt") || (sub == RetiredDir && strings.HasPrefix(n, "root-")) {
				continue
			}
			cs, err := readCerts(filepath.Join(dir, sub, n))
			if err != nil {
				return nil, fmt.Errorf("bundle: %s: %w", sub, err)
			}
			add(cs...)
		}
	}
	ents, err := os.ReadDir(filepath.Join(dir, CRLDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		crl, err := readCRLFile(filepath.Join(dir, CRLDir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("bundle: %s: %w", CRLDir, err)
		}
		if retired[hex.EncodeToString(crl.AuthorityKeyId)] {
			continue
		}
		b.CRLs = append(b.CRLs, crl)
	}
	return b, nil
}

// ErrMissingCRL: a CA of the bundle has no CRL signed by it with a
// nextUpdate in the future. The error lists each CA and what to run.
var ErrMissingCRL = errors.New("ca: CA without a fresh CRL")

// CAs returns the distinct CAs of the bundle (one per subject and key;
// a cross-certified or re-certified copy is the same CA).
func (b *Bundle) CAs() []*x509.Certificate {
	var out []*x509.Certificate
	seen := map[string]bool{}
	for _, x := range append(append([]*x509.Certificate(nil), b.Roots...), b.Intermediates...) {
		k := string(x.RawSubject) + "|" + string(x.SubjectKeyId)
		if !seen[k] {
			seen[k] = true
			out = append(out, x)
		}
	}
	return out
}

// CRLFor returns the CRL of the bundle that ca signed, or nil.
func (b *Bundle) CRLFor(ca *x509.Certificate) *x509.RevocationList {
	var best *x509.RevocationList
	for _, crl := range b.CRLs {
		if bytes.Equal(crl.RawIssuer, ca.RawSubject) && crl.CheckSignatureFrom(ca) == nil {
			if best == nil || (crl.Number != nil && best.Number != nil && crl.Number.Cmp(best.Number) > 0) {
				best = crl
			}
		}
	}
	return best
}

// CheckCRLs fails closed: every CA of the bundle (every root of root.crt and
// every intermediate ever used, cross-signed copies included) must have a
// CRL signed by itself whose nextUpdate is after now.
func (b *Bundle) CheckCRLs(now time.Time) error {
	roots := map[string]bool{}
	for _, r := range b.Roots {
		roots[string(r.Raw)] = true
	}
	var missing []string
	for _, x := range b.CAs() {
		what := "run `wsc ca crl` on the station"
		if roots[string(x.Raw)] || bytes.Equal(x.RawIssuer, x.RawSubject) || b.isRootKey(x) {
			what = "sign it on the root machine (`wsc ca crl --root`) and import it here (`wsc ca import FILE`)"
		}
		crl := b.CRLFor(x)
		switch {
		case crl == nil:
			missing = append(missing, fmt.Sprintf("%s (key %x) has no CRL: %s", x.Subject, x.SubjectKeyId, what))
		case !crl.NextUpdate.After(now):
			missing = append(missing, fmt.Sprintf("%s (key %x): CRL %v expired on %s: %s", x.Subject, x.SubjectKeyId, crl.Number, crl.NextUpdate.Format(time.RFC3339), what))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w:\n  %s", ErrMissingCRL, strings.Join(missing, "\n  "))
	}
	return nil
}

func (b *Bundle) isRootKey(x *x509.Certificate) bool {
	for _, r := range b.Roots {
		if bytes.Equal(r.SubjectKeyId, x.SubjectKeyId) {
			return true
		}
	}
	return false
}

// WriteBundle is the bundle ceremony: it reads the folder's bundle
// (ReadBundle), refuses it unless every CA has a fresh CRL (CheckCRLs),
// and writes it to out as one PEM file, recorded with its SHA-256.
func WriteBundle(ctx context.Context, cer Ceremony, out string) (*Bundle, *Result, error) {
	b, err := ReadBundle(cer.Dir)
	if err != nil {
		return nil, nil, err
	}
	if err := b.CheckCRLs(cer.now()); err != nil {
		return nil, nil, fmt.Errorf("bundle: %w", err)
	}
	data := b.PEM()
	var tx fileTx
	tx.write(out, data, 0o644)
	res := &Result{Ceremony: "bundle", Dir: cer.Dir, Notes: []string{fmt.Sprintf("%d roots, %d intermediates and cross-certificates, %d CRLs; bundle SHA-256 %s",
		len(b.Roots), len(b.Intermediates), len(b.CRLs), Fingerprint(data))}}
	for _, r := range b.Roots {
		res.Certificates = append(res.Certificates, summary("root", r))
	}
	for _, crl := range b.CRLs {
		res.CRLs = append(res.CRLs, crlSummary(crl, crl.Issuer.String(), ""))
	}
	certs := res.Certificates
	res.Certificates = nil // the bundle makes no certificate; roots are listed in the notes
	for _, c := range certs {
		res.Notes = append(res.Notes, "root "+c.Subject+" SHA-256 "+c.SHA256)
	}
	if err := cer.finish(ctx, &tx, res, nil, "ca.bundle", map[string]any{"file": out, "sha256": Fingerprint(data),
		"roots": len(b.Roots), "intermediates": len(b.Intermediates), "crls": len(b.CRLs)}); err != nil {
		return nil, nil, err
	}
	return b, res, nil
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
	KeyID     string    `json:"key_id"`
	Role      string    `json:"role,omitempty"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	DaysLeft  int       `json:"days_left"`
	SHA256    string    `json:"sha256"`
}

// CRLInfo describes the last CRL published for one CA.
type CRLInfo struct {
	IssuerKeyID string    `json:"issuer_key_id"`
	Issuer      string    `json:"issuer"`
	Number      string    `json:"number"`
	Entries     int       `json:"entries"`
	ThisUpdate  time.Time `json:"this_update"`
	NextUpdate  time.Time `json:"next_update"`
}

// Status is the CA status report (`wsc ca status`). It holds no secrets.
type Status struct {
	Dir string `json:"dir"`
	// Roots are the trusted roots; Role says "current" (one root), or
	// "new" and "old" during a rollover (until `wsc ca root retire`).
	Roots []CertInfo `json:"roots"`
	// Issuer is the station intermediate (nil on a root machine).
	Issuer              *CertInfo  `json:"issuer,omitempty"`
	RetiredIssuers      []CertInfo `json:"retired_issuers,omitempty"`
	PermittedDNSDomains []string   `json:"permitted_dns_domains,omitempty"`
	Profile             string     `json:"profile,omitempty"`
	RevocationStore     bool       `json:"revocation_store"`
	// RootKey and IssuerKey say where the keys are: "encrypted file",
	// "pkcs11 token" or "absent" (root kept on the ceremony machine).
	RootKey   string `json:"root_key"`
	IssuerKey string `json:"issuer_key"`
	// Custody is "quorum M of N" when the root key is under quorum custody.
	Custody string `json:"custody,omitempty"`
	// PendingIntermediate: a key made by `intermediate csr` awaits its certificate.
	PendingIntermediate bool `json:"pending_intermediate"`
	// CRLs are the last CRLs made or imported per CA (CRLDir); NextCRLDue
	// is the earliest nextUpdate among them (zero when none).
	CRLs       []CRLInfo `json:"crls,omitempty"`
	NextCRLDue time.Time `json:"next_crl_due,omitzero"`
	Warnings   []string  `json:"warnings,omitempty"`
}

// CRLDir holds the last CRL made per CA, crl/<key id>.pem: what
// `wsc ca status` reports as next CRL due, and what `wsc ca bundle` ships.
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
		SHA256:    Fingerprint(x.Raw),
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
	is := certInfo(c.issuerChain[0], now)
	s := Status{
		Dir:                 c.dir,
		Issuer:              &is,
		PermittedDNSDomains: c.issuerChain[0].PermittedDNSDomains,
		Profile:             c.profile.Name,
		RevocationStore:     c.revocations != nil,
	}
	for i, r := range c.roots {
		ci := certInfo(r, now)
		ci.Role = rootRole(i, len(c.roots))
		s.Roots = append(s.Roots, ci)
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
// passphrase needed): certificates and their expiry, which root is new and
// which is old, where the keys are, a pending intermediate, the last CRL
// per CA and when the next is due. A root machine's folder (no
// intermediate) is reported too.
func ReadStatus(dir string, now time.Time) (Status, error) {
	roots, err := readCerts(filepath.Join(dir, RootCertFile))
	if err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	s := Status{Dir: dir}
	certs := append([]*x509.Certificate(nil), roots...)
	var cur []byte
	if _, err := os.Stat(filepath.Join(dir, IntermediateCertFile)); err == nil {
		chain, err := readCerts(filepath.Join(dir, IntermediateCertFile))
		if err != nil {
			return Status{}, fmt.Errorf("status: %w", err)
		}
		is := certInfo(chain[0], now)
		s.Issuer, s.PermittedDNSDomains, cur = &is, chain[0].PermittedDNSDomains, chain[0].SubjectKeyId
		certs = append(certs, chain[0])
	}
	for i, r := range roots {
		ci := certInfo(r, now)
		ci.Role = rootRole(i, len(roots))
		s.Roots = append(s.Roots, ci)
	}
	ents, err := os.ReadDir(filepath.Join(dir, RetiredDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".crt") && !strings.HasPrefix(n, "root-") {
			cs, err := readCerts(filepath.Join(dir, RetiredDir, n))
			if err != nil {
				return Status{}, fmt.Errorf("status: %w", err)
			}
			if !bytes.Equal(cs[0].SubjectKeyId, cur) {
				s.RetiredIssuers = append(s.RetiredIssuers, certInfo(cs[0], now))
			}
		}
	}
	s.folder(dir, now)
	s.warn(certs, now)
	return s, nil
}

// folder fills what Status learns from the CA folder itself: every CA (each
// root, the issuer, each retired issuer) must have a fresh CRL.
func (s *Status) folder(dir string, now time.Time) {
	s.RootKey = keyStorage(filepath.Join(dir, RootKeyFile))
	s.IssuerKey = keyStorage(filepath.Join(dir, IntermediateKeyFile))
	s.PendingIntermediate = keyExists(filepath.Join(dir, NextIntermediateKeyFile))
	if q, names, err := CustodyInfo(dir); err == nil {
		s.Custody = fmt.Sprintf("quorum %d of %d (%s)", q, len(names), strings.Join(names, ", "))
	}
	var cas []CertInfo
	for _, r := range s.Roots {
		r.Subject = r.Subject + " (" + r.Role + " root)"
		cas = append(cas, r)
	}
	if s.Issuer != nil {
		cas = append(cas, *s.Issuer)
	}
	cas = append(cas, s.RetiredIssuers...)
	for _, is := range cas {
		id, subj := is.KeyID, is.Subject
		what := "run `wsc ca crl`"
		if strings.HasSuffix(subj, " root)") {
			what = "run `wsc ca crl --root` on the root machine and `wsc ca import` the CRL here"
		}
		crl, err := readCRLFile(filepath.Join(dir, CRLDir, id+".pem"))
		if errors.Is(err, os.ErrNotExist) {
			s.Warnings = append(s.Warnings, fmt.Sprintf("no CRL for %s: %s", subj, what))
			continue
		}
		if err != nil {
			s.Warnings = append(s.Warnings, fmt.Sprintf("CRL of %s unreadable (%v): %s", subj, err, what))
			continue
		}
		s.CRLs = append(s.CRLs, CRLInfo{IssuerKeyID: id, Issuer: subj, Number: crl.Number.String(),
			Entries: len(crl.RevokedCertificateEntries), ThisUpdate: crl.ThisUpdate, NextUpdate: crl.NextUpdate})
		if s.NextCRLDue.IsZero() || crl.NextUpdate.Before(s.NextCRLDue) {
			s.NextCRLDue = crl.NextUpdate
		}
		switch left := crl.NextUpdate.Sub(now); {
		case left <= 0:
			s.Warnings = append(s.Warnings, fmt.Sprintf("CRL of %s expired on %s: %s", subj, crl.NextUpdate.Format(time.RFC3339), what))
		case left < CRLWarning:
			s.Warnings = append(s.Warnings, fmt.Sprintf("CRL of %s is due on %s: %s", subj, crl.NextUpdate.Format(time.RFC3339), what))
		}
	}
	if len(s.Roots) > 1 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("%d roots are trusted (rollover in progress): the old root keeps signing its CRL until `wsc ca root retire`", len(s.Roots)))
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
		fmt.Fprintf(&b, "root (%s): %s (key %s) until %s, %d days left\n           SHA-256 %s\n", r.Role, r.Subject, r.KeyID, r.NotAfter.Format(time.DateOnly), r.DaysLeft, r.SHA256)
	}
	if s.Issuer != nil {
		fmt.Fprintf(&b, "issuer:    %s (key %s) until %s, %d days left\n", s.Issuer.Subject, s.Issuer.KeyID, s.Issuer.NotAfter.Format(time.DateOnly), s.Issuer.DaysLeft)
	}
	for _, r := range s.RetiredIssuers {
		fmt.Fprintf(&b, "retired:   %s (key %s) until %s\n", r.Subject, r.KeyID, r.NotAfter.Format(time.DateOnly))
	}
	if len(s.PermittedDNSDomains) > 0 {
		fmt.Fprintf(&b, "names:     %s\n", strings.Join(s.PermittedDNSDomains, ", "))
	}
	if s.Profile != "" {
		fmt.Fprintf(&b, "profile:   %s\n", s.Profile)
	}
	fmt.Fprintf(&b, "keys:      root %s, issuer %s\n", s.RootKey, s.IssuerKey)
	if s.Custody != "" {
		fmt.Fprintf(&b, "custody:   %s\n", s.Custody)
	}
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
