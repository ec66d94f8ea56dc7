package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Folder layout for rotation and rollover, relative to the CA folder.
const (
	// NextIntermediateKeyFile holds the key of a requested, not yet installed intermediate.
	NextIntermediateKeyFile = "intermediate.next.key"
	// RetiredDir holds previous intermediates (<skid>.crt, <skid>.key) and roots (root-<skid>.crt/.key).
	RetiredDir = "retired"
	// CrossDir holds rollover cross-certificates.
	CrossDir = "cross"
)

// ErrNoPendingKey is returned by InstallIntermediate without a prior GenerateIntermediateCSR.
var ErrNoPendingKey = errors.New("ca: no pending intermediate key")

// KeyOption configures where GenerateIntermediateCSR makes the new key.
type KeyOption func(*keyOptions)

type keyOptions struct {
	keyURI string
	set    bool
}

// WithKeyURI makes the new key in the PKCS#11 token named by uri ("" = an
// encrypted file). Without it the new key goes where the current
// intermediate key is (same token, or an encrypted file).
func WithKeyURI(uri string) KeyOption {
	return func(o *keyOptions) { o.keyURI, o.set = uri, true }
}

// GenerateIntermediateCSR creates a new P-256 intermediate key in dir
// (encrypted, as intermediate.next.key, or in a token, recorded as
// intermediate.next.kms) and returns a CSR for it, to be signed by the
// offline root (SignIntermediate) on the ceremony machine. secret is the
// key passphrase or the token PIN.
func GenerateIntermediateCSR(dir string, secret []byte, commonName string, opts ...KeyOption) ([]byte, error) {
	der, _, err := IntermediateCSR(context.Background(), Ceremony{Dir: dir}, secret, commonName, "", opts...)
	return der, err
}

// SignIntermediate is the root ceremony step: it unlocks the root key in
// rootDir and certifies the CSR's key as an intermediate with path length 0
// and the DNS name constraints of t. Only the CSR's key is used; subject and
// constraints come from t.
func SignIntermediate(rootDir string, passphrase []byte, csrDER []byte, t IntermediateTemplate) (*x509.Certificate, error) {
	cert, _, err := SignIntermediateCSR(context.Background(), Ceremony{Dir: rootDir}, passphrase, csrDER, t, "")
	return cert, err
}

// InstallIntermediate installs a newly signed intermediate certificate
// (chain: intermediate first, plus any cross-certificates) for the pending
// key from GenerateIntermediateCSR, moves the previous intermediate to the
// retired folder (its key stays available for its CRL), and hot-swaps the
// issuing signer: the next Issue uses the new intermediate.
func (c *CA) InstallIntermediate(ctx context.Context, chain []*x509.Certificate, passphrase []byte) error {
	var tx fileTx
	c.mu.RLock()
	old, oldSigner := c.issuerChain[0], c.signer
	c.mu.RUnlock()
	key, closeKey, _, err := installPlan(&tx, c.dir, chain, passphrase, c.now())
	if err != nil {
		return err
	}
	if err := c.checkChain(chain); err != nil {
		closeKey()
		return fmt.Errorf("install intermediate: %w", err)
	}
	cer := Ceremony{Dir: c.dir, Auditor: c.auditor, Actor: c.actor, Now: c.now}
	res := &Result{Ceremony: "intermediate install", Dir: c.dir, Certificates: []CertSummary{summary("intermediate", chain[0])}}
	if err := cer.finish(ctx, &tx, res, passphrase, "ca.intermediate.install", map[string]any{
		"old_key_id": hex.EncodeToString(old.SubjectKeyId),
		"new_key_id": hex.EncodeToString(chain[0].SubjectKeyId),
		"subject":    chain[0].Subject.String(),
		"not_after":  chain[0].NotAfter,
	}); err != nil {
		closeKey()
		return err
	}
	if err := c.SwapIntermediate(chain, key); err != nil {
		closeKey()
		return err
	}
	c.mu.Lock()
	c.closers = append(c.closers, closeKey)
	if !bytes.Equal(old.SubjectKeyId, chain[0].SubjectKeyId) {
		c.retired = append(c.retired, retiredIssuer{cert: old, signer: oldSigner})
	}
	c.mu.Unlock()
	return nil
}

