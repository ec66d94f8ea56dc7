package wasmsign

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// TrustPolicy says which signers Verify accepts.
type TrustPolicy struct {
	// Roots are the pinned trust anchors. Roots are never taken from a
	// module: a root embedded in a chain is accepted only if it is
	// byte-identical to a pinned one.
	Roots []*x509.Certificate
	// Intermediates may complete a chain that a module carries only in part.
	Intermediates []*x509.Certificate
	// CRLs are honoured for every CA on the path (intermediates and the
	// pinned root): a CRL applies to a CA when its issuer name matches and
	// its signature verifies with that CA's key. By default every CA on a
	// verified path must have a fresh CRL (see AllowMissingCRL).
	CRLs []*x509.RevocationList
	// At is the verification time when AtExplicit is set; it is an error to
	// set At without AtExplicit. By default certificates and CRLs must be
	// valid now. Results and reports carry the flag.
	At time.Time
	// AtExplicit enables At.
	AtExplicit bool
	// MaxCRLAge, when positive, rejects a CRL whose thisUpdate is older
	// than this, even before its nextUpdate. A CRL without nextUpdate needs
	// MaxCRLAge to be usable.
	MaxCRLAge time.Duration
	// AllowMissingCRL accepts a path on which some CA has no CRL at all in
	// the policy. Fail closed is the default: without this flag such a path
	// is ErrCRLMissing. It is the only way around the CRL rule, it never
	// excuses a stale CRL or one whose signature does not verify, and every
	// result that relied on it says so (Result.RevocationUnchecked,
	// Result.NoCRLFor, Result.Warning).
	AllowMissingCRL bool
}

// LoadTrustBundle parses a PEM trust bundle: CERTIFICATE blocks of CA
// certificates (a self-signed one becomes a root, any other one an
// intermediate) and X509 CRL blocks. It fails closed: any other block, a
// block with headers, a damaged block, a certificate or CRL that does not
// parse, a non-CA certificate or any non-PEM content is an error wrapping
// ErrPolicy: a trust bundle is not the place for keys or stray data, and a
// bundle that was partly read could silently lose a CRL.
func LoadTrustBundle(pemBytes []byte) (*TrustPolicy, error) {
	p := &TrustPolicy{}
	rest := pemBytes
	for n := 0; ; n++ {
		// pem.Decode skips any text before a block; a trust bundle may
		// hold nothing but blocks and white space.
		trimmed := bytes.TrimLeft(rest, " \t\r\n")
		if len(trimmed) == 0 {
			break
		}
		if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
			return nil, fmt.Errorf("trust bundle: %w: content that is not PEM after block %d", ErrPolicy, n)
		}
		// Decode exactly this block: pem.Decode would skip a block it
		// cannot decode and return the next one.
		end := bytes.Index(trimmed, []byte("\n-----END "))
		if end < 0 {
			return nil, fmt.Errorf("trust bundle: %w: PEM block %d has no END line", ErrPolicy, n+1)
		}
		if eol := bytes.IndexByte(trimmed[end+1:], '\n'); eol >= 0 {
			end += 1 + eol + 1
		} else {
			end = len(trimmed)
		}
		b, tail := pem.Decode(trimmed[:end])
		if b == nil || len(bytes.TrimSpace(tail)) != 0 {
			return nil, fmt.Errorf("trust bundle: %w: PEM block %d is damaged (not valid base64 or a mismatched END line)", ErrPolicy, n+1)
		}
		rest = trimmed[end:]
		if len(b.Headers) != 0 {
			return nil, fmt.Errorf("trust bundle: %w: PEM block %d (%s) has headers (encrypted or not a plain certificate/CRL)", ErrPolicy, n+1, b.Type)
		}
		switch b.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("trust bundle: %w: certificate %d: %w", ErrPolicy, len(p.Roots)+len(p.Intermediates)+1, err)
			}
			if !c.IsCA || !c.BasicConstraintsValid {
				return nil, fmt.Errorf("trust bundle: %w: certificate %q is not a CA certificate", ErrPolicy, c.Subject)
			}
			if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
				p.Roots = append(p.Roots, c)
			} else {
				p.Intermediates = append(p.Intermediates, c)
			}
		case "X509 CRL":
			crl, err := x509.ParseRevocationList(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("trust bundle: %w: CRL %d: %w", ErrPolicy, len(p.CRLs)+1, err)
			}
			p.CRLs = append(p.CRLs, crl)
		default:
			return nil, fmt.Errorf("trust bundle: %w: unexpected PEM block %q", ErrPolicy, b.Type)
		}
	}
	if len(p.Roots) == 0 {
		return nil, fmt.Errorf("trust bundle: %w: no self-signed root certificate", ErrPolicy)
	}
	return p, nil
}

