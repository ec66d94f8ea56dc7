package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/wasmsign"
	"go.step.sm/crypto/kms"
	"go.step.sm/crypto/kms/apiv1"
)

func signCmd() *cobra.Command {
	var (
		keyURI, edKeyPath, chainPath, trustPath, out, passSource, manifestPath string
		detached, force                                                        bool
	)
	cmd := &cobra.Command{
		Use:   "sign (--key URI --chain FILE | --ed25519-key FILE) [--trust BUNDLE] IN.wasm -o OUT.wasm",
		Short: "Sign a WebAssembly module with a software key or a PKCS#11 token, embedding the certificate chain",
		Long: `sign signs IN.wasm (wasmsign2 layout, see docs/signature-format.md) and writes OUT.wasm, or with
--detached the signature alone (what 'wsc verify --detached SIG' and 'wasmsign2 verify -S SIG' read).

--key is an ECDSA P-256 key: a PKCS#8-encrypted key file (passphrase from --passphrase-source) or a
PKCS#11 URI (pkcs11:module-path=...;token=...;object=...?pin-source=file:...); the record carries
--chain (PEM, leaf first). --ed25519-key is an Ed25519 key in one of wasmsign2's formats (its key
file, PKCS#8 DER/PEM, OpenSSH, or an encrypted PKCS#8 PEM); the record is a plain wasmsign2 record.
An unencrypted key file must not be readable by group or others (chmod 600).

Before signing with --key, the chain is checked as verification will check it: the leaf must have
the codeSigning EKU and digitalSignature, be valid now, and chain to the roots of --trust BUNDLE
with no revoked certificate and a fresh CRL of every CA (without --trust: valid now and each
certificate issued by the next). A chain that would never verify is refused (exit 1) with the
reason and its code; --force signs anyway and prints a warning.

To co-sign with wasmsign2, run wasmsign2 first and wsc sign last: wasmsign2 drops wsc's record
when it signs a module after wsc (docs/signature-format.md §6a).

The module is streamed (memory does not depend on its size) into a temporary file in the output
folder, renamed to OUT when complete.

--manifest FILE adds a signed manifest (custom section "wsc.manifest", CBOR, covered by the
signature) before signing. FILE is JSON:
  {"component":"sensor-fw","version":7,"min_version":7,"device_class":"gw-1",
   "serials":["TPM-..."],"expires":"2027-01-01T00:00:00Z"}
min_version defaults to version; serials and expires are optional. Devices refuse a module whose
version is below their rollback counter, and commit raises the counter to min_version.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case out == "":
				return usagef("-o/--output is required")
			case keyURI != "" && edKeyPath != "":
				return usagef("--key and --ed25519-key exclude each other: sign with one key per run")
			case keyURI == "" && edKeyPath == "":
				return usagef("a key is required: --key (ECDSA P-256 with --chain) or --ed25519-key")
			case keyURI != "" && chainPath == "":
				return usagef("--key needs --chain (the certificate chain, PEM, leaf first)")
			case edKeyPath != "" && chainPath != "":
				return usagef("--chain goes with --key: an Ed25519 (wasmsign2) record carries no certificate chain")
			case edKeyPath != "" && trustPath != "":
				return usagef("--trust checks a certificate chain: it goes with --key, not --ed25519-key")
			}
			var m *wasmsign.Manifest
			if manifestPath != "" {
				var err error
				if m, err = readManifestFile(manifestPath); err != nil {
					return usageError(err)
				}
			}
			in, err := os.Open(args[0])
			if err != nil {
				return usageError(fmt.Errorf("module: %w", err))
			}
			defer in.Close()
			// What the key file is, and the chain check, come before any
			// passphrase is asked: a refusal must not wait for a prompt.
			var signer crypto.Signer
			var chain []*x509.Certificate
			if edKeyPath != "" {
				k, err := openEd25519Key(edKeyPath, passSource)
				if err != nil {
					return err
				}
				signer = k
			} else {
				if err := checkKeyFile(keyURI); err != nil {
					return err
				}
				if chain, err = readChain(chainPath); err != nil {
					return err
				}
				if err := preflightChain(cmd.ErrOrStderr(), chain, trustPath, force); err != nil {
					return err
				}
				s, closeKey, err := openSigner(cmd.Context(), keyURI, passSource)
				if err != nil {
					return err
				}
				defer closeKey()
				signer = s
			}
			opts := &wasmsign.SignOptions{Detached: detached, Manifest: m}
			if err := signFile(in, out, signer, chain, opts); err != nil {
				return err
			}
			what := "signed"
			if detached {
				what = "detached signature of"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s -> %s (%s)\n", what, args[0], out, signerDescription(signer, chain))
			return nil
		},
	}
	cmd.Flags().StringVar(&keyURI, "key", "", "ECDSA P-256 signing key: an encrypted PKCS#8 file, or a pkcs11: URI")
	cmd.Flags().StringVar(&edKeyPath, "ed25519-key", "", "Ed25519 signing key in a wasmsign2 format (its key file, PKCS#8 DER/PEM, OpenSSH)")
	cmd.Flags().StringVar(&chainPath, "chain", "", "certificate chain of --key (PEM, leaf first)")
	cmd.Flags().StringVar(&trustPath, "trust", "", "trust bundle QA verifies against: the chain is checked against it before signing")
	cmd.Flags().BoolVar(&force, "force", false, "sign even when the chain would fail verification (prints a warning)")
	cmd.Flags().StringVarP(&out, "output", "o", "", "signed module (or detached signature) to write")
	cmd.Flags().StringVar(&passSource, "passphrase-source", "prompt", "key file passphrase: prompt, file:PATH, fd:N, env:NAME")
	cmd.Flags().StringVar(&manifestPath, "manifest", "", "manifest (JSON) to embed in the signed content")
	cmd.Flags().BoolVar(&detached, "detached", false, "write a detached signature instead of a signed module")
	return cmd
}

// openSigner opens a software key file or a key in a PKCS#11 token.
func openSigner(ctx context.Context, keyURI, passSource string) (crypto.Signer, func(), error) {
	if ca.IsKeyURI(keyURI) {
		k, err := kms.New(ctx, apiv1.Options{Type: apiv1.PKCS11, URI: keyURI})
		if err != nil {
			return nil, nil, fmt.Errorf("open PKCS#11 token: %w", err)
		}
		s, err := k.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: keyURI})
		if err != nil {
			_ = k.Close()
			return nil, nil, fmt.Errorf("PKCS#11 key: %w", err)
		}
		return s, func() { _ = k.Close() }, nil
	}
	pass, err := ca.ReadPassphrase(passSource)
	if err != nil {
		return nil, nil, usageError(fmt.Errorf("key passphrase: %w", err))
	}
	defer clear(pass)
	s, err := ca.LoadEncryptedKey(keyURI, pass)
	if err != nil {
		return nil, nil, err
	}
	return s, func() {}, nil
}

// manifestFile is the JSON a release engineer writes for --manifest.
type manifestFile struct {
	Component   string   `json:"component"`
	Version     *uint64  `json:"version"`
	MinVersion  *uint64  `json:"min_version"`
	DeviceClass string   `json:"device_class"`
	Serials     []string `json:"serials"`
	Expires     string   `json:"expires"`
}

// readManifestFile reads a --manifest file strictly: unknown fields, a
// missing version and an unparsable expiry are errors, never defaults.
func readManifestFile(path string) (*wasmsign.Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f manifestFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("manifest %s: trailing data after the JSON object", path)
	}
	if f.Version == nil {
		return nil, fmt.Errorf("manifest %s: \"version\" is required", path)
	}
	m := &wasmsign.Manifest{Format: wasmsign.ManifestFormat, Component: f.Component, Version: *f.Version,
		MinVersion: *f.Version, DeviceClass: f.DeviceClass, Serials: f.Serials}
	if f.MinVersion != nil {
		m.MinVersion = *f.MinVersion
	}
	if f.Expires != "" {
		t, err := time.Parse(time.RFC3339, f.Expires)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: expires: %w", path, err)
		}
		m.Expires = t.Unix()
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	return m, nil
}
