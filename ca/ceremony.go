package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.step.sm/crypto/kms/apiv1"
)

// Ceremony errors: each names what was received and what to do.
var (
	// ErrReceived: a file carried from the other machine does not fit
	// (wrong key, wrong issuer, bad signature). Nothing was changed.
	ErrReceived = errors.New("ca: received file does not fit this CA folder")
	// ErrRootRole: the operation needs a root that is not the newest (retire)
	// or names an unknown root.
	ErrRootRole = errors.New("ca: root")
	// ErrUnknownSerial: revoke named a serial the CA never recorded.
	ErrUnknownSerial = errors.New("ca: unknown certificate serial")
)

// Folder files added by the two-machine ceremonies.
const (
	// RootStateFile (root machine) keeps, per root, the CRL number and the
	// certificates the root revoked (intermediates, cross-certificates).
	RootStateFile = "root-crl.json"
	// IssuedDir (root machine) keeps a copy of every intermediate
	// certificate the root signed: rollover re-certifies the newest one, the
	// bundle ships all.
	IssuedDir = "issued"
)

// Ceremony says where a ceremony's record goes and who is recorded. Every
// ceremony of this package writes exactly one record through it.
type Ceremony struct {
	// Dir is the CA folder the ceremony works on.
	Dir string
	// Auditor receives the record; nil = the folder ledger (LedgerFile),
	// written in the same atomic step as the ceremony's files.
	Auditor Auditor
	// Actor is the person or station recorded.
	Actor string
	// Custodians are the key custodians whose shares unlocked the root
	// (quorum custody), recorded by name.
	Custodians []string
	// Now overrides the clock.
	Now func() time.Time
}

func (c *Ceremony) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Ceremony) actor() string {
	if c.Actor == "" {
		return "security"
	}
	return c.Actor
}

// CertSummary describes a certificate a ceremony made, for the paper log.
type CertSummary struct {
	Role      string    `json:"role"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	KeyID     string    `json:"key_id"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	SHA256    string    `json:"sha256"`
}

// CRLSummary describes a CRL a ceremony made.
type CRLSummary struct {
	Issuer      string    `json:"issuer"`
	IssuerKeyID string    `json:"issuer_key_id"`
	Number      string    `json:"number"`
	Entries     int       `json:"entries"`
	NextUpdate  time.Time `json:"next_update"`
	SHA256      string    `json:"sha256"`
	File        string    `json:"file,omitempty"`
}

// Result is what a ceremony reports: files it wrote, certificates and CRLs
// it made (with SHA-256 fingerprints for the paper log), and what to carry
// where next. It holds no secret.
type Result struct {
	Ceremony     string        `json:"ceremony"`
	Dir          string        `json:"dir"`
	Files        []string      `json:"files"`
	Certificates []CertSummary `json:"certificates,omitempty"`
	CRLs         []CRLSummary  `json:"crls,omitempty"`
	Custodians   []string      `json:"custodians,omitempty"`
	Notes        []string      `json:"notes,omitempty"`
	NextSteps    []string      `json:"next_steps,omitempty"`
}

// Fingerprint returns the SHA-256 of der as colon-separated upper-case hex.
func Fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(s[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

func summary(role string, x *x509.Certificate) CertSummary {
	return CertSummary{Role: role, Subject: x.Subject.String(), Issuer: x.Issuer.String(), Serial: x.SerialNumber.Text(16),
		KeyID: hex.EncodeToString(x.SubjectKeyId), NotBefore: x.NotBefore, NotAfter: x.NotAfter, SHA256: Fingerprint(x.Raw)}
}

func crlSummary(crl *x509.RevocationList, issuer string, file string) CRLSummary {
	return CRLSummary{Issuer: issuer, IssuerKeyID: hex.EncodeToString(crl.AuthorityKeyId), Number: crl.Number.String(),
		Entries: len(crl.RevokedCertificateEntries), NextUpdate: crl.NextUpdate, SHA256: Fingerprint(crl.Raw), File: file}
}

// String renders the result as text for the terminal and the paper log.
func (r *Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s done in %s\n", r.Ceremony, r.Dir)
	for _, c := range r.Certificates {
		fmt.Fprintf(&b, "%-13s %s (serial %s, key %s) until %s\n              SHA-256 %s\n", c.Role+":", c.Subject, c.Serial, c.KeyID, c.NotAfter.Format(time.DateOnly), c.SHA256)
	}
	for _, c := range r.CRLs {
		fmt.Fprintf(&b, "CRL:          %s (key %s) number %s, %d entries, next update %s\n              SHA-256 %s", c.Issuer, c.IssuerKeyID, c.Number, c.Entries, c.NextUpdate.Format(time.RFC3339), c.SHA256)
		if c.File != "" {
			fmt.Fprintf(&b, " -> %s", c.File)
		}
		b.WriteByte('\n')
	}
	if len(r.Custodians) > 0 {
		fmt.Fprintf(&b, "custodians:   %s\n", strings.Join(r.Custodians, ", "))
	}
	for _, f := range r.Files {
		fmt.Fprintf(&b, "wrote:        %s\n", f)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note:         %s\n", n)
	}
	for _, n := range r.NextSteps {
		fmt.Fprintf(&b, "next:         %s\n", n)
	}
	return b.String()
}

// finish records the ceremony and commits its files. With the folder
// ledger the record is part of the same atomic step (signed with the ledger
// key when secret unlocks it); an external Auditor (the station database)
// records before the files are committed, so a failed record changes
// nothing.
func (c *Ceremony) finish(ctx context.Context, tx *fileTx, res *Result, secret []byte, kind string, detail map[string]any) error {
	if detail == nil {
		detail = map[string]any{}
	}
	if len(res.Certificates) > 0 {
		var fps []string
		for _, x := range res.Certificates {
			fps = append(fps, x.Role+" "+x.SHA256)
		}
		detail["certificates"] = fps
	}
	if len(c.Custodians) > 0 {
		detail["custodians"] = c.Custodians
	}
	for _, op := range tx.ops {
		if !op.remove {
			res.Files = append(res.Files, op.path)
		}
	}
	res.Custodians = c.Custodians
	if c.Auditor != nil {
		if err := c.Auditor.Audit(ctx, kind, c.actor(), detail); err != nil {
			return fmt.Errorf("audit %s: %w", kind, err)
		}
		return tx.commit()
	}
	l := &FolderLedger{Dir: c.Dir, Now: c.Now}
	if len(secret) > 0 {
		l.Signer = c.ledgerSigner(tx, secret)
	}
	if err := l.stage(tx, kind, c.actor(), c.Custodians, detail); err != nil {
		return err
	}
	res.Files = append(res.Files, filepath.Join(c.Dir, LedgerFile))
	return tx.commit()
}

// ledgerSigner unlocks the folder's ledger key with secret, or stages a
// new one when the folder has none. A ledger key that secret does not
// unlock (another machine's passphrase) leaves the record unsigned: it is
// still chained and the next signed record covers it.
func (c *Ceremony) ledgerSigner(tx *fileTx, secret []byte) crypto.Signer {
	keyPath := filepath.Join(c.Dir, LedgerKeyFile)
	for _, op := range tx.ops {
		if op.path == keyPath && !op.remove {
			if k, err := parseEncryptedKey(op.data, secret); err == nil {
				return k
			}
			return nil
		}
	}
	if _, err := os.Stat(keyPath); err == nil {
		k, err := readKey(keyPath, secret)
		if err != nil {
			return nil
		}
		return k
	}
	k, keyPEM, pubPEM, err := newLedgerKey(secret)
	if err != nil {
		return nil
	}
	tx.write(keyPath, keyPEM, 0o600)
	tx.write(filepath.Join(c.Dir, LedgerPubKeyFile), pubPEM, 0o644)
	return k
}

// stageKey makes a new P-256 key for keyPath: encrypted with secret and
// staged in tx, or created in the PKCS#11 token tokenURI with its
// reference staged (a token key cannot be rolled back; an unused one is
// harmless and is named by the ledger record only once used).
func stageKey(tx *fileTx, keyPath string, secret []byte, tokenURI, label string) (crypto.Signer, func() error, error) {
	if tokenURI == "" {
		k, err := generateP256()
		if err != nil {
			return nil, nil, err
		}
		b, err := encryptKeyPEM(k, secret)
		if err != nil {
			return nil, nil, err
		}
		tx.write(keyPath, b, 0o600)
		if _, err := os.Stat(keyRefPath(keyPath)); err == nil {
			tx.remove(keyRefPath(keyPath))
		}
		return k, func() error { return nil }, nil
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, nil, fmt.Errorf("key id: %w", err)
	}
	keyURI, err := tokenKeyURI(tokenURI, id, label)
	if err != nil {
		return nil, nil, err
	}
	km, err := openKMS(keyURI, secret)
	if err != nil {
		return nil, nil, err
	}
	if _, err := km.CreateKey(&apiv1.CreateKeyRequest{Name: keyURI, SignatureAlgorithm: apiv1.ECDSAWithSHA256}); err != nil {
		km.Close()
		return nil, nil, fmt.Errorf("create token key %s: %w", label, err)
	}
	s, err := km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: keyURI})
	if err != nil {
		km.Close()
		return nil, nil, fmt.Errorf("create token key %s: %w", label, err)
	}
	tx.write(keyRefPath(keyPath), []byte(keyURI+"\n"), 0o644)
	if _, err := os.Stat(keyPath); err == nil {
		tx.remove(keyPath)
	}
	return s, km.Close, nil
}

