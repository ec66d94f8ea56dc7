package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"sync"
	"time"

	"github.com/smallstep/certificates/authority"
)

// ErrNotOpen is returned by operations on a CA that was closed or never opened.
var ErrNotOpen = errors.New("ca: authority not open")

// CA is an unlocked station CA: the intermediate private key is decrypted in
// memory and issuance goes through smallstep's embedded authority. The
// issuing key and chain can be swapped at run time (SwapIntermediate) without
// rebuilding the authority; a CA is safe for concurrent use.
//
// CA never holds the root private key; ceremony operations that need it
// (rotation, rollover) decrypt it for the duration of the call.
type CA struct {
	dir  string
	auth *authority.Authority
	now  func() time.Time

	mu            sync.RWMutex
	signer        crypto.Signer
	issuerChain   []*x509.Certificate // issuing intermediate first, then any certs up to (not incl.) a root
	roots         []*x509.Certificate
	profile       *Profile
	revocations   RevocationStore
	crlNextUpdate time.Duration
	auditor       Auditor
	actor         string
	retired       []retiredIssuer
	lastCRLNumber map[string]*big.Int

	store   Store   // station database; nil without WithStore
	adb     *authDB // store as smallstep's AuthDB; nil without WithStore
	closers []func() error
}

// retiredIssuer is a previous intermediate whose key is kept to sign its CRL.
type retiredIssuer struct {
	cert   *x509.Certificate
	signer crypto.Signer
}

// Option configures Open.
type Option func(*openOptions)

type openOptions struct {
	auditor     Auditor
	actor       string
	now         func() time.Time
	profile     *Profile
	revocations RevocationStore
	store       Store
	crlValidity time.Duration
}

// WithClock overrides the clock used for validity periods (tests, replays).
func WithClock(now func() time.Time) Option {
	return func(o *openOptions) { o.now = now }
}

// WithProfile sets the default device certificate profile used when an
// IssueRequest carries none. Without it DefaultProfile() applies.
func WithProfile(p *Profile) Option {
	return func(o *openOptions) { o.profile = p }
}

// WithRevocationStore connects the CA to persistent revocation storage
// (implemented by the db package). Without it Revoke and CRL return
// ErrNoRevocationStore.
func WithRevocationStore(s RevocationStore) Option {
	return func(o *openOptions) { o.revocations = s }
}

// Auditor records ceremony events (rotation, rollover, revocation, CRL).
// The db package's Store.Audit method has this shape, so a *db.Store can be
// passed directly without ca importing db.
type Auditor interface {
	Audit(ctx context.Context, kind, actor string, detail any) error
}

// WithAuditor makes the CA record each ceremony event through a, with actor
// (the operator or station name) as the acting party.
func WithAuditor(a Auditor, actor string) Option {
	return func(o *openOptions) { o.auditor, o.actor = a, actor }
}

// audit records an event if an Auditor is configured. A failing audit is an
// error: an unrecorded ceremony step must not look successful.
func (c *CA) audit(ctx context.Context, kind string, detail map[string]any) error {
	if c.auditor == nil {
		return nil
	}
	actor := c.actor
	if actor == "" {
		actor = "ca"
	}
	if err := c.auditor.Audit(ctx, kind, actor, detail); err != nil {
		return fmt.Errorf("audit %s: %w", kind, err)
	}
	return nil
}

// WithCRLValidity sets the nextUpdate distance of generated CRLs (default 7 days).
func WithCRLValidity(d time.Duration) Option {
	return func(o *openOptions) { o.crlValidity = d }
}

// Open unlocks the CA in dir: it reads the root and intermediate
// certificates, decrypts the intermediate key once with passphrase and builds
// the embedded authority. The passphrase is not retained.
func Open(dir string, passphrase []byte, opts ...Option) (*CA, error) {
	o := openOptions{now: time.Now, crlValidity: 7 * 24 * time.Hour}
	for _, fn := range opts {
		fn(&o)
	}
	roots, err := readCerts(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, fmt.Errorf("open CA: %w", err)
	}
	chain, err := readCerts(filepath.Join(dir, IntermediateCertFile))
	if err != nil {
		return nil, fmt.Errorf("open CA: %w", err)
	}
	key, closeKey, err := loadKey(filepath.Join(dir, IntermediateKeyFile), passphrase)
	if err != nil {
		return nil, fmt.Errorf("open CA: %w", err)
	}
	c := &CA{
		closers:       []func() error{closeKey},
		dir:           dir,
		now:           o.now,
		signer:        key,
		issuerChain:   chain,
		roots:         roots,
		profile:       o.profile,
		revocations:   o.revocations,
		crlNextUpdate: o.crlValidity,
		auditor:       o.auditor,
		actor:         o.actor,
		store:         o.store,
	}
	fail := func(err error) (*CA, error) {
		c.closeKeys()
		return nil, fmt.Errorf("open CA: %w", err)
	}
	if err := checkKeyMatches(chain[0], key); err != nil {
		return fail(fmt.Errorf("intermediate: %w", err))
	}
	if c.profile == nil {
		c.profile = DefaultProfile()
	}
	if err := c.profile.ready(); err != nil {
		return fail(err)
	}
	if err := c.profile.CheckValidity(chain[0], c.now()); err != nil {
		return fail(err)
	}
	if err := c.checkChain(chain); err != nil {
		return fail(err)
	}
	if err := c.loadRetired(passphrase); err != nil {
		return fail(err)
	}
	aopts := []authority.Option{
		authority.WithX509RootCerts(roots...),
		// The signer function is consulted on every signature, so
		// SwapIntermediate takes effect for the next Issue.
		authority.WithX509SignerFunc(c.currentSigner),
		// Intermediates feed smallstep's name-constraint engine.
		authority.WithX509IntermediateCerts(chain...),
		authority.WithQuietInit(),
	}
	if c.store != nil {
		// The station database is the authority's database: Sign records
		// every certificate (StoreCertificateChain), Revoke records
		// revocations, IsRevoked/GetCertificate read them.
		c.adb = newAuthDB(c.store, c.Issuer)
		aopts = append(aopts, authority.WithDatabase(c.adb))
	}
	auth, err := authority.NewEmbedded(aopts...)
	if err != nil {
		return fail(fmt.Errorf("embedded authority: %w", err))
	}
	c.auth = auth
	return c, nil
}

