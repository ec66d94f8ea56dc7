package wasmsign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Key file formats of wasmsign2 (src/lib/src/signature/keys.rs, with the
// DER and PEM forms of its ed25519-compact dependency):
//
//   - raw secret key file (what `wasmsign2 keygen` writes): 0x81 followed
//     by the 64-byte Ed25519 secret key (32-byte seed, then the 32-byte
//     public key);
//   - raw public key file: 0x01 followed by the 32-byte public key;
//   - DER: PKCS#8 "302e020100300506032b657004220420" || seed (48 bytes) for
//     a secret key, SubjectPublicKeyInfo "302a300506032b6570032100" || key
//     (44 bytes) for a public key;
//   - PEM: the DER in a "PRIVATE KEY" or "PUBLIC KEY" block;
//   - OpenSSH (wasmsign2 --ssh): "ssh-ed25519 AAAA…" public key lines (the
//     first valid Ed25519 line counts), read here; an "OPENSSH PRIVATE KEY"
//     block, read by cmd/wsc (it may be encrypted, which needs an SSH
//     implementation this package does not link).
//
// wasmsign2's own secret key files are never encrypted.
const (
	ed25519SecretKeyFileID = 0x81
	ed25519PublicKeyFileID = AlgEd25519
)

// ErrKeyFormat reports key material in no format a key parser reads, or
// inconsistent (a secret key whose public half does not match its seed).
var ErrKeyFormat = errors.New("unrecognised key format")

// ParseEd25519PrivateKey reads an Ed25519 secret key in one of wasmsign2's
// formats (raw key file, PKCS#8 DER, PEM; OpenSSH keys are read by the
// command, see ErrKeyFormat's message). A raw key file
// whose public half is not the one of its seed is refused: it would sign
// with a key no verifier accepts. Errors never quote key bytes.
func ParseEd25519PrivateKey(b []byte) (ed25519.PrivateKey, error) {
	if len(b) == 1+ed25519.PrivateKeySize && b[0] == ed25519SecretKeyFileID {
		k := ed25519.NewKeyFromSeed(b[1 : 1+ed25519.SeedSize])
		if subtle.ConstantTimeCompare(k[ed25519.SeedSize:], b[1+ed25519.SeedSize:]) != 1 {
			return nil, fmt.Errorf("ed25519 secret key: %w: the public key in the file does not belong to its seed", ErrKeyFormat)
		}
		return k, nil
	}
	if len(b) > 0 && b[0] == 0x30 {
		return parsePKCS8Ed25519(b)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("ed25519 secret key: %w: not a wasmsign2 key file (0x81 + 64 bytes), DER, PEM or OpenSSH key", ErrKeyFormat)
	}
	switch blk.Type {
	case "PRIVATE KEY":
		return parsePKCS8Ed25519(blk.Bytes)
	case "OPENSSH PRIVATE KEY":
		// OpenSSH keys (possibly encrypted with bcrypt-pbkdf) are read by
		// the command, which links an SSH implementation; this package
		// stays small for the agent.
		return nil, fmt.Errorf("ed25519 secret key: %w: an OpenSSH key is read by the caller (wsc sign --ed25519-key reads it)", ErrKeyFormat)
	case "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("ed25519 secret key: %w: an encrypted PKCS#8 key is read by the caller (wsc sign --ed25519-key reads it with --passphrase-source)", ErrKeyFormat)
	default:
		return nil, fmt.Errorf("ed25519 secret key: %w: unexpected PEM block %q", ErrKeyFormat, blk.Type)
	}
}

func parsePKCS8Ed25519(der []byte) (ed25519.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("ed25519 secret key: %w: not a PKCS#8 key", ErrKeyFormat)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("ed25519 secret key: %w: the PKCS#8 key is %T, not Ed25519", ErrKeyFormat, k)
	}
	return priv, nil
}

// ParseEd25519PublicKey reads an Ed25519 public key in the forms wasmsign2
// uses: its key file (0x01 followed by the 32 bytes), 32 raw bytes, DER
// SubjectPublicKeyInfo, a PEM "PUBLIC KEY" block, or OpenSSH public key
// lines ("ssh-ed25519 AAAA… comment"; the first Ed25519 line is used, as
// wasmsign2 --ssh does).
func ParseEd25519PublicKey(b []byte) (ed25519.PublicKey, error) {
	switch {
	case len(b) == ed25519.PublicKeySize+1 && b[0] == ed25519PublicKeyFileID:
		return ed25519.PublicKey(bytes.Clone(b[1:])), nil
	case len(b) == ed25519.PublicKeySize:
		return ed25519.PublicKey(bytes.Clone(b)), nil
	}
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("ssh-")) || bytes.Contains(b, []byte("ssh-ed25519 ")) {
		return parseOpenSSHPublicKeys(b)
	}
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("ed25519 public key: %w: unexpected PEM block %q", ErrKeyFormat, blk.Type)
		}
		der = blk.Bytes
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("ed25519 public key: %w: not a wasmsign2 key file (0x01 + 32 bytes), raw key, DER, PEM or OpenSSH public key", ErrKeyFormat)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("ed25519 public key: %w: got %T", ErrKeyFormat, k)
	}
	return pub, nil
}

func parseOpenSSHPublicKeys(b []byte) (ed25519.PublicKey, error) {
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "ssh-ed25519" {
			continue
		}
		// The key blob: string "ssh-ed25519" || string key (RFC 4253
		// strings: uint32 big-endian length, then the bytes).
		blob, err := base64.StdEncoding.DecodeString(f[1])
		if err != nil {
			continue
		}
		name, rest, ok := sshString(blob)
		if !ok || string(name) != "ssh-ed25519" {
			continue
		}
		key, rest, ok := sshString(rest)
		if !ok || len(rest) != 0 || len(key) != ed25519.PublicKeySize {
			continue
		}
		return ed25519.PublicKey(bytes.Clone(key)), nil
	}
	return nil, fmt.Errorf("ed25519 public key: %w: no valid ssh-ed25519 line in the OpenSSH public key file", ErrKeyFormat)
}

func sshString(b []byte) (s, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, false
	}
	return b[4 : 4+n], b[4+n:], true
}

// MarshalEd25519PublicKeyFile returns pub in wasmsign2's public key file
// format (0x01 followed by the 32-byte key), what `wasmsign2 verify -K`
// reads without --ssh.
func MarshalEd25519PublicKeyFile(pub ed25519.PublicKey) []byte {
	return append([]byte{ed25519PublicKeyFileID}, pub...)
}