// stageCopyKey stages a copy of the key at from (file or reference) to to.
func stageCopyKey(tx *fileTx, from, to string) error {
	src, dst, perm := from, to, os.FileMode(0o600)
	if IsTokenKey(from) {
		src, dst, perm = keyRefPath(from), keyRefPath(to), 0o644
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy key: %w", err)
	}
	tx.write(dst, b, perm)
	return nil
}

// stageMoveKey stages moving the key at from to to.
func stageMoveKey(tx *fileTx, from, to string) error {
	if err := stageCopyKey(tx, from, to); err != nil {
		return err
	}
	if IsTokenKey(from) {
		tx.remove(keyRefPath(from))
		if _, err := os.Stat(to); err == nil {
			tx.remove(to)
		}
	} else {
		tx.remove(from)
		if _, err := os.Stat(keyRefPath(to)); err == nil {
			tx.remove(keyRefPath(to))
		}
	}
	return nil
}

func parseEncryptedKey(b, secret []byte) (crypto.Signer, error) {
	return decryptKeyPEM(b, LedgerKeyFile, secret)
}

// InitCA creates a CA folder (see Init) and records the ceremony: root key
// and certificate, unless opts.RootOnly the first station intermediate,
// the folder's ledger key, and with opts.Custody the custody file. All
// files appear together or not at all.
func InitCA(ctx context.Context, cer Ceremony, secret []byte, opts InitOptions) (*Result, error) {
	if len(secret) == 0 && opts.KeyURI == "" && (opts.Custody == nil || !opts.RootOnly) {
		return nil, ErrEmptyPassphrase
	}
	opts.defaults()
	if cer.Now == nil {
		cer.Now = opts.Now
	}
	dir := cer.Dir
	if !opts.Overwrite {
		for _, f := range []string{RootCertFile, RootKeyFile, IntermediateCertFile, IntermediateKeyFile, LedgerFile} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil || keyExists(filepath.Join(dir, f)) {
				return nil, fmt.Errorf("init CA in %s: %w", dir, ErrExists)
			}
		}
	}
	now := opts.Now()
	var tx fileTx
	tx.mkdir(dir)
	res := &Result{Ceremony: "init", Dir: dir}
	rootSecret := secret
	if opts.Custody != nil {
		rootSecret = opts.Custody.secret
		opts.Custody.stage(&tx, dir)
	}
	rootKey, closeRoot, err := stageKey(&tx, filepath.Join(dir, RootKeyFile), rootSecret, opts.KeyURI, "wsc-root")
	if err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	defer closeRoot()
	root, err := newRootCert(rootKey, opts.Organization, opts.RootCommonName, now, opts.RootValidity)
	if err != nil {
		return nil, err
	}
	tx.write(filepath.Join(dir, RootCertFile), certsPEM(root), 0o644)
	res.Certificates = append(res.Certificates, summary("root", root))
	detail := map[string]any{"root_key_id": hex.EncodeToString(root.SubjectKeyId), "root": root.Subject.String(), "root_only": opts.RootOnly}
	if !opts.RootOnly {
		intKey, closeInt, err := stageKey(&tx, filepath.Join(dir, IntermediateKeyFile), secret, opts.KeyURI, "wsc-intermediate")
		if err != nil {
			return nil, fmt.Errorf("intermediate key: %w", err)
		}
		defer closeInt()
		inter, err := newIntermediateCert(root, rootKey, intKey.Public(), IntermediateTemplate{
			Organization:        opts.Organization,
			CommonName:          opts.IntermediateCommonName,
			Validity:            opts.IntermediateValidity,
			PermittedDNSDomains: opts.PermittedDNSDomains,
		}, now)
		if err != nil {
			return nil, err
		}
		tx.write(filepath.Join(dir, IntermediateCertFile), certsPEM(inter), 0o644)
		tx.mkdir(filepath.Join(dir, IssuedDir))
		tx.write(issuedPath(dir, inter), certsPEM(inter), 0o644)
		res.Certificates = append(res.Certificates, summary("intermediate", inter))
		detail["intermediate_key_id"] = hex.EncodeToString(inter.SubjectKeyId)
		detail["intermediate"] = inter.Subject.String()
		detail["permitted_dns_domains"] = inter.PermittedDNSDomains
	}
	// The ledger key is protected by the root secret: only a root ceremony
	// signs the root machine's ledger.
	// Token keys whose PIN comes from pin-source leave no secret at hand:
	// the ledger is then chained but unsigned.
	if ls := rootSecretOrPIN(rootSecret, secret); len(ls) > 0 {
		lk, keyPEM, pubPEM, err := newLedgerKey(ls)
		if err != nil {
			return nil, err
		}
		tx.write(filepath.Join(dir, LedgerKeyFile), keyPEM, 0o600)
		tx.write(filepath.Join(dir, LedgerPubKeyFile), pubPEM, 0o644)
		pubDER, _ := x509.MarshalPKIXPublicKey(lk.Public())
		detail["ledger_key_sha256"] = Fingerprint(pubDER)
		res.Notes = append(res.Notes, "ledger key SHA-256 "+Fingerprint(pubDER)+" (write it in the paper log; `wsc ca ledger verify --pin` checks it)")
	}
	if opts.Custody != nil {
		detail["custodians"] = opts.Custody.names()
		detail["quorum"] = opts.Custody.Quorum
		cer.Custodians = nil
	}
	if opts.RootOnly {
		res.NextSteps = append(res.NextSteps,
			"carry root.crt to the station; compare its SHA-256 with this paper log before trusting it",
			"station: `wsc ca intermediate csr` and carry the CSR here")
	}
	if err := cer.finish(ctx, &tx, res, rootSecretOrPIN(rootSecret, secret), "ca.init", detail); err != nil {
		return nil, err
	}
	return res, nil
}

func rootSecretOrPIN(rootSecret, secret []byte) []byte {
	if len(rootSecret) > 0 {
		return rootSecret
	}
	return secret
}

func issuedPath(dir string, x *x509.Certificate) string {
	return filepath.Join(dir, IssuedDir, hex.EncodeToString(x.SubjectKeyId)+"-"+x.SerialNumber.Text(16)+".crt")
}

