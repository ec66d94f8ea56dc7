package wasmsign

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Status is the outcome of verifying one module.
type Status string

// Outcomes of a verification.
const (
	// StatusValid: a signature by an accepted signer covers the module exactly.
	StatusValid Status = "valid"
	// StatusInvalid: the module or its signature failed a check.
	StatusInvalid Status = "invalid"
	// StatusError: the module could not be read.
	StatusError Status = "error"
)

// Algorithm names used in results.
const (
	AlgorithmECDSAP256Chain = "ecdsa-p256-sha256+x509"
	AlgorithmEd25519        = "ed25519"
)

// Result describes the verification of one module. It is filled as far as
// verification got, also when it failed (e.g. the signer of a revoked
// certificate). When Status is not valid, the signer fields name the
// certificate the module carries, which proves nothing about its origin.
type Result struct {
	// File is the path of the module (batch and file verification).
	File string `json:"file"`
	// SignerSerial is the leaf certificate serial number as openssl prints
	// it, upper-case hex (FormatSerial); for Ed25519 records the key id in
	// upper-case hex.
	SignerSerial string `json:"signer_serial"`
	// DeviceSerial is the leaf subject's serialNumber attribute.
	DeviceSerial string `json:"device_serial"`
	// Status is valid, invalid or error.
	Status Status `json:"result"`
	// Reason says why the module is not valid (a sentence for a person).
	Reason string `json:"reason,omitempty"`
	// ReasonCode is the stable code of the outcome (ReasonOK when valid,
	// see ReasonCode and docs/reason-codes.md) for scripts.
	ReasonCode string `json:"reason_code"`
	// Signer is the leaf subject.
	Signer string `json:"signer,omitempty"`
	// Algorithm is the record kind that was checked.
	Algorithm string `json:"algorithm,omitempty"`
	// VerifiedAt is the time certificates and CRLs were checked against.
	VerifiedAt time.Time `json:"verified_at"`
	// AtExplicit is set when VerifiedAt was given by the policy instead of
	// being the current time.
	AtExplicit bool `json:"at_explicit"`
	// RevocationUnchecked is set when the module was accepted although some
	// CA on its path has no CRL in the trust bundle, which only the
	// policy's AllowMissingCRL permits: revocation by those CAs was not
	// checked.
	RevocationUnchecked bool `json:"revocation_unchecked"`
	// NoCRLFor names (subject) the CAs on the path without a CRL, when
	// RevocationUnchecked is set.
	NoCRLFor []string `json:"no_crl_for,omitempty"`
	// Warning is a sentence for reports about a valid result that rests
	// on a relaxed policy (RevocationUnchecked).
	Warning string `json:"warning,omitempty"`
	// Manifest is the module's manifest (ManifestSectionName), nil when it
	// carries none. Signatures cover it, but it is trustworthy only when
	// Status is valid.
	Manifest *Manifest `json:"manifest,omitempty"`
	// Chain is the verified path, leaf to pinned root.
	Chain []*x509.Certificate `json:"-"`
	// Err is the error behind Reason.
	Err error `json:"-"`
}

func (r *Result) fail(err error) (*Result, error) {
	r.Err = err
	r.Reason = err.Error()
	r.ReasonCode = ReasonCode(err)
	r.Status = StatusError
	for _, s := range []error{ErrMalformed, ErrRecordsDropped, ErrNotSigned, ErrHashMismatch, ErrNoSignature, ErrBadSignature,
		ErrUntrusted, ErrExpired, ErrKeyUsage, ErrRevoked, ErrCRLStale, ErrCRLMissing, ErrCRLSignature, ErrManifest} {
		if errors.Is(err, s) {
			r.Status = StatusInvalid
			break
		}
	}
	return r, err
}

// maxCachedChains bounds the per-leaf chain cache of a Verifier.
const maxCachedChains = 4096

// Verifier verifies modules against one trust policy. It caches the result
// of checking each distinct embedded chain (so a batch signed by few devices
// verifies each chain once) and is safe for concurrent use. A Verifier
// evaluates every module at one instant: the policy's explicit At, or the
// time NewVerifier was called; create a new Verifier for a new check.
type Verifier struct {
	policy TrustPolicy
	now    time.Time
	roots  *x509.CertPool
	inter  *x509.CertPool

	mu     sync.Mutex
	cache  map[[32]byte]*cacheEntry
	checks atomic.Int64 // chain verifications done (cache misses)
}

