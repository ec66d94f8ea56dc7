package main

import (
	"bufio"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/cmd/internal/qacmd"
	"github.com/wsc-project/wsc/ui"
	"github.com/wsc-project/wsc/wasmsign"
	"golang.org/x/crypto/ssh"
)

// errKeyNotEncrypted: a software signing key stored in the clear where
// wsc wants an encrypted one (or a file others may read).
var errKeyNotEncrypted = errors.New("key is not encrypted")

// errKeyFileMode: an unencrypted secret key file that group or others may read.
var errKeyFileMode = errors.New("key file is readable by other users")

// checkKeyFile looks at the framing of a --key file, before any passphrase
// is read: an unencrypted or legacy-encrypted key is refused at once, with
// the instruction, instead of after a prompt (or "needs a terminal").
// PKCS#11 URIs are not files and pass.
func checkKeyFile(keyURI string) error {
	if strings.HasPrefix(keyURI, "pkcs11:") {
		return nil
	}
	b, err := os.ReadFile(keyURI)
	if err != nil {
		return usageError(fmt.Errorf("key: %w", err))
	}
	defer clear(b)
	blk, _ := pem.Decode(b)
	switch {
	case blk == nil:
		return usagef("key %s: not a PEM key file: --key takes an encrypted PKCS#8 PEM file (ENCRYPTED PRIVATE KEY) or a pkcs11: URI", keyURI)
	case blk.Type == "ENCRYPTED PRIVATE KEY":
		return nil
	case blk.Headers["Proc-Type"] != "":
		return usageError(fmt.Errorf("key %s: legacy PEM encryption (one MD5 round per guess) is refused: convert it with "+
			"'openssl pkcs8 -topk8 -v2 aes-256-cbc -in %s -out %s.p8' and pass the new file", keyURI, keyURI, keyURI))
	case strings.HasSuffix(blk.Type, "PRIVATE KEY"):
		return usageError(fmt.Errorf("key %s: %w: encrypt it with 'openssl pkcs8 -topk8 -v2 aes-256-cbc -in %s -out %s.p8', "+
			"pass the new file with --key, and delete the plain copy", keyURI, errKeyNotEncrypted, keyURI, keyURI))
	default:
		return usagef("key %s: PEM block %q is not a private key", keyURI, blk.Type)
	}
}

// openEd25519Key reads --ed25519-key: wasmsign2's formats (unencrypted,
// allowed only when group and others cannot read the file), an OpenSSH
// key (encrypted or not) or an encrypted PKCS#8 PEM. A passphrase is read
// only for an encrypted key, after its framing was checked.
func openEd25519Key(path, passSource string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageError(fmt.Errorf("ed25519 key: %w", err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, internalError(fmt.Errorf("ed25519 key: %w", err))
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, internalError(fmt.Errorf("ed25519 key: %w", err))
	}
	defer clear(b)
	unencrypted := func() error {
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			return usageError(fmt.Errorf("ed25519 key %s: %w (mode %04o) and %w: restrict it with 'chmod 600 %s', "+
				"or store it encrypted (ssh-keygen -p -f %s)", path, errKeyFileMode, perm, errKeyNotEncrypted, path, path))
		}
		return nil
	}
	blk, _ := pem.Decode(b)
	switch {
	case blk != nil && blk.Type == "ENCRYPTED PRIVATE KEY":
		pass, err := ca.ReadPassphrase(passSource)
		if err != nil {
			return nil, usageError(fmt.Errorf("key passphrase: %w", err))
		}
		defer clear(pass)
		s, err := ca.LoadEncryptedKey(path, pass)
		if err != nil {
			return nil, err
		}
		k, ok := s.(ed25519.PrivateKey)
		if !ok {
			return nil, usagef("ed25519 key %s: the encrypted key is %T, not Ed25519 (an ECDSA key goes with --key)", path, s.Public())
		}
		return k, nil
	case blk != nil && blk.Type == "OPENSSH PRIVATE KEY":
		raw, err := ssh.ParseRawPrivateKey(b)
		var missing *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &missing):
			pass, perr := ca.ReadPassphrase(passSource)
			if perr != nil {
				return nil, usageError(fmt.Errorf("key passphrase: %w", perr))
			}
			defer clear(pass)
			if raw, err = ssh.ParseRawPrivateKeyWithPassphrase(b, pass); err != nil {
				// x/crypto/ssh cannot tell a wrong passphrase from a damaged key.
				return nil, usageError(fmt.Errorf("ed25519 key %s: %w (or a damaged OpenSSH key)", path, ca.ErrBadPassphrase))
			}
		case err != nil:
			return nil, usagef("ed25519 key %s: damaged OpenSSH key", path)
		default:
			if err := unencrypted(); err != nil {
				return nil, err
			}
		}
		switch k := raw.(type) {
		case *ed25519.PrivateKey:
			return *k, nil
		case ed25519.PrivateKey:
			return k, nil
		default:
			return nil, usagef("ed25519 key %s: the OpenSSH key is %T, not Ed25519", path, raw)
		}
	}
	k, err := wasmsign.ParseEd25519PrivateKey(b)
	if err != nil {
		return nil, usageError(fmt.Errorf("ed25519 key %s: %w", path, err))
	}
	if err := unencrypted(); err != nil {
		return nil, err
	}
	return k, nil
}