// IntermediateCSR is the station's first step of an intermediate rotation
// (or of a two-machine set-up): it checks that secret unlocks the current
// intermediate key (when there is one), makes the next key and writes its
// CSR to out. Key and CSR appear together or not at all: a wrong passphrase
// leaves the folder as it was.
func IntermediateCSR(ctx context.Context, cer Ceremony, secret []byte, commonName, out string, opts ...KeyOption) ([]byte, *Result, error) {
	var o keyOptions
	for _, fn := range opts {
		fn(&o)
	}
	dir := cer.Dir
	cur := filepath.Join(dir, IntermediateKeyFile)
	if !o.set {
		tok, err := tokenOf(cur)
		if err != nil {
			return nil, nil, err
		}
		o.keyURI = tok
	}
	if len(secret) == 0 && o.keyURI == "" {
		return nil, nil, ErrEmptyPassphrase
	}
	if keyExists(cur) {
		k, closeKey, err := loadKey(cur, secret)
		if err != nil {
			return nil, nil, fmt.Errorf("intermediate csr: the station passphrase must unlock the current intermediate key: %w", err)
		}
		closeKey()
		_ = k
	}
	var tx fileTx
	tx.mkdir(dir)
	key, closeKey, err := stageKey(&tx, filepath.Join(dir, NextIntermediateKeyFile), secret, o.keyURI, "wsc-intermediate")
	if err != nil {
		return nil, nil, fmt.Errorf("intermediate key: %w", err)
	}
	defer closeKey()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject("", commonName)}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("intermediate CSR: %w", err)
	}
	if out != "" {
		tx.write(out, pemBytes("CERTIFICATE REQUEST", der), 0o644)
	}
	res := &Result{Ceremony: "intermediate csr", Dir: dir, Notes: []string{"CSR SHA-256 " + Fingerprint(der)},
		NextSteps: []string{"carry " + filepath.Base(out) + " to the root machine: `wsc ca intermediate sign --csr " + filepath.Base(out) + "`"}}
	storage := "encrypted file"
	if o.keyURI != "" {
		storage = "pkcs11 token"
	}
	if err := cer.finish(ctx, &tx, res, secret, "ca.intermediate.csr", map[string]any{
		"subject": commonName, "csr_sha256": Fingerprint(der), "key": storage,
	}); err != nil {
		return nil, nil, err
	}
	return der, res, nil
}

// SignIntermediateCSR is the root machine's step: it checks the CSR's
// signature, unlocks the root key with rootSecret and checks it matches the
// newest root, then certifies the CSR's key. Names come from t only (never
// from the CSR): CN defaults to "wsc Station Intermediate CA <date>", O to the
// root's organisation. out receives the chain for the station (the
// intermediate, plus the new-by-old cross-certificate after a rollover);
// issued/ keeps a copy.
func SignIntermediateCSR(ctx context.Context, cer Ceremony, rootSecret, csrDER []byte, t IntermediateTemplate, out string) (*x509.Certificate, *Result, error) {
	csr, err := CheckCSR(csrDER)
	if err != nil {
		return nil, nil, fmt.Errorf("sign intermediate: the CSR: %w: %w", ErrReceived, err)
	}
	dir := cer.Dir
	roots, err := readCerts(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, nil, fmt.Errorf("sign intermediate: %w", err)
	}
	rootKey, closeKey, err := loadKey(filepath.Join(dir, RootKeyFile), rootSecret)
	if err != nil {
		return nil, nil, fmt.Errorf("sign intermediate: root key: %w", err)
	}
	defer closeKey()
	if err := checkKeyMatches(roots[0], rootKey); err != nil {
		return nil, nil, fmt.Errorf("sign intermediate: root: %w", err)
	}
	if t.CommonName == "" {
		t.CommonName = "wsc Station Intermediate CA " + cer.now().UTC().Format(time.DateOnly)
	}
	if t.Organization == "" && len(roots[0].Subject.Organization) > 0 {
		t.Organization = roots[0].Subject.Organization[0]
	}
	cert, err := newIntermediateCert(roots[0], rootKey, csr.PublicKey, t, cer.now())
	if err != nil {
		return nil, nil, err
	}
	chain := []*x509.Certificate{cert}
	cross, err := crossFor(dir, cert)
	if err != nil {
		return nil, nil, fmt.Errorf("sign intermediate: %w", err)
	}
	chain = append(chain, cross...)
	var tx fileTx
	tx.mkdir(filepath.Join(dir, IssuedDir))
	tx.write(issuedPath(dir, cert), certsPEM(cert), 0o644)
	if out != "" {
		tx.write(out, certsPEM(chain...), 0o644)
	}
	res := &Result{Ceremony: "intermediate sign", Dir: dir, Certificates: []CertSummary{summary("intermediate", cert)},
		NextSteps: []string{"carry " + filepath.Base(out) + " to the station: `wsc ca intermediate install --chain " + filepath.Base(out) + "`",
			"sign the root CRLs (`wsc ca crl --root`) and carry them with it"}}
	if err := cer.finish(ctx, &tx, res, rootSecret, "ca.intermediate.sign", map[string]any{
		"serial": cert.SerialNumber.Text(16), "subject": cert.Subject.String(), "key_id": hex.EncodeToString(cert.SubjectKeyId),
		"issuer_key_id": hex.EncodeToString(cert.AuthorityKeyId), "not_after": cert.NotAfter, "permitted_dns_domains": cert.PermittedDNSDomains,
		"csr_sha256": Fingerprint(csrDER),
	}); err != nil {
		return nil, nil, err
	}
	return cert, res, nil
}

// crossFor returns the new-by-old cross-certificate when cert's issuer is
// a root that a rollover certified under an older root. Read and parse
// errors are errors.
func crossFor(dir string, cert *x509.Certificate) ([]*x509.Certificate, error) {
	p := filepath.Join(dir, CrossDir, "new-by-old.crt")
	raw, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cross certificate: %w", err)
	}
	cs, err := ParseCertificatesPEM(raw)
	if err != nil {
		return nil, fmt.Errorf("cross certificate %s: %w", p, err)
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("cross certificate %s: no certificate", p)
	}
	if bytes.Equal(cs[0].SubjectKeyId, cert.AuthorityKeyId) {
		return cs[:1], nil
	}
	return nil, nil
}

// installPlan checks a received intermediate chain against the station
// folder and stages its installation. It returns the key that goes with
// chain[0] (the pending key, or the current key for a re-certification
// after a root rollover) and whether the pending key is used.
func installPlan(tx *fileTx, dir string, chain []*x509.Certificate, secret []byte, now time.Time) (crypto.Signer, func() error, *x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, nil, nil, errors.New("install intermediate: empty chain")
	}
	roots, err := readCerts(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("install intermediate: %w (carry root.crt from the root machine and run `wsc ca import --roots root.crt` first)", err)
	}
	if err := verifyCAChain(chain, roots, now); err != nil {
		return nil, nil, nil, fmt.Errorf("install intermediate: %w: %w", ErrReceived, err)
	}
	curPath := filepath.Join(dir, IntermediateKeyFile)
	nextPath := filepath.Join(dir, NextIntermediateKeyFile)
	var cur []*x509.Certificate
	if _, err := os.Stat(filepath.Join(dir, IntermediateCertFile)); err == nil {
		if cur, err = readCerts(filepath.Join(dir, IntermediateCertFile)); err != nil {
			return nil, nil, nil, fmt.Errorf("install intermediate: %w", err)
		}
	}
	if len(cur) > 0 && bytes.Equal(cur[0].Raw, chain[0].Raw) {
		return nil, nil, nil, fmt.Errorf("install intermediate: this certificate is already installed: %w", ErrNoPendingKey)
	}
	// Re-certification of the current key (after a root rollover).
	if len(cur) > 0 && bytes.Equal(cur[0].SubjectKeyId, chain[0].SubjectKeyId) {
		key, closeKey, err := loadKey(curPath, secret)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("install intermediate: current key: %w", err)
		}
		if err := checkKeyMatches(chain[0], key); err != nil {
			closeKey()
			return nil, nil, nil, fmt.Errorf("install intermediate: %w: %w", ErrReceived, err)
		}
		// Keep the previous certificate of the same key for the bundle:
		// devices hold chains through it.
		tx.mkdir(filepath.Join(dir, CrossDir))
		tx.write(filepath.Join(dir, CrossDir, "intermediate-"+hex.EncodeToString(cur[0].SubjectKeyId)+"-"+cur[0].SerialNumber.Text(16)+".crt"), certsPEM(cur[0]), 0o644)
		tx.write(filepath.Join(dir, IntermediateCertFile), certsPEM(chain...), 0o644)
		return key, closeKey, cur[0], nil
	}
	if !keyExists(nextPath) {
		return nil, nil, nil, fmt.Errorf("install intermediate: %w (run `wsc ca intermediate csr` on this station first)", ErrNoPendingKey)
	}
	key, closeKey, err := loadKey(nextPath, secret)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("install intermediate: pending key: %w", err)
	}
	if err := checkKeyMatches(chain[0], key); err != nil {
		closeKey()
		return nil, nil, nil, fmt.Errorf("install intermediate: the certificate is not for this station's pending key: %w: %w", ErrReceived, err)
	}
	var old *x509.Certificate
	if len(cur) > 0 {
		old = cur[0]
		rd := filepath.Join(dir, RetiredDir)
		tx.mkdir(rd)
		base := filepath.Join(rd, hex.EncodeToString(old.SubjectKeyId))
		tx.write(base+".crt", certsPEM(old), 0o644)
		if err := stageCopyKey(tx, curPath, base+".key"); err != nil {
			closeKey()
			return nil, nil, nil, fmt.Errorf("install intermediate: %w", err)
		}
	}
	tx.write(filepath.Join(dir, IntermediateCertFile), certsPEM(chain...), 0o644)
	if err := stageMoveKey(tx, nextPath, curPath); err != nil {
		closeKey()
		return nil, nil, nil, fmt.Errorf("install intermediate: %w", err)
	}
	return key, closeKey, old, nil
}