// loadRetired reads retired intermediates (cert + key) for per-issuer CRLs.
func (c *CA) loadRetired(passphrase []byte) error {
	rd := filepath.Join(c.dir, RetiredDir)
	ents, err := os.ReadDir(rd)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("retired issuers: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".crt") || strings.HasPrefix(name, "root-") {
			continue
		}
		certs, err := readCerts(filepath.Join(rd, name))
		if err != nil {
			return fmt.Errorf("retired issuers: %w", err)
		}
		if bytes.Equal(certs[0].SubjectKeyId, c.issuerChain[0].SubjectKeyId) {
			continue
		}
		key, closeKey, err := loadKey(filepath.Join(rd, strings.TrimSuffix(name, ".crt")+".key"), passphrase)
		if err != nil {
			return fmt.Errorf("retired issuers: %w", err)
		}
		c.closers = append(c.closers, closeKey)
		if err := checkKeyMatches(certs[0], key); err != nil {
			return fmt.Errorf("retired issuer %s: %w", name, err)
		}
		c.retired = append(c.retired, retiredIssuer{cert: certs[0], signer: key})
	}
	return nil
}

// RotateIntermediate performs a whole intermediate rotation when the root
// key is in the CA folder (single-machine ceremony): new key, CSR, signature
// by the root, install and hot swap.
func (c *CA) RotateIntermediate(ctx context.Context, passphrase []byte, t IntermediateTemplate) (*x509.Certificate, error) {
	if t.CommonName == "" {
		t.CommonName = c.Issuer().Subject.CommonName
	}
	if t.Organization == "" && len(c.Issuer().Subject.Organization) > 0 {
		t.Organization = c.Issuer().Subject.Organization[0]
	}
	if len(t.PermittedDNSDomains) == 0 {
		t.PermittedDNSDomains = c.Issuer().PermittedDNSDomains
	}
	csr, err := GenerateIntermediateCSR(c.dir, passphrase, t.CommonName)
	if err != nil {
		return nil, fmt.Errorf("rotate intermediate: %w", err)
	}
	cert, err := SignIntermediate(c.dir, passphrase, csr, t)
	if err != nil {
		return nil, fmt.Errorf("rotate intermediate: %w", err)
	}
	if err := c.InstallIntermediate(ctx, c.chainFor(cert), passphrase); err != nil {
		return nil, fmt.Errorf("rotate intermediate: %w", err)
	}
	return cert, nil
}

// chainFor appends the cross-certificate that links cert's issuing root to
// older roots, if a rollover produced one, so verifiers that only trust an
// older root still build a path.
func (c *CA) chainFor(cert *x509.Certificate) []*x509.Certificate {
	chain := []*x509.Certificate{cert}
	cross, err := readCerts(filepath.Join(c.dir, CrossDir, "new-by-old.crt"))
	if err == nil && bytes.Equal(cross[0].SubjectKeyId, cert.AuthorityKeyId) {
		chain = append(chain, cross[0])
	}
	return chain
}

// RolloverOptions configure RolloverRoot.
type RolloverOptions struct {
	// CommonName of the new root (default: old CN + " " + year).
	CommonName string
	// Validity of the new root (default 20 years).
	Validity time.Duration
	// Now overrides the clock.
	Now func() time.Time
}

// Rollover is the result of RolloverRoot.
type Rollover struct {
	NewRoot *x509.Certificate
	OldRoot *x509.Certificate
	// NewByOld is the new root's key certified by the old root: verifiers
	// that still trust only the old root accept chains under the new root.
	NewByOld *x509.Certificate
	// OldByNew is the old root's key certified by the new root: chains
	// under the old root verify for verifiers that already trust only the new root.
	OldByNew *x509.Certificate
	// Intermediate is the current intermediate key re-certified by the new root.
	Intermediate *x509.Certificate
	// Earlier are the other still-valid intermediates of the old root
	// (retired by rotations) re-certified by the new root.
	Earlier []*x509.Certificate
}

