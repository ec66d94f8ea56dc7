package ca

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"go.step.sm/crypto/kms/uri"
)

// TestTokenKeyURI checks the rules for key references: module, token and
// pin-source are kept, id and object are replaced, a pin-value is refused
// without repeating the PIN, and the result parses back to the same values.
func TestTokenKeyURI(t *testing.T) {
	id := []byte{0xa1, 0xb2, 'c', ';', '/', 0x00}
	tests := []struct {
		name, token, label string
		wantPrefix         string
		wantQuery          string
		wantErr            bool
	}{
		{name: "pin source kept", token: "pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=wsc-ca?pin-source=/etc/wsc/pin", label: "wsc-root",
			wantPrefix: "pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=wsc-ca;id=", wantQuery: "?pin-source=/etc/wsc/pin"},
		{name: "id and object replaced", token: "pkcs11:token=wsc%20ca;object=old;id=%01;module-path=/m.so", label: "wsc intermediate",
			wantPrefix: "pkcs11:module-path=/m.so;token=wsc%20ca;id="},
		{name: "serial names the token", token: "pkcs11:module-path=/m.so;serial=42", label: "k", wantPrefix: "pkcs11:module-path=/m.so;serial=42;id="},
		{name: "pin value", token: "pkcs11:module-path=/m.so;token=t?pin-value=9753-secret", label: "k", wantErr: true},
		{name: "pin value in path", token: "pkcs11:module-path=/m.so;token=t;pin-value=9753-secret", label: "k", wantErr: true},
		{name: "no token", token: "pkcs11:module-path=/m.so", label: "k", wantErr: true},
		{name: "not pkcs11", token: "file:/etc/wsc/root.key", label: "k", wantErr: true},
		{name: "bad escape", token: "pkcs11:module-path=/m.so;token=%zz?pin-value=9753-secret", label: "k", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tokenKeyURI(tt.token, id, tt.label)
			if tt.wantErr {
				if !errors.Is(err, ErrKeyURI) {
					t.Fatalf("tokenKeyURI = %q, %v; want ErrKeyURI", got, err)
				}
				if strings.Contains(err.Error(), "9753-secret") {
					t.Fatalf("error repeats the PIN: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, tt.wantPrefix) || !strings.HasSuffix(got, tt.wantQuery) {
				t.Fatalf("got %q, want prefix %q and suffix %q", got, tt.wantPrefix, tt.wantQuery)
			}
			u, err := uri.ParseWithScheme("pkcs11", got)
			if err != nil {
				t.Fatalf("result does not parse: %v", err)
			}
			if !bytes.Equal([]byte(u.Get("id")), id) || u.Get("object") != tt.label || len(u.Values["object"]) != 1 || len(u.Values["id"]) != 1 {
				t.Fatalf("id %x object %q in %q", u.Get("id"), u.Get("object"), got)
			}
			orig, _ := uri.ParseWithScheme("pkcs11", tt.token)
			for _, k := range []string{"module-path", "token", "serial", "pin-source"} {
				if u.Get(k) != orig.Get(k) {
					t.Errorf("%s = %q, want %q", k, u.Get(k), orig.Get(k))
				}
			}
		})
	}
}

func TestIsKeyURI(t *testing.T) {
	for s, want := range map[string]bool{
		"pkcs11:token=t":        true,
		"PKCS11:token=t":        true,
		"/etc/wsc/signing.key":  false,
		"signing.key":           false,
		"file:/etc/wsc/key.pem": false,
	} {
		if got := IsKeyURI(s); got != want {
			t.Errorf("IsKeyURI(%q) = %v", s, got)
		}
	}
}
