package db

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Certificate states recorded in certificates.status.
const (
	CertIssued    = "issued"
	CertDelivered = "delivered"
	CertConfirmed = "confirmed"
	CertRevoked   = "revoked"
)

// RFC 5280 CRLReason codes used by this package.
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonCACompromise         = 2
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
	ReasonCertificateHold      = 6
	ReasonRemoveFromCRL        = 8
	ReasonPrivilegeWithdrawn   = 9
	ReasonAACompromise         = 10
)

var reasonNames = map[int]string{
	0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged", 4: "superseded",
	5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL", 9: "privilegeWithdrawn", 10: "aACompromise",
}

// ReasonName returns the RFC 5280 name of a CRLReason code ("superseded" …).
func ReasonName(code int) string {
	if n, ok := reasonNames[code]; ok {
		return n
	}
	return fmt.Sprintf("reason(%d)", code)
}

// NormalizeSerial returns the canonical form of a certificate serial used as key in this
// package: lower-case hexadecimal of the positive integer, no leading zeros, no "0x".
// Callers may pass any case or zero padding; big.Int.Text(16) is already canonical.
func NormalizeSerial(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "0x")
	s = strings.ReplaceAll(s, ":", "")
	s = strings.TrimLeft(s, "0")
	if s == "" {
		return "0"
	}
	return s
}

// SerialHex returns the canonical serial of a certificate (see NormalizeSerial).
func SerialHex(n *big.Int) string { return n.Text(16) }

// IssueIntent is the intent to issue a certificate for a device key, recorded before signing.
type IssueIntent struct {
	DeviceSerial string
	KeyPublicDER []byte // PKIX (SubjectPublicKeyInfo) DER of the key to certify
	WorkOrder    string // empty: no quota
	RunID        int64  // 0: not tied to a run
	// Proof is the attestation proof the key rests on ("tpm", "atecc608",
	// "unattested"); the certificate row and the ledger record it.
	Proof string
	// ChipID, when set, is the proven chip identity: a device not yet bound
	// is bound to it in the same transaction (ledger "device.bind"), and a
	// device bound to another chip gives ErrDeviceMismatch.
	ChipID []byte
	// Role is the certificate's role: RoleIDevID (empty means it) or
	// RoleLDevID. A device holds one live certificate per role; a new
	// certificate supersedes only the live one of its own role.
	Role string
}

// Certificate roles (issue_intents.role, certificates.role).
const (
	// RoleIDevID is the device identity certificate (clientAuth).
	RoleIDevID = "idevid"
	// RoleLDevID is the device's code-signing certificate (IEEE 802.1AR
	// LDevID, codeSigning).
	RoleLDevID = "ldevid"
)

func roleOf(r string) (string, error) {
	switch r {
	case "", RoleIDevID:
		return RoleIDevID, nil
	case RoleLDevID:
		return RoleLDevID, nil
	}
	return "", fmt.Errorf("unknown certificate role %q", r)
}

// Certificate is a recorded device certificate.
type Certificate struct {
	SerialHex    string // canonical, see NormalizeSerial; filled from DER when empty
	DeviceSerial string
	IssuerKeyID  []byte   // authority key id; filled from DER when empty
	DER          []byte   // the leaf
	Chain        [][]byte // leaf first, then issuers; on input the leaf may be omitted
	NotBefore    time.Time
	NotAfter     time.Time
	Status       string // Cert* state
	RevokedAt    *time.Time
	RevokeReason string // RFC 5280 name, e.g. "superseded"
	IssuedAt     time.Time
	DeliveredAt  *time.Time
	ConfirmedAt  *time.Time
}

// KeyHash is the SHA-256 of a PKIX public key, the key's identity in this database.
func KeyHash(pkixDER []byte) []byte {
	h := sha256.Sum256(pkixDER)
	return h[:]
}

