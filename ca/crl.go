package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/provisioner"
)

// Revocation errors.
var (
	// ErrNoRevocationStore: the CA was opened without WithRevocationStore.
	ErrNoRevocationStore = errors.New("ca: no revocation store configured")
	// ErrUnknownIssuer: the certificate or CRL issuer is not one this CA holds a key for.
	ErrUnknownIssuer = errors.New("ca: unknown issuer")
	// ErrCRLNumber: the store returned a CRL number that does not increase.
	ErrCRLNumber = errors.New("ca: CRL number did not increase")
)

// RFC 5280 CRL reason codes used by Revoke.
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonCACompromise         = 2
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
)

// Revocation is one revoked certificate, keyed by issuer (the issuing CA's
// SubjectKeyId) and serial number.
type Revocation struct {
	IssuerKeyID  []byte
	SerialNumber *big.Int
	RevokedAt    time.Time
	ReasonCode   int
}

// RevocationStore persists revocations and CRL numbers. The db package
// implements it; ca only consumes it (ca does not import db).
type RevocationStore interface {
	// AddRevocation records r; revoking an already revoked serial is not an
	// error and keeps the first record.
	AddRevocation(ctx context.Context, r Revocation) error
	// Revocations lists all revocations of one issuer.
	Revocations(ctx context.Context, issuerKeyID []byte) ([]Revocation, error)
	// NextCRLNumber atomically increments and returns the CRL number of one
	// issuer (the first call returns 1).
	NextCRLNumber(ctx context.Context, issuerKeyID []byte) (*big.Int, error)
}

// Revoke records the revocation of cert, which must have been issued by one
// of the CA's current or retired intermediates, or be an intermediate
// certified by one of its roots (listed then in the root's CRL). With WithStore the
// revocation goes through smallstep's authority (authority.Revoke), whose
// database is the station database; otherwise straight to the
// RevocationStore. Either way it lands in the issuer's revocation list,
// so the issuer's own CRL lists it, also after an intermediate rotation.
func (c *CA) Revoke(ctx context.Context, cert *x509.Certificate, reason int) error {
	if c.revocations == nil {
		return ErrNoRevocationStore
	}
	if err := checkReason(reason); err != nil {
		return fmt.Errorf("revoke %x: %w", cert.SerialNumber, err)
	}
	if _, _, err := c.issuerFor(cert.AuthorityKeyId); err != nil && !errors.Is(err, ErrNotOpen) {
		// A CA certificate signed by one of our roots (an intermediate, a
		// cross-certificate) goes on that root's CRL, kept in the folder's
		// root state like on the root machine (RevokeByRoot).
		if !cert.IsCA || !c.isRootKeyID(cert.AuthorityKeyId) {
			return fmt.Errorf("revoke %x: %w", cert.SerialNumber, err)
		}
		_, err := RevokeByRoot(ctx, Ceremony{Dir: c.dir, Auditor: c.auditor, Actor: c.actor, Now: c.now}, cert, reason)
		return err
	}
	if c.adb != nil {
		done := c.adb.expectRevoke(ctx, cert.SerialNumber, cert.AuthorityKeyId)
		err := c.auth.Revoke(provisioner.NewContextWithMethod(ctx, provisioner.RevokeMethod), &authority.RevokeOptions{
			Serial:     cert.SerialNumber.String(),
			ReasonCode: reason,
			Reason:     ReasonName(reason),
			MTLS:       true, // authorised by the station operator, not by a token
			Crt:        cert,
		})
		done()
		if err != nil {
			return fmt.Errorf("revoke %x: %w", cert.SerialNumber, err)
		}
	} else {
		err := c.revocations.AddRevocation(ctx, Revocation{
			IssuerKeyID:  cert.AuthorityKeyId,
			SerialNumber: cert.SerialNumber,
			RevokedAt:    c.now().UTC().Truncate(time.Second),
			ReasonCode:   reason,
		})
		if err != nil {
			return fmt.Errorf("revoke %x: %w", cert.SerialNumber, err)
		}
	}
	return c.audit(ctx, "ca.revoke", map[string]any{
		"serial":        cert.SerialNumber.Text(16),
		"issuer_key_id": hex.EncodeToString(cert.AuthorityKeyId),
		"subject":       cert.Subject.String(),
		"reason":        reason,
	})
}

func (c *CA) isRootKeyID(id []byte) bool {
	for _, r := range c.Roots() {
		if len(id) > 0 && bytes.Equal(r.SubjectKeyId, id) {
			return true
		}
	}
	return false
}