// verifyCAChain checks that chain[0] is a CA certificate that chains to
// one of roots through the rest of chain.
func verifyCAChain(chain, roots []*x509.Certificate, now time.Time) error {
	if !chain[0].IsCA {
		return fmt.Errorf("%s is not a CA certificate", chain[0].Subject)
	}
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	for _, x := range chain[1:] {
		inter.AddCert(x)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("%s does not chain to a root in root.crt: %w", chain[0].Subject, err)
	}
	return nil
}

// InstallIntermediate installs a chain from the root machine in the station
// folder without opening the CA (first installation on a new station, or
// any rotation run by `wsc ca intermediate install`): the chain must reach
// a root of root.crt and its first certificate must be for the pending key
// (which secret must unlock) or re-certify the current key. The previous
// intermediate goes to retired/ (kept for its CRL). A running station picks
// the change up (CA.Reload).
func InstallIntermediate(ctx context.Context, cer Ceremony, secret []byte, chain []*x509.Certificate) (*Result, error) {
	var tx fileTx
	_, closeKey, old, err := installPlan(&tx, cer.Dir, chain, secret, cer.now())
	if err != nil {
		return nil, err
	}
	closeKey()
	res := &Result{Ceremony: "intermediate install", Dir: cer.Dir, Certificates: []CertSummary{summary("intermediate", chain[0])},
		NextSteps: []string{"publish CRLs and a new trust bundle (`wsc ca crl`, `wsc ca bundle`)"}}
	detail := map[string]any{"new_key_id": hex.EncodeToString(chain[0].SubjectKeyId), "subject": chain[0].Subject.String(), "not_after": chain[0].NotAfter}
	if old != nil {
		detail["old_key_id"] = hex.EncodeToString(old.SubjectKeyId)
	}
	if err := cer.finish(ctx, &tx, res, secret, "ca.intermediate.install", detail); err != nil {
		return nil, err
	}
	return res, nil
}

func pemBytes(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// parsePEMObjects parses every CERTIFICATE and X509 CRL block; any other
// block type, or one that does not parse, is an error.
func parsePEMObjects(raw []byte) ([]*x509.Certificate, []*x509.RevocationList, error) {
	var (
		certs []*x509.Certificate
		crls  []*x509.RevocationList
	)
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, raw = pem.Decode(raw)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("PEM block %d: %w", n, err)
			}
			certs = append(certs, c)
		case "X509 CRL":
			c, err := x509.ParseRevocationList(blk.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("PEM block %d: %w", n, err)
			}
			crls = append(crls, c)
		default:
			return nil, nil, fmt.Errorf("PEM block %d: unexpected type %q", n, blk.Type)
		}
	}
	return certs, crls, nil
}

