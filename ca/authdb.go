package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/smallstep/certificates/db"
	"github.com/smallstep/nosql/database"
	"golang.org/x/crypto/ssh"
)

// authDB adapts a Store to smallstep's db.AuthDB, db.CertificateStorer (via
// StoreCertificateChain) and db.CertificateRevocationListDB, so that the
// embedded authority persists into the station database.
//
// smallstep's interfaces carry neither a context nor the issuer of a
// serial; the CA registers what the current call is about (pending issue
// by public key, pending revocation by serial) before calling into the
// authority, and the adapter picks it up. Both registrations live only for
// the duration of that call.
type authDB struct {
	store   Store
	current func() *x509.Certificate // the current issuing intermediate

	mu      sync.Mutex
	issues  map[string]*pendingIssue // key: leaf SubjectPublicKeyInfo
	revokes map[string]pendingRevoke // key: decimal serial
	crls    map[string]*db.CertificateRevocationListInfo
}

// pendingIssue is one Issue in flight; its intent is resolved by
// Store.BeginIssue (or given by the caller) before smallstep signs.
type pendingIssue struct {
	ctx          context.Context
	deviceSerial string

	ready    chan struct{} // closed when the fields below are set
	intentID int64
	existing []*x509.Certificate
	err      error

	recorded bool // guarded by authDB.mu
}

// resolve records the outcome of BeginIssue.
func (p *pendingIssue) resolve(id int64, existing []*x509.Certificate, err error) {
	p.intentID, p.existing, p.err = id, existing, err
	close(p.ready)
}

// wait returns once the intent is resolved.
func (p *pendingIssue) wait() { <-p.ready }

type pendingRevoke struct {
	ctx         context.Context
	issuerKeyID []byte
}

var (
	_ db.AuthDB                      = (*authDB)(nil)
	_ db.CertificateRevocationListDB = (*authDB)(nil)
	_ interface {
		StoreCertificateChain(...*x509.Certificate) error
	} = (*authDB)(nil)
)

func newAuthDB(s Store, current func() *x509.Certificate) *authDB {
	return &authDB{
		store:   s,
		current: current,
		issues:  map[string]*pendingIssue{},
		revokes: map[string]pendingRevoke{},
		crls:    map[string]*db.CertificateRevocationListInfo{},
	}
}

func parseDecimalSerial(sn string) (*big.Int, error) {
	n, ok := new(big.Int).SetString(sn, 10)
	if !ok || n.Sign() < 0 {
		return nil, fmt.Errorf("serial %q is not a decimal number", sn)
	}
	return n, nil
}

// IsRevoked implements db.AuthDB (sn is decimal, as smallstep writes it).
func (a *authDB) IsRevoked(sn string) (bool, error) {
	n, err := parseDecimalSerial(sn)
	if err != nil {
		return false, err
	}
	return a.store.IsRevoked(context.Background(), n)
}

// IsSSHRevoked implements db.AuthDB; the station issues no SSH certificates.
func (a *authDB) IsSSHRevoked(string) (bool, error) { return false, nil }

// Revoke implements db.AuthDB: it records the revocation in the station
// database under the certificate's issuer. A serial already revoked keeps
// its first record and is not an error.
func (a *authDB) Revoke(rci *db.RevokedCertificateInfo) error {
	n, err := parseDecimalSerial(rci.Serial)
	if err != nil {
		return err
	}
	a.mu.Lock()
	p, ok := a.revokes[rci.Serial]
	a.mu.Unlock()
	ctx := context.Background()
	issuer := []byte(nil)
	if ok {
		ctx, issuer = p.ctx, p.issuerKeyID
	} else {
		cert, err := a.store.Certificate(ctx, n)
		if err != nil {
			return fmt.Errorf("revoke %s: issuer unknown: %w", n.Text(16), err)
		}
		issuer = cert.AuthorityKeyId
	}
	at := rci.RevokedAt
	if at.IsZero() {
		at = time.Now()
	}
	return a.store.AddRevocation(ctx, Revocation{
		IssuerKeyID:  issuer,
		SerialNumber: n,
		RevokedAt:    at.UTC().Truncate(time.Second),
		ReasonCode:   rci.ReasonCode,
	})
}

// RevokeSSH implements db.AuthDB; not supported.
func (a *authDB) RevokeSSH(*db.RevokedCertificateInfo) error { return db.ErrNotImplemented }

// GetCertificate implements db.AuthDB.
func (a *authDB) GetCertificate(serialNumber string) (*x509.Certificate, error) {
	n, err := parseDecimalSerial(serialNumber)
	if err != nil {
		return nil, err
	}
	return a.store.Certificate(context.Background(), n)
}

// UseToken implements db.AuthDB; the embedded authority uses no one-time tokens.
func (a *authDB) UseToken(string, string) (bool, error) { return false, db.ErrNotImplemented }

// IsSSHHost implements db.AuthDB.
func (a *authDB) IsSSHHost(string) (bool, error) { return false, nil }

