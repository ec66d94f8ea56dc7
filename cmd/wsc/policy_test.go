package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/devices/tpm"
)

// TestPolicySign: `wsc policy sign` writes a PCR policy whose fleet
// signature covers PolicyAuthorize's aHash for exactly the given PCR values
// and product line; mismatched --pcrs and --values are refused.
func TestPolicySign(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pass := []byte("fleet passphrase")
	keyPath := filepath.Join(dir, "fleet.key")
	if err := ca.SaveEncryptedKey(keyPath, key, pass); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WSC_FLEET_PASS", string(pass))
	vals := filepath.Join(dir, "pcrs.json")
	v0, v7 := strings.Repeat("11", 32), strings.Repeat("a7", 32)
	if err := os.WriteFile(vals, []byte(`{"0":"`+v0+`","7":"`+v7+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "policy.json")
	run := func(pcrs string) error {
		c := policyCmd()
		c.SetOut(&bytes.Buffer{})
		c.SetErr(&bytes.Buffer{})
		c.SetArgs([]string{"sign", "--pcrs", pcrs, "--values", vals, "--key", keyPath, "--passphrase-source", "env:WSC_FLEET_PASS", "--ref", "gw-line", "-o", out})
		return c.Execute()
	}
	if err := run("0,2,7"); err == nil || !strings.Contains(err.Error(), "must be the same") {
		t.Fatalf("mismatched PCRs: %v", err)
	}
	if err := run("7,0"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tpm.ParseSignedPCRPolicy(b)
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := tpm.PCRDigest(map[int][]byte{0: bytes.Repeat([]byte{0x11}, 32), 7: bytes.Repeat([]byte{0xa7}, 32)})
	approved, err := tpm.ApprovedPCRPolicy(p.PCRs, p.PCRDigest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.PCRDigest, want) || string(p.PolicyRef) != "gw-line" || !p.FleetKey.Equal(&key.PublicKey) ||
		!ecdsa.Verify(&key.PublicKey, tpm.ApprovalDigest(approved, p.PolicyRef), p.R, p.S) {
		t.Fatalf("policy file %+v does not carry a valid fleet approval", p)
	}
}