// readCRLFile reads one PEM CRL.
func readCRLFile(path string) (*x509.RevocationList, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	_, crls, err := parsePEMObjects(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	if len(crls) != 1 {
		return nil, fmt.Errorf("%s: want one CRL, found %d", filepath.Base(path), len(crls))
	}
	return crls[0], nil
}

// rootKeyPath is where the key of roots[i] of root.crt is kept: root.key
// for the newest root, retired/root-<keyid>.key for an older one still
// trusted.
func rootKeyPath(dir string, roots []*x509.Certificate, i int) string {
	if i == 0 {
		return filepath.Join(dir, RootKeyFile)
	}
	return filepath.Join(dir, RetiredDir, "root-"+hex.EncodeToString(roots[i].SubjectKeyId)+".key")
}

// rootState is the root machine's revocation state (RootStateFile).
type rootState struct {
	Roots map[string]*rootEntry `json:"roots"`
}

type rootEntry struct {
	CRLNumber string        `json:"crl_number"`
	Revoked   []rootRevoked `json:"revoked,omitempty"`
	Retired   bool          `json:"retired,omitempty"`
}

type rootRevoked struct {
	Serial    string    `json:"serial"`
	Subject   string    `json:"subject"`
	RevokedAt time.Time `json:"revoked_at"`
	Reason    int       `json:"reason"`
}

func readRootState(dir string) (*rootState, error) {
	st := &rootState{Roots: map[string]*rootEntry{}}
	raw, err := os.ReadFile(filepath.Join(dir, RootStateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("root state: %w", err)
	}
	if err := json.Unmarshal(raw, st); err != nil {
		return nil, fmt.Errorf("root state %s: %w", RootStateFile, err)
	}
	if st.Roots == nil {
		st.Roots = map[string]*rootEntry{}
	}
	return st, nil
}

func (s *rootState) entry(id []byte) *rootEntry {
	k := hex.EncodeToString(id)
	if s.Roots[k] == nil {
		s.Roots[k] = &rootEntry{CRLNumber: "0"}
	}
	return s.Roots[k]
}

func (s *rootState) stage(tx *fileTx, dir string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tx.write(filepath.Join(dir, RootStateFile), append(b, '\n'), 0o644)
	return nil
}

// RevokeByRoot records on the root machine that cert, a CA certificate
// signed by one of the roots of root.crt (a station intermediate, a
// cross-certificate), is revoked: the next root CRL of that root lists it.
// No key is unlocked; the CRL ceremony signs.
func RevokeByRoot(ctx context.Context, cer Ceremony, cert *x509.Certificate, reason int) (*Result, error) {
	if err := checkReason(reason); err != nil {
		return nil, fmt.Errorf("revoke %x: %w", cert.SerialNumber, err)
	}
	roots, err := readCerts(filepath.Join(cer.Dir, RootCertFile))
	if err != nil {
		return nil, fmt.Errorf("revoke: %w", err)
	}
	var issuer *x509.Certificate
	for i, r := range roots {
		if cert.CheckSignatureFrom(r) == nil {
			issuer = r
			if !keyExists(rootKeyPath(cer.Dir, roots, i)) {
				return nil, fmt.Errorf("revoke %x (%s): the key of root %s is not in %s: revoke CA certificates on the root machine (its next `wsc ca crl --root` lists them)", cert.SerialNumber, cert.Subject, r.Subject, cer.Dir)
			}
		}
	}
	if issuer == nil {
		return nil, fmt.Errorf("revoke %x (%s): %w: not signed by a root of %s", cert.SerialNumber, cert.Subject, ErrUnknownIssuer, RootCertFile)
	}
	st, err := readRootState(cer.Dir)
	if err != nil {
		return nil, err
	}
	// The same key certified by another trusted root (a rollover's
	// re-certification) is revoked with it: each copy lands in the CRL of
	// the root that signed it.
	targets := []*x509.Certificate{cert}
	copies, err := folderCAs(cer.Dir, nil)
	if err != nil {
		return nil, fmt.Errorf("revoke: %w", err)
	}
	for _, x := range copies {
		if bytes.Equal(x.SubjectKeyId, cert.SubjectKeyId) && bytes.Equal(x.RawSubject, cert.RawSubject) && !containsCert(targets, x) {
			for _, r := range roots {
				if x.CheckSignatureFrom(r) == nil {
					targets = append(targets, x)
				}
			}
		}
	}
	added := 0
	for _, x := range targets {
		var by *x509.Certificate
		for _, r := range roots {
			if x.CheckSignatureFrom(r) == nil {
				by = r
			}
		}
		e := st.entry(by.SubjectKeyId)
		dup := false
		for _, r := range e.Revoked {
			dup = dup || r.Serial == x.SerialNumber.Text(16)
		}
		if !dup {
			e.Revoked = append(e.Revoked, rootRevoked{Serial: x.SerialNumber.Text(16), Subject: x.Subject.String(), RevokedAt: cer.now().UTC().Truncate(time.Second), Reason: reason})
			added++
		}
	}
	if added == 0 {
		return &Result{Ceremony: "revoke", Dir: cer.Dir, Notes: []string{"already revoked"}}, nil
	}
	var tx fileTx
	if err := st.stage(&tx, cer.Dir); err != nil {
		return nil, err
	}
	res := &Result{Ceremony: "revoke", Dir: cer.Dir, Notes: []string{fmt.Sprintf("%s (serial %x) revoked by root %s: %s; %d certificate(s) of this key in all", cert.Subject, cert.SerialNumber, issuer.Subject, ReasonName(reason), len(targets))},
		NextSteps: []string{"sign the root CRLs (`wsc ca crl --root`) and carry them to the station (`wsc ca import`)"}}
	if err := cer.finish(ctx, &tx, res, nil, "ca.revoke", map[string]any{
		"serial": cert.SerialNumber.Text(16), "subject": cert.Subject.String(), "issuer_key_id": hex.EncodeToString(issuer.SubjectKeyId),
		"reason": ReasonName(reason), "sha256": Fingerprint(cert.Raw), "certificates_revoked": len(targets),
	}); err != nil {
		return nil, err
	}
	return res, nil
}

// RootCRLs is the root CRL ceremony: every root of root.crt (the newest
// and every older one not yet retired) signs its own CRL with its own key,
// listing the CA certificates it revoked, with a number one higher than
// the last. rootSecret unlocks every root key. The CRLs go to crl/ (and,
// with out, to out/crl-<keyid>.pem, to be carried to the station).
func RootCRLs(ctx context.Context, cer Ceremony, rootSecret []byte, validity time.Duration, out string) ([]*x509.RevocationList, *Result, error) {
	if validity <= 0 {
		validity = 30 * 24 * time.Hour
	}
	dir := cer.Dir
	roots, err := readCerts(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, nil, fmt.Errorf("root CRL: %w", err)
	}
	st, err := readRootState(dir)
	if err != nil {
		return nil, nil, err
	}
	now := cer.now().UTC().Truncate(time.Second)
	var (
		tx   fileTx
		crls []*x509.RevocationList
		res  = &Result{Ceremony: "root crl", Dir: dir}
	)
	tx.mkdir(filepath.Join(dir, CRLDir))
	if out != "" {
		tx.mkdir(out)
	}
	for i, r := range roots {
		kp := rootKeyPath(dir, roots, i)
		if !keyExists(kp) {
			return nil, nil, fmt.Errorf("root CRL of %s: its key %s is not in this folder: run the root CRL ceremony on the root machine", r.Subject, kp)
		}
		key, closeKey, err := loadKey(kp, rootSecret)
		if err != nil {
			return nil, nil, fmt.Errorf("root CRL of %s: %w", r.Subject, err)
		}
		err = checkKeyMatches(r, key)
		if err != nil {
			closeKey()
			return nil, nil, fmt.Errorf("root CRL of %s: %w", r.Subject, err)
		}
		e := st.entry(r.SubjectKeyId)
		n, ok := new(big.Int).SetString(e.CRLNumber, 10)
		if !ok {
			closeKey()
			return nil, nil, fmt.Errorf("root CRL of %s: bad CRL number %q in %s", r.Subject, e.CRLNumber, RootStateFile)
		}
		n.Add(n, big.NewInt(1))
		e.CRLNumber = n.String()
		var entries []x509.RevocationListEntry
		for _, rv := range e.Revoked {
			sn, _ := new(big.Int).SetString(rv.Serial, 16)
			entries = append(entries, x509.RevocationListEntry{SerialNumber: sn, RevocationTime: rv.RevokedAt, ReasonCode: rv.Reason})
		}
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: n, ThisUpdate: now, NextUpdate: now.Add(validity), RevokedCertificateEntries: entries}, r, key)
		closeKey()
		if err != nil {
			return nil, nil, fmt.Errorf("root CRL of %s: %w", r.Subject, err)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, nil, fmt.Errorf("root CRL of %s: %w", r.Subject, err)
		}
		crls = append(crls, crl)
		id := hex.EncodeToString(r.SubjectKeyId)
		tx.write(filepath.Join(dir, CRLDir, id+".pem"), crlPEM(crl), 0o644)
		file := ""
		if out != "" {
			file = filepath.Join(out, "crl-"+id+".pem")
			tx.write(file, crlPEM(crl), 0o644)
		}
		res.CRLs = append(res.CRLs, crlSummary(crl, r.Subject.String()+" ("+rootRole(i, len(roots))+" root)", file))
	}
	if err := st.stage(&tx, dir); err != nil {
		return nil, nil, err
	}
	res.NextSteps = []string{"carry the CRL files to the station: `wsc ca import FILE...`, then `wsc ca bundle`"}
	var numbers []string
	for _, c := range res.CRLs {
		numbers = append(numbers, c.IssuerKeyID+"#"+c.Number)
	}
	if err := cer.finish(ctx, &tx, res, rootSecret, "ca.crl", map[string]any{"root": true, "crls": numbers}); err != nil {
		return nil, nil, err
	}
	return crls, res, nil
}

func rootRole(i, n int) string {
	switch {
	case n == 1:
		return "current"
	case i == 0:
		return "new"
	default:
		return "old"
	}
}

