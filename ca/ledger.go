package ca

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// The root machine has no station database, so its ceremonies are recorded
// in a ledger file in the CA folder: one JSON object per line, each carrying
// the SHA-256 of the previous record (a hash chain: editing, inserting or
// deleting a line breaks it) and, when the ceremony had the folder's secret
// at hand, an ECDSA P-256 signature by the folder's ledger key over the
// record's hash. A signature vouches for the record and, through the chain,
// for every record before it, like the station ledger's signed checkpoints.
// The ledger key is not a CA key: a stolen ledger key cannot issue.
const (
	LedgerFile       = "ledger.jsonl"
	LedgerKeyFile    = "ledger.key"
	LedgerPubKeyFile = "ledger.pub"
)

// Ledger errors.
var (
	// ErrLedgerBroken: a record does not chain to the one before, or its
	// signature does not verify.
	ErrLedgerBroken = errors.New("ca: ledger broken")
	// ErrLedgerUnsigned: the newest record is not covered by any signature.
	ErrLedgerUnsigned = errors.New("ca: ledger tail not signed")
)

// LedgerRecord is one line of the folder ledger.
type LedgerRecord struct {
	Seq        int64           `json:"seq"`
	At         time.Time       `json:"at"`
	Kind       string          `json:"kind"`
	Actor      string          `json:"actor"`
	Custodians []string        `json:"custodians,omitempty"`
	Detail     json.RawMessage `json:"detail,omitempty"`
	// Prev is the hex SHA-256 of the previous record ("" for the first).
	Prev string `json:"prev"`
	// Sig is the base64 ASN.1 ECDSA signature over Hash(), when signed.
	Sig string `json:"sig,omitempty"`
}

// Hash is the SHA-256 of the record without its signature.
func (r LedgerRecord) Hash() []byte {
	r.Sig = ""
	b, _ := json.Marshal(r)
	h := sha256.Sum256(b)
	return h[:]
}

// readLedger returns the records of a ledger file (none when it is absent).
func readLedger(path string) ([]LedgerRecord, []byte, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read ledger: %w", err)
	}
	var out []LedgerRecord
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r LedgerRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, nil, fmt.Errorf("ledger line %d: %w: %w", n, ErrLedgerBroken, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read ledger: %w", err)
	}
	return out, raw, nil
}

// ledgerAppend returns the ledger file's new content with one record
// appended (chained, signed when signer is not nil).
func ledgerAppend(path string, rec LedgerRecord, signer crypto.Signer) ([]byte, LedgerRecord, error) {
	recs, raw, err := readLedger(path)
	if err != nil {
		return nil, rec, err
	}
	rec.Seq = 1
	rec.Prev = ""
	if n := len(recs); n > 0 {
		rec.Seq = recs[n-1].Seq + 1
		rec.Prev = hex.EncodeToString(recs[n-1].Hash())
	}
	if signer != nil {
		sig, err := signer.Sign(rand.Reader, rec.Hash(), crypto.SHA256)
		if err != nil {
			return nil, rec, fmt.Errorf("sign ledger record: %w", err)
		}
		rec.Sig = base64.StdEncoding.EncodeToString(sig)
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return nil, rec, fmt.Errorf("ledger record: %w", err)
	}
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		raw = append(raw, '\n')
	}
	return append(append(raw, line...), '\n'), rec, nil
}

// LedgerReport is the result of VerifyLedger.
type LedgerReport struct {
	Records int `json:"records"`
	Signed  int `json:"signed"`
	// KeyFingerprint is the SHA-256 of the ledger public key (DER), to
	// compare with the paper log.
	KeyFingerprint string `json:"key_fingerprint"`
	// UnsignedTail counts records after the last signed one.
	UnsignedTail int `json:"unsigned_tail"`
}