// RevokeSerial revokes a certificate recorded in the station database by
// its serial number (needs WithStore).
func (c *CA) RevokeSerial(ctx context.Context, serial *big.Int, reason int) (*x509.Certificate, error) {
	if c.store == nil {
		return nil, ErrNoStore
	}
	cert, err := c.store.Certificate(ctx, serial)
	if errors.Is(err, ErrCertificateNotFound) || errors.Is(err, sql.ErrNoRows) {
		return nil, &unknownSerialError{serial: serial, cause: err}
	}
	if err != nil {
		return nil, fmt.Errorf("revoke %x: %w", serial, err)
	}
	return cert, c.Revoke(ctx, cert, reason)
}

// unknownSerialError says in one sentence what to do; it matches
// ErrUnknownSerial and ErrCertificateNotFound (errors.Is) without printing
// the database's own message.
type unknownSerialError struct {
	serial *big.Int
	cause  error
}

func (e *unknownSerialError) Error() string {
	return fmt.Sprintf("revoke %x: %v: this station never issued a certificate with that serial (give it in hex as `wsc db export` lists it, or revoke a CA certificate with --cert FILE)", e.serial, ErrUnknownSerial)
}

func (e *unknownSerialError) Unwrap() []error {
	return []error{ErrUnknownSerial, ErrCertificateNotFound, e.cause}
}

var reasonNames = map[int]string{
	0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged", 4: "superseded",
	5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL", 9: "privilegeWithdrawn", 10: "aACompromise",
}

// ReasonName returns the RFC 5280 name of a CRLReason code.
func ReasonName(code int) string {
	if n, ok := reasonNames[code]; ok {
		return n
	}
	return fmt.Sprintf("reason(%d)", code)
}

// ParseReason accepts an RFC 5280 reason name (case-insensitive, e.g.
// "keyCompromise") or its number.
func ParseReason(s string) (int, error) {
	for code, n := range reasonNames {
		if strings.EqualFold(n, s) {
			return code, nil
		}
	}
	if code, err := strconv.Atoi(s); err == nil {
		if _, ok := reasonNames[code]; ok {
			return code, nil
		}
	}
	return 0, fmt.Errorf("unknown revocation reason %q: %w", s, ErrReason)
}

// ErrReason reports a revocation reason that RFC 5280 does not define; its
// message lists the valid ones.
var ErrReason = fmt.Errorf("valid reasons are %s (or their numbers)", strings.Join(ReasonNames(), ", "))

// ReasonNames lists the RFC 5280 reason names in code order.
func ReasonNames() []string {
	var out []string
	for code := 0; code <= 10; code++ {
		if n, ok := reasonNames[code]; ok {
			out = append(out, n)
		}
	}
	return out
}

func checkReason(code int) error {
	if _, ok := reasonNames[code]; !ok {
		return fmt.Errorf("reason code %d: %w", code, ErrReason)
	}
	return nil
}

// issuerFor returns the certificate and signer of the current or a retired
// intermediate with the given SubjectKeyId.
func (c *CA) issuerFor(skid []byte) (*x509.Certificate, crypto.Signer, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if bytes.Equal(c.issuerChain[0].SubjectKeyId, skid) && c.signer != nil {
		return c.issuerChain[0], c.signer, nil
	}
	if bytes.Equal(c.issuerChain[0].SubjectKeyId, skid) {
		return nil, nil, ErrNotOpen
	}
	for _, r := range c.retired {
		if bytes.Equal(r.cert.SubjectKeyId, skid) {
			if r.signer == nil {
				return nil, nil, ErrNotOpen
			}
			return r.cert, r.signer, nil
		}
	}
	return nil, nil, ErrUnknownIssuer
}

// IssuerKeyIDs lists the SubjectKeyIds of the current and all retired
// intermediates, current first: one CRL is published per issuer.
func (c *CA) IssuerKeyIDs() [][]byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := [][]byte{c.issuerChain[0].SubjectKeyId}
	for _, r := range c.retired {
		out = append(out, r.cert.SubjectKeyId)
	}
	return out
}