// RolloverRoot replaces the offline root: it creates a new P-256 root,
// cross-certifies old and new roots in both directions (root path length
// is unlimited, so leaf → intermediate → cross → root verifies), re-certifies
// the current intermediate key under the new root and hot-swaps the issuer
// chain to [intermediate, new-by-old]. root.crt then lists the new root
// first and the old root second (both trusted during the transition);
// root.key is the new key; the old root is kept in retired/.
func (c *CA) RolloverRoot(ctx context.Context, passphrase []byte, o RolloverOptions) (*Rollover, error) {
	if o.Now == nil {
		o.Now = c.now
	}
	cer := Ceremony{Dir: c.dir, Auditor: c.auditor, Actor: c.actor, Now: c.now}
	ro, _, err := RolloverFolder(ctx, cer, passphrase, o, "")
	if err != nil {
		return nil, err
	}
	roots, err := readCerts(filepath.Join(c.dir, RootCertFile))
	if err != nil {
		return nil, fmt.Errorf("rollover: %w", err)
	}
	c.mu.Lock()
	c.roots = roots
	c.mu.Unlock()
	// Same key, new certificate: the install step keeps the old-root-signed
	// copy in cross/ for the bundle and hot-swaps the chain.
	if err := c.InstallIntermediate(ctx, []*x509.Certificate{ro.Intermediate, ro.NewByOld}, passphrase); err != nil {
		return nil, fmt.Errorf("rollover: %w", err)
	}
	return ro, nil
}

// crossCert certifies subjectCert's key and subject by issuer. No path
// length constraint: a cross certificate sits above intermediates.
func crossCert(subjectCert *x509.Certificate, pub crypto.PublicKey, issuer *x509.Certificate, issuerKey crypto.Signer, now time.Time) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	notAfter := subjectCert.NotAfter
	if notAfter.After(issuer.NotAfter) {
		notAfter = issuer.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subjectCert.Subject,
		SubjectKeyId:          subjectCert.SubjectKeyId,
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            -1,
	}
	return signCert(tmpl, issuer, pub, issuerKey)
}

// Reload picks up an intermediate (or roots) installed in the CA folder by
// another process — `wsc ca intermediate install` or `wsc ca root rollover`
// run while the station is running — and hot-swaps the issuer without a
// restart: the next Issue uses the new intermediate, the previous one
// stays available for its CRL. secret unlocks the new key (passphrase or
// token PIN); it is not kept. Reload reports whether anything changed.
func (c *CA) Reload(ctx context.Context, secret []byte) (bool, error) {
	roots, err := readCerts(filepath.Join(c.dir, RootCertFile))
	if err != nil {
		return false, fmt.Errorf("reload: %w", err)
	}
	chain, err := readCerts(filepath.Join(c.dir, IntermediateCertFile))
	if err != nil {
		return false, fmt.Errorf("reload: %w", err)
	}
	c.mu.RLock()
	old, oldSigner := c.issuerChain[0], c.signer
	same := len(chain) == len(c.issuerChain) && len(roots) == len(c.roots)
	for i := 0; same && i < len(chain); i++ {
		same = bytes.Equal(chain[i].Raw, c.issuerChain[i].Raw)
	}
	for i := 0; same && i < len(roots); i++ {
		same = bytes.Equal(roots[i].Raw, c.roots[i].Raw)
	}
	c.mu.RUnlock()
	if same {
		return false, nil
	}
	if oldSigner == nil {
		return false, fmt.Errorf("reload: %w", ErrNotOpen)
	}
	signer, closeKey := oldSigner, func() error { return nil }
	if !bytes.Equal(chain[0].SubjectKeyId, old.SubjectKeyId) {
		if signer, closeKey, err = loadKey(filepath.Join(c.dir, IntermediateKeyFile), secret); err != nil {
			return false, fmt.Errorf("reload: %w", err)
		}
	}
	c.mu.Lock()
	prevRoots := c.roots
	c.roots = roots
	c.mu.Unlock()
	if err := c.SwapIntermediate(chain, signer); err != nil {
		c.mu.Lock()
		c.roots = prevRoots
		c.mu.Unlock()
		closeKey()
		return false, fmt.Errorf("reload: %w", err)
	}
	c.mu.Lock()
	c.closers = append(c.closers, closeKey)
	known := bytes.Equal(old.SubjectKeyId, chain[0].SubjectKeyId)
	for _, r := range c.retired {
		known = known || bytes.Equal(r.cert.SubjectKeyId, old.SubjectKeyId)
	}
	if !known {
		c.retired = append(c.retired, retiredIssuer{cert: old, signer: oldSigner})
	}
	c.mu.Unlock()
	return true, c.audit(ctx, "ca.reload", map[string]any{
		"old_key_id": hex.EncodeToString(old.SubjectKeyId),
		"new_key_id": hex.EncodeToString(chain[0].SubjectKeyId),
		"roots":      len(roots),
	})
}
