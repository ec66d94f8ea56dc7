package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"math/big"
)

// Store errors. A Store implementation wraps its own errors with these so
// that callers of ca can branch without knowing the database.
var (
	// ErrQuotaExceeded: the work order's quantity of certificates is reached;
	// the CA refuses to sign beyond it.
	ErrQuotaExceeded = errors.New("ca: work order quota exceeded")
	// ErrKeyConflict: the CSR's public key is already certified (or being
	// certified) for another device.
	ErrKeyConflict = errors.New("ca: key already certified for another device")
	// ErrKeyRevoked: the CSR's key had a certificate that was revoked; the
	// device must make a new key.
	ErrKeyRevoked = errors.New("ca: key's certificate was revoked")
	// ErrCertificateNotFound: the store holds no certificate with that serial.
	ErrCertificateNotFound = errors.New("ca: certificate not found")
	// ErrNoStore: the operation needs a CA opened WithStore.
	ErrNoStore = errors.New("ca: no station store configured")
)

// IssueIntent is the record made before the CA signs a device certificate
// (exactly-once issuance: a crash between signing and recording is visible,
// a retry re-delivers instead of signing twice).
type IssueIntent struct {
	DeviceSerial string
	// KeyPublicDER is the PKIX SubjectPublicKeyInfo of the key to certify.
	KeyPublicDER []byte
	// WorkOrder is the work order the certificate counts against (empty: no quota).
	WorkOrder string
	// RunID ties the intent to a provisioning run (0: none).
	RunID int64
	// Proof is the attestation proof the key rests on (ProofTPM …).
	Proof string
}

// Store is the station database as the CA sees it: the one source of truth
// for issued certificates, work-order quotas, revocations and CRL numbers.
// The CA consumes it (ca does not import the db package); the station
// package adapts *db.Store to it (station.CAStore).
//
// Through a Store the CA also serves smallstep's embedded authority: it is
// wrapped into a smallstep db.AuthDB (+ CertificateRevocationListDB), so the
// authority's Sign records every certificate it signs and its Revoke
// records revocations in the same database.
type Store interface {
	RevocationStore
	// BeginIssue records the intent to certify a key for a device. When this
	// device's key already has a live certificate it returns that chain
	// (leaf first) and intentID 0: the CA re-delivers it and does not sign.
	// A key of another device gives an error wrapping ErrKeyConflict; a
	// full work order one wrapping ErrQuotaExceeded.
	BeginIssue(ctx context.Context, in IssueIntent) (intentID int64, existing []*x509.Certificate, err error)
	// CompleteIssue records the signed chain (leaf first) of an intent.
	// Recording the same certificate twice is not an error.
	CompleteIssue(ctx context.Context, intentID int64, deviceSerial string, chain []*x509.Certificate) error
	// Certificate returns a recorded certificate by serial number, or an
	// error wrapping ErrCertificateNotFound.
	Certificate(ctx context.Context, serial *big.Int) (*x509.Certificate, error)
	// IsRevoked reports whether a serial is on any issuer's revocation list.
	IsRevoked(ctx context.Context, serial *big.Int) (bool, error)
}

// WithStore connects the CA to the station database. It implies
// WithRevocationStore(s): Revoke and CRL use the same database, and
// issuance goes through s (quota, key-to-device binding, exactly-once
// recording of every signed certificate).
func WithStore(s Store) Option {
	return func(o *openOptions) { o.store, o.revocations = s, s }
}

// RecordsIssuance reports whether Issue records every certificate it signs
// in the station database itself (the CA was opened WithStore): the
// authority's StoreCertificateChain completes the issue intent before Issue
// returns, so the caller must not record the certificate a second time.
func (c *CA) RecordsIssuance() bool { return c.store != nil }

// Store returns the station database the CA records issuance in (nil
// without WithStore).
func (c *CA) Store() Store { return c.store }
