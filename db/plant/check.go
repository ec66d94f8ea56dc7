package plant

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wsc-project/wsc/db"
)

// Finding is one plant-wide inconsistency.
type Finding struct {
	Check    string   `json:"check"`    // chip-at-two-stations, key-at-two-stations, serial-two-chips, cert-without-run, alarm, ledger
	Subject  string   `json:"subject"`  // the chip hash, key hash, serial or certificate serial concerned
	Stations []string `json:"stations"` // where it was seen
	Detail   string   `json:"detail"`
}

// Check names, in Finding.Check.
const (
	CheckChipTwoStations = "chip-at-two-stations"
	CheckKeyTwoStations  = "key-at-two-stations"
	CheckSerialTwoChips  = "serial-two-chips"
	CheckCertWithoutRun  = "cert-without-run"
	CheckAlarm           = "alarm"
	CheckLedger          = "ledger"
)

// Check runs the plant-wide checks: the same chip identity or device key bound at two
// stations, one serial bound to two chips, a certificate the registry has no successful run
// for (only for confirmed certificates, whose run is finished in the same station
// transaction), every raised alarm, and a re-verification of every witnessed ledger row's
// hash and checkpoint signature (a defence against a station client that skipped the
// checks of Ingest). No finding means consistent.
func (r *Registry) Check(ctx context.Context) ([]Finding, error) {
	out, err := r.CheckRecords(ctx)
	if err != nil {
		return nil, err
	}
	lf, err := r.verifyLedgers(ctx)
	if err != nil {
		return nil, err
	}
	return append(out, lf...), nil
}

// CheckRecords runs the checks of Check except the re-verification of every ledger (cheap
// enough for a dashboard refresh).
func (r *Registry) CheckRecords(ctx context.Context) ([]Finding, error) {
	var out []Finding
	groups := []struct {
		check, q, what string
	}{
		{CheckChipTwoStations, `SELECT encode(ek_hash, 'hex'), array_agg(DISTINCT station_id ORDER BY station_id), string_agg(DISTINCT serial, ', ')
			FROM devices WHERE ek_hash IS NOT NULL GROUP BY ek_hash HAVING count(DISTINCT station_id) > 1`, "chip bound at several stations to serial(s) "},
		{CheckKeyTwoStations, `SELECT encode(key_hash, 'hex'), array_agg(DISTINCT station_id ORDER BY station_id), string_agg(DISTINCT serial, ', ')
			FROM devices GROUP BY key_hash HAVING count(DISTINCT station_id) > 1`, "device key certified at several stations for serial(s) "},
		{CheckSerialTwoChips, `SELECT serial, array_agg(DISTINCT station_id ORDER BY station_id), string_agg(DISTINCT encode(ek_hash, 'hex'), ', ')
			FROM devices WHERE ek_hash IS NOT NULL GROUP BY serial HAVING count(DISTINCT ek_hash) > 1`, "one serial bound to chips "},
		{CheckCertWithoutRun, `SELECT c.serial_hex, ARRAY[c.station_id], c.device_serial FROM certificates c
			JOIN confirmations f ON f.station_id = c.station_id AND f.serial_hex = c.serial_hex
			WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.station_id = c.station_id AND r.run_id = c.run_id AND r.result = 'ok')`,
			"confirmed certificate without a successful run, device "},
		{CheckAlarm, `SELECT kind || ' at row ' || seq, ARRAY[station_id], detail || ' (raised ' || to_char(raised_at, 'YYYY-MM-DD HH24:MI:SS') || ')'
			FROM alarms ORDER BY id`, ""},
	}
	for _, g := range groups {
		rows, err := r.pool.Query(ctx, g.q)
		if err != nil {
			return nil, fmt.Errorf("plant check %s: %w", g.check, mapErr(err))
		}
		for rows.Next() {
			var f Finding
			var d string
			if err := rows.Scan(&f.Subject, &f.Stations, &d); err != nil {
				rows.Close()
				return nil, fmt.Errorf("plant check %s: %w", g.check, mapErr(err))
			}
			f.Check, f.Detail = g.check, g.what+d
			out = append(out, f)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("plant check %s: %w", g.check, mapErr(err))
		}
	}
	return out, nil
}

