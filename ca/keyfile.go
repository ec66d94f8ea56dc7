package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
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

// AuditKey returns the station's audit key from dir, creating it (P-256,
// encrypted with passphrase, public half in AuditPubKeyFile) on first use.
func AuditKey(dir string, passphrase []byte) (crypto.Signer, error) {
	path := filepath.Join(dir, AuditKeyFile)
	if _, err := os.Stat(path); err == nil {
		return readKey(path, passphrase)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
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