// BeginIssue records the intent to issue a certificate for a device key and commits it
// before the CA signs, so that a crash between signing and CompleteIssue is visible.
//
//   - The key already has a live certificate of this device: existing is returned and
//     intentID is 0; the caller re-delivers it and does not sign.
//   - The key belongs (or is pending) for another device: ErrKeyConflict.
//   - The key's certificate was revoked: ErrKeyRevoked.
//   - The work order's quantity is reached: ErrQuotaExceeded. A device holds one quota unit
//     for ever, so re-provisioning or resuming it never consumes another.
//
// Calling BeginIssue again for the same device and key while the intent is pending returns
// the same intent id.
func (s *Store) BeginIssue(ctx context.Context, in IssueIntent) (intentID int64, existing *Certificate, err error) {
	if len(in.KeyPublicDER) == 0 {
		return 0, nil, fmt.Errorf("begin issue for %s: empty public key", in.DeviceSerial)
	}
	if _, err := x509.ParsePKIXPublicKey(in.KeyPublicDER); err != nil {
		return 0, nil, fmt.Errorf("begin issue for %s: public key: %w", in.DeviceSerial, err)
	}
	role, err := roleOf(in.Role)
	if err != nil {
		return 0, nil, fmt.Errorf("begin issue for %s: %w", in.DeviceSerial, err)
	}
	kh := KeyHash(in.KeyPublicDER)
	err = s.withTxRelaxed(ctx, "begin issue for "+in.DeviceSerial, func(tx *sql.Tx) error {
		intentID, existing = 0, nil
		now := s.nowNanos()
		var devID int64
		var devWO sql.NullString
		var bound []byte
		if err := tx.QueryRowContext(ctx, "SELECT id, work_order, ek_pub_hash FROM devices WHERE serial = ?", in.DeviceSerial).Scan(&devID, &devWO, &bound); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("device: %w", ErrNotFound)
			}
			return err
		}
		// The chip binding goes with the intent: one transaction, and no
		// certificate without its device bound to the proven chip.
		switch {
		case len(in.ChipID) == 0:
		case len(bound) > 0 && !bytes.Equal(bound, in.ChipID):
			return ErrDeviceMismatch
		case len(bound) == 0:
			if _, err := tx.ExecContext(ctx, "UPDATE devices SET ek_pub_hash = ?, proof = ?, updated_at = ? WHERE id = ?",
				in.ChipID, in.Proof, now, devID); err != nil {
				return err
			}
			if err := s.auditBinding(ctx, tx, in.DeviceSerial); err != nil {
				return err
			}
		}
		// Known key?
		var keyID, keyDev int64
		err := tx.QueryRowContext(ctx, "SELECT id, device_id FROM keys WHERE pub_hash = ?", kh).Scan(&keyID, &keyDev)
		switch {
		case err == nil:
			if keyDev != devID {
				return ErrKeyConflict
			}
			c, err := scanCertificate(tx.QueryRowContext(ctx, certSelect+" WHERE c.key_id = ?", keyID))
			if err != nil {
				return err
			}
			if c.RevokedAt != nil {
				return fmt.Errorf("%w (serial %s, %s)", ErrKeyRevoked, c.SerialHex, c.RevokeReason)
			}
			existing = c
			return s.appendAudit(ctx, tx, "issue.resume", s.actor, map[string]any{
				"device": in.DeviceSerial, "serial": c.SerialHex, "run": in.RunID})
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		// Pending intent for this key?
		var pid, pdev int64
		err = tx.QueryRowContext(ctx, "SELECT id, device_id FROM issue_intents WHERE key_hash = ? AND state = 'pending'", kh).Scan(&pid, &pdev)
		switch {
		case err == nil:
			if pdev != devID {
				return ErrKeyConflict
			}
			intentID = pid
			return s.appendAudit(ctx, tx, "issue.retry", s.actor, map[string]any{
				"device": in.DeviceSerial, "intent": pid, "run": in.RunID})
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		// Quota: the device takes a unit of the work order the first time it is issued under it.
		if in.WorkOrder != "" && devWO.String != in.WorkOrder {
			var qty, assigned int64
			err := tx.QueryRowContext(ctx, `SELECT w.quantity, c.assigned FROM work_orders w
				JOIN work_order_counters c ON c.work_order = w.id WHERE w.id = ?`, in.WorkOrder).Scan(&qty, &assigned)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("work order %s: %w", in.WorkOrder, ErrNotFound)
			}
			if err != nil {
				return err
			}
			if assigned >= qty {
				return fmt.Errorf("%w: %s: %d of %d", ErrQuotaExceeded, in.WorkOrder, assigned, qty)
			}
			if _, err := tx.ExecContext(ctx, "UPDATE work_order_counters SET assigned = assigned + 1 WHERE work_order = ?", in.WorkOrder); err != nil {
				return err
			}
			if devWO.Valid {
				if _, err := tx.ExecContext(ctx, "UPDATE work_order_counters SET assigned = assigned - 1 WHERE work_order = ?", devWO.String); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, "UPDATE devices SET work_order = ? WHERE id = ?", in.WorkOrder, devID); err != nil {
				return err
			}
		}
		// A newer key abandons the device's older pending intents of its role.
		if _, err := tx.ExecContext(ctx, `UPDATE issue_intents SET state = 'abandoned', closed_at = ?
			WHERE device_id = ? AND state = 'pending' AND role = ?`, now, devID, role); err != nil {
			return err
		}
		var run any
		if in.RunID != 0 {
			run = in.RunID
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO issue_intents (device_id, key_hash, key_der, work_order, run_id, proof, created_at, role)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, devID, kh, in.KeyPublicDER, nullString(in.WorkOrder), run, in.Proof, now, role)
		if err != nil {
			return err
		}
		if intentID, err = res.LastInsertId(); err != nil {
			return err
		}
		if role == RoleIDevID {
			if _, err := tx.ExecContext(ctx, `UPDATE devices SET status = ?, updated_at = ? WHERE id = ?`, DeviceIssuing, now, devID); err != nil {
				return err
			}
		}
		detail := map[string]any{
			"device": in.DeviceSerial, "intent": intentID, "key": hex.EncodeToString(kh), "work_order": in.WorkOrder, "run": in.RunID, "proof": in.Proof}
		if role != RoleIDevID {
			detail["role"] = role
		}
		return s.appendAudit(ctx, tx, "issue.intent", s.actor, detail)
	})
	if err != nil {
		return 0, nil, err
	}
	return intentID, existing, nil
}

