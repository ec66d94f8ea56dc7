package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/se"
	"github.com/wsc-project/wsc/devices/sim"
)

// manufacturedSE makes a chip as the simulated vendor ships it and opens
// its backend; it returns the backend, its emulator and the vendor root.
func manufacturedSE(t *testing.T, opts ...se.ManufactureOption) (*SEBackend, *se.Emulator, *x509.Certificate, string) {
	t.Helper()
	v, err := sim.NewSEVendor()
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), sim.SEStateFile)
	if _, err := v.Manufacture(state, opts...); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.Issue(nil, [9]byte{}); err == nil {
		t.Fatal("the vendor CA still issues after Close")
	}
	uri := "emulator:" + state
	b, closer := openEmulatedSE(t, uri)
	t.Cleanup(func() { _ = closer.Close() })
	return b, closer.(*se.Emulator), v.Root(), uri
}

func TestSEBackendKeyAttestation(t *testing.T) {
	ctx := context.Background()
	b, emu, root, uri := manufacturedSE(t)
	if b.mfgDefPath != filepath.Join(filepath.Dir(uri[len("emulator:"):]), sim.SEStateFile+sim.SEMfgDefSuffix) {
		t.Fatalf("manufacturer definitions path %q", b.mfgDefPath)
	}
	client := serveBackend(t, b)
	hello, err := client.Hello(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(hello.Capabilities, CapKeyAttestation) {
		t.Fatalf("capabilities %v", hello.Capabilities)
	}
	nonce := bytes.Repeat([]byte{7}, 32)
	emu.ResetStats()
	keys, err := client.CreateKeys(ctx, proto.CreateKeysRequest{Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	st := emu.Stats()
	t.Logf("CreateKeys with attestation: %d wakes, commands %v, datasheet time %s", st.Wakes, st.Commands, st.DatasheetTime)
	att := keys.SEAttestation
	if att == nil || !keys.Created {
		t.Fatalf("created %v, attestation %v", keys.Created, att)
	}
	if len(att.Serial) != 9 || len(att.Config) != 128 || len(att.RandOut) != 32 || len(att.PublicKey) != 64 || len(att.Signature) != 64 ||
		att.KeySlot != se.SlotDeviceKey || att.AttestationSlot != se.SlotAttestationKey || att.GenKeyMode != 0x0C || att.SignMode != 0x40 {
		t.Fatalf("attestation fields: %+v", att)
	}
	cfg, err := se.ParseConfig(att.Config)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SerialHex() != hello.Serial {
		t.Fatalf("config serial %s, hello %s", cfg.SerialHex(), hello.Serial)
	}
	// The chain verifies to the vendor root and names this chip.
	if len(att.Chain) != 2 {
		t.Fatalf("chain of %d", len(att.Chain))
	}
	dev := mustParse(t, att.Chain[0])
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	inter.AddCert(mustParse(t, att.Chain[1]))
	if _, err := dev.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatal(err)
	}
	if dev.Subject.CommonName != "sn"+hello.Serial {
		t.Fatalf("device certificate CN %q", dev.Subject.CommonName)
	}
	// The signature covers the CSR's key.
	csr, _ := x509.ParseCertificateRequest(keys.CSR)
	xy, _ := se.PublicKeyBytes(csr.PublicKey.(*ecdsa.PublicKey))
	if !bytes.Equal(xy, att.PublicKey) {
		t.Fatal("attested key is not the CSR key")
	}
	ka := &se.KeyAttestation{Slot: int(att.KeySlot), AttestationSlot: int(att.AttestationSlot), GenKeyMode: att.GenKeyMode,
		SignMode: att.SignMode, PublicKey: csr.PublicKey.(*ecdsa.PublicKey)}
	copy(ka.RandOut[:], att.RandOut)
	copy(ka.Signature[:], att.Signature)
	if err := ka.Verify(cfg, se.NumInFromNonce(nonce), dev.PublicKey.(*ecdsa.PublicKey)); err != nil {
		t.Fatal(err)
	}
	// Re-run: key reused, GenKey 0x08, same chain (cached).
	again, err := client.CreateKeys(ctx, proto.CreateKeysRequest{Nonce: bytes.Repeat([]byte{8}, 32)})
	if err != nil || again.Created || again.SEAttestation == nil || again.SEAttestation.GenKeyMode != 0x08 ||
		!bytes.Equal(again.SEAttestation.PublicKey, att.PublicKey) || !bytes.Equal(again.SEAttestation.Chain[0], att.Chain[0]) {
		t.Fatalf("second CreateKeys: %v", err)
	}
}

func TestSEBackendAttestationWithoutChainOrKey(t *testing.T) {
	ctx := context.Background()
	// Attestation key, definitions file gone: evidence without a chain.
	b, _, _, uri := manufacturedSE(t)
	if err := os.Remove(b.mfgDefPath); err != nil {
		t.Fatal(err)
	}
	keys, err := serveBackend(t, b).CreateKeys(ctx, proto.CreateKeysRequest{Nonce: make([]byte, 16)})
	if err != nil || keys.SEAttestation == nil || len(keys.SEAttestation.Chain) != 0 {
		t.Fatalf("no definitions: %v %+v", err, keys)
	}
	_ = uri
	// A chip the vendor made without certificates: no chain either.
	b2, _, _, _ := manufacturedSE(t, se.WithoutMfgCertificates())
	keys, err = serveBackend(t, b2).CreateKeys(ctx, proto.CreateKeysRequest{Nonce: make([]byte, 16)})
	if err != nil || keys.SEAttestation == nil || len(keys.SEAttestation.Chain) != 0 {
		t.Fatalf("no certificates: %v %+v", err, keys)
	}
	// A blank chip personalised by wsc has no attestation key: no evidence,
	// no capability.
	b3, closer := openEmulatedSE(t, "emulator:"+filepath.Join(t.TempDir(), "blank.json"))
	defer closer.Close()
	if slices.Contains(b3.Identity().Capabilities, CapKeyAttestation) {
		t.Fatal("blank chip claims key attestation")
	}
	keys, err = serveBackend(t, b3).CreateKeys(ctx, proto.CreateKeysRequest{Nonce: make([]byte, 16)})
	if err != nil || keys.SEAttestation != nil || !keys.Created {
		t.Fatalf("blank chip: %v %+v", err, keys)
	}
}

func TestDefaultMfgDefPath(t *testing.T) {
	for in, want := range map[string]string{
		"/a/se.state.certdef.json":              "/a/se.state.mfgdef.json",
		"/var/lib/wsc-agent/atecc-certdef.json": "/var/lib/wsc-agent/atecc-mfgdef.json",
		"/x/defs.json":                          "/x/atecc-mfgdef.json",
	} {
		if got := DefaultMfgDefPath(in); got != want {
			t.Errorf("DefaultMfgDefPath(%q) = %q, want %q", in, got, want)
		}
	}
}