// CRL builds and signs the CRL of the issuer identified by issuerKeyID (nil
// = current intermediate). Each call takes a new, strictly increasing CRL
// number from the store. The CRL is signed by that issuer's own key, so
// certificates issued before a rotation stay checkable (per-issuer CRLs).
func (c *CA) CRL(ctx context.Context, issuerKeyID []byte) (*x509.RevocationList, error) {
	if c.revocations == nil {
		return nil, ErrNoRevocationStore
	}
	if issuerKeyID == nil {
		issuerKeyID = c.Issuer().SubjectKeyId
	}
	issuer, signer, err := c.issuerFor(issuerKeyID)
	if err != nil {
		return nil, fmt.Errorf("crl %x: %w", issuerKeyID, err)
	}
	revs, err := c.revocations.Revocations(ctx, issuerKeyID)
	if err != nil {
		return nil, fmt.Errorf("crl %x: %w", issuerKeyID, err)
	}
	num, err := c.revocations.NextCRLNumber(ctx, issuerKeyID)
	if err != nil {
		return nil, fmt.Errorf("crl %x: %w", issuerKeyID, err)
	}
	c.mu.Lock()
	if c.lastCRLNumber == nil {
		c.lastCRLNumber = map[string]*big.Int{}
	}
	last := c.lastCRLNumber[string(issuerKeyID)]
	if last != nil && num.Cmp(last) <= 0 {
		c.mu.Unlock()
		return nil, fmt.Errorf("crl %x: got %v after %v: %w", issuerKeyID, num, last, ErrCRLNumber)
	}
	c.lastCRLNumber[string(issuerKeyID)] = new(big.Int).Set(num)
	validity := c.crlNextUpdate
	c.mu.Unlock()

	now := c.now().UTC().Truncate(time.Second)
	entries := make([]x509.RevocationListEntry, 0, len(revs))
	for _, r := range revs {
		entries = append(entries, x509.RevocationListEntry{
			SerialNumber:   r.SerialNumber,
			RevocationTime: r.RevokedAt,
			ReasonCode:     r.ReasonCode,
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    num,
		ThisUpdate:                now,
		NextUpdate:                now.Add(validity),
		RevokedCertificateEntries: entries,
	}, issuer, signer)
	if err != nil {
		return nil, fmt.Errorf("crl %x: sign: %w", issuerKeyID, err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("crl %x: parse: %w", issuerKeyID, err)
	}
	if c.adb != nil {
		c.adb.remember(crl, validity)
	}
	// Keep the last CRL per issuer in the folder (public data): status
	// reports when the next one is due from it.
	var tx fileTx
	tx.mkdir(filepath.Join(c.dir, CRLDir))
	tx.write(filepath.Join(c.dir, CRLDir, hex.EncodeToString(issuerKeyID)+".pem"), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw}), 0o644)
	if err := tx.commit(); err != nil {
		return nil, fmt.Errorf("crl %x: %w", issuerKeyID, err)
	}
	if err := c.audit(ctx, "ca.crl", map[string]any{
		"issuer_key_id": hex.EncodeToString(issuerKeyID),
		"number":        num.String(),
		"entries":       len(entries),
		"next_update":   crl.NextUpdate,
	}); err != nil {
		return nil, err
	}
	return crl, nil
}

// CurrentRootCRL signs the CRL of every root of the CA folder (the root
// CRL ceremony, RootCRLs, with this CA's auditor) and returns the newest
// root's. The root keys are unlocked with passphrase for this call only.
// Strict verifiers (`openssl verify -crl_check_all`) want a CRL for every
// CA in the path, roots included.
func (c *CA) CurrentRootCRL(ctx context.Context, passphrase []byte) (*x509.RevocationList, error) {
	crls, _, err := RootCRLs(ctx, Ceremony{Dir: c.dir, Auditor: c.auditor, Actor: c.actor, Now: c.now}, passphrase, c.crlNextUpdate, "")
	if err != nil {
		return nil, err
	}
	return crls[0], nil
}

// CRLs builds one CRL per issuer (current and retired intermediates).
func (c *CA) CRLs(ctx context.Context) ([]*x509.RevocationList, error) {
	var out []*x509.RevocationList
	for _, id := range c.IssuerKeyIDs() {
		crl, err := c.CRL(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, crl)
	}
	return out, nil
}

// RootCRL signs a CRL with the offline root key in dir (a ceremony step;
// roots normally revoke nothing, but strict verifiers such as
// `openssl verify -crl_check_all` want a CRL for every CA in the path).
// number must increase from one root CRL to the next; the ceremony log
// (docs/ca-ceremony.md) records it.
func RootCRL(dir string, passphrase []byte, revoked []x509.RevocationListEntry, number *big.Int, validity time.Duration) (*x509.RevocationList, error) {
	roots, err := readCerts(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, fmt.Errorf("root CRL: %w", err)
	}
	key, closeKey, err := loadKey(filepath.Join(dir, RootKeyFile), passphrase)
	if err != nil {
		return nil, fmt.Errorf("root CRL: %w", err)
	}
	defer closeKey()
	now := time.Now().UTC().Truncate(time.Second)
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now,
		NextUpdate:                now.Add(validity),
		RevokedCertificateEntries: revoked,
	}, roots[0], key)
	if err != nil {
		return nil, fmt.Errorf("root CRL: %w", err)
	}
	return x509.ParseRevocationList(der)
}