type cacheEntry struct {
	once sync.Once
	res  chainResult
}

// NewVerifier checks the policy and prepares certificate pools.
func NewVerifier(p *TrustPolicy) (*Verifier, error) {
	if p == nil || len(p.Roots) == 0 {
		return nil, fmt.Errorf("%w: no pinned roots", ErrPolicy)
	}
	if !p.At.IsZero() && !p.AtExplicit {
		return nil, fmt.Errorf("%w: a verification time is set without the explicit flag", ErrPolicy)
	}
	if p.AtExplicit && p.At.IsZero() {
		return nil, fmt.Errorf("%w: explicit verification time is zero", ErrPolicy)
	}
	v := &Verifier{policy: *p, now: time.Now(), roots: x509.NewCertPool(), inter: x509.NewCertPool(),
		cache: make(map[[32]byte]*cacheEntry)}
	if p.AtExplicit {
		v.now = p.At
	}
	for _, c := range p.Roots {
		v.roots.AddCert(c)
	}
	for _, c := range p.Intermediates {
		v.inter.AddCert(c)
	}
	return v, nil
}

// Time returns the instant this Verifier checks validity at.
func (v *Verifier) Time() time.Time { return v.now }

func (v *Verifier) newResult() *Result {
	return &Result{Status: StatusInvalid, VerifiedAt: v.now, AtExplicit: v.policy.AtExplicit, Algorithm: AlgorithmECDSAP256Chain}
}

// Verify verifies a module held in memory.
func (v *Verifier) Verify(module []byte) (*Result, error) {
	return v.verify(&bytesSource{b: module}, nil)
}

// VerifyReader verifies a module read from r as a stream, in constant
// memory (the read buffer and the bounded signature section).
func (v *Verifier) VerifyReader(r io.Reader) (*Result, error) {
	src := pooledStreamSource(r)
	defer src.release()
	return v.verify(src, nil)
}

// VerifyDetached verifies a module, read as a stream, against a detached
// signature (a signature section payload). The module must not carry a
// signature section of its own.
func (v *Verifier) VerifyDetached(module io.Reader, signature []byte) (*Result, error) {
	if len(signature) == 0 {
		res := v.newResult()
		return res.fail(fmt.Errorf("%w: empty detached signature", ErrNotSigned))
	}
	src := pooledStreamSource(module)
	defer src.release()
	return v.verify(src, signature)
}

// VerifyFile verifies the module stored at path.
func (v *Verifier) VerifyFile(path string) (*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		res := v.newResult()
		res.File = path
		return res.fail(fmt.Errorf("open module: %w", err))
	}
	defer f.Close()
	res, err := v.VerifyReader(f)
	res.File = path
	return res, err
}

// Verify verifies a module in memory against policy.
func Verify(module []byte, policy *TrustPolicy) (*Result, error) {
	v, err := NewVerifier(policy)
	if err != nil {
		return nil, err
	}
	return v.Verify(module)
}

// VerifyReader verifies a module streamed from r against policy.
func VerifyReader(r io.Reader, policy *TrustPolicy) (*Result, error) {
	v, err := NewVerifier(policy)
	if err != nil {
		return nil, err
	}
	return v.VerifyReader(r)
}

// VerifyDetached verifies a module streamed from r against a detached
// signature and policy.
func VerifyDetached(module io.Reader, signature []byte, policy *TrustPolicy) (*Result, error) {
	v, err := NewVerifier(policy)
	if err != nil {
		return nil, err
	}
	return v.VerifyDetached(module, signature)
}

// load scans the module and decodes the signature that applies to it.
func load(src source, detached []byte) (*sigData, [][hashSize]byte, error) {
	data, sc, err := loadScan(src, detached)
	if err != nil {
		return nil, nil, err
	}
	return data, sc.hashes, nil
}

// loadScan is load that also returns the scan (for the manifest).
func loadScan(src source, detached []byte) (*sigData, *scanned, error) {
	sc, err := scanModule(src, true)
	if err != nil {
		return nil, nil, err
	}
	payload := sc.sig
	if detached != nil {
		if sc.sig != nil {
			return nil, nil, fmt.Errorf("%w: module carries an embedded signature section and a detached signature was given", ErrMalformed)
		}
		payload = detached
	} else if payload == nil {
		return nil, nil, fmt.Errorf("%w: the first section is not a signature section", ErrNotSigned)
	}
	data, err := decodeSigData(payload)
	if err != nil {
		return nil, nil, fmt.Errorf("signature section: %w", err)
	}
	return data, sc, nil
}