// GetSSHHostPrincipals implements db.AuthDB.
func (a *authDB) GetSSHHostPrincipals() ([]string, error) { return nil, db.ErrNotImplemented }

// Shutdown implements db.AuthDB. The Store belongs to the caller, who closes it.
func (a *authDB) Shutdown() error { return nil }

// StoreCertificate implements db.CertificateStorer for a lone leaf.
func (a *authDB) StoreCertificate(crt *x509.Certificate) error { return a.StoreCertificateChain(crt) }

// StoreSSHCertificate implements db.CertificateStorer; not supported.
func (a *authDB) StoreSSHCertificate(*ssh.Certificate) error { return db.ErrNotImplemented }

// StoreCertificateChain is called by the authority after every signature:
// it completes the intent the CA registered for this key. A certificate
// signed without a registered intent is refused, so the authority's Sign
// fails rather than hand out an unrecorded certificate.
func (a *authDB) StoreCertificateChain(chain ...*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("store certificate: empty chain")
	}
	a.mu.Lock()
	p := a.issues[string(chain[0].RawSubjectPublicKeyInfo)]
	a.mu.Unlock()
	if p == nil {
		return fmt.Errorf("store certificate %s: no issue intent registered for its key", chain[0].SerialNumber.Text(16))
	}
	p.wait()
	switch {
	case p.err != nil:
		return p.err
	case p.existing != nil:
		return errReDeliver
	}
	if err := a.store.CompleteIssue(p.ctx, p.intentID, p.deviceSerial, chain); err != nil {
		return err
	}
	a.mu.Lock()
	p.recorded = true
	a.mu.Unlock()
	return nil
}

// expectIssue registers an Issue for the key spki; the caller resolves
// its intent and calls done when the authority returned. done reports
// whether the certificate was recorded.
func (a *authDB) expectIssue(ctx context.Context, spki []byte, deviceSerial string) (p *pendingIssue, done func() bool) {
	p = &pendingIssue{ctx: ctx, deviceSerial: deviceSerial, ready: make(chan struct{})}
	a.mu.Lock()
	a.issues[string(spki)] = p
	a.mu.Unlock()
	return p, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.issues[string(spki)] == p {
			delete(a.issues, string(spki))
		}
		return p.recorded
	}
}

// expectRevoke registers the issuer of a serial for the following Revoke.
func (a *authDB) expectRevoke(ctx context.Context, serial *big.Int, issuerKeyID []byte) func() {
	k := serial.String()
	a.mu.Lock()
	a.revokes[k] = pendingRevoke{ctx: ctx, issuerKeyID: issuerKeyID}
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		delete(a.revokes, k)
		a.mu.Unlock()
	}
}

// GetRevokedCertificates implements db.CertificateRevocationListDB. smallstep
// signs its (single) CRL with the current issuer, so only the current
// issuer's revocations belong in it; retired issuers get their own CRLs
// from CA.CRL.
func (a *authDB) GetRevokedCertificates() (*[]db.RevokedCertificateInfo, error) {
	cur := a.current()
	revs, err := a.store.Revocations(context.Background(), cur.SubjectKeyId)
	if err != nil {
		return nil, err
	}
	out := make([]db.RevokedCertificateInfo, 0, len(revs))
	for _, r := range revs {
		out = append(out, db.RevokedCertificateInfo{
			Serial:     r.SerialNumber.String(),
			ReasonCode: r.ReasonCode,
			RevokedAt:  r.RevokedAt,
		})
	}
	return &out, nil
}

// GetCRL implements db.CertificateRevocationListDB: the last CRL made for
// the current issuer in this process (CRLs are regenerated, not archived).
func (a *authDB) GetCRL() (*db.CertificateRevocationListInfo, error) {
	cur := a.current()
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.crls[string(cur.SubjectKeyId)]; ok {
		cp := *c
		return &cp, nil
	}
	return nil, database.ErrNotFound
}

// StoreCRL implements db.CertificateRevocationListDB. The CRL number is
// checked against the station database's counter so that numbers never
// go backwards whoever generated the CRL.
func (a *authDB) StoreCRL(info *db.CertificateRevocationListInfo) error {
	crl, err := x509.ParseRevocationList(info.DER)
	if err != nil {
		return fmt.Errorf("store crl: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if last, ok := a.crls[string(crl.AuthorityKeyId)]; ok && info.Number <= last.Number {
		return fmt.Errorf("store crl: number %d after %d: %w", info.Number, last.Number, ErrCRLNumber)
	}
	cp := *info
	a.crls[string(crl.AuthorityKeyId)] = &cp
	return nil
}

// remember keeps a CRL made by CA.CRL for GetCRL.
func (a *authDB) remember(crl *x509.RevocationList, validity time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if last, ok := a.crls[string(crl.AuthorityKeyId)]; ok && crl.Number.Int64() <= last.Number {
		return
	}
	a.crls[string(crl.AuthorityKeyId)] = &db.CertificateRevocationListInfo{
		Number: crl.Number.Int64(), ExpiresAt: crl.NextUpdate, Duration: validity, DER: crl.Raw,
	}
}