// chainResult is the cached outcome of checking one embedded chain.
type chainResult struct {
	leaf    *x509.Certificate
	serial  string              // leaf serial, FormatSerial
	subject string              // leaf subject
	keyID   []byte              // default key id of the leaf key (nil if not P-256)
	path    []*x509.Certificate // verified path, leaf to pinned root
	noCRL   []string            // CAs on the path without a CRL (AllowMissingCRL)
	err     error
}

// parseChain parses the DER certificates of a record.
func parseChain(der [][]byte) ([]*x509.Certificate, error) {
	certs := make([]*x509.Certificate, len(der))
	for i, d := range der {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d of the chain: %v", ErrUntrusted, i, err)
		}
		certs[i] = c
	}
	return certs, nil
}

// checkLeaf applies the code-signing profile to the leaf.
func checkLeaf(leaf *x509.Certificate) error {
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return fmt.Errorf("%w: leaf key is not ECDSA P-256", ErrKeyUsage)
	}
	if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
		return fmt.Errorf("%w: leaf is a CA certificate", ErrKeyUsage)
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return fmt.Errorf("%w: leaf lacks the digitalSignature key usage", ErrKeyUsage)
	}
	// x509.Verify treats a leaf without EKU as fit for any usage; the
	// policy wants the code-signing purpose stated in the certificate.
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageCodeSigning) {
		return fmt.Errorf("%w: leaf lacks the code-signing extended key usage", ErrKeyUsage)
	}
	return nil
}

// verifyChain checks an embedded chain against the verifier's policy.
func (v *Verifier) verifyChain(certs []*x509.Certificate) (path []*x509.Certificate, noCRL []string, err error) {
	leaf := certs[0]
	if err := checkLeaf(leaf); err != nil {
		return nil, nil, err
	}
	inter := v.inter.Clone()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inter,
		CurrentTime:   v.now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	})
	if err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) {
			switch inv.Reason {
			case x509.Expired:
				return nil, nil, fmt.Errorf("%w: %v", ErrExpired, err)
			case x509.IncompatibleUsage:
				return nil, nil, fmt.Errorf("%w: %v", ErrKeyUsage, err)
			}
		}
		return nil, nil, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	// Every embedded certificate must be on the verified path, in order:
	// a certificate the path does not use could be altered unnoticed.
	for _, ch := range chains {
		if len(ch) < len(certs) {
			continue
		}
		match := true
		for i, c := range certs {
			if !bytes.Equal(ch[i].Raw, c.Raw) {
				match = false
				break
			}
		}
		if match {
			path = ch
			break
		}
	}
	if path == nil {
		return nil, nil, fmt.Errorf("%w: the embedded certificates are not the path to a pinned root, leaf first", ErrUntrusted)
	}
	// Every CA on the path is checked (its CRL covers the certificate below
	// it): a revocation anywhere on the path is the reason given, ahead of
	// a missing or unusable CRL higher or lower on it.
	var crlErr, missingErr *CRLError
	for i := 0; i+1 < len(path); i++ {
		missing, err := v.checkRevocation(path[i], path[i+1])
		var ce *CRLError
		switch {
		case errors.As(err, &ce) && errors.Is(ce.Err, ErrCRLMissing):
			// Every CA without CRL is named, not only the first.
			if missingErr == nil {
				missingErr = ce
			} else {
				missingErr.CAs = append(missingErr.CAs, ce.CAs...)
			}
		case errors.As(err, &ce):
			if crlErr == nil {
				crlErr = ce
			}
		case err != nil: // revoked
			return nil, nil, err
		case missing:
			noCRL = append(noCRL, path[i+1].Subject.String())
		}
	}
	switch {
	case crlErr != nil:
		return nil, nil, crlErr
	case missingErr != nil:
		return nil, nil, missingErr
	}
	return path, noCRL, nil
}

