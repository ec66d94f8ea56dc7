package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/wsc-project/wsc/ca"
)

// withSignScriptCmds adds the commands of the sign/verify scripts
// (testdata/script/sign_*.txtar) to the contract suite's set:
//
//	sign-pki DIR PASSFILE   write a throwaway PKI and keys into DIR (see
//	                        signPKI) and print the good leaf's serial as
//	                        openssl prints it
func withSignScriptCmds(m map[string]func(ts *testscript.TestScript, neg bool, args []string)) map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	m["sign-pki"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) != 2 {
			ts.Fatalf("usage: sign-pki DIR PASSFILE")
		}
		pass, err := ca.ReadPassphrase("file:" + ts.MkAbs(args[1]))
		if err != nil {
			ts.Fatalf("sign-pki: %v", err)
		}
		serial, err := signPKI(ts.MkAbs(args[0]), pass)
		if err != nil {
			ts.Fatalf("sign-pki: %v", err)
		}
		ts.Stdout().Write([]byte(serial + "\n"))
	}
	return m
}

// signPKI writes into dir, with plain crypto/x509 (independently of the
// ca package and of wasmsign):
//
//	bundle.pem        root, intermediate, a CRL of each (the intermediate's lists revoked)
//	other-bundle.pem  another root and its CRL
//	{good,noeku,expired,revoked}.{pem,key}  chain (leaf, intermediate) and
//	                  PKCS#8-encrypted key (passphrase pass)
//	plain.key         the good key, unencrypted PKCS#8
//	ed.key, ed-open.key   wasmsign2 secret key file (0x81 ‖ seed ‖ public), mode 0600 / 0644
//	ed.pub, ed.pub.pem    wasmsign2 public key file (0x01 ‖ public), and PEM
//	other-ed.pub      another Ed25519 public key
//	ssh.key, ssh.pub, ssh-enc.key, ssh-enc.pub, ssh-pass  ssh-keygen fixtures (mode 0600)
//	module.wasm, module2.wasm  unsigned modules
//	ed-expected.wasm  module.wasm signed with ed.key, built byte by byte
//	                  from the wasmsign2 layout (what wasmsign2 writes)
func signPKI(dir string, pass []byte) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	now := time.Now()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mkCA := func(serial int64, cn string, parent *x509.Certificate, pub, key any) (*x509.Certificate, error) {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
		if err != nil {
			return nil, err
		}
		return x509.ParseCertificate(der)
	}
	root, err := mkCA(1, "script root", nil, &rootKey.PublicKey, rootKey)
	if err != nil {
		return "", err
	}
	inter, err := mkCA(2, "script intermediate", root, &interKey.PublicKey, rootKey)
	if err != nil {
		return "", err
	}
	leaves := map[string]*x509.Certificate{}
	for i, name := range []string{"good", "noeku", "expired", "revoked"} {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: new(big.Int).SetUint64(0x0CA5B1B8_00 + uint64(i)), // leading zero nibble
			Subject:   pkix.Name{CommonName: "SCRIPT-" + name, SerialNumber: "SCRIPT-" + name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(12 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
		switch name {
		case "noeku":
			tmpl.ExtKeyUsage = nil
		case "expired":
			tmpl.NotBefore, tmpl.NotAfter = now.Add(-50*time.Minute), now.Add(-10*time.Minute)
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, inter, &k.PublicKey, interKey)
		if err != nil {
			return "", err
		}
		leaf, _ := x509.ParseCertificate(der)
		leaves[name] = leaf
		if err := os.WriteFile(filepath.Join(dir, name+".pem"), pemCerts(leaf, inter), 0o644); err != nil {
			return "", err
		}
		if err := ca.SaveEncryptedKey(filepath.Join(dir, name+".key"), k, pass); err != nil {
			return "", err
		}
		if name == "good" {
			der, _ := x509.MarshalPKCS8PrivateKey(k)
			if err := os.WriteFile(filepath.Join(dir, "plain.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
				return "", err
			}
		}
	}
	crl := func(issuer *x509.Certificate, key *ecdsa.PrivateKey, revoked ...*x509.Certificate) []byte {
		tmpl := &x509.RevocationList{Number: big.NewInt(now.UnixNano()), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour)}
		for _, c := range revoked {
			tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: now.Add(-time.Minute)})
		}
		der, _ := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
		return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
	}
	bundle := append(pemCerts(root, inter), crl(root, rootKey)...)
	bundle = append(bundle, crl(inter, interKey, leaves["revoked"])...)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, err := mkCA(3, "other root", nil, &otherKey.PublicKey, otherKey)
	if err != nil {
		return "", err
	}
	files := map[string][]byte{
		"bundle.pem":       bundle,
		"other-bundle.pem": append(pemCerts(other), crl(other, otherKey)...),
		"module.wasm":      scriptModule,
		"module2.wasm":     append(bytes.Clone(scriptModule), 0x00, 0x05, 0x04, 'n', 'o', 't', 'e'),
	}
	ed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x5a}, 32))
	edPub := ed.Public().(ed25519.PublicKey)
	files["ed.pub"] = append([]byte{0x01}, edPub...)
	spki, _ := x509.MarshalPKIXPublicKey(edPub)
	files["ed.pub.pem"] = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})
	otherEd := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x5b}, 32)).Public().(ed25519.PublicKey)
	files["other-ed.pub"] = append([]byte{0x01}, otherEd...)
	files["ed-expected.wasm"] = wasmsign2Signed(scriptModule, ed)
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return "", err
		}
	}
	secret := append([]byte{0x81}, ed...) // seed ‖ public
	for name, mode := range map[string]os.FileMode{"ed.key": 0o600, "ed-open.key": 0o644} {
		if err := os.WriteFile(filepath.Join(dir, name), secret, mode); err != nil {
			return "", err
		}
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
			return "", err
		}
	}
	for src, dst := range map[string]string{"openssh_ed25519": "ssh.key", "openssh_ed25519.pub": "ssh.pub",
		"openssh_ed25519_enc": "ssh-enc.key", "openssh_ed25519_enc.pub": "ssh-enc.pub"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "wasmsign", "testdata", "keys", src))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o600); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "ssh-pass"), []byte("fixture passphrase\n"), 0o600); err != nil {
		return "", err
	}
	return strings.ToUpper(hex.EncodeToString(leaves["good"].SerialNumber.Bytes())), nil
}

