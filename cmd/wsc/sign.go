package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/ui"
	"github.com/wsc-project/wsc/wasmsign"
	"go.step.sm/crypto/kms"
	"go.step.sm/crypto/kms/apiv1"
)

func signCmd() *cobra.Command {
	var keyURI, chainPath, out, passSource, manifestPath string
	var detached bool
	cmd := &cobra.Command{
		Use:   "sign --key URI --chain FILE IN.wasm -o OUT.wasm",
		Short: "Sign a WebAssembly module with a software key or a PKCS#11 token, embedding the certificate chain",
		Long: `sign signs IN.wasm (wasmsign2 layout, ECDSA P-256 record with the certificate chain after the
signature, see docs/signature-format.md). --key is a PKCS#8-encrypted key file (passphrase from
--passphrase-source) or a PKCS#11 URI (pkcs11:module-path=...;token=...;object=...?pin-source=file:...).

--manifest FILE adds a signed manifest (custom section "wsc.manifest", CBOR, covered by the
signature) before signing. FILE is JSON:
  {"component":"sensor-fw","version":7,"min_version":7,"device_class":"gw-1",
   "serials":["TPM-..."],"expires":"2027-01-01T00:00:00Z"}
min_version defaults to version; serials and expires are optional. Devices refuse a module whose
version is below their rollback counter, and commit raises the counter to min_version.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyURI == "" || chainPath == "" || out == "" {
				return errors.New("--key, --chain and -o are required")
			}
			signer, closeKey, err := openSigner(cmd.Context(), keyURI, passSource)
			if err != nil {
				return err
			}
			defer closeKey()
			pemChain, err := os.ReadFile(chainPath)
			if err != nil {
				return fmt.Errorf("chain: %w", err)
			}
			chain, err := ca.ParseCertificatesPEM(pemChain)
			if err != nil {
				return fmt.Errorf("chain %s: %w", chainPath, err)
			}
			module, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			if manifestPath != "" {
				m, err := readManifestFile(manifestPath)
				if err != nil {
					return err
				}
				if module, err = wasmsign.AddManifest(module, m); err != nil {
					return fmt.Errorf("manifest for %s: %w", args[0], err)
				}
			}
			signed, err := wasmsign.Sign(module, signer, chain, &wasmsign.SignOptions{Detached: detached})
			if err != nil {
				return fmt.Errorf("sign %s: %w", args[0], err)
			}
			if err := os.WriteFile(out, signed, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s -> %s (signer %s)\n", args[0], out, ui.Untrusted(chain[0].Subject.String()))
			return nil
		},
	}
	cmd.Flags().StringVar(&keyURI, "key", "", "signing key: an encrypted PKCS#8 file, or a pkcs11: URI")
	cmd.Flags().StringVar(&chainPath, "chain", "", "certificate chain (PEM, leaf first)")
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
		return nil, nil, fmt.Errorf("key passphrase: %w", err)
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