// VerifyLedger checks the folder ledger of dir: every record chains to the
// one before and every signature verifies with the ledger public key. When
// pinFingerprint is not empty, the public key must have that SHA-256
// fingerprint (hex, from the paper log), so a replaced ledger.pub is caught.
func VerifyLedger(dir, pinFingerprint string) (LedgerReport, error) {
	var rep LedgerReport
	pubRaw, err := os.ReadFile(filepath.Join(dir, LedgerPubKeyFile))
	if err != nil {
		return rep, fmt.Errorf("verify ledger: %w", err)
	}
	blk, _ := pem.Decode(pubRaw)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return rep, fmt.Errorf("verify ledger: %s holds no PUBLIC KEY", LedgerPubKeyFile)
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return rep, fmt.Errorf("verify ledger: %w", err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return rep, fmt.Errorf("verify ledger: ledger key is %T, want ECDSA", pub)
	}
	fp := sha256.Sum256(blk.Bytes)
	rep.KeyFingerprint = hex.EncodeToString(fp[:])
	if pinFingerprint != "" && !sameFingerprint(pinFingerprint, rep.KeyFingerprint) {
		return rep, fmt.Errorf("verify ledger: ledger key fingerprint %s is not the pinned %s: %w", rep.KeyFingerprint, pinFingerprint, ErrLedgerBroken)
	}
	recs, _, err := readLedger(filepath.Join(dir, LedgerFile))
	if err != nil {
		return rep, err
	}
	prev := ""
	for i, r := range recs {
		if r.Seq != int64(i+1) || r.Prev != prev {
			return rep, fmt.Errorf("ledger record %d (%s): does not chain to record %d: %w", r.Seq, r.Kind, i, ErrLedgerBroken)
		}
		h := r.Hash()
		if r.Sig != "" {
			sig, err := base64.StdEncoding.DecodeString(r.Sig)
			if err != nil || !ecdsa.VerifyASN1(ec, h, sig) {
				return rep, fmt.Errorf("ledger record %d (%s): bad signature: %w", r.Seq, r.Kind, ErrLedgerBroken)
			}
			rep.Signed++
			rep.UnsignedTail = 0
		} else {
			rep.UnsignedTail++
		}
		prev = hex.EncodeToString(h)
	}
	rep.Records = len(recs)
	return rep, nil
}

func sameFingerprint(a, b string) bool {
	norm := func(s string) string {
		out := make([]byte, 0, len(s))
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c == ':' || c == ' ' {
				continue
			}
			if c >= 'A' && c <= 'F' {
				c += 'a' - 'A'
			}
			out = append(out, c)
		}
		return string(out)
	}
	return norm(a) == norm(b)
}

// FolderLedger is the Auditor of a CA folder without a station database
// (the root machine). Ceremonies of this package stage their record into
// the same atomic file transaction as their outputs; Audit appends one
// record on its own (for callers outside a ceremony).
type FolderLedger struct {
	Dir    string
	Signer crypto.Signer // ledger key; nil: records are chained but not signed
	Now    func() time.Time
}

// Audit implements Auditor.
func (l *FolderLedger) Audit(_ context.Context, kind, actor string, detail any) error {
	var tx fileTx
	if err := l.stage(&tx, kind, actor, nil, detail); err != nil {
		return err
	}
	return tx.commit()
}

func (l *FolderLedger) stage(tx *fileTx, kind, actor string, custodians []string, detail any) error {
	d, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("ledger record %s: %w", kind, err)
	}
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	path := filepath.Join(l.Dir, LedgerFile)
	// A record staged earlier in the same transaction is the previous one.
	for _, op := range tx.ops {
		if op.path == path && !op.remove {
			return fmt.Errorf("ledger record %s: two records in one ceremony", kind)
		}
	}
	data, _, err := ledgerAppend(path, LedgerRecord{At: now().UTC(), Kind: kind, Actor: actor, Custodians: custodians, Detail: d}, l.Signer)
	if err != nil {
		return err
	}
	tx.write(path, data, 0o644)
	return nil
}

// ledgerKeyFiles returns the staged ledger key files for a new folder.
func newLedgerKey(secret []byte) (crypto.Signer, []byte, []byte, error) {
	k, err := generateP256()
	if err != nil {
		return nil, nil, nil, err
	}
	keyPEM, err := encryptKeyPEM(k, secret)
	if err != nil {
		return nil, nil, nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return nil, nil, nil, err
	}
	return k, keyPEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
