package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// File names of the station's audit key in the CA folder. The audit key
// signs the database's audit-ledger checkpoints; it is deliberately not a CA
// key, so that the ledger can be checked without trusting the issuer and a
// stolen audit key cannot issue certificates.
const (
	AuditKeyFile    = "audit.key"
	AuditPubKeyFile = "audit.pub"
)

// SaveEncryptedKey writes key as a PKCS#8 PBES2-encrypted PEM file (mode
// 0600, atomically). Legacy PEM encryption is never used: one MD5 round per
// guess is no protection.
func SaveEncryptedKey(path string, key crypto.PrivateKey, passphrase []byte) error {
	return writeKey(path, key, passphrase)
}

// LoadEncryptedKey reads a PKCS#8-encrypted key file; unencrypted and
// legacy-encrypted files are refused.
func LoadEncryptedKey(path string, passphrase []byte) (crypto.Signer, error) {
	return readKey(path, passphrase)
}

// ErrAuditKeyMissing: the CA folder has no audit key. It is never created implicitly
// (a silently regenerated key would sign a rewritten ledger): create it once, explicitly,
// with CreateAuditKey (`wsc ca init` or `wsc audit init-key`).
var ErrAuditKeyMissing = errors.New("audit key missing")

// AuditKey loads the station's audit key from dir (PKCS#8-encrypted with passphrase). A
// missing key is an error wrapping ErrAuditKeyMissing with an instruction; it is never
// regenerated here.
func AuditKey(dir string, passphrase []byte) (crypto.Signer, error) {
	path := filepath.Join(dir, AuditKeyFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("audit key %s does not exist: if this station never had one, create it with "+
			"`wsc audit init-key --dir %s` and pin the fingerprint it prints in the station config (audit.key_fingerprints); "+
			"if it had one, restore audit.key from the backup instead (a new key cannot vouch for the old checkpoints): %w",
			path, dir, ErrAuditKeyMissing)
	} else if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	return readKey(path, passphrase)
}

// CreateAuditKey creates the station's audit key in dir: P-256, PKCS#8-encrypted with
// passphrase, public half in AuditPubKeyFile. It refuses to replace an existing key
// (os.ErrExist). Pin AuditKeyFingerprint of its public key in the station config.
func CreateAuditKey(dir string, passphrase []byte) (crypto.Signer, error) {
	path := filepath.Join(dir, AuditKeyFile)
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("create audit key: %s: %w", path, os.ErrExist)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("create audit key: %w", err)
	}
	if len(passphrase) == 0 {
		return nil, errors.New("create audit key: a passphrase is required (the key is stored encrypted)")
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create audit key: %w", err)
	}
	if err := writeKey(path, k, passphrase); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, AuditPubKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return k, nil
}

// AuditKeyFingerprint is the hex SHA-256 of a public key's PKIX DER: what the station
// config pins (equal to db.KeyID).
func AuditKeyFingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("audit key fingerprint: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// LoadPublicKey reads a PEM "PUBLIC KEY" file.
func LoadPublicKey(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("public key %s: no PEM PUBLIC KEY block", path)
	}
	return x509.ParsePKIXPublicKey(blk.Bytes)
}