// RetireRoot is the ceremony that ends an old root's trust after a
// rollover (every verifier trusts the new root): the root leaves root.crt,
// its key is destroyed, its CRL is no longer published, and bundles stop
// shipping the cross-certificates that lead to it. rootSecret must unlock
// the old root's key (proof the ceremony is authorised). The newest root
// cannot be retired.
func RetireRoot(ctx context.Context, cer Ceremony, rootSecret []byte, keyID string) (*Result, error) {
	dir := cer.Dir
	roots, err := readCerts(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, fmt.Errorf("retire root: %w", err)
	}
	idx := -1
	for i, r := range roots {
		if strings.EqualFold(hex.EncodeToString(r.SubjectKeyId), strings.ReplaceAll(keyID, ":", "")) {
			idx = i
		}
	}
	switch {
	case idx < 0:
		return nil, fmt.Errorf("retire root %s: %w: no such root in %s (see `wsc ca status`)", keyID, ErrRootRole, RootCertFile)
	case idx == 0:
		return nil, fmt.Errorf("retire root %s: %w: it is the newest root; roll over first (`wsc ca root rollover`)", keyID, ErrRootRole)
	}
	old := roots[idx]
	kp := rootKeyPath(dir, roots, idx)
	key, closeKey, err := loadKey(kp, rootSecret)
	if err != nil {
		return nil, fmt.Errorf("retire root: %w", err)
	}
	err = checkKeyMatches(old, key)
	closeKey()
	if err != nil {
		return nil, fmt.Errorf("retire root: %w", err)
	}
	keep := append(append([]*x509.Certificate(nil), roots[:idx]...), roots[idx+1:]...)
	// Every live intermediate of the old root must also be certified by a
	// remaining root, or its devices would stop verifying.
	live, err := olderIntermediates(dir, old, nil, cer.now())
	if err != nil {
		return nil, fmt.Errorf("retire root: %w", err)
	}
	all, err := folderCAs(dir, nil)
	if err != nil {
		return nil, fmt.Errorf("retire root: %w", err)
	}
	for _, x := range live {
		covered := false
		for _, y := range all {
			if bytes.Equal(y.SubjectKeyId, x.SubjectKeyId) {
				for _, r := range keep {
					covered = covered || y.CheckSignatureFrom(r) == nil
				}
			}
		}
		if !covered {
			return nil, fmt.Errorf("retire root: intermediate %s (key %x) is certified only by the root being retired: roll over first (the rollover re-certifies it) or revoke it: %w", x.Subject, x.SubjectKeyId, ErrRootRole)
		}
	}
	st, err := readRootState(dir)
	if err != nil {
		return nil, err
	}
	st.entry(old.SubjectKeyId).Retired = true
	var tx fileTx
	tx.write(filepath.Join(dir, RootCertFile), certsPEM(keep...), 0o644)
	tx.write(filepath.Join(dir, RetiredDir, "root-"+hex.EncodeToString(old.SubjectKeyId)+".crt"), certsPEM(old), 0o644)
	if IsTokenKey(kp) {
		tx.remove(keyRefPath(kp))
	} else {
		tx.remove(kp)
	}
	tx.remove(filepath.Join(dir, CRLDir, hex.EncodeToString(old.SubjectKeyId)+".pem"))
	if err := st.stage(&tx, dir); err != nil {
		return nil, err
	}
	var trimmed Result
	// A single-machine folder also holds the station chain.
	if err := trimChain(&tx, dir, roots, keep, &trimmed); err != nil {
		return nil, err
	}
	res := &Result{Ceremony: "root retire", Notes: trimmed.Notes, Dir: dir, Certificates: []CertSummary{summary("retired root", old)},
		NextSteps: []string{"carry root.crt to the station: `wsc ca import --roots root.crt`, then publish a new bundle"}}
	if IsTokenKey(kp) {
		res.Notes = append(res.Notes, "the key reference was removed; destroy the key object in the token too")
	}
	if err := cer.finish(ctx, &tx, res, rootSecret, "ca.root.retire", map[string]any{
		"root_key_id": hex.EncodeToString(old.SubjectKeyId), "root": old.Subject.String(), "sha256": Fingerprint(old.Raw),
	}); err != nil {
		return nil, err
	}
	return res, nil
}

// retiredRootIDs lists the key ids of roots retired by RetireRoot.
func retiredRootIDs(dir string) (map[string]bool, error) {
	st, err := readRootState(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for k, e := range st.Roots {
		if e.Retired {
			out[k] = true
		}
	}
	return out, nil
}

// ImportOptions say what a station receives from the root machine.
type ImportOptions struct {
	// Roots is the root machine's root.crt: it replaces the station's trust
	// list. A root not yet trusted must be certified by a trusted root
	// (a new-by-old cross-certificate among Files or in cross/), unless the
	// station trusts no root yet (first import: compare the fingerprints
	// with the paper log).
	Roots string
	// Files are CRLs and CA certificates (cross-certificates, intermediate
	// copies) to place in the folder. A CRL must be signed by a root or an
	// intermediate of the folder.
	Files []string
}

// Import places files carried from the root machine into the station
// folder after checking each one (see ImportOptions). All or nothing.
func Import(ctx context.Context, cer Ceremony, o ImportOptions) (*Result, error) {
	dir := cer.Dir
	var cur []*x509.Certificate
	if _, err := os.Stat(filepath.Join(dir, RootCertFile)); err == nil {
		var err error
		if cur, err = readCerts(filepath.Join(dir, RootCertFile)); err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
	}
	var (
		certs []*x509.Certificate
		crls  []*x509.RevocationList
		names = map[*x509.RevocationList]string{}
	)
	for _, f := range o.Files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		cs, cl, err := parsePEMObjects(raw)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", f, err)
		}
		if len(cs) == 0 && len(cl) == 0 {
			return nil, fmt.Errorf("import %s: no certificate or CRL in it", f)
		}
		certs = append(certs, cs...)
		for _, c := range cl {
			names[c] = f
		}
		crls = append(crls, cl...)
	}
	var tx fileTx
	tx.mkdir(dir)
	res := &Result{Ceremony: "import", Dir: dir}
	roots := cur
	if o.Roots != "" {
		newRoots, err := readCerts(o.Roots)
		if err != nil {
			return nil, fmt.Errorf("import roots: %w", err)
		}
		known := x509.NewCertPool()
		for _, r := range cur {
			known.AddCert(r)
		}
		cross := append([]*x509.Certificate(nil), certs...)
		if ents, err := os.ReadDir(filepath.Join(dir, CrossDir)); err == nil {
			for _, e := range ents {
				cs, err := readCerts(filepath.Join(dir, CrossDir, e.Name()))
				if err != nil {
					return nil, fmt.Errorf("import: %w", err)
				}
				cross = append(cross, cs...)
			}
		}
		for _, r := range newRoots {
			if !bytes.Equal(r.RawIssuer, r.RawSubject) || r.CheckSignatureFrom(r) != nil || !r.IsCA {
				return nil, fmt.Errorf("import roots: %s is not a self-signed CA certificate: %w", r.Subject, ErrReceived)
			}
			if len(cur) == 0 || containsCert(cur, r) {
				continue
			}
			linked := false
			for _, x := range cross {
				if bytes.Equal(x.RawSubject, r.RawSubject) && bytes.Equal(x.SubjectKeyId, r.SubjectKeyId) {
					if _, err := x.Verify(x509.VerifyOptions{Roots: known, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: cer.now()}); err == nil {
						linked = true
					}
				}
			}
			if !linked {
				return nil, fmt.Errorf("import roots: new root %s (SHA-256 %s) is not certified by a root this station trusts; bring the new-by-old cross-certificate too: %w", r.Subject, Fingerprint(r.Raw), ErrReceived)
			}
		}
		for i, r := range newRoots {
			res.Certificates = append(res.Certificates, summary(rootRole(i, len(newRoots))+" root", r))
		}
		for _, r := range cur {
			if !containsCert(newRoots, r) {
				res.Notes = append(res.Notes, fmt.Sprintf("root %s is no longer trusted (retired)", r.Subject))
				st, err := readRootState(dir)
				if err != nil {
					return nil, err
				}
				st.entry(r.SubjectKeyId).Retired = true
				if err := st.stage(&tx, dir); err != nil {
					return nil, err
				}
				tx.remove(filepath.Join(dir, CRLDir, hex.EncodeToString(r.SubjectKeyId)+".pem"))
			}
		}
		tx.write(filepath.Join(dir, RootCertFile), certsPEM(newRoots...), 0o644)
		roots = newRoots
		if err := trimChain(&tx, dir, cur, newRoots, res); err != nil {
			return nil, err
		}
	}
	if len(roots) == 0 && (len(certs) > 0 || len(crls) > 0) {
		return nil, fmt.Errorf("import: the station trusts no root yet: import root.crt first (--roots)")
	}
	for _, x := range certs {
		if bytes.Equal(x.RawIssuer, x.RawSubject) && x.CheckSignatureFrom(x) == nil {
			continue // a root among the files: only --roots changes trust
		}
		if !x.IsCA {
			return nil, fmt.Errorf("import: %s is not a CA certificate: %w", x.Subject, ErrReceived)
		}
		signed := false
		for _, r := range append(append([]*x509.Certificate(nil), roots...), cur...) {
			signed = signed || x.CheckSignatureFrom(r) == nil
		}
		if !signed {
			return nil, fmt.Errorf("import: %s is not signed by a root of this station: %w", x.Subject, ErrReceived)
		}
		tx.mkdir(filepath.Join(dir, CrossDir))
		tx.write(filepath.Join(dir, CrossDir, crossName(x, roots, cur)), certsPEM(x), 0o644)
		res.Certificates = append(res.Certificates, summary("CA certificate", x))
	}
	issuers, err := folderCAs(dir, roots)
	if err != nil {
		return nil, err
	}
	for _, crl := range crls {
		var by *x509.Certificate
		for _, is := range issuers {
			if bytes.Equal(crl.RawIssuer, is.RawSubject) && crl.CheckSignatureFrom(is) == nil {
				by = is
			}
		}
		if by == nil {
			return nil, fmt.Errorf("import %s: CRL of %s is not signed by a CA of this folder: %w", names[crl], crl.Issuer, ErrReceived)
		}
		if !crl.NextUpdate.After(cer.now()) {
			return nil, fmt.Errorf("import %s: CRL of %s expired on %s: sign a fresh one (`wsc ca crl --root` on the root machine): %w", names[crl], crl.Issuer, crl.NextUpdate.Format(time.RFC3339), ErrReceived)
		}
		p := filepath.Join(dir, CRLDir, hex.EncodeToString(by.SubjectKeyId)+".pem")
		if old, err := readCRLFile(p); err == nil && old.Number != nil && crl.Number != nil && crl.Number.Cmp(old.Number) < 0 {
			return nil, fmt.Errorf("import %s: CRL number %v is older than the one in place (%v): %w", names[crl], crl.Number, old.Number, ErrReceived)
		}
		tx.mkdir(filepath.Join(dir, CRLDir))
		tx.write(p, crlPEM(crl), 0o644)
		res.CRLs = append(res.CRLs, crlSummary(crl, by.Subject.String(), p))
	}
	if tx.empty() {
		return nil, errors.New("import: nothing to import (give --roots and/or files)")
	}
	if err := cer.finish(ctx, &tx, res, nil, "ca.import", map[string]any{"roots": o.Roots, "files": o.Files}); err != nil {
		return nil, err
	}
	return res, nil
}