func pemCerts(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

// scriptModule is testModule (sign_test.go) under another name for the scripts.
var scriptModule = testModule

// wasmsign2Signed builds, byte by byte from the wasmsign2 layout
// (docs/signature-format.md §4, §12), the module wasmsign2 writes when it
// signs module with key and attaches the default key id: one hash set,
// one Ed25519 record. Ed25519 is deterministic, so wsc sign
// --ed25519-key must produce exactly these bytes.
func wasmsign2Signed(module []byte, key ed25519.PrivateKey) []byte {
	h := sha256.Sum256(module[8:])
	msg := append([]byte("wasmsig\x01\x01\x01"), h[:]...)
	mac := hmac.New(sha256.New, key.Public().(ed25519.PublicKey))
	mac.Write([]byte("key_id"))
	id := mac.Sum(nil)[:12]
	rec := append(append([]byte{12}, id...), 0x01, 64)
	rec = append(rec, ed25519.Sign(key, msg)...)
	set := append(append([]byte{1}, h[:]...), 1)
	set = append(append(set, uleb(uint32(len(rec)))...), rec...)
	payload := append([]byte{1, 1, 1, 1}, uleb(uint32(len(set)))...)
	payload = append(payload, set...)
	name := append([]byte{9}, "signature"...)
	sec := append([]byte{0}, uleb(uint32(len(name)+len(payload)))...)
	sec = append(append(sec, name...), payload...)
	return append(append(append([]byte{}, module[:8]...), sec...), module[8:]...)
}

func uleb(v uint32) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