// CRLError tells which CA's revocation list failed the policy. It wraps
// exactly one of ErrCRLMissing, ErrCRLStale and ErrCRLSignature.
type CRLError struct {
	// CAs are the certificate authorities on the path whose CRL is at
	// fault, nearest the leaf first: one for a stale or forged CRL, every
	// CA without CRL for ErrCRLMissing.
	CAs []*x509.Certificate
	// Err is the sentinel: ErrCRLMissing, ErrCRLStale or ErrCRLSignature.
	Err error
	// Detail says what exactly is wrong (a date, the age limit).
	Detail string
}

// Error names the CAs and the problem.
func (e *CRLError) Error() string {
	names := make([]string, len(e.CAs))
	for i, c := range e.CAs {
		names[i] = c.Subject.String()
	}
	s := fmt.Sprintf("%v: CA %s", e.Err, strings.Join(names, "; CA "))
	if len(e.CAs) > 1 && e.Detail == noCRLDetail {
		return s + ": the trust bundle holds no CRL of these CAs"
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

const noCRLDetail = "the trust bundle holds no CRL of this CA"

// Unwrap returns the sentinel.
func (e *CRLError) Unwrap() error { return e.Err }

// Freshness: a CRL is fresh at the verification time t (the policy's
// explicit At, else the instant the Verifier was created) when
// thisUpdate <= t <= nextUpdate and, with MaxCRLAge set, t - thisUpdate <=
// MaxCRLAge. A CRL without nextUpdate is fresh only under MaxCRLAge. Only
// the newest CRL of a CA (by thisUpdate) is judged; entries of every
// verified CRL of that CA count.

// checkRevocation applies the CRLs issued by issuer to cert. It reports
// missing = true when issuer has no CRL and the policy allows that; every
// other CRL problem is an error.
func (v *Verifier) checkRevocation(cert, issuer *x509.Certificate) (missing bool, err error) {
	var newest *x509.RevocationList
	forged := 0
	for _, crl := range v.policy.CRLs {
		if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) {
			continue
		}
		if crl.CheckSignatureFrom(issuer) != nil {
			// A CRL that names this CA but was signed by another key is
			// either the CRL of another key under the same name (an
			// intermediate renewed under its old name, recognised by its
			// authority key id) or a forgery: the bundle was edited.
			if len(crl.AuthorityKeyId) == 0 || len(issuer.SubjectKeyId) == 0 || bytes.Equal(crl.AuthorityKeyId, issuer.SubjectKeyId) {
				forged++
			}
			continue
		}
		for _, rc := range crl.RevokedCertificateEntries {
			if rc.SerialNumber != nil && rc.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				return false, fmt.Errorf("%w: serial %s (%s) on the CRL of %s since %s", ErrRevoked,
					FormatSerial(cert.SerialNumber), cert.Subject, issuer.Subject, rc.RevocationTime.UTC().Format(time.RFC3339))
			}
		}
		if newest == nil || crl.ThisUpdate.After(newest.ThisUpdate) {
			newest = crl
		}
	}
	if forged > 0 {
		return false, &CRLError{CAs: []*x509.Certificate{issuer}, Err: ErrCRLSignature,
			Detail: fmt.Sprintf("%d CRL(s) naming this CA do not verify with its key", forged)}
	}
	if newest == nil {
		if v.policy.AllowMissingCRL {
			return true, nil
		}
		return false, &CRLError{CAs: []*x509.Certificate{issuer}, Err: ErrCRLMissing, Detail: noCRLDetail}
	}
	now := v.now
	stale := func(detail string) (bool, error) {
		return false, &CRLError{CAs: []*x509.Certificate{issuer}, Err: ErrCRLStale, Detail: detail}
	}
	switch {
	case now.Before(newest.ThisUpdate):
		return stale("its CRL is not valid before " + newest.ThisUpdate.UTC().Format(time.RFC3339))
	case !newest.NextUpdate.IsZero() && now.After(newest.NextUpdate):
		return stale("its CRL expired at " + newest.NextUpdate.UTC().Format(time.RFC3339) + " (nextUpdate)")
	case v.policy.MaxCRLAge > 0 && now.Sub(newest.ThisUpdate) > v.policy.MaxCRLAge:
		return stale(fmt.Sprintf("its CRL is older than %s", v.policy.MaxCRLAge))
	case newest.NextUpdate.IsZero() && v.policy.MaxCRLAge <= 0:
		return stale("its CRL has no nextUpdate and the policy sets no maximum age")
	}
	return false, nil
}
