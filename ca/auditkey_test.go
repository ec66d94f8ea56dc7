package ca

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The audit key is created only explicitly, stored encrypted, and never regenerated.
func TestAuditKeyExplicitCreation(t *testing.T) {
	dir := t.TempDir()
	pass := []byte("audit passphrase")
	if _, err := AuditKey(dir, pass); !errors.Is(err, ErrAuditKeyMissing) || !strings.Contains(err.Error(), "wsc audit init-key") {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, AuditKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("AuditKey created a key: %v", err)
	}
	k, err := CreateAuditKey(dir, pass)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, AuditKeyFile))
	if err != nil || !strings.Contains(string(b), "BEGIN ENCRYPTED PRIVATE KEY") {
		t.Fatalf("key at rest: %v %.40q", err, b)
	}
	if _, err := CreateAuditKey(dir, pass); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second creation: %v", err)
	}
	k2, err := AuditKey(dir, pass)
	if err != nil {
		t.Fatal(err)
	}
	fp1, _ := AuditKeyFingerprint(k.Public())
	fp2, _ := AuditKeyFingerprint(k2.Public())
	pub, err := LoadPublicKey(filepath.Join(dir, AuditPubKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	fp3, _ := AuditKeyFingerprint(pub)
	if fp1 != fp2 || fp1 != fp3 || len(fp1) != 64 {
		t.Fatalf("fingerprints %s %s %s", fp1, fp2, fp3)
	}
	if _, err := AuditKey(dir, []byte("wrong")); !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
}
