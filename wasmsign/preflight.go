package wasmsign

import (
	"crypto/x509"
	"fmt"
	"slices"
	"time"
)

// CheckSigningChain checks, before anything is signed, what verification
// will check about chain (leaf first), so that a signer never produces a
// module that can never verify. With a policy (the trust bundle QA
// verifies against) the checks are exactly the verifier's: the leaf's
// code-signing profile (ECDSA P-256, digitalSignature, the codeSigning
// EKU, not a CA), a path to a pinned root valid at the policy's time
// (now unless explicit) with codeSigning allowed along it, and the CRL
// rule for every CA on the path (revoked, missing, stale or forged CRL).
// Without a policy it checks what the chain alone can tell: the leaf
// profile, every certificate valid now, each certificate signed by the
// next, and no CA on the chain whose EKUs exclude code signing.
//
// The error wraps the sentinel verification would report (ErrKeyUsage,
// ErrExpired, ErrUntrusted, ErrRevoked, a *CRLError …).
func CheckSigningChain(chain []*x509.Certificate, policy *TrustPolicy) error {
	if len(chain) == 0 || slices.Contains(chain, nil) {
		return fmt.Errorf("%w: empty certificate chain", ErrUntrusted)
	}
	if policy != nil {
		v, err := NewVerifier(policy)
		if err != nil {
			return err
		}
		_, _, err = v.verifyChain(chain)
		return err
	}
	if err := checkLeaf(chain[0]); err != nil {
		return err
	}
	now := time.Now()
	for i, c := range chain {
		if now.Before(c.NotBefore) {
			return fmt.Errorf("%w: certificate %d of the chain (%s) is not valid before %s", ErrExpired, i, c.Subject, c.NotBefore.UTC().Format(time.RFC3339))
		}
		if now.After(c.NotAfter) {
			return fmt.Errorf("%w: certificate %d of the chain (%s) expired at %s", ErrExpired, i, c.Subject, c.NotAfter.UTC().Format(time.RFC3339))
		}
		if i == 0 {
			continue
		}
		if err := chain[i-1].CheckSignatureFrom(c); err != nil {
			return fmt.Errorf("%w: certificate %d of the chain (%s) is not issued by the next one (%s): %v", ErrUntrusted, i-1, chain[i-1].Subject, c.Subject, err)
		}
		if len(c.ExtKeyUsage) > 0 && !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageCodeSigning) && !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny) {
			return fmt.Errorf("%w: CA %s restricts its extended key usages and code signing is not among them", ErrKeyUsage, c.Subject)
		}
	}
	return nil
}
