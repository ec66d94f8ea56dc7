package plant

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Publish records a station's issuing intermediates and CRLs (idempotent: a CRL number
// already held is a no-op). The station calls it through its Syncer.
func (r *Registry) Publish(ctx context.Context, station string, issuers []*x509.Certificate, crls []*x509.RevocationList) error {
	var b pgx.Batch
	for _, c := range issuers {
		b.Queue(`INSERT INTO issuers (station_id, key_id, der) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, station, c.SubjectKeyId, c.Raw)
	}
	for _, l := range crls {
		n := l.Number
		if n == nil {
			n = big.NewInt(0)
		}
		b.Queue(`INSERT INTO crls (station_id, issuer_key_id, number, this_update, der) VALUES ($1, $2, $3::numeric, $4, $5)
			ON CONFLICT DO NOTHING`, station, l.AuthorityKeyId, n.String(), l.ThisUpdate, l.Raw)
	}
	if b.Len() == 0 {
		return nil
	}
	if err := r.pool.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("publish %s: %w", station, mapErr(err))
	}
	return nil
}

// Bundle is the plant's trust material for QA: every station's intermediates and the
// newest CRL of each.
type Bundle struct {
	Issuers []*x509.Certificate
	CRLs    []*x509.RevocationList
	Missing []string // issuers without a CRL: QA must not rely on revocation for them
}

// Bundle collects every published intermediate and its newest CRL.
func (r *Registry) Bundle(ctx context.Context) (*Bundle, error) {
	rows, err := r.pool.Query(ctx, `SELECT i.station_id, i.der, c.der FROM issuers i
		LEFT JOIN LATERAL (SELECT der FROM crls WHERE crls.station_id = i.station_id AND crls.issuer_key_id = i.key_id
			ORDER BY number DESC LIMIT 1) c ON true ORDER BY i.station_id, i.key_id`)
	if err != nil {
		return nil, fmt.Errorf("plant bundle: %w", mapErr(err))
	}
	defer rows.Close()
	out := &Bundle{}
	for rows.Next() {
		var st string
		var ider, cder []byte
		if err := rows.Scan(&st, &ider, &cder); err != nil {
			return nil, fmt.Errorf("plant bundle: %w", mapErr(err))
		}
		ic, err := x509.ParseCertificate(ider)
		if err != nil {
			return nil, fmt.Errorf("plant bundle: intermediate of %s: %w", st, err)
		}
		out.Issuers = append(out.Issuers, ic)
		if cder == nil {
			out.Missing = append(out.Missing, fmt.Sprintf("%s: %s", st, ic.Subject.CommonName))
			continue
		}
		crl, err := x509.ParseRevocationList(cder)
		if err != nil {
			return nil, fmt.Errorf("plant bundle: CRL of %s: %w", st, err)
		}
		// The registry only stores; the signature is what QA trusts.
		if err := crl.CheckSignatureFrom(ic); err != nil {
			return nil, fmt.Errorf("plant bundle: CRL of %s is not signed by its intermediate: %w", st, err)
		}
		out.CRLs = append(out.CRLs, crl)
	}
	return out, mapErr(rows.Err())
}

// PEM encodes the bundle: certificates, then X509 CRLs.
func (b *Bundle) PEM() []byte {
	var buf bytes.Buffer
	for _, c := range b.Issuers {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	for _, l := range b.CRLs {
		pem.Encode(&buf, &pem.Block{Type: "X509 CRL", Bytes: l.Raw})
	}
	return buf.Bytes()
}

// Summary is a one-line description of the bundle.
func (b *Bundle) Summary() string {
	s := fmt.Sprintf("%d intermediates, %d CRLs", len(b.Issuers), len(b.CRLs))
	if len(b.Missing) > 0 {
		s += "; no CRL yet for: " + strings.Join(b.Missing, ", ")
	}
	return s
}
