package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsc-project/wsc/devices/sim/testenv"
)

// TestDemoMixTPMAndSE runs `wsc demo --devices 2 --mix tpm,se`: one TPM and
// one secure-element device provisioned together. The export names each
// backend, both certificates verify with openssl, and both end-of-line
// modules passed QA. Then the CA ceremony commands on the demo's database
// see the station's certificates: `wsc ca revoke --db` revokes the SE
// device's certificate by serial and `wsc ca crl` lists it.
func TestDemoMixTPMAndSE(t *testing.T) {
	testenv.NeedTools(t, "swtpm", "swtpm_setup", "swtpm_localca", "openssl")
	wsc, agent := buildBinaries(t)
	ws := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, wsc, "demo", "--devices", "2", "--mix", "tpm,se", "--workspace", ws, "--headless", "--agent", agent).CombinedOutput()
	if err != nil {
		t.Fatalf("wsc demo: %v\n%s", err, out)
	}
	for _, want := range []string{"2 of 2 devices provisioned", "QA: 2 of 2 end-of-line modules verified", "BACKEND"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out)
		}
	}
	dbPath := filepath.Join(ws, "station.db")
	exp, err := exec.Command(wsc, "db", "export", "--db", dbPath, "--format", "json").Output()
	if err != nil {
		t.Fatalf("db export: %v", err)
	}
	var recs []exportRecord
	if err := json.Unmarshal(exp, &recs); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, exp)
	}
	backends := map[string]exportRecord{}
	for _, r := range recs {
		backends[r.Backend] = r
		if r.Status != "provisioned" {
			t.Errorf("%s (%s): status %q", r.Serial, r.Backend, r.Status)
		}
		leafFile := filepath.Join(t.TempDir(), "leaf.pem")
		if err := os.WriteFile(leafFile, []byte(r.Certificate), 0o644); err != nil {
			t.Fatal(err)
		}
		if o, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(ws, "ca", "root.crt"),
			"-untrusted", filepath.Join(ws, "ca", "intermediate.crt"), leafFile).CombinedOutput(); err != nil {
			t.Errorf("%s (%s): openssl verify: %v\n%s", r.Serial, r.Backend, err, o)
		}
	}
	if len(recs) != 2 || backends["tpm"].Serial == "" || backends["se"].Serial == "" {
		t.Fatalf("export: %d records, backends %v; want one tpm and one se", len(recs), keys(backends))
	}
	seLeaf := parsePEMCerts(t, backends["se"].Certificate)[0]
	if seLeaf.NotBefore.Minute() != 0 || seLeaf.NotBefore.Second() != 0 || seLeaf.NotAfter.Sub(seLeaf.NotBefore) < 365*24*time.Hour {
		t.Errorf("SE certificate validity %v .. %v is not whole years from an hour", seLeaf.NotBefore, seLeaf.NotAfter)
	}

	// Revoke the SE device's certificate with the ceremony commands on the
	// demo's database, then publish the CRL: it lists the certificate.
	pass := demoPass(t, filepath.Join(ws, "DEMO-ONLY-ca-passphrase.txt"))
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(wsc, args...)
		cmd.Env = append(os.Environ(), "WSC_DEMO_PASS="+pass)
		o, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("wsc %s: %v\n%s", strings.Join(args, " "), err, o)
		}
		return string(o)
	}
	caDir := filepath.Join(ws, "ca")
	o := run("ca", "revoke", "--dir", caDir, "--db", dbPath, "--serial", seLeaf.SerialNumber.Text(16), "--reason", "keyCompromise", "--passphrase-source", "env:WSC_DEMO_PASS")
	if !strings.Contains(o, "revoked") {
		t.Fatalf("revoke: %s", o)
	}
	crlDir := t.TempDir()
	run("ca", "crl", "--dir", caDir, "--db", dbPath, "-o", crlDir, "--passphrase-source", "env:WSC_DEMO_PASS")
	raw, err := os.ReadFile(filepath.Join(crlDir, "crl-"+hex.EncodeToString(seLeaf.AuthorityKeyId)+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(raw)
	if blk == nil {
		t.Fatal("CRL file holds no PEM")
	}
	crl, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, e := range crl.RevokedCertificateEntries {
		listed = listed || e.SerialNumber.Cmp(seLeaf.SerialNumber) == 0
	}
	if !listed {
		t.Fatalf("the CRL does not list the revoked station certificate %x", seLeaf.SerialNumber)
	}
	// openssl, with CRL checking, now refuses the SE device's certificate.
	leafFile := filepath.Join(t.TempDir(), "se-leaf.pem")
	if err := os.WriteFile(leafFile, []byte(backends["se"].Certificate), 0o644); err != nil {
		t.Fatal(err)
	}
	vo, err := exec.Command("openssl", "verify", "-crl_check", "-CRLfile", filepath.Join(crlDir, "crl-"+hex.EncodeToString(seLeaf.AuthorityKeyId)+".pem"),
		"-CAfile", filepath.Join(caDir, "root.crt"), "-untrusted", filepath.Join(caDir, "intermediate.crt"), leafFile).CombinedOutput()
	if err == nil || !strings.Contains(string(vo), "revoked") {
		t.Errorf("openssl verify -crl_check accepted the revoked SE certificate: %v\n%s", err, vo)
	}
}

// demoPass reads the demo CA's passphrase (last non-comment line).
func demoPass(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	last := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			last = l
		}
	}
	return last
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
