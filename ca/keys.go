package ca

import (
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

// ParseKeyURI parses a PKCS#11 key or token URI (RFC 7512) with
// go.step.sm/crypto/kms/uri, the one parser wsc uses for these URIs (the
// KMS that opens the key parses it the same way). A pin-value is refused:
// the URI is recorded in the CA folder and shown in logs, a PIN must not be.
// The error never repeats the URI.
func ParseKeyURI(s string) (*uri.URI, error) {
	if !IsKeyURI(s) {
		return nil, fmt.Errorf("%w: want pkcs11:module-path=…;token=…", ErrKeyURI)
	}
	u, err := uri.ParseWithScheme("pkcs11", s)
	if err != nil {
		// The parser's message repeats the whole URI, which may hold a PIN.
		return nil, fmt.Errorf("%w: malformed pkcs11: URI (check the ';' separators and %%-escapes)", ErrKeyURI)
	}
	if u.Has("pin-value") {
		return nil, fmt.Errorf("%w: pin-value is not allowed (the URI is recorded in the CA folder); use pin-source or the passphrase source", ErrKeyURI)
	}
	return u, nil
}

// IsKeyURI reports whether s names a key in a PKCS#11 token (a pkcs11:
// URI) rather than a key file.
func IsKeyURI(s string) bool {
	return uri.HasScheme("pkcs11", s)
}

// tokenKeyURI builds the URI of a new token key: tokenURI's module, token
// and pin-source, with id and object replaced. A pin-value is refused so a
// PIN is never written to the CA folder.
func tokenKeyURI(tokenURI string, id []byte, label string) (string, error) {
	u, err := ParseKeyURI(tokenURI)
	if err != nil {
		return "", err
	}
	if u.Get("token") == "" && u.Get("serial") == "" && u.Get("slot-id") == "" {
		return "", fmt.Errorf("%w: token, serial or slot-id is required", ErrKeyURI)
	}
	u.Values.Set("id", string(id))
	u.Values.Set("object", label)
	return keyURIString(u), nil
}

// keyURIString writes u with its path attributes in the order people read
// them (module-path, token, serial, slot-id, others, then id and object)
// and only the bytes RFC 7512 requires percent-encoded, so that the key
// reference in the CA folder stays readable. kms/uri's own String sorts and
// query-escapes every attribute (module-path=%2Fusr%2Flib…).
func keyURIString(u *uri.URI) string {
	first := []string{"module-path", "token", "serial", "slot-id"}
	last := []string{"id", "object"}
	var rest []string
	for k := range u.Values {
		if !slices.Contains(first, k) && !slices.Contains(last, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	var attrs []string
	for _, k := range slices.Concat(first, rest, last) {
		if !u.Values.Has(k) {
			continue
		}
		attrs = append(attrs, k+"="+escapeAttr(u.Values.Get(k)))
	}
	out := "pkcs11:" + strings.Join(attrs, ";")
	if u.URL.RawQuery != "" {
		out += "?" + u.URL.RawQuery
	}
	return out
}

// escapeAttr percent-encodes v for a PKCS#11 URI path attribute: every byte
// except RFC 3986 unreserved characters and '/'.
func escapeAttr(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '/':
			b.WriteByte(c)
		default:
			b.WriteString("%" + hex.EncodeToString([]byte{c}))
		}
	}
	return b.String()
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
	u, err := ParseKeyURI(keyURI)
	if err != nil {
		return nil, err
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
