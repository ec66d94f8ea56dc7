package station

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
)

// CAStore adapts the station database to ca.Store, so that the CA (and
// smallstep's embedded authority inside it) records issued certificates,
// revocations and CRL numbers in the station database: one source of
// truth. ca cannot import db and db imports nothing of ours, hence this
// thin adapter here.
//
//	c, err := ca.Open(dir, pass, ca.WithStore(station.CAStore(store)), ca.WithAuditor(store, operator))
func CAStore(s *db.Store) ca.Store { return caStore{s} }

type caStore struct{ s *db.Store }

// AddRevocation implements ca.RevocationStore. A serial already revoked
// keeps its first record.
func (a caStore) AddRevocation(ctx context.Context, r ca.Revocation) error {
	err := a.s.RecordRevocation(ctx, db.SerialHex(r.SerialNumber), r.IssuerKeyID, r.ReasonCode, r.RevokedAt)
	if errors.Is(err, db.ErrAlreadyRevoked) {
		return nil
	}
	return err
}

// Revocations implements ca.RevocationStore.
func (a caStore) Revocations(ctx context.Context, issuerKeyID []byte) ([]ca.Revocation, error) {
	revs, err := a.s.Revocations(ctx, issuerKeyID)
	if err != nil {
		return nil, err
	}
	out := make([]ca.Revocation, 0, len(revs))
	for _, r := range revs {
		n, ok := new(big.Int).SetString(r.SerialHex, 16)
		if !ok {
			return nil, fmt.Errorf("revocations: bad serial %q in database", r.SerialHex)
		}
		out = append(out, ca.Revocation{IssuerKeyID: r.IssuerKeyID, SerialNumber: n, RevokedAt: r.RevokedAt, ReasonCode: r.Reason})
	}
	return out, nil
}

// NextCRLNumber implements ca.RevocationStore.
func (a caStore) NextCRLNumber(ctx context.Context, issuerKeyID []byte) (*big.Int, error) {
	n, err := a.s.NextCRLNumber(ctx, issuerKeyID)
	if err != nil {
		return nil, err
	}
	return big.NewInt(n), nil
}

// BeginIssue implements ca.Store. A device the database does not know yet
// is added first (issuance through the CA alone, e.g. a ceremony test).
func (a caStore) BeginIssue(ctx context.Context, in ca.IssueIntent) (int64, []*x509.Certificate, error) {
	di := db.IssueIntent{DeviceSerial: in.DeviceSerial, KeyPublicDER: in.KeyPublicDER, WorkOrder: in.WorkOrder, RunID: in.RunID, Proof: in.Proof}
	id, ex, err := a.s.BeginIssue(ctx, di)
	if errors.Is(err, db.ErrNotFound) && in.DeviceSerial != "" {
		if _, gerr := a.s.GetDevice(ctx, in.DeviceSerial); errors.Is(gerr, db.ErrNotFound) {
			if err := a.s.EnsureDevice(ctx, db.Device{Serial: in.DeviceSerial}); err != nil {
				return 0, nil, err
			}
			id, ex, err = a.s.BeginIssue(ctx, di)
		}
	}
	switch {
	case errors.Is(err, db.ErrKeyConflict):
		return 0, nil, fmt.Errorf("%w: %w", ca.ErrKeyConflict, err)
	case errors.Is(err, db.ErrQuotaExceeded):
		return 0, nil, fmt.Errorf("%w: %w", ca.ErrQuotaExceeded, err)
	case errors.Is(err, db.ErrKeyRevoked):
		return 0, nil, fmt.Errorf("%w: %w", ca.ErrKeyRevoked, err)
	case err != nil:
		return 0, nil, err
	case ex != nil:
		chain, err := parseChain(ex)
		return 0, chain, err
	}
	return id, nil, nil
}

// CompleteIssue implements ca.Store.
func (a caStore) CompleteIssue(ctx context.Context, intentID int64, deviceSerial string, chain []*x509.Certificate) error {
	raw := make([][]byte, len(chain))
	for i, c := range chain {
		raw[i] = c.Raw
	}
	return a.s.CompleteIssue(ctx, intentID, db.Certificate{
		DeviceSerial: deviceSerial,
		IssuerKeyID:  chain[0].AuthorityKeyId,
		DER:          chain[0].Raw,
		Chain:        raw,
	})
}

// Certificate implements ca.Store.
func (a caStore) Certificate(ctx context.Context, serial *big.Int) (*x509.Certificate, error) {
	c, err := a.s.GetCertificate(ctx, db.SerialHex(serial))
	if errors.Is(err, db.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", ca.ErrCertificateNotFound, err)
	}
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(c.DER)
}

// IsRevoked implements ca.Store.
func (a caStore) IsRevoked(ctx context.Context, serial *big.Int) (bool, error) {
	return a.s.IsRevoked(ctx, db.SerialHex(serial))
}

func parseChain(c *db.Certificate) ([]*x509.Certificate, error) {
	ders := c.Chain
	if len(ders) == 0 {
		ders = [][]byte{c.DER}
	}
	out := make([]*x509.Certificate, 0, len(ders))
	for _, d := range ders {
		x, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("recorded certificate %s: %w", c.SerialHex, err)
		}
		out = append(out, x)
	}
	return out, nil
}

// checkIssuerStore refuses a CA that records issuance in another database
// than the station's: the station's issue intents would not exist there.
func checkIssuerStore(iss Issuer, st Store) error {
	c, ok := iss.(interface{ Store() ca.Store })
	if !ok {
		return nil
	}
	cs, ok := c.Store().(caStore)
	if !ok {
		return nil
	}
	if ds, ok := st.(*db.Store); ok && ds != cs.s {
		return errors.New("station: the CA records issuance in another database than the station's (open it with ca.WithStore(station.CAStore(store)) on the station's store)")
	}
	return nil
}