// candidates returns the records of every set whose hash list equals the
// module's: only an exact match counts (no prefix, no unchecked tail).
func candidates(data *sigData, hashes [][hashSize]byte, alg byte) (recs []*record, matched bool) {
	for i := range data.sets {
		s := &data.sets[i]
		if !equalHashes(s.hashes, hashes) {
			continue
		}
		matched = true
		for j := range s.records {
			if s.records[j].alg == alg {
				recs = append(recs, &s.records[j])
			}
		}
	}
	return recs, matched
}

func (v *Verifier) verify(src source, detached []byte) (*Result, error) {
	res := v.newResult()
	data, sc, err := loadScan(src, detached)
	if err != nil {
		return res.fail(err)
	}
	hashes := sc.hashes
	if sc.manifest != nil {
		// A manifest that does not decode fails the module: it is signed
		// content, and a device must never act on half of it.
		m, err := ParseManifest(sc.manifest)
		if err != nil {
			return res.fail(fmt.Errorf("%w: %w", ErrMalformed, err))
		}
		res.Manifest = m
	}
	recs, matched := candidates(data, hashes, AlgECDSAP256Chain)
	if !matched {
		v.claimedSigner(data, res)
		return res.fail(ErrHashMismatch)
	}
	if len(recs) == 0 {
		if ed, _ := candidates(data, hashes, AlgEd25519); len(ed) > 0 {
			return res.fail(fmt.Errorf("%w: %w: the module carries no certificate-chain record, only wasmsign2 signatures; "+
				"if it was signed with wsc sign before wasmsign2 sign, wasmsign2 removed wsc's record: "+
				"sign with wasmsign2 first, then wsc sign (or verify it with --ed25519-pub)", ErrNoSignature, ErrOnlyEd25519))
		}
		return res.fail(fmt.Errorf("%w: no ECDSA P-256 certificate-chain record for this module", ErrNoSignature))
	}
	digest := sha256.Sum256(message(hashes))
	var first error
	var firstRes Result
	for _, rec := range recs {
		r := *res
		err := v.checkRecord(rec, digest[:], &r)
		if err == nil {
			r.Status, r.ReasonCode = StatusValid, ReasonOK
			return &r, nil
		}
		if first == nil {
			first, firstRes = err, r
		}
	}
	return firstRes.fail(first)
}

func (v *Verifier) checkRecord(rec *record, digest []byte, res *Result) error {
	ce := v.chain(rec.chain)
	leaf := ce.leaf
	if leaf == nil {
		return ce.err
	}
	res.SignerSerial, res.DeviceSerial, res.Signer = ce.serial, leaf.Subject.SerialNumber, ce.subject
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || ce.keyID == nil {
		return ce.err
	}
	if !bytes.Equal(ce.keyID, rec.keyID) {
		return fmt.Errorf("%w: record key id does not match the leaf certificate", ErrMalformed)
	}
	r := new(big.Int).SetBytes(rec.sig[:32])
	s := new(big.Int).SetBytes(rec.sig[32:])
	if !ecdsa.Verify(pub, digest, r, s) {
		return fmt.Errorf("%w: ECDSA signature by %s", ErrBadSignature, leaf.Subject)
	}
	if ce.err != nil {
		return ce.err
	}
	res.Chain = ce.path
	if len(ce.noCRL) > 0 {
		// Only AllowMissingCRL gets here: the result says, every time,
		// that revocation by these CAs was not checked.
		res.RevocationUnchecked = true
		res.NoCRLFor = slices.Clone(ce.noCRL)
		res.Warning = "revocation not checked: no CRL for " + strings.Join(ce.noCRL, "; ") + " (allowed by policy: --allow-missing-crl)"
	}
	return nil
}

// claimedSigner fills the signer fields of a failed result from the first
// certificate-chain record of the section, so that a report can say which
// device a tampered module claims to come from. Nothing about it is
// verified; the result's status says so.
func (v *Verifier) claimedSigner(data *sigData, res *Result) {
	for _, s := range data.sets {
		for i := range s.records {
			if s.records[i].alg != AlgECDSAP256Chain {
				continue
			}
			if ce := v.chain(s.records[i].chain); ce.leaf != nil {
				res.SignerSerial, res.DeviceSerial, res.Signer = ce.serial, ce.leaf.Subject.SerialNumber, ce.subject
			}
			return
		}
	}
}

