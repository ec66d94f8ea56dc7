//go:build cgo

package ca_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/devices/sim/simtest"
)

const softHSMModule = simtest.SoftHSMModule

// softHSMToken initialises a SoftHSM2 token labelled label in a private
// SOFTHSM2_CONF and returns the token URI (PIN read from a file) and the PIN.
// The PKCS#11 module reads SOFTHSM2_CONF when it is first initialised in
// the process, so all tokens of this test binary share one folder.
func softHSMToken(t *testing.T, label string) (tokenURI string, pin []byte) {
	t.Helper()
	pin = []byte("8642-wsc-token-pin")
	pinFile := simtest.SoftHSMToken(t, label, string(pin))
	return "pkcs11:module-path=" + softHSMModule + ";token=" + label + "?pin-source=" + pinFile, pin
}

// TestPKCS11Token runs the CA life cycle with root and intermediate keys in
// a SoftHSM2 token: init, issue, rotation through csr/sign/install (the new
// key made in the token), per-issuer CRLs, root rollover. The CA folder
// holds key URIs, never a key or the PIN.
func TestPKCS11Token(t *testing.T) {
	ctx := context.Background()
	tokenURI, pin := softHSMToken(t, "wsc-ca")
	dir := filepath.Join(t.TempDir(), "ca")

	// A PIN inside the URI would be written to the CA folder: refused.
	if err := ca.Init(dir, nil, ca.InitOptions{KeyURI: "pkcs11:module-path=" + softHSMModule + ";token=wsc-ca?pin-value=" + string(pin)}); !errors.Is(err, ca.ErrKeyURI) || strings.Contains(err.Error(), string(pin)) {
		t.Fatalf("pin-value URI: %v", err)
	}
	if err := ca.Init(dir, nil, ca.InitOptions{KeyURI: tokenURI, Organization: "wsc token test"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{ca.RootKeyFile, ca.IntermediateKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists for a token key", f)
		}
		if !ca.IsTokenKey(filepath.Join(dir, f)) {
			t.Errorf("%s: no key reference", f)
		}
	}
	c, err := ca.Open(dir, nil, ca.WithRevocationStore(newMemStore()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tmp := t.TempDir()
	chain1, err := c.Issue(ctx, csrFor(t, newKey(t)), ca.IssueRequest{DeviceSerial: "HSM-1", Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	roots := pemFile(t, filepath.Join(tmp, "roots.pem"), c.Roots()...)
	if out, err := openssl(t, "verify", "-x509_strict", "-CAfile", roots, "-untrusted", pemFile(t, filepath.Join(tmp, "i1.pem"), chain1[1:]...), pemFile(t, filepath.Join(tmp, "l1.pem"), chain1[0])); err != nil {
		t.Fatalf("openssl verify: %v %s", err, out)
	}

	// Rotation, two-step: the station makes its next key in the token.
	csr, err := ca.GenerateIntermediateCSR(dir, nil, "wsc HSM Intermediate 2")
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsTokenKey(filepath.Join(dir, ca.NextIntermediateKeyFile)) {
		t.Fatal("next intermediate key not in the token")
	}
	inter2, err := ca.SignIntermediate(dir, nil, csr, ca.IntermediateTemplate{CommonName: "wsc HSM Intermediate 2"})
	if err != nil {
		t.Fatal(err)
	}
	oldIssuer := c.Issuer()
	if err := c.InstallIntermediate(ctx, []*x509.Certificate{inter2}, nil); err != nil {
		t.Fatal(err)
	}
	chain2, err := c.Issue(ctx, csrFor(t, newKey(t)), ca.IssueRequest{DeviceSerial: "HSM-2", Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(chain2[0].AuthorityKeyId, inter2.SubjectKeyId) {
		t.Fatal("not hot-swapped to the new token key")
	}
	if err := c.Revoke(ctx, chain1[0], ca.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	crls, err := c.CRLs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, crl := range crls {
		issuer := inter2
		if bytes.Equal(crl.AuthorityKeyId, oldIssuer.SubjectKeyId) {
			issuer = oldIssuer
		}
		out, err := openssl(t, "crl", "-in", crlFile(t, filepath.Join(tmp, "crl.pem"), crl), "-CAfile", pemFile(t, filepath.Join(tmp, "iss.pem"), issuer), "-noout", "-verify")
		if err != nil || !strings.Contains(out, "verify OK") {
			t.Errorf("openssl crl -verify: %v %s", err, out)
		}
	}

	// Root rollover: the new root key is made in the same token.
	ro, err := c.RolloverRoot(ctx, nil, ca.RolloverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	chain3, err := c.Issue(ctx, csrFor(t, newKey(t)), ca.IssueRequest{DeviceSerial: "HSM-3", Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := openssl(t, "verify", "-CAfile", pemFile(t, filepath.Join(tmp, "old.pem"), ro.OldRoot), "-untrusted", pemFile(t, filepath.Join(tmp, "i3.pem"), chain3[1:]...), pemFile(t, filepath.Join(tmp, "l3.pem"), chain3[0])); err != nil {
		t.Errorf("new chain against the old root: %v %s", err, out)
	}
	if !ca.IsTokenKey(filepath.Join(dir, ca.RootKeyFile)) {
		t.Error("new root key not in the token")
	}

	// Reopen (shift start) with the token; the PIN comes from pin-source.
	c.Close()
	c2, err := ca.Open(dir, nil, ca.WithRevocationStore(newMemStore()))
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if _, err := c2.Issue(ctx, csrFor(t, newKey(t)), ca.IssueRequest{DeviceSerial: "HSM-4", Validity: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if got := len(c2.Status().RetiredIssuers); got != 1 {
		t.Errorf("retired issuers after reopen: %d", got)
	}
	c2.Close()

	// The CA folder holds URIs, neither keys nor the PIN.
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, pin) || bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds the PIN or a private key", p)
		}
		return nil
	})
}

// TestPKCS11PINFromPassphrase: without pin-source the passphrase source
// supplies the token PIN; a wrong PIN fails without echoing it.
func TestPKCS11PINFromPassphrase(t *testing.T) {
	tokenURI, pin := softHSMToken(t, "wsc-ca-2")
	bare, _, _ := strings.Cut(tokenURI, "?")
	dir := filepath.Join(t.TempDir(), "ca")
	if err := ca.Init(dir, pin, ca.InitOptions{KeyURI: bare}); err != nil {
		t.Fatal(err)
	}
	ref, _ := os.ReadFile(filepath.Join(dir, "intermediate"+ca.KeyRefExt))
	if !strings.HasPrefix(string(ref), "pkcs11:module-path=") || bytes.Contains(ref, pin) {
		t.Errorf("key reference %q", ref)
	}
	wrong := []byte("0000-not-the-pin")
	if _, err := ca.Open(dir, wrong); err == nil || strings.Contains(err.Error(), string(wrong)) {
		t.Fatalf("wrong PIN: %v", err)
	}
	c, err := ca.Open(dir, pin)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Issue(context.Background(), csrFor(t, newKey(t)), ca.IssueRequest{DeviceSerial: "HSM-PIN", Validity: time.Hour}); err != nil {
		t.Fatal(err)
	}
}
