package wasmsign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// keyIDLen is the length of a default key id (wasmsign2: 12 bytes).
const keyIDLen = 12

// SignOptions holds the optional parameters of signing.
type SignOptions struct {
	// Detached returns the signature section payload alone (a detached
	// signature) instead of the signed module. The module must not carry
	// an embedded signature section.
	Detached bool
	// Rand is the randomness for signers that need it; crypto/rand when nil.
	Rand io.Reader
	// Manifest, when set, is inserted as the module's manifest section
	// (ManifestSectionName, first after the header, as AddManifest does)
	// before signing, so the signature covers it. The module must be
	// unsigned and carry no manifest.
	Manifest *Manifest
}

func (o *SignOptions) manifest() *Manifest {
	if o == nil {
		return nil
	}
	return o.Manifest
}

func (o *SignOptions) rand() io.Reader {
	if o == nil || o.Rand == nil {
		return rand.Reader
	}
	return o.Rand
}

func (o *SignOptions) detached() bool { return o != nil && o.Detached }

// DigestSignFunc signs a 32-byte SHA-256 digest with an ECDSA P-256 key and
// returns the signature ASN.1 DER encoded (as crypto.Signer and TPM2_Sign
// results converted by the agent are) or as raw r||s (64 bytes). It is how
// a key that never leaves a device signs: the host hashes, the chip signs.
type DigestSignFunc func(digest []byte) ([]byte, error)

// KeyID returns the default key id of a public key: the first 12 bytes of
// HMAC-SHA256 keyed with the raw public key over the string "key_id". The
// raw key is the 32-byte Ed25519 key (exactly wasmsign2's key id) or the
// 65-byte uncompressed SEC 1 point of an ECDSA P-256 key.
func KeyID(pub crypto.PublicKey) ([]byte, error) {
	var raw []byte
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("key id: bad Ed25519 public key length")
		}
		raw = k
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("key id: ECDSA key is not P-256")
		}
		b, err := k.Bytes()
		if err != nil {
			return nil, fmt.Errorf("key id: %w", err)
		}
		raw = b
	default:
		return nil, fmt.Errorf("key id: unsupported public key type %T", pub)
	}
	m := hmac.New(sha256.New, raw)
	m.Write([]byte("key_id"))
	return m.Sum(nil)[:keyIDLen], nil
}

// recordMaker turns the message of a module into a signature record.
type recordMaker func(msg []byte) (record, error)

// Sign signs module with signer and returns the signed module (or, with
// opts.Detached, the detached signature).
//
// An ECDSA P-256 signer produces an AlgECDSAP256Chain record carrying chain
// (leaf first; the leaf must hold signer's public key; intermediates may
// follow, the root may be left out). An Ed25519 signer produces a wasmsign2
// AlgEd25519 record and chain must be empty. A module that is already
// signed keeps its signatures: the new record joins the hash set equal to
// the module's hash list, or a new set.
func Sign(module []byte, signer crypto.Signer, chain []*x509.Certificate, opts *SignOptions) ([]byte, error) {
	mk, err := signerRecordMaker(signer, chain, opts.rand())
	if err != nil {
		return nil, err
	}
	if m := opts.manifest(); m != nil {
		if module, err = AddManifest(module, m); err != nil {
			return nil, err
		}
	}
	return signBytes(module, mk, opts)
}

// SignDigestFunc is Sign for a key that only signs digests: sign receives
// SHA-256 of the signed message. chain[0] must hold the P-256 public key
// that sign uses; the result is checked against it before it is embedded.
func SignDigestFunc(module []byte, sign DigestSignFunc, chain []*x509.Certificate, opts *SignOptions) ([]byte, error) {
	mk, err := ecdsaRecordMaker(chain, sign)
	if err != nil {
		return nil, err
	}
	if m := opts.manifest(); m != nil {
		if module, err = AddManifest(module, m); err != nil {
			return nil, err
		}
	}
	return signBytes(module, mk, opts)
}