// chain returns the cached result of checking an embedded chain.
func (v *Verifier) chain(der [][]byte) *chainResult {
	h := sha256.New()
	var n [4]byte
	for _, d := range der {
		binary.BigEndian.PutUint32(n[:], uint32(len(d)))
		h.Write(n[:])
		h.Write(d)
	}
	key := [32]byte(h.Sum(nil))
	v.mu.Lock()
	e := v.cache[key]
	if e == nil {
		if len(v.cache) >= maxCachedChains {
			clear(v.cache)
		}
		e = &cacheEntry{}
		v.cache[key] = e
	}
	v.mu.Unlock()
	e.once.Do(func() {
		v.checks.Add(1)
		certs, err := parseChain(der)
		if err != nil {
			e.res.err = err
			return
		}
		leaf := certs[0]
		e.res.leaf = leaf
		e.res.serial = FormatSerial(leaf.SerialNumber)
		e.res.subject = leaf.Subject.String()
		e.res.keyID, _ = KeyID(leaf.PublicKey)
		e.res.path, e.res.noCRL, e.res.err = v.verifyChain(certs)
	})
	return &e.res
}

// VerifyEd25519 verifies a module in memory with a raw Ed25519 public key,
// as wasmsign2 does, but strictly: the module's hash list must equal a
// signed set. Records whose key id is neither empty nor the key's default
// id are skipped.
func VerifyEd25519(module []byte, pub ed25519.PublicKey) (*Result, error) {
	return verifyEd25519(&bytesSource{b: module}, nil, pub)
}

// VerifyEd25519Reader is VerifyEd25519 for a streamed module, with an
// optional detached signature (nil: embedded).
func VerifyEd25519Reader(module io.Reader, detached []byte, pub ed25519.PublicKey) (*Result, error) {
	src := pooledStreamSource(module)
	defer src.release()
	return verifyEd25519(src, detached, pub)
}

func verifyEd25519(src source, detached []byte, pub ed25519.PublicKey) (*Result, error) {
	res := &Result{Status: StatusInvalid, VerifiedAt: time.Now(), Algorithm: AlgorithmEd25519}
	id, err := KeyID(pub)
	if err != nil {
		return res.fail(fmt.Errorf("%w: %v", ErrPolicy, err))
	}
	res.SignerSerial = strings.ToUpper(hex.EncodeToString(id))
	data, hashes, err := load(src, detached)
	if err != nil {
		return res.fail(err)
	}
	recs, matched := candidates(data, hashes, AlgEd25519)
	if !matched {
		return res.fail(ErrHashMismatch)
	}
	msg := message(hashes)
	tried := false
	for _, rec := range recs {
		if len(rec.keyID) != 0 && !bytes.Equal(rec.keyID, id) {
			continue
		}
		tried = true
		if ed25519.Verify(pub, msg, rec.sig) {
			res.Status, res.ReasonCode = StatusValid, ReasonOK
			return res, nil
		}
	}
	if !tried {
		return res.fail(fmt.Errorf("%w: no Ed25519 record for key id %x", ErrNoSignature, id))
	}
	return res.fail(fmt.Errorf("%w: Ed25519", ErrBadSignature))
}

// VerifyEd25519File verifies the module stored at path with an Ed25519
// public key (embedded signature), streaming it.
func VerifyEd25519File(path string, pub ed25519.PublicKey) (*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		res := &Result{Status: StatusInvalid, VerifiedAt: time.Now(), Algorithm: AlgorithmEd25519, File: path}
		return res.fail(fmt.Errorf("open module: %w", err))
	}
	defer f.Close()
	res, err := VerifyEd25519Reader(f, nil, pub)
	res.File = path
	return res, err
}

// BatchVerifyEd25519 verifies the modules under paths (ExpandPaths) with an
// Ed25519 public key, one result per module in path order. It stops early
// only when ctx is done.
func BatchVerifyEd25519(ctx context.Context, paths []string, pub ed25519.PublicKey, progress func(done, total int)) ([]Result, error) {
	files, err := ExpandPaths(paths)
	if err != nil {
		return nil, err
	}
	results := make([]Result, 0, len(files))
	for i, f := range files {
		if err := ctx.Err(); err != nil {
			return results, err
		}
		res, _ := VerifyEd25519File(f, pub)
		results = append(results, *res)
		if progress != nil {
			progress(i+1, len(files))
		}
	}
	return results, nil
}