// trimChain drops from the station's intermediate.crt the certificates
// that lead only to a root no longer trusted (the new-by-old cross-
// certificate after the old root's retirement): devices then get the plain
// path to the remaining root. The intermediate itself must chain to a
// remaining root; if it was issued by the root being dropped, the import
// is refused until the re-certified chain is installed.
func trimChain(tx *fileTx, dir string, oldRoots, newRoots []*x509.Certificate, res *Result) error {
	p := filepath.Join(dir, IntermediateCertFile)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	chain, err := readCerts(p)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	dropped := map[string]bool{}
	for _, r := range oldRoots {
		if !containsCert(newRoots, r) {
			dropped[string(r.SubjectKeyId)] = true
		}
	}
	if len(dropped) == 0 {
		return nil
	}
	if dropped[string(chain[0].AuthorityKeyId)] {
		return fmt.Errorf("import roots: the station intermediate %s was issued by a root this import drops: install its re-certified chain from the rollover first (`wsc ca intermediate install`): %w", chain[0].Subject, ErrReceived)
	}
	keep := chain[:1]
	for _, x := range chain[1:] {
		if !dropped[string(x.AuthorityKeyId)] && !dropped[string(x.SubjectKeyId)] {
			keep = append(keep, x)
		}
	}
	if len(keep) == len(chain) {
		return nil
	}
	if err := verifyCAChain(keep, newRoots, time.Now()); err != nil {
		return fmt.Errorf("import roots: %w: %w", ErrReceived, err)
	}
	tx.write(p, certsPEM(keep...), 0o644)
	res.Notes = append(res.Notes, fmt.Sprintf("intermediate.crt now holds %d certificate(s): the cross-certificate to the dropped root is no longer sent to devices", len(keep)))
	return nil
}

// crossName is the file name of an imported CA certificate in cross/: the
// rollover names for the two root cross-certificates, otherwise by key id
// and serial.
func crossName(x *x509.Certificate, roots, cur []*x509.Certificate) string {
	if x.MaxPathLen != 0 || !x.MaxPathLenZero {
		for _, r := range append(append([]*x509.Certificate(nil), roots...), cur...) {
			if bytes.Equal(r.SubjectKeyId, x.SubjectKeyId) {
				if len(roots) > 0 && bytes.Equal(roots[0].SubjectKeyId, x.SubjectKeyId) {
					return "new-by-old.crt"
				}
				return "old-by-new.crt"
			}
		}
	}
	return "intermediate-" + hex.EncodeToString(x.SubjectKeyId) + "-" + x.SerialNumber.Text(16) + ".crt"
}

func containsCert(list []*x509.Certificate, x *x509.Certificate) bool {
	for _, c := range list {
		if bytes.Equal(c.Raw, x.Raw) {
			return true
		}
	}
	return false
}

// folderCAs lists the distinct CAs (by subject and key) of a folder:
// roots, current and retired intermediates, cross-certificates.
func folderCAs(dir string, roots []*x509.Certificate) ([]*x509.Certificate, error) {
	out := append([]*x509.Certificate(nil), roots...)
	if _, err := os.Stat(filepath.Join(dir, IntermediateCertFile)); err == nil {
		cs, err := readCerts(filepath.Join(dir, IntermediateCertFile))
		if err != nil {
			return nil, err
		}
		out = append(out, cs...)
	}
	for _, sub := range []string{RetiredDir, CrossDir, IssuedDir} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".crt") {
				continue
			}
			cs, err := readCerts(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				return nil, err
			}
			out = append(out, cs...)
		}
	}
	return out, nil
}