// SignStream is Sign for a module read from a seekable stream: it reads
// module twice from its start (hashing, then copying) and writes the signed
// module, or the detached signature, to w. Memory use does not depend on
// the module size.
func SignStream(w io.Writer, module io.ReadSeeker, signer crypto.Signer, chain []*x509.Certificate, opts *SignOptions) error {
	mk, err := signerRecordMaker(signer, chain, opts.rand())
	if err != nil {
		return err
	}
	var prefix []byte // header and manifest section, when a manifest is added
	if m := opts.manifest(); m != nil {
		if prefix, err = manifestPrefix(module, m); err != nil {
			return err
		}
	}
	var cur *streamSource
	open := func() (source, error) {
		if _, err := module.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("rewind module: %w", err)
		}
		if cur != nil {
			cur.release()
		}
		var r io.Reader = module
		if prefix != nil {
			// The module's own header was checked by manifestPrefix;
			// skip it and read the prefix in its place.
			if _, err := module.Seek(int64(len(wasmHeader)), io.SeekStart); err != nil {
				return nil, fmt.Errorf("rewind module: %w", err)
			}
			r = io.MultiReader(bytes.NewReader(prefix), module)
		}
		cur = pooledStreamSource(r)
		return cur, nil
	}
	defer func() {
		if cur != nil {
			cur.release()
		}
	}()
	return signCore(open, mk, opts, w)
}

// manifestPrefix checks that module (read from its start) is a module
// without a signature section as its first section and returns the module
// header followed by m's manifest section. A manifest already present is
// found by the signing scan (two manifests are malformed).
func manifestPrefix(module io.ReadSeeker, m *Manifest) ([]byte, error) {
	enc, err := MarshalManifest(m)
	if err != nil {
		return nil, err
	}
	if _, err := module.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewind module: %w", err)
	}
	sr, err := newSectionReader(newStreamSource(io.LimitReader(module, 1<<20)), false)
	if err != nil {
		return nil, fmt.Errorf("add manifest: %w", err)
	}
	if s, err := sr.Next(); err == nil && s.ID == 0 && s.Name == SignatureSectionName {
		return nil, fmt.Errorf("add manifest: %w: the module is already signed; add the manifest before signing", ErrManifest)
	}
	return append(bytes.Clone(wasmHeader[:]), encodeCustomSection(ManifestSectionName, enc)...), nil
}

func signBytes(module []byte, mk recordMaker, opts *SignOptions) ([]byte, error) {
	var out writerBuf
	out.b = make([]byte, 0, len(module)+4096)
	open := func() (source, error) { return &bytesSource{b: module}, nil }
	if err := signCore(open, mk, opts, &out); err != nil {
		return nil, err
	}
	return out.b, nil
}

type writerBuf struct{ b []byte }

func (w *writerBuf) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func signCore(open func() (source, error), mk recordMaker, opts *SignOptions, w io.Writer) error {
	src, err := open()
	if err != nil {
		return err
	}
	sc, err := scanModule(src, false)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	data := &sigData{}
	if sc.sig != nil {
		if opts.detached() {
			return fmt.Errorf("sign: %w: module carries an embedded signature section; detached signing needs an unsigned module", ErrCannotSign)
		}
		if data, err = decodeSigData(sc.sig); err != nil {
			return fmt.Errorf("sign: existing signature section: %w", err)
		}
	}
	rec, err := mk(message(sc.hashes))
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	if err := data.add(sc.hashes, rec); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	payload := data.encode()
	if len(payload) > MaxSignatureSectionSize {
		return fmt.Errorf("sign: signature section of %d bytes exceeds %d", len(payload), MaxSignatureSectionSize)
	}
	if opts.detached() {
		_, err := w.Write(payload)
		return err
	}
	if _, err := w.Write(wasmHeader[:]); err != nil {
		return err
	}
	if _, err := w.Write(signatureSection(payload)); err != nil {
		return err
	}
	if src, err = open(); err != nil {
		return err
	}
	if err := writeSections(src, w); err != nil {
		return fmt.Errorf("sign: copy sections: %w", err)
	}
	return nil
}