// closeKeys releases key handles (PKCS#11 sessions) held by the CA.
func (c *CA) closeKeys() error {
	c.mu.Lock()
	cl := c.closers
	c.closers = nil
	c.mu.Unlock()
	var errs []error
	for _, f := range cl {
		if f != nil {
			errs = append(errs, f())
		}
	}
	return errors.Join(errs...)
}

// Authority returns smallstep's embedded authority the CA signs through
// (for its IsRevoked, GetDatabase and Revoke).
func (c *CA) Authority() *authority.Authority { return c.auth }

// currentSigner is the authority.WithX509SignerFunc callback.
func (c *CA) currentSigner() ([]*x509.Certificate, crypto.Signer, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.signer == nil {
		return nil, nil, ErrNotOpen
	}
	return append([]*x509.Certificate(nil), c.issuerChain...), c.signer, nil
}

// checkChain verifies that the issuer chain leads to one of the roots.
func (c *CA) checkChain(chain []*x509.Certificate) error {
	pool := x509.NewCertPool()
	for _, r := range c.Roots() {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		CurrentTime:   c.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("intermediate does not chain to a root: %w", err)
	}
	return nil
}

// Dir returns the CA folder.
func (c *CA) Dir() string { return c.dir }

// Roots returns the trusted root certificates (copies of the slice, shared
// certificate values).
func (c *CA) Roots() []*x509.Certificate {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]*x509.Certificate(nil), c.roots...)
}

// Intermediates returns the current issuer chain, issuing intermediate first.
func (c *CA) Intermediates() []*x509.Certificate {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]*x509.Certificate(nil), c.issuerChain...)
}

// Issuer returns the current issuing intermediate certificate.
func (c *CA) Issuer() *x509.Certificate {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.issuerChain[0]
}

// SwapIntermediate atomically replaces the issuing key and chain (hot swap
// after rotation). The chain must start with the certificate of signer and
// chain to one of the CA's roots.
func (c *CA) SwapIntermediate(chain []*x509.Certificate, signer crypto.Signer) error {
	if len(chain) == 0 || signer == nil {
		return errors.New("swap intermediate: empty chain or signer")
	}
	if err := checkKeyMatches(chain[0], signer); err != nil {
		return fmt.Errorf("swap intermediate: %w", err)
	}
	if err := c.checkChain(chain); err != nil {
		return fmt.Errorf("swap intermediate: %w", err)
	}
	c.mu.Lock()
	c.issuerChain = append([]*x509.Certificate(nil), chain...)
	c.signer = signer
	c.mu.Unlock()
	return nil
}

// Close drops the in-memory issuing key and closes token sessions. Further
// Issue calls fail with ErrNotOpen.
func (c *CA) Close() error {
	c.mu.Lock()
	c.signer = nil
	for i := range c.retired {
		c.retired[i].signer = nil
	}
	c.mu.Unlock()
	return c.closeKeys()
}

// String describes the CA without any secret material.
func (c *CA) String() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	issuer := ""
	if len(c.issuerChain) > 0 {
		issuer = c.issuerChain[0].Subject.CommonName
	}
	return fmt.Sprintf("ca.CA{dir: %q, issuer: %q, roots: %d, unlocked: %v}", c.dir, issuer, len(c.roots), c.signer != nil)
}

// GoString is like String, so %#v never dumps the key.
func (c *CA) GoString() string { return c.String() }

func checkKeyMatches(cert *x509.Certificate, s crypto.Signer) error {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := s.Public().(equaler)
	if !ok || !pub.Equal(cert.PublicKey) {
		return errors.New("private key does not match certificate")
	}
	return nil
}