// verifyLedgers recomputes every witnessed row's hash and link and verifies every checkpoint
// against the station's pinned key, station by station.
func (r *Registry) verifyLedgers(ctx context.Context) ([]Finding, error) {
	type st struct {
		id  string
		key []byte
	}
	var sts []st
	rows, err := r.pool.Query(ctx, "SELECT id, audit_key FROM stations ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("plant check ledger: %w", mapErr(err))
	}
	for rows.Next() {
		var s st
		if err := rows.Scan(&s.id, &s.key); err != nil {
			rows.Close()
			return nil, err
		}
		sts = append(sts, s)
	}
	rows.Close()
	var out []Finding
	for _, s := range sts {
		pub, err := x509.ParsePKIXPublicKey(s.key)
		if err != nil {
			out = append(out, Finding{Check: CheckLedger, Subject: s.id, Stations: []string{s.id}, Detail: "pinned audit key unreadable"})
			continue
		}
		msg, err := r.verifyLedger(ctx, s.id, pub, s.key)
		if err != nil {
			return nil, err
		}
		if msg != "" {
			out = append(out, Finding{Check: CheckLedger, Subject: s.id, Stations: []string{s.id}, Detail: msg})
		}
	}
	return out, nil
}

func (r *Registry) verifyLedger(ctx context.Context, station string, pub any, keyDER []byte) (string, error) {
	rows, err := r.pool.Query(ctx, `SELECT seq, at, kind, actor, detail, prev_hash, hash FROM ledger WHERE station_id = $1 ORDER BY seq`, station)
	if err != nil {
		return "", fmt.Errorf("plant check ledger %s: %w", station, mapErr(err))
	}
	defer rows.Close()
	prev, want := make([]byte, 32), int64(1)
	var rec Record
	var msg string
	_, err = pgx.ForEachRow(rows, []any{&rec.Seq, &rec.At, &rec.Kind, &rec.Actor, &rec.Detail, &rec.PrevHash, &rec.Hash}, func() error {
		if msg != "" {
			return nil
		}
		switch {
		case rec.Seq != want:
			msg = fmt.Sprintf("row %d missing", want)
		case !bytes.Equal(rec.PrevHash, prev):
			msg = fmt.Sprintf("row %d does not link to row %d", rec.Seq, rec.Seq-1)
		case !bytes.Equal(db.AuditRowHash(rec.entry()), rec.Hash):
			msg = fmt.Sprintf("row %d does not match its hash", rec.Seq)
		case rec.Kind == db.AuditCheckpointKind:
			if m := checkCheckpoint(rec, pub, keyDER); m != "" {
				msg = fmt.Sprintf("row %d: %s", rec.Seq, m)
			}
		}
		prev, want = rec.Hash, rec.Seq+1
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("plant check ledger %s: %w", station, mapErr(err))
	}
	return msg, nil
}

// RevocationRequest is a plant-level request to revoke a certificate.
type RevocationRequest struct {
	SerialHex   string    `json:"serial"`
	Reason      string    `json:"reason"`
	RequestedBy string    `json:"requested_by"`
	RequestedAt time.Time `json:"requested_at"`
	Station     string    `json:"station"`    // the station that issued the certificate ("" if unknown)
	AppliedAt   time.Time `json:"applied_at"` // zero until the station's revocation is witnessed
}

// RequestRevocation records a request to revoke the certificate with this serial; the
// station that issued it applies it on its next sync (it holds the intermediate's key).
// The certificate must be known to the registry.
func (r *Registry) RequestRevocation(ctx context.Context, serialHex, reason string) (*RevocationRequest, error) {
	serial := db.NormalizeSerial(serialHex)
	if _, ok := ReasonCode(reason); !ok {
		return nil, fmt.Errorf("revoke %s: reason %q: %w: use an RFC 5280 name such as keyCompromise, superseded, cessationOfOperation", serial, reason, ErrBadReason)
	}
	var station string
	if err := r.pool.QueryRow(ctx, "SELECT station_id FROM certificates WHERE serial_hex = $1 LIMIT 1", serial).Scan(&station); err != nil {
		if err == pgx.ErrNoRows {
			return nil, fmt.Errorf("revoke %s: %w (check the serial, or sync the issuing station first)", serial, ErrUnknownCertificate)
		}
		return nil, fmt.Errorf("revoke %s: %w", serial, mapErr(err))
	}
	if _, err := r.pool.Exec(ctx, `INSERT INTO revocation_requests (serial_hex, reason) VALUES ($1, $2) ON CONFLICT (serial_hex) DO NOTHING`,
		serial, reason); err != nil {
		return nil, fmt.Errorf("revoke %s: %w", serial, mapErr(err))
	}
	reqs, err := r.RevocationRequests(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, q := range reqs {
		if q.SerialHex == serial {
			return &q, nil
		}
	}
	return nil, fmt.Errorf("revoke %s: request not found after insert", serial)
}

// RevocationRequests lists revocation requests; with station set, only the pending ones for
// certificates that station issued (what it has to apply).
func (r *Registry) RevocationRequests(ctx context.Context, station string) ([]RevocationRequest, error) {
	q := `SELECT q.serial_hex, q.reason, q.requested_by, q.requested_at, COALESCE(c.station_id, ''), v.at
		FROM revocation_requests q
		LEFT JOIN LATERAL (SELECT station_id FROM certificates WHERE serial_hex = q.serial_hex LIMIT 1) c ON true
		LEFT JOIN LATERAL (SELECT min(at) AS at FROM revocations WHERE serial_hex = q.serial_hex) v ON true`
	args := []any{}
	if station != "" {
		q += " WHERE c.station_id = $1 AND v.at IS NULL"
		args = append(args, station)
	}
	rows, err := r.pool.Query(ctx, q+" ORDER BY q.id", args...)
	if err != nil {
		return nil, fmt.Errorf("revocation requests: %w", mapErr(err))
	}
	defer rows.Close()
	var out []RevocationRequest
	for rows.Next() {
		var x RevocationRequest
		var applied *time.Time
		if err := rows.Scan(&x.SerialHex, &x.Reason, &x.RequestedBy, &x.RequestedAt, &x.Station, &applied); err != nil {
			return nil, fmt.Errorf("revocation requests: %w", mapErr(err))
		}
		if applied != nil {
			x.AppliedAt = *applied
		}
		out = append(out, x)
	}
	return out, mapErr(rows.Err())
}

// Lookup finds devices by device serial or certificate serial.
type Lookup struct {
	Station    string    `json:"station"`
	Device     string    `json:"device"`
	CertSerial string    `json:"cert_serial"`
	ChipHash   string    `json:"chip"`
	KeyHash    string    `json:"key"`
	WorkOrder  string    `json:"work_order"`
	IssuedAt   time.Time `json:"issued_at"`
	Confirmed  bool      `json:"confirmed"`
	Revoked    bool      `json:"revoked"`
}

// Find returns what the registry knows about a device serial or a certificate serial.
func (r *Registry) Find(ctx context.Context, serial string) ([]Lookup, error) {
	cs := db.NormalizeSerial(serial)
	rows, err := r.pool.Query(ctx, `SELECT c.station_id, c.device_serial, c.serial_hex, COALESCE(encode(d.ek_hash, 'hex'), ''),
		encode(d.key_hash, 'hex'), c.work_order, c.issued_at,
		EXISTS (SELECT 1 FROM confirmations f WHERE f.serial_hex = c.serial_hex AND f.station_id = c.station_id),
		EXISTS (SELECT 1 FROM revocations v WHERE v.serial_hex = c.serial_hex AND v.station_id = c.station_id)
		FROM certificates c JOIN devices d ON d.station_id = c.station_id AND d.seq = c.seq
		WHERE c.device_serial = $1 OR c.serial_hex = $2 ORDER BY c.issued_at`, serial, cs)
	if err != nil {
		return nil, fmt.Errorf("lookup %s: %w", serial, mapErr(err))
	}
	defer rows.Close()
	var out []Lookup
	for rows.Next() {
		var l Lookup
		if err := rows.Scan(&l.Station, &l.Device, &l.CertSerial, &l.ChipHash, &l.KeyHash, &l.WorkOrder, &l.IssuedAt, &l.Confirmed, &l.Revoked); err != nil {
			return nil, fmt.Errorf("lookup %s: %w", serial, mapErr(err))
		}
		out = append(out, l)
	}
	return out, mapErr(rows.Err())
}

// ReasonCode returns the RFC 5280 CRLReason code of a reason name (as db.ReasonName spells it).
func ReasonCode(name string) (int, bool) {
	for c := 0; c <= 10; c++ {
		if c != 7 && strings.EqualFold(db.ReasonName(c), name) {
			return c, true
		}
	}
	return 0, false
}