func signerRecordMaker(signer crypto.Signer, chain []*x509.Certificate, rnd io.Reader) (recordMaker, error) {
	if signer == nil {
		return nil, errors.New("sign: nil signer")
	}
	switch pub := signer.Public().(type) {
	case ed25519.PublicKey:
		if len(chain) != 0 {
			return nil, errors.New("sign: Ed25519 records carry no certificate chain")
		}
		keyID, err := KeyID(pub)
		if err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
		return func(msg []byte) (record, error) {
			sig, err := signer.Sign(rnd, msg, crypto.Hash(0))
			if err != nil {
				return record{}, fmt.Errorf("ed25519 signer: %w", err)
			}
			if !ed25519.Verify(pub, msg, sig) {
				return record{}, errors.New("ed25519 signer returned a signature that does not verify")
			}
			return record{keyID: keyID, alg: AlgEd25519, sig: sig}, nil
		}, nil
	case *ecdsa.PublicKey:
		if len(chain) == 0 || !pub.Equal(chain[0].PublicKey) {
			return nil, errors.New("sign: chain[0] does not hold the signer's public key")
		}
		return ecdsaRecordMaker(chain, func(d []byte) ([]byte, error) {
			return signer.Sign(rnd, d, crypto.SHA256)
		})
	default:
		return nil, fmt.Errorf("sign: unsupported signer key type %T (want ECDSA P-256 or Ed25519)", pub)
	}
}

func ecdsaRecordMaker(chain []*x509.Certificate, sign DigestSignFunc) (recordMaker, error) {
	if sign == nil {
		return nil, errors.New("sign: nil digest signer")
	}
	if len(chain) == 0 || len(chain) > MaxChainLen {
		return nil, fmt.Errorf("sign: chain of %d certificates, want 1..%d", len(chain), MaxChainLen)
	}
	pub, ok := chain[0].PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("sign: leaf certificate key is not ECDSA P-256")
	}
	der := make([][]byte, len(chain))
	for i, c := range chain {
		if c == nil || len(c.Raw) == 0 || len(c.Raw) > MaxCertSize {
			return nil, fmt.Errorf("sign: certificate %d empty or larger than %d bytes", i, MaxCertSize)
		}
		der[i] = c.Raw
	}
	return makeECDSARecord(pub, encodeChain(der), sign)
}

func makeECDSARecord(pub *ecdsa.PublicKey, chainField []byte, sign DigestSignFunc) (recordMaker, error) {
	keyID, err := KeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return func(msg []byte) (record, error) {
		d := sha256.Sum256(msg)
		sig, err := sign(d[:])
		if err != nil {
			return record{}, fmt.Errorf("digest signer: %w", err)
		}
		r, s, err := parseECDSASignature(sig, 32)
		if err != nil {
			return record{}, err
		}
		// Check before embedding: a device that signed with another key
		// than its certificate's must fail here, at the station, not in QA.
		if !ecdsa.Verify(pub, d[:], r, s) {
			return record{}, errors.New("digest signer returned a signature that does not verify with the leaf certificate's key")
		}
		raw := make([]byte, 64)
		r.FillBytes(raw[:32])
		s.FillBytes(raw[32:])
		return record{keyID: keyID, alg: AlgECDSAP256Chain, sig: raw, extra: chainField}, nil
	}, nil
}

// parseECDSASignature accepts ASN.1 DER or raw r||s.
func parseECDSASignature(sig []byte, size int) (r, s *big.Int, err error) {
	var v struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(sig, &v); err == nil && len(rest) == 0 && v.R != nil && v.S != nil {
		return v.R, v.S, nil
	}
	if len(sig) == 2*size {
		return new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:]), nil
	}
	return nil, nil, fmt.Errorf("digest signer returned a %d-byte signature that is neither ASN.1 nor raw r||s", len(sig))
}
