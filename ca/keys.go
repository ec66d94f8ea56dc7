package ca

import (
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/uri"
)

// A CA key lives either in an encrypted PKCS#8 file (<name>.key) or in a
// PKCS#11 token. A token key is recorded in the CA folder as a key
// reference file <name>.kms holding one RFC 7512 URI, for example
//
//	pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=wsc-ca;id=%a1%b2%c3%d4%e5%f6%a7%b8;object=wsc-intermediate?pin-source=/etc/wsc/pin
//
// The reference is not secret: it names the module, the token and the
// object, and at most where the PIN is read from (pin-source). A PIN
// itself (pin-value) is refused. Without pin-source the passphrase given
// to Open/Init is used as the token PIN.

// KeyRefExt is the file extension of a key reference (PKCS#11 URI) in the CA folder.
const KeyRefExt = ".kms"

// ErrKeyURI reports an unusable key URI.
var ErrKeyURI = errors.New("ca: bad key URI")

// keyRefPath returns the reference file that stands for a key file.
func keyRefPath(keyPath string) string {
	return strings.TrimSuffix(keyPath, ".key") + KeyRefExt
}

// IsTokenKey reports whether the key at keyPath (e.g. DIR/root.key) is a
// reference to a token key rather than an encrypted file.
func IsTokenKey(keyPath string) bool {
	_, err := os.Stat(keyRefPath(keyPath))
	return err == nil
}

// loadKey opens the private key stored at keyPath: the encrypted PKCS#8 file
// or, when a key reference exists next to it, the key in the PKCS#11 token.
// secret is the file's passphrase or the token PIN. The returned function
// releases the token session (a no-op for files).
func loadKey(keyPath string, secret []byte) (crypto.Signer, func() error, error) {
	ref, err := os.ReadFile(keyRefPath(keyPath))
	if errors.Is(err, os.ErrNotExist) {
		s, err := readKey(keyPath, secret)
		return s, func() error { return nil }, err
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read key reference: %w", err)
	}
	km, err := openKMS(strings.TrimSpace(string(ref)), secret)
	if err != nil {
		return nil, nil, fmt.Errorf("open key %s: %w", filepath.Base(keyRefPath(keyPath)), err)
	}
	s, err := km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: strings.TrimSpace(string(ref))})
	if err != nil {
		km.Close()
		return nil, nil, fmt.Errorf("open key %s: %w", filepath.Base(keyRefPath(keyPath)), err)
	}
	return s, km.Close, nil
}

// tokenKeyURI builds the URI of a new token key: tokenURI's module, token
// and pin-source, with id and object replaced. A pin-value is refused so a
// PIN is never written to the CA folder.
func tokenKeyURI(tokenURI string, id []byte, label string) (string, error) {
	u, err := uri.ParseWithScheme("pkcs11", tokenURI)
	if err != nil {
		return "", fmt.Errorf("%w: want pkcs11:module-path=…;token=…", ErrKeyURI)
	}
	if u.Has("pin-value") {
		return "", fmt.Errorf("%w: pin-value is not allowed (the URI is recorded in the CA folder); use pin-source or the passphrase source", ErrKeyURI)
	}
	if u.Get("token") == "" && u.Get("serial") == "" && u.Get("slot-id") == "" {
		return "", fmt.Errorf("%w: token, serial or slot-id is required", ErrKeyURI)
	}
	path, query, _ := strings.Cut(strings.TrimPrefix(tokenURI, "pkcs11:"), "?")
	var attrs []string
	for _, a := range strings.Split(path, ";") {
		if a == "" || strings.HasPrefix(a, "id=") || strings.HasPrefix(a, "object=") {
			continue
		}
		attrs = append(attrs, a)
	}
	var pid strings.Builder
	for _, b := range id {
		pid.WriteString("%" + hex.EncodeToString([]byte{b}))
	}
	attrs = append(attrs, "id="+pid.String(), "object="+label)
	out := "pkcs11:" + strings.Join(attrs, ";")
	if query != "" {
		out += "?" + query
	}
	return out, nil
}

// tokenOf returns the token URI of an existing key reference (the key's URI
// minus id and object), or "" when keyPath is an encrypted file.
func tokenOf(keyPath string) (string, error) {
	ref, err := os.ReadFile(keyRefPath(keyPath))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read key reference: %w", err)
	}
	return strings.TrimSpace(string(ref)), nil
}

// openKMS opens the PKCS#11 module and token named by keyURI. pin is used
// when the URI has no pin-source. PKCS#11 support is registered by the
// cgo-only file pkcs11.go.
func openKMS(keyURI string, pin []byte) (apiv1.KeyManager, error) {
	u, err := uri.ParseWithScheme("pkcs11", keyURI)
	if err != nil {
		return nil, fmt.Errorf("%w: want pkcs11:…", ErrKeyURI)
	}
	if u.Has("pin-value") {
		return nil, fmt.Errorf("%w: pin-value is not allowed", ErrKeyURI)
	}
	newKMS, ok := apiv1.LoadKeyManagerNewFunc(apiv1.PKCS11)
	if !ok {
		return nil, fmt.Errorf("%w: this build has no PKCS#11 support (needs cgo)", ErrKeyURI)
	}
	opts := apiv1.Options{Type: apiv1.PKCS11, URI: keyURI}
	if !u.Has("pin-source") {
		opts.Pin = string(pin)
	}
	km, err := newKMS(context.Background(), opts)
	if err != nil {
		// The module's error names the token and the failing call, never the PIN.
		return nil, fmt.Errorf("open PKCS#11 token: %w", err)
	}
	return km, nil
}

// keyExists reports whether a key file or key reference exists for keyPath.
func keyExists(keyPath string) bool {
	if _, err := os.Stat(keyPath); err == nil {
		return true
	}
	return IsTokenKey(keyPath)
}
