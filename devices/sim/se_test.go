package sim

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/wsc-project/wsc/devices/se"
)

func readPEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s: not a PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSEVendor: chips made by the simulated SE vendor carry an attestation
// key certified under the published root; the published files hold no key;
// after Close the vendor issues nothing.
func TestSEVendor(t *testing.T) {
	v, err := NewSEVendor()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "dev", SEStateFile)
	serial, err := v.Manufacture(state)
	if err != nil {
		t.Fatal(err)
	}
	root, signer, err := v.Publish(filepath.Join(dir, "se-vendor"))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{root, signer} {
		b, _ := os.ReadFile(p)
		if rest := b; len(rest) == 0 {
			t.Fatalf("%s empty", p)
		}
		for rest := b; ; {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				t.Fatalf("%s holds a %s block", p, blk.Type)
			}
		}
	}
	rc, sc := readPEMCert(t, root), readPEMCert(t, signer)
	if err := sc.CheckSignatureFrom(rc); err != nil || !sc.IsCA || !sc.MaxPathLenZero {
		t.Fatalf("signer under root: %v", err)
	}
	// The chip: zones locked, attestation key valid, chain rebuilt from
	// its slots and the vendor's definitions beside its state.
	emu, err := se.OpenEmulator(state)
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	chip := se.New(emu, se.DefaultAddress)
	cfg, err := chip.ReadConfig()
	if err != nil || !cfg.ConfigLocked() || !cfg.DataLocked() || cfg.SerialHex() != serial {
		t.Fatalf("chip config: %v", err)
	}
	defs, err := se.ReadMfgDefs(state + SEMfgDefSuffix)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := chip.ReadMfgChain(defs, cfg.SerialNumber())
	if err != nil {
		t.Fatal(err)
	}
	dev, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(rc)
	inter.AddCert(sc)
	if _, err := dev.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatal(err)
	}
	if dev.Subject.CommonName != "sn"+serial {
		t.Fatalf("CN %q", dev.Subject.CommonName)
	}
	if _, _, err := v.Issue(dev.PublicKey.(*ecdsa.PublicKey), cfg.SerialNumber()); err == nil {
		t.Fatal("issued after Close")
	}
	// Manufacturing an existing chip leaves it as it is.
	emu.Close()
	again, err := v.Manufacture(state)
	if err != nil || again != serial {
		t.Fatalf("existing chip: %s %v", again, err)
	}
}