// readChain reads --chain (PEM, leaf first).
func readChain(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError(fmt.Errorf("chain: %w", err))
	}
	chain, err := ca.ParseCertificatesPEM(b)
	if err != nil {
		return nil, usageError(fmt.Errorf("chain %s: %w", path, err))
	}
	if len(chain) == 0 {
		return nil, usagef("chain %s: no certificate", path)
	}
	return chain, nil
}

// preflightChain checks the chain as verification will (against the trust
// bundle when one is given). A chain that would fail is refused with exit
// status 1 and the reason code, or, with force, signed after a warning on
// w. A bundle that cannot be read is a usage error either way.
func preflightChain(w io.Writer, chain []*x509.Certificate, trustPath string, force bool) error {
	var policy *wasmsign.TrustPolicy
	if trustPath != "" {
		p, err := qacmd.LoadPolicy(trustPath, "", false)
		if err != nil {
			return usageError(err)
		}
		policy = p
	}
	err := wasmsign.CheckSigningChain(chain, policy)
	if err == nil {
		return nil
	}
	code := wasmsign.ReasonCode(err)
	against := "now"
	if trustPath != "" {
		against = "against " + trustPath
	}
	if force {
		fmt.Fprintf(w, "wsc sign: WARNING: signing anyway (--force): the module will NOT verify %s (%s): %v\n", against, code, err)
		return nil
	}
	return failed(fmt.Errorf("refusing to sign: the module would not verify %s (%s): %w; "+
		"use a leaf certificate with the codeSigning usage that is valid, unrevoked and issued under the bundle's roots, "+
		"or pass --force to sign anyway", against, code, err))
}

// signFile streams in into a temporary file next to out and renames it
// to out once complete: memory use does not depend on the module size,
// and out is never left half-written.
func signFile(in *os.File, out string, signer crypto.Signer, chain []*x509.Certificate, opts *wasmsign.SignOptions) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return internalError(fmt.Errorf("output: %w", err))
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 256<<10)
	if err := wasmsign.SignStream(bw, in, signer, chain, opts); err != nil {
		if errors.Is(err, wasmsign.ErrMalformed) || errors.Is(err, wasmsign.ErrManifest) || errors.Is(err, wasmsign.ErrRecordsDropped) ||
			errors.Is(err, wasmsign.ErrCannotSign) {
			return usageError(fmt.Errorf("sign %s: %w", in.Name(), err))
		}
		return internalError(fmt.Errorf("sign %s: %w", in.Name(), err))
	}
	if err := bw.Flush(); err != nil {
		return internalError(fmt.Errorf("write %s: %w", out, err))
	}
	if err := tmp.Chmod(0o644); err != nil {
		return internalError(fmt.Errorf("write %s: %w", out, err))
	}
	if err := tmp.Sync(); err != nil {
		return internalError(fmt.Errorf("write %s: %w", out, err))
	}
	if err := tmp.Close(); err != nil {
		return internalError(fmt.Errorf("write %s: %w", out, err))
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return internalError(fmt.Errorf("write %s: %w", out, err))
	}
	return nil
}

// signerDescription names the signer for the success line: the leaf's
// subject and serial (as openssl prints it), or the Ed25519 key id.
func signerDescription(signer crypto.Signer, chain []*x509.Certificate) string {
	if len(chain) > 0 {
		return fmt.Sprintf("signer %s, serial %s", ui.Untrusted(chain[0].Subject.String()), wasmsign.FormatSerial(chain[0].SerialNumber))
	}
	id, err := wasmsign.KeyID(signer.Public())
	if err != nil {
		return "Ed25519"
	}
	return "Ed25519 key id " + strings.ToUpper(hex.EncodeToString(id))
}
