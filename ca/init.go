package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"go.step.sm/crypto/pemutil"
)

// File names inside a CA folder.
const (
	RootCertFile         = "root.crt"
	RootKeyFile          = "root.key"
	IntermediateCertFile = "intermediate.crt"
	IntermediateKeyFile  = "intermediate.key"
)

// DefaultPermittedDNSDomain is the DNS name constraint put on the station
// intermediate when InitOptions.PermittedDNSDomains is empty.
const DefaultPermittedDNSDomain = "devices.wsc.local"

// Sentinel errors of the CA folder life cycle.
var (
	// ErrExists is returned by Init when the folder already holds CA files.
	ErrExists = errors.New("ca: CA files already exist")
	// ErrBadPassphrase is returned when a key cannot be decrypted.
	ErrBadPassphrase = errors.New("ca: wrong passphrase or corrupt key")
	// ErrEmptyPassphrase is returned when an empty passphrase is given.
	ErrEmptyPassphrase = errors.New("ca: empty passphrase")
)

// InitOptions configure a new CA folder. Zero values take documented defaults.
type InitOptions struct {
	// Organization goes into the subjects of root and intermediate.
	Organization string
	// RootCommonName defaults to "wsc Root CA".
	RootCommonName string
	// IntermediateCommonName defaults to "wsc Station Intermediate CA".
	IntermediateCommonName string
	// RootValidity defaults to 20 years.
	RootValidity time.Duration
	// IntermediateValidity defaults to 5 years.
	IntermediateValidity time.Duration
	// PermittedDNSDomains is the intermediate's DNS name constraint
	// (default DefaultPermittedDNSDomain). Device SANs must lie inside it.
	PermittedDNSDomains []string
	// Overwrite allows replacing existing CA files (ceremony re-run).
	Overwrite bool
	// KeyURI, when set, puts the root and intermediate keys in a PKCS#11
	// token instead of encrypted files, e.g.
	// "pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=wsc-ca?pin-source=/run/wsc/pin".
	// The CA folder then holds root.kms and intermediate.kms (the key URIs,
	// never the PIN). Without pin-source the passphrase is the token PIN.
	KeyURI string
	// RootOnly makes only the root (root machine of a two-machine set-up):
	// the station makes its own intermediate key (`intermediate csr`).
	RootOnly bool
	// Custody, when set (NewCustody), protects the root key with a random
	// secret split among custodians (M of N) instead of the passphrase.
	Custody *Custody
	// Now overrides the clock (tests).
	Now func() time.Time
}