// RolloverFolder is the root machine's rollover: a new root, cross-
// certificates both ways, and the newest intermediate (intermediate.crt,
// or the newest copy in issued/) re-certified under the new root. root.crt
// becomes [new, old]; the old root key moves to retired/root-<keyid>.key
// and keeps signing the old root's CRL until RetireRoot. out receives the
// re-certified chain for the station ([intermediate, new-by-old]).
func RolloverFolder(ctx context.Context, cer Ceremony, rootSecret []byte, o RolloverOptions, out string) (*Rollover, *Result, error) {
	dir := cer.Dir
	if o.Now == nil {
		o.Now = cer.now
	}
	if o.Validity <= 0 {
		o.Validity = 20 * 365 * 24 * time.Hour
	}
	now := o.Now()
	roots, err := readCerts(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, nil, fmt.Errorf("rollover: %w", err)
	}
	oldRoot := roots[0]
	rootKeyFile := filepath.Join(dir, RootKeyFile)
	oldKey, closeOld, err := loadKey(rootKeyFile, rootSecret)
	if err != nil {
		return nil, nil, fmt.Errorf("rollover: root key: %w", err)
	}
	defer closeOld()
	if err := checkKeyMatches(oldRoot, oldKey); err != nil {
		return nil, nil, fmt.Errorf("rollover: root: %w", err)
	}
	cur, err := newestIntermediate(dir, oldRoot, now)
	if err != nil {
		return nil, nil, err
	}
	if o.CommonName == "" {
		o.CommonName = fmt.Sprintf("%s %d", strings.TrimSpace(oldRoot.Subject.CommonName), now.Year())
	}
	org := ""
	if len(oldRoot.Subject.Organization) > 0 {
		org = oldRoot.Subject.Organization[0]
	}
	var tx fileTx
	rd := filepath.Join(dir, RetiredDir)
	tx.mkdir(rd)
	tx.mkdir(filepath.Join(dir, CrossDir))
	tok, err := tokenOf(rootKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("rollover: %w", err)
	}
	base := filepath.Join(rd, "root-"+hex.EncodeToString(oldRoot.SubjectKeyId))
	if err := stageCopyKey(&tx, rootKeyFile, base+".key"); err != nil {
		return nil, nil, fmt.Errorf("rollover: %w", err)
	}
	newKey, closeNew, err := stageKey(&tx, rootKeyFile, rootSecret, tok, "wsc-root")
	if err != nil {
		return nil, nil, fmt.Errorf("rollover: new root key: %w", err)
	}
	defer closeNew()
	newRoot, err := newRootCert(newKey, org, o.CommonName, now, o.Validity)
	if err != nil {
		return nil, nil, fmt.Errorf("rollover: %w", err)
	}
	newByOld, err := crossCert(newRoot, newKey.Public(), oldRoot, oldKey, now)
	if err != nil {
		return nil, nil, fmt.Errorf("rollover: %w", err)
	}
	oldByNew, err := crossCert(oldRoot, oldKey.Public(), newRoot, newKey, now)
	if err != nil {
		return nil, nil, fmt.Errorf("rollover: %w", err)
	}
	ro := &Rollover{NewRoot: newRoot, OldRoot: oldRoot, NewByOld: newByOld, OldByNew: oldByNew}
	res := &Result{Ceremony: "root rollover", Dir: dir}
	res.Certificates = append(res.Certificates, summary("new root", newRoot), summary("new-by-old", newByOld), summary("old-by-new", oldByNew))
	if cur != nil {
		iorg := ""
		if len(cur.Subject.Organization) > 0 {
			iorg = cur.Subject.Organization[0]
		}
		inter, err := newIntermediateCert(newRoot, newKey, cur.PublicKey, IntermediateTemplate{
			Organization: iorg, CommonName: cur.Subject.CommonName,
			Validity: cur.NotAfter.Sub(now), PermittedDNSDomains: cur.PermittedDNSDomains,
		}, now)
		if err != nil {
			return nil, nil, fmt.Errorf("rollover: %w", err)
		}
		ro.Intermediate = inter
		res.Certificates = append(res.Certificates, summary("intermediate", inter))
		tx.mkdir(filepath.Join(dir, IssuedDir))
		tx.write(issuedPath(dir, inter), certsPEM(inter), 0o644)
		tx.write(issuedPath(dir, cur), certsPEM(cur), 0o644)
		if out != "" {
			tx.write(out, certsPEM(inter, newByOld), 0o644)
		}
	}
	// Every other still-valid intermediate of the old root (retired by a
	// rotation, its devices still in the field) is re-certified too, so
	// that its devices still verify for a verifier trusting only the new
	// root, also after the old root is retired.
	older, err := olderIntermediates(dir, oldRoot, cur, now)
	if err != nil {
		return nil, nil, err
	}
	var reOlder []*x509.Certificate
	for _, x := range older {
		iorg := ""
		if len(x.Subject.Organization) > 0 {
			iorg = x.Subject.Organization[0]
		}
		re, err := newIntermediateCert(newRoot, newKey, x.PublicKey, IntermediateTemplate{
			Organization: iorg, CommonName: x.Subject.CommonName,
			Validity: x.NotAfter.Sub(now), PermittedDNSDomains: x.PermittedDNSDomains,
		}, now)
		if err != nil {
			return nil, nil, fmt.Errorf("rollover: %w", err)
		}
		reOlder = append(reOlder, re)
		tx.mkdir(filepath.Join(dir, IssuedDir))
		tx.write(issuedPath(dir, re), certsPEM(re), 0o644)
		res.Certificates = append(res.Certificates, summary("earlier intermediate", re))
	}
	ro.Earlier = reOlder
	if out != "" && len(reOlder) > 0 {
		p := filepath.Join(filepath.Dir(out), RecertifiedFile)
		tx.write(p, certsPEM(reOlder...), 0o644)
		res.NextSteps = append(res.NextSteps, "carry "+RecertifiedFile+" too: `wsc ca import "+RecertifiedFile+"` on the station")
	}
	tx.write(base+".crt", certsPEM(oldRoot), 0o644)
	tx.write(filepath.Join(dir, CrossDir, "new-by-old.crt"), certsPEM(newByOld), 0o644)
	tx.write(filepath.Join(dir, CrossDir, "old-by-new.crt"), certsPEM(oldByNew), 0o644)
	tx.write(filepath.Join(dir, RootCertFile), certsPEM(append([]*x509.Certificate{newRoot}, roots...)...), 0o644)
	res.NextSteps = []string{
		"sign the CRLs of both roots now (`wsc ca crl --root`): the old root keeps signing its CRL until `wsc ca root retire`",
		"carry root.crt, cross/new-by-old.crt, cross/old-by-new.crt, the root CRLs and the re-certified chain to the station: `wsc ca import --roots root.crt FILES...`, then `wsc ca intermediate install --chain CHAIN`",
	}
	if err := cer.finish(ctx, &tx, res, rootSecret, "ca.root.rollover", map[string]any{
		"old_root_key_id": hex.EncodeToString(oldRoot.SubjectKeyId), "new_root_key_id": hex.EncodeToString(newRoot.SubjectKeyId),
		"new_root": newRoot.Subject.String(), "not_after": newRoot.NotAfter,
	}); err != nil {
		return nil, nil, err
	}
	return ro, res, nil
}

// RecertifiedFile is written next to the rollover's chain output: the
// earlier intermediates re-certified under the new root, for the station.
const RecertifiedFile = "recertified.pem"

// olderIntermediates lists the still-valid intermediates signed by root
// other than cur (one per key), from issued/, retired/ and cross/, leaving
// out those root revoked.
func olderIntermediates(dir string, root, cur *x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	st, err := readRootState(dir)
	if err != nil {
		return nil, err
	}
	revoked := map[string]bool{}
	for _, r := range st.entry(root.SubjectKeyId).Revoked {
		revoked[r.Serial] = true
	}
	seen := map[string]bool{}
	if cur != nil {
		seen[string(cur.SubjectKeyId)] = true
	}
	var out []*x509.Certificate
	for _, sub := range []string{IssuedDir, RetiredDir, CrossDir} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("rollover: %w", err)
		}
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".crt") || strings.HasPrefix(e.Name(), "root-") {
				continue
			}
			cs, err := readCerts(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				return nil, fmt.Errorf("rollover: %w", err)
			}
			x := cs[0]
			if !x.IsCA || x.MaxPathLen != 0 || seen[string(x.SubjectKeyId)] || revoked[x.SerialNumber.Text(16)] ||
				!x.NotAfter.After(now) || x.CheckSignatureFrom(root) != nil {
				continue
			}
			seen[string(x.SubjectKeyId)] = true
			out = append(out, x)
		}
	}
	return out, nil
}

// newestIntermediate returns the intermediate to re-certify at a rollover:
// the folder's intermediate.crt when present (single machine), otherwise
// the newest still-valid copy in issued/ signed by root.
func newestIntermediate(dir string, root *x509.Certificate, now time.Time) (*x509.Certificate, error) {
	if _, err := os.Stat(filepath.Join(dir, IntermediateCertFile)); err == nil {
		cs, err := readCerts(filepath.Join(dir, IntermediateCertFile))
		if err != nil {
			return nil, fmt.Errorf("rollover: %w", err)
		}
		return cs[0], nil
	}
	ents, err := os.ReadDir(filepath.Join(dir, IssuedDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("rollover: %w", err)
	}
	var list []*x509.Certificate
	for _, e := range ents {
		cs, err := readCerts(filepath.Join(dir, IssuedDir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("rollover: %w", err)
		}
		if cs[0].CheckSignatureFrom(root) == nil && cs[0].NotAfter.After(now) {
			list = append(list, cs[0])
		}
	}
	if len(list) == 0 {
		return nil, nil
	}
	sort.Slice(list, func(i, j int) bool { return list[i].NotBefore.After(list[j].NotBefore) })
	return list[0], nil
}
