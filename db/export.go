package db

import (
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"strings"
	"time"
)

// ExportFilter selects the devices exported for the MES.
type ExportFilter struct {
	Since     time.Time // devices provisioned (or, if not yet, issued) at or after Since; zero: all
	WorkOrder string    // empty: all work orders
	// Status keeps only records of this status (ExportRecord.Status, e.g.
	// DeviceProvisioned or ExportRevoked); empty: every device, revoked ones
	// included.
	Status string
}

// ExportRevoked is the Status of an exported device whose certificate was
// revoked (and that holds no live one): the MES must no longer trust it.
const ExportRevoked = "revoked"

// ExportRecord is one device for the plant's MES: its certificate (the live
// one, else the newest revoked one) and chain in PEM.
type ExportRecord struct {
	Serial        string    `json:"serial"`
	Backend       string    `json:"backend"`
	Status        string    `json:"status"`      // the device's status, or "revoked" (ExportRevoked)
	Certificate   string    `json:"certificate"` // PEM
	Chain         string    `json:"chain"`       // PEM, leaf first
	ProvisionedAt time.Time `json:"provisioned_at"`
	WorkOrder     string    `json:"work_order,omitempty"`
	// CertSerial is the certificate serial as wsc prints it everywhere
	// (DisplaySerial): upper-case hex, as openssl prints it.
	CertSerial       string     `json:"cert_serial,omitempty"`
	RevokedAt        *time.Time `json:"revoked_at,omitempty"`
	RevocationReason string     `json:"revocation_reason,omitempty"` // RFC 5280 name
}

// DisplaySerial turns a certificate serial in any hex spelling (this
// package's lower-case key, "0x…", colons) into the one form wsc shows on
// screens, exports and reports: upper-case hexadecimal of the serial's
// big-endian bytes, as `openssl x509 -serial` prints it — an even number
// of digits, so a serial whose first byte is below 0x10 keeps its leading
// zero ("0CA5B1B8…", not "ca5b1b8…").
func DisplaySerial(s string) string {
	h := strings.ToUpper(NormalizeSerial(s))
	if len(h)%2 == 1 {
		h = "0" + h
	}
	return h
}

// Export returns one record per device that holds a certificate, in
// provisioning order: its live certificate, or — when every certificate of
// the device was revoked — the newest one, with Status "revoked".
func (s *Store) Export(ctx context.Context, f ExportFilter) ([]ExportRecord, error) {
	// Splice the export's extra columns into certSelect's SELECT list.
	q := strings.Replace(certSelect, "\n\tFROM", ", d.backend, d.status, d.work_order, COALESCE(d.provisioned_at, c.issued_at)\n\tFROM", 1) +
		` WHERE c.id = (SELECT c2.id FROM certificates c2 WHERE c2.device_id = c.device_id AND c2.role = 'idevid'
			ORDER BY c2.revoked_at IS NULL DESC, c2.issued_at DESC, c2.id DESC LIMIT 1)`
	var args []any
	if !f.Since.IsZero() {
		q += " AND COALESCE(d.provisioned_at, c.issued_at) >= ?"
		args = append(args, f.Since.UnixNano())
	}
	if f.WorkOrder != "" {
		q += " AND d.work_order = ?"
		args = append(args, f.WorkOrder)
	}
	q += " ORDER BY COALESCE(d.provisioned_at, c.issued_at), d.serial"
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("export: %w", mapErr(err))
	}
	defer rows.Close()
	var out []ExportRecord
	for rows.Next() {
		var r ExportRecord
		var wo sql.NullString
		var t int64
		c, err := scanCertificate(scanFunc(func(dest ...any) error {
			return rows.Scan(append(dest, &r.Backend, &r.Status, &wo, &t)...)
		}))
		if err != nil {
			return nil, fmt.Errorf("export: %w", mapErr(err))
		}
		r.Serial, r.WorkOrder, r.CertSerial = c.DeviceSerial, wo.String, DisplaySerial(c.SerialHex)
		if c.RevokedAt != nil {
			r.Status, r.RevokedAt, r.RevocationReason = ExportRevoked, c.RevokedAt, c.RevokeReason
		}
		if f.Status != "" && r.Status != f.Status {
			continue
		}
		r.ProvisionedAt = fromNanos(t)
		r.Certificate = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}))
		var b strings.Builder
		for _, der := range c.Chain {
			b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		}
		r.Chain = b.String()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("export: %w", mapErr(err))
	}
	return out, nil
}

type scanFunc func(dest ...any) error

// Scan calls f.
func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

// WriteJSON writes the records as one JSON array.
func WriteJSON(w io.Writer, recs []ExportRecord) error {
	if recs == nil {
		recs = []ExportRecord{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(recs); err != nil {
		return fmt.Errorf("write json export: %w", err)
	}
	return nil
}

// CSVHeader is the header row written by WriteCSV.
var CSVHeader = []string{"serial", "backend", "status", "certificate", "chain", "provisioned_at", "work_order", "cert_serial", "revoked_at", "revocation_reason"}

// WriteCSV writes the records as RFC 4180 CSV with a header row; PEM fields keep their
// newlines inside quotes, times are RFC 3339 UTC. Every cell but the PEM ones (which this
// package writes, always starting with "-----BEGIN CERTIFICATE-----") goes through
// CSVCell, since a device chooses its own serial.
func WriteCSV(w io.Writer, recs []ExportRecord) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return fmt.Errorf("write csv export: %w", err)
	}
	for _, r := range recs {
		revokedAt := ""
		if r.RevokedAt != nil {
			revokedAt = r.RevokedAt.UTC().Format(time.RFC3339Nano)
		}
		row := []string{r.Serial, r.Backend, r.Status, r.Certificate, r.Chain,
			r.ProvisionedAt.UTC().Format(time.RFC3339Nano), r.WorkOrder, r.CertSerial, revokedAt, r.RevocationReason}
		for i := range row {
			if i == 3 || i == 4 { // PEM written by this function, always "-----BEGIN CERTIFICATE-----…"
				continue
			}
			row[i] = CSVCell(row[i])
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("write csv export: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv export: %w", err)
	}
	return nil
}

// CSVCell neutralises a cell that a spreadsheet would read as a formula (CSV injection):
// text starting with = + - @, a tab or a carriage return gets a leading single quote, so
// that "=HYPERLINK(...)" from a device's serial is shown as text, never evaluated.
func CSVCell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}