// CompleteIssue records the signed certificate of an intent in one transaction: the key
// row, the certificate row, the revocation (reason superseded) of the device's previous
// live certificate, the intent's closure and the audit rows. Calling it again with the same
// certificate is a no-op; with another certificate it gives ErrDuplicate.
func (s *Store) CompleteIssue(ctx context.Context, intentID int64, c Certificate) error {
	leaf, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return fmt.Errorf("complete issue %d: certificate: %w", intentID, err)
	}
	serial := SerialHex(leaf.SerialNumber)
	if c.SerialHex != "" && NormalizeSerial(c.SerialHex) != serial {
		return fmt.Errorf("complete issue %d: serial %s does not match certificate serial %s", intentID, c.SerialHex, serial)
	}
	issuerKeyID := c.IssuerKeyID
	if len(issuerKeyID) == 0 {
		issuerKeyID = leaf.AuthorityKeyId
	}
	if len(issuerKeyID) == 0 {
		return fmt.Errorf("complete issue %d: no issuer key id (certificate has no authority key id)", intentID)
	}
	rest := c.Chain
	if len(rest) > 0 && bytes.Equal(rest[0], c.DER) {
		rest = rest[1:]
	}
	keyHash := KeyHash(leaf.RawSubjectPublicKeyInfo)
	return s.withTx(ctx, fmt.Sprintf("complete issue %d (serial %s)", intentID, serial), func(tx *sql.Tx) error {
		now := s.nowNanos()
		var devID int64
		var devSerial, state string
		var ikh, ider []byte
		var wo sql.NullString
		var run sql.NullInt64
		var proof, role string
		err := tx.QueryRowContext(ctx, `SELECT i.device_id, d.serial, i.state, i.key_hash, i.key_der, i.work_order, i.run_id, i.proof, i.role
			FROM issue_intents i JOIN devices d ON d.id = i.device_id WHERE i.id = ?`, intentID).
			Scan(&devID, &devSerial, &state, &ikh, &ider, &wo, &run, &proof, &role)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("intent: %w", ErrNotFound)
		}
		if err != nil {
			return err
		}
		if c.DeviceSerial != "" && c.DeviceSerial != devSerial {
			return fmt.Errorf("%w: intent is for device %s, not %s", ErrStaleIntent, devSerial, c.DeviceSerial)
		}
		switch state {
		case "completed":
			var have string
			if err := tx.QueryRowContext(ctx, "SELECT serial_hex FROM certificates WHERE intent_id = ?", intentID).Scan(&have); err != nil {
				return err
			}
			if have == serial {
				return nil
			}
			return fmt.Errorf("%w: intent already completed with serial %s", ErrDuplicate, have)
		case "abandoned":
			return fmt.Errorf("%w: intent abandoned for a newer key", ErrStaleIntent)
		}
		if !bytes.Equal(ikh, keyHash) {
			return fmt.Errorf("%w: certificate key differs from the intent's key", ErrStaleIntent)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO keys (device_id, pub_hash, public_der, created_at) VALUES (?, ?, ?, ?)`,
			devID, keyHash, ider, now)
		if err != nil {
			if errors.Is(mapErr(err), ErrDuplicate) {
				return fmt.Errorf("%w: %w", ErrKeyConflict, err)
			}
			return err
		}
		keyID, err := res.LastInsertId()
		if err != nil {
			return err
		}
		// Supersede the previous live certificate of this role (at most one, by the partial unique index).
		var oldSerial string
		var oldIssuer []byte
		err = tx.QueryRowContext(ctx, "SELECT serial_hex, issuer_key_id FROM certificates WHERE device_id = ? AND role = ? AND revoked_at IS NULL", devID, role).
			Scan(&oldSerial, &oldIssuer)
		switch {
		case err == nil:
			if err := revokeTx(ctx, tx, oldSerial, oldIssuer, ReasonSuperseded, now); err != nil {
				return err
			}
			refs, err := s.revocationRefs(ctx, tx, oldSerial, true)
			if err != nil {
				return err
			}
			if err := s.appendAudit(ctx, tx, "cert.revoke", s.actor, map[string]any{
				"serial": oldSerial, "device": devSerial, "reason": ReasonName(ReasonSuperseded), "by": serial}, refs...); err != nil {
				return err
			}
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		var chainID any
		if len(rest) > 0 {
			id, err := putChain(ctx, tx, rest)
			if err != nil {
				return err
			}
			chainID = id
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO certificates (serial_hex, device_id, key_id, intent_id, issuer_key_id, der,
			chain_id, not_before, not_after, status, issued_at, proof, role) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			serial, devID, keyID, intentID, issuerKeyID, c.DER, chainID, leaf.NotBefore.UnixNano(), leaf.NotAfter.UnixNano(),
			CertIssued, now, proof, role); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE issue_intents SET state = 'completed', closed_at = ? WHERE id = ?", now, intentID); err != nil {
			return err
		}
		if role == RoleIDevID {
			if _, err := tx.ExecContext(ctx, "UPDATE devices SET status = ?, updated_at = ? WHERE id = ?", DeviceIssued, now, devID); err != nil {
				return err
			}
		}
		refs, err := s.refRows(ctx, tx, "keys", strings.ToUpper(hex.EncodeToString(keyHash)))
		if err != nil {
			return err
		}
		crefs, err := s.refRows(ctx, tx, "certificates", serial)
		if err != nil {
			return err
		}
		detail := map[string]any{
			"serial": serial, "device": devSerial, "issuer": hex.EncodeToString(issuerKeyID), "key": hex.EncodeToString(keyHash),
			"intent": intentID, "work_order": wo.String, "run": run.Int64, "proof": proof}
		if role != RoleIDevID {
			detail["role"] = role
		}
		return s.appendAudit(ctx, tx, "cert.issue", s.actor, detail, append(refs, crefs...)...)
	})
}

// putChain stores an issuer chain once and returns its id.
func putChain(ctx context.Context, tx *sql.Tx, chain [][]byte) (int64, error) {
	blob := bytes.Join(chain, nil)
	h := sha256.Sum256(blob)
	if _, err := tx.ExecContext(ctx, "INSERT INTO chains (sha256, der) VALUES (?, ?) ON CONFLICT (sha256) DO NOTHING", h[:], blob); err != nil {
		return 0, err
	}
	var id int64
	err := tx.QueryRowContext(ctx, "SELECT id FROM chains WHERE sha256 = ?", h[:]).Scan(&id)
	return id, err
}

// MarkDelivered records that the certificate chain was written to the device. Delivering a
// certificate again (resume) is fine; a revoked certificate gives ErrRevoked.
func (s *Store) MarkDelivered(ctx context.Context, certSerialHex string) error {
	serial := NormalizeSerial(certSerialHex)
	return s.withTx(ctx, "mark delivered "+serial, func(tx *sql.Tx) error {
		now := s.nowNanos()
		devID, devSerial, err := liveCertDevice(ctx, tx, serial)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE certificates SET status = CASE status WHEN 'issued' THEN 'delivered' ELSE status END,
			delivered_at = COALESCE(delivered_at, ?) WHERE serial_hex = ?`, now, serial); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE devices SET status = CASE status WHEN ? THEN status ELSE ? END, updated_at = ? WHERE id = ?`,
			DeviceProvisioned, DeviceDelivered, now, devID); err != nil {
			return err
		}
		refs, err := s.refRows(ctx, tx, "certificates", serial)
		if err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, "cert.deliver", s.actor, map[string]any{"serial": serial, "device": devSerial}, refs...)
	})
}

// MarkConfirmed records that the chain read back from the device matched: the certificate
// becomes confirmed and the device provisioned.
func (s *Store) MarkConfirmed(ctx context.Context, certSerialHex string) error {
	serial := NormalizeSerial(certSerialHex)
	return s.withTx(ctx, "mark confirmed "+serial, func(tx *sql.Tx) error {
		return s.markConfirmedTx(ctx, tx, serial)
	})
}

func (s *Store) markConfirmedTx(ctx context.Context, tx *sql.Tx, serial string) error {
	now := s.nowNanos()
	devID, devSerial, err := liveCertDevice(ctx, tx, serial)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE certificates SET status = 'confirmed', delivered_at = COALESCE(delivered_at, ?),
		confirmed_at = COALESCE(confirmed_at, ?) WHERE serial_hex = ?`, now, now, serial); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE devices SET status = ?, provisioned_at = COALESCE(provisioned_at, ?), updated_at = ?
		WHERE id = ?`, DeviceProvisioned, now, now, devID); err != nil {
		return err
	}
	refs, err := s.refRows(ctx, tx, "certificates", serial)
	if err != nil {
		return err
	}
	return s.appendAudit(ctx, tx, "cert.confirm", s.actor, map[string]any{"serial": serial, "device": devSerial}, refs...)
}

func liveCertDevice(ctx context.Context, tx *sql.Tx, serial string) (int64, string, error) {
	var devID int64
	var devSerial string
	var revoked sql.NullInt64
	err := tx.QueryRowContext(ctx, `SELECT c.device_id, d.serial, c.revoked_at FROM certificates c JOIN devices d ON d.id = c.device_id
		WHERE c.serial_hex = ?`, serial).Scan(&devID, &devSerial, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", fmt.Errorf("certificate %s: %w", serial, ErrNotFound)
	}
	if err != nil {
		return 0, "", err
	}
	if revoked.Valid {
		return 0, "", fmt.Errorf("certificate %s: %w", serial, ErrRevoked)
	}
	return devID, devSerial, nil
}

const certSelect = `SELECT c.serial_hex, d.serial, c.issuer_key_id, c.der, ch.der, c.not_before, c.not_after, c.status,
	c.revoked_at, c.revoke_reason, c.issued_at, c.delivered_at, c.confirmed_at
	FROM certificates c JOIN devices d ON d.id = c.device_id LEFT JOIN chains ch ON ch.id = c.chain_id`

type rowScanner interface{ Scan(dest ...any) error }

func scanCertificate(r rowScanner) (*Certificate, error) {
	var c Certificate
	var chain []byte
	var nb, na, issued int64
	var revAt, reason, deliv, conf sql.NullInt64
	if err := r.Scan(&c.SerialHex, &c.DeviceSerial, &c.IssuerKeyID, &c.DER, &chain, &nb, &na, &c.Status,
		&revAt, &reason, &issued, &deliv, &conf); err != nil {
		return nil, err
	}
	c.NotBefore, c.NotAfter, c.IssuedAt = fromNanos(nb), fromNanos(na), fromNanos(issued)
	c.RevokedAt, c.DeliveredAt, c.ConfirmedAt = nullNanos(revAt), nullNanos(deliv), nullNanos(conf)
	if reason.Valid {
		c.RevokeReason = ReasonName(int(reason.Int64))
	}
	c.Chain = [][]byte{c.DER}
	if len(chain) > 0 {
		certs, err := x509.ParseCertificates(chain)
		if err != nil {
			return nil, fmt.Errorf("stored chain of %s: %w", c.SerialHex, err)
		}
		for _, x := range certs {
			c.Chain = append(c.Chain, x.Raw)
		}
	}
	return &c, nil
}

// LiveCertificate returns the device's certificate that is not revoked, or ErrNotFound.
func (s *Store) LiveCertificate(ctx context.Context, deviceSerial string) (*Certificate, error) {
	c, err := scanCertificate(s.rdb.QueryRowContext(ctx, certSelect+" WHERE d.serial = ? AND c.role = 'idevid' AND c.revoked_at IS NULL", deviceSerial))
	if err != nil {
		return nil, fmt.Errorf("live certificate of %s: %w", deviceSerial, mapErr(err))
	}
	return c, nil
}

// LiveSigningCertificate returns the device's code-signing (LDevID)
// certificate that is not revoked, or ErrNotFound.
func (s *Store) LiveSigningCertificate(ctx context.Context, deviceSerial string) (*Certificate, error) {
	c, err := scanCertificate(s.rdb.QueryRowContext(ctx, certSelect+" WHERE d.serial = ? AND c.role = 'ldevid' AND c.revoked_at IS NULL", deviceSerial))
	if err != nil {
		return nil, fmt.Errorf("live signing certificate of %s: %w", deviceSerial, mapErr(err))
	}
	return c, nil
}

// GetCertificate returns a certificate by serial, or ErrNotFound.
func (s *Store) GetCertificate(ctx context.Context, serialHex string) (*Certificate, error) {
	serial := NormalizeSerial(serialHex)
	c, err := scanCertificate(s.rdb.QueryRowContext(ctx, certSelect+" WHERE c.serial_hex = ?", serial))
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", serial, mapErr(err))
	}
	return c, nil
}

// Certificates returns all identity certificates (role idevid) of a
// device, oldest first.
func (s *Store) Certificates(ctx context.Context, deviceSerial string) ([]Certificate, error) {
	return s.certificatesOfRole(ctx, deviceSerial, RoleIDevID)
}

// SigningCertificates returns all code-signing certificates (role ldevid)
// of a device, oldest first.
func (s *Store) SigningCertificates(ctx context.Context, deviceSerial string) ([]Certificate, error) {
	return s.certificatesOfRole(ctx, deviceSerial, RoleLDevID)
}

func (s *Store) certificatesOfRole(ctx context.Context, deviceSerial, role string) ([]Certificate, error) {
	rows, err := s.rdb.QueryContext(ctx, certSelect+" WHERE d.serial = ? AND c.role = ? ORDER BY c.id", deviceSerial, role)
	if err != nil {
		return nil, fmt.Errorf("certificates of %s: %w", deviceSerial, mapErr(err))
	}
	defer rows.Close()
	var out []Certificate
	for rows.Next() {
		c, err := scanCertificate(rows)
		if err != nil {
			return nil, fmt.Errorf("certificates of %s: %w", deviceSerial, mapErr(err))
		}
		out = append(out, *c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("certificates of %s: %w", deviceSerial, mapErr(err))
	}
	return out, nil
}
