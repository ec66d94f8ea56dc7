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
	// CRLs are honoured for every issuer on the path: a CRL applies to an
	// issuer when its issuer name matches and its signature verifies with
	// that issuer's key.
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
	// RequireCRL fails verification when an issuer on the path has no CRL.
	RequireCRL bool
}

// LoadTrustBundle parses a PEM trust bundle: CERTIFICATE blocks (a
// self-signed CA certificate becomes a root, any other one an intermediate)
// and X509 CRL blocks. Any other block or non-PEM content is an error: a
// trust bundle is not the place for keys or stray data.
func LoadTrustBundle(pemBytes []byte) (*TrustPolicy, error) {
	p := &TrustPolicy{}
	rest := pemBytes
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("trust bundle: certificate %d: %w", len(p.Roots)+len(p.Intermediates), err)
			}
			if c.IsCA && bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
				p.Roots = append(p.Roots, c)
			} else {
				p.Intermediates = append(p.Intermediates, c)
			}
		case "X509 CRL":
			crl, err := x509.ParseRevocationList(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("trust bundle: CRL %d: %w", len(p.CRLs), err)
			}
			p.CRLs = append(p.CRLs, crl)
		default:
			return nil, fmt.Errorf("trust bundle: unexpected PEM block %q", b.Type)
		}
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("trust bundle: content that is not PEM")
	}
	if len(p.Roots) == 0 {
		return nil, fmt.Errorf("trust bundle: %w: no self-signed root certificate", ErrPolicy)
	}
	return p, nil
}

// chainResult is the cached outcome of checking one embedded chain.
type chainResult struct {
	leaf    *x509.Certificate
	serial  string              // leaf serial, lower-case hex
	subject string              // leaf subject
	keyID   []byte              // default key id of the leaf key (nil if not P-256)
	path    []*x509.Certificate // verified path, leaf to pinned root
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
func (v *Verifier) verifyChain(certs []*x509.Certificate) ([]*x509.Certificate, error) {
	leaf := certs[0]
	if err := checkLeaf(leaf); err != nil {
		return nil, err
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
				return nil, fmt.Errorf("%w: %v", ErrExpired, err)
			case x509.IncompatibleUsage:
				return nil, fmt.Errorf("%w: %v", ErrKeyUsage, err)
			}
		}
		return nil, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	// Every embedded certificate must be on the verified path, in order:
	// a certificate the path does not use could be altered unnoticed.
	var path []*x509.Certificate
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
		return nil, fmt.Errorf("%w: the embedded certificates are not the path to a pinned root, leaf first", ErrUntrusted)
	}
	for i := 0; i+1 < len(path); i++ {
		if err := v.checkRevocation(path[i], path[i+1]); err != nil {
			return nil, err
		}
	}
	return path, nil
}

// checkRevocation applies the CRLs issued by issuer to cert.
func (v *Verifier) checkRevocation(cert, issuer *x509.Certificate) error {
	var newest *x509.RevocationList
	for _, crl := range v.policy.CRLs {
		if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) || crl.CheckSignatureFrom(issuer) != nil {
			continue
		}
		for _, rc := range crl.RevokedCertificateEntries {
			if rc.SerialNumber != nil && rc.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				return fmt.Errorf("%w: serial %x (%s) on the CRL of %s since %s", ErrRevoked,
					cert.SerialNumber, cert.Subject, issuer.Subject, rc.RevocationTime.UTC().Format(time.RFC3339))
			}
		}
		if newest == nil || crl.ThisUpdate.After(newest.ThisUpdate) {
			newest = crl
		}
	}
	if newest == nil {
		if v.policy.RequireCRL {
			return fmt.Errorf("%w: no CRL from %s", ErrCRLMissing, issuer.Subject)
		}
		return nil
	}
	now := v.now
	switch {
	case now.Before(newest.ThisUpdate):
		return fmt.Errorf("%w: CRL of %s is not valid before %s", ErrCRLStale, issuer.Subject, newest.ThisUpdate.UTC().Format(time.RFC3339))
	case !newest.NextUpdate.IsZero() && now.After(newest.NextUpdate):
		return fmt.Errorf("%w: CRL of %s expired at %s", ErrCRLStale, issuer.Subject, newest.NextUpdate.UTC().Format(time.RFC3339))
	case v.policy.MaxCRLAge > 0 && now.Sub(newest.ThisUpdate) > v.policy.MaxCRLAge:
		return fmt.Errorf("%w: CRL of %s is older than %s", ErrCRLStale, issuer.Subject, v.policy.MaxCRLAge)
	case newest.NextUpdate.IsZero() && v.policy.MaxCRLAge <= 0:
		return fmt.Errorf("%w: CRL of %s has no nextUpdate and the policy sets no maximum age", ErrCRLStale, issuer.Subject)
	}
	return nil
}