func (o *InitOptions) defaults() {
	if o.RootCommonName == "" {
		o.RootCommonName = "wsc Root CA"
	}
	if o.IntermediateCommonName == "" {
		o.IntermediateCommonName = "wsc Station Intermediate CA"
	}
	if o.RootValidity <= 0 {
		o.RootValidity = 20 * 365 * 24 * time.Hour
	}
	if o.IntermediateValidity <= 0 {
		o.IntermediateValidity = 5 * 365 * 24 * time.Hour
	}
	if len(o.PermittedDNSDomains) == 0 {
		o.PermittedDNSDomains = []string{DefaultPermittedDNSDomain}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Init creates a new offline CA in dir: a self-signed root (path length
// unlimited, so that rollover cross-certificates chain) and a station
// intermediate (path length 0, DNS name constraints), both ECDSA P-256.
// The private keys are written encrypted with passphrase as PKCS#8 (PBES2).
// Init refuses to overwrite existing CA files unless opts.Overwrite is set.
func Init(dir string, passphrase []byte, opts InitOptions) error {
	_, err := InitCA(context.Background(), Ceremony{Dir: dir, Now: opts.Now}, passphrase, opts)
	return err
}

// IntermediateTemplate describes an intermediate CA certificate to create.
type IntermediateTemplate struct {
	Organization        string
	CommonName          string
	Validity            time.Duration
	PermittedDNSDomains []string
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func subject(org, cn string) pkix.Name {
	n := pkix.Name{CommonName: cn}
	if org != "" {
		n.Organization = []string{org}
	}
	return n
}

// newRootCert self-signs a root. MaxPathLen is left unset (-1 semantics:
// no pathLenConstraint) so that cross-signed rollover chains
// (leaf → intermediate → new root → old root) verify.
func newRootCert(key crypto.Signer, org, cn string, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject(org, cn),
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            -1,
	}
	return signCert(tmpl, tmpl, key.Public(), key)
}

func newIntermediateCert(parent *x509.Certificate, parentKey crypto.Signer, pub crypto.PublicKey, t IntermediateTemplate, now time.Time) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	if len(t.PermittedDNSDomains) == 0 {
		t.PermittedDNSDomains = []string{DefaultPermittedDNSDomain}
	}
	if t.Validity <= 0 {
		t.Validity = 5 * 365 * 24 * time.Hour
	}
	notAfter := now.Add(t.Validity)
	if notAfter.After(parent.NotAfter) {
		notAfter = parent.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:                serial,
		Subject:                     subject(t.Organization, t.CommonName),
		NotBefore:                   now.Add(-5 * time.Minute),
		NotAfter:                    notAfter,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLen:                  0,
		MaxPathLenZero:              true,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         t.PermittedDNSDomains,
	}
	return signCert(tmpl, parent, pub, parentKey)
}

func signCert(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return c, nil
}

// writeKey stores key as PKCS#8 encrypted with PBES2. WithPKCS8(true) is
// essential: without it pemutil writes legacy OpenSSL PEM encryption
// (a single MD5 round, ~30 µs per guess) instead of PBKDF2 (~90 ms).
func writeKey(path string, key crypto.PrivateKey, passphrase []byte) error {
	b, err := encryptKeyPEM(key, passphrase)
	if err != nil {
		return fmt.Errorf("encrypt key %s: %w", filepath.Base(path), err)
	}
	return writeFileAtomic(path, b, 0o600)
}

// encryptKeyPEM encrypts key as PKCS#8 PBES2 PEM (see writeKey).
func encryptKeyPEM(key crypto.PrivateKey, passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, ErrEmptyPassphrase
	}
	block, err := pemutil.Serialize(key, pemutil.WithPassword(passphrase), pemutil.WithPKCS8(true))
	if err != nil {
		return nil, fmt.Errorf("encrypt key: %w", err)
	}
	if block.Type != "ENCRYPTED PRIVATE KEY" {
		return nil, fmt.Errorf("encrypt key: unexpected PEM type %q", block.Type)
	}
	return pem.EncodeToMemory(block), nil
}

// generateP256 makes a new ECDSA P-256 key.
func generateP256() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// certsPEM encodes certificates as PEM.
func certsPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// crlPEM encodes a CRL as PEM.
func crlPEM(crl *x509.RevocationList) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw})
}

// readKey decrypts a PKCS#8 encrypted key. Unencrypted or legacy-encrypted
// keys are refused so a weak key file cannot slip into the CA folder.
func readKey(path string, passphrase []byte) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	return decryptKeyPEM(b, path, passphrase)
}

// decryptKeyPEM is readKey on bytes (path only names the key in errors).
func decryptKeyPEM(b []byte, path string, passphrase []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("read key %s: no PEM block", filepath.Base(path))
	}
	if block.Type != "ENCRYPTED PRIVATE KEY" {
		return nil, fmt.Errorf("read key %s: PEM type %q is not an encrypted PKCS#8 key", filepath.Base(path), block.Type)
	}
	k, err := pemutil.ParseKey(b, pemutil.WithPassword(passphrase))
	if err != nil {
		// The underlying error can only be about decryption; do not wrap
		// anything that could echo input.
		return nil, fmt.Errorf("read key %s: %w", filepath.Base(path), ErrBadPassphrase)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("read key %s: %T is not a signer", filepath.Base(path), k)
	}
	return s, nil
}

func writeCerts(path string, certs ...*x509.Certificate) error {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return writeFileAtomic(path, out, 0o644)
}

func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificates: %w", err)
	}
	certs, err := ParseCertificatesPEM(b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("read %s: no certificate", filepath.Base(path))
	}
	return certs, nil
}

// ParseCertificatesPEM parses all CERTIFICATE blocks of a PEM bundle.
func ParseCertificatesPEM(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// writeFileAtomic writes via a temporary file, fsync and rename so a crash
// never leaves a half-written key or certificate.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}
