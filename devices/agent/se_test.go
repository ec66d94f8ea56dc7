package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/se"
)

// testCA is a throwaway root + station intermediate, P-256, the
// intermediate valid now-5min .. +5*365 days as ca.Init makes it.
type testCA struct {
	root, inter *x509.Certificate
	interKey    *ecdsa.PrivateKey
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wsc test root"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.AddDate(20, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, rt, rt, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	it := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "wsc test station", Organization: []string{"wsc"}},
		NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(5 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign}
	der, err = x509.CreateCertificate(rand.Reader, it, root, &interKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	inter, _ := x509.ParseCertificate(der)
	return &testCA{root: root, inter: inter, interKey: interKey}
}

// issueSE issues the device certificate the way the station must for an SE:
// validity in whole years from an hour boundary, serial from
// se.DeviceCertSerial, names from the station (not from the CSR).
func (c *testCA) issueSE(t testing.TB, csrDER []byte, serial string, years int) [][]byte {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	pub := csr.PublicKey.(*ecdsa.PublicKey)
	nb, na, enc, err := se.DeviceCertValidity(time.Now(), years)
	var sn *big.Int
	if err != nil {
		// A profile that cannot be compressed (years < 1): issue anyway, the
		// device must refuse it.
		nb, na = time.Now().Add(-time.Minute), time.Now().Add(365*24*time.Hour)
		sn = big.NewInt(42)
	} else {
		b, err := se.DeviceCertSerial(pub, enc)
		if err != nil {
			t.Fatal(err)
		}
		sn = new(big.Int).SetBytes(b)
	}
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: "device " + serial, SerialNumber: serial},
		NotBefore: nb, NotAfter: na, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageCodeSigning},
		DNSNames:    []string{strings.ToLower(serial) + ".devices.example"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.inter, pub, crypto.Signer(c.interKey))
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{der, c.inter.Raw}
}

// serveBackend serves b over an in-memory pipe and returns a protocol client.
func serveBackend(t testing.TB, b Backend) *proto.Client {
	t.Helper()
	a, c := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	srv := proto.NewServer(a, NewHandler(b, nil))
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx) }()
	client := proto.NewClient(c)
	t.Cleanup(func() {
		cancel()
		_ = client.Close()
		_ = a.Close()
		_ = c.Close()
		<-done
	})
	return client
}

func openEmulatedSE(t testing.TB, uri string) (*SEBackend, io.Closer) {
	t.Helper()
	chip, closer, err := OpenSE(uri)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSEBackend(chip, WithCertDefPath(DefaultCertDefPath(uri)))
	if err != nil {
		t.Fatal(err)
	}
	return b, closer
}

func TestSEBackendEndToEnd(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	uri := "emulator:" + filepath.Join(dir, "atecc.json")
	b, closer := openEmulatedSE(t, uri)
	client := serveBackend(t, b)
	ca := newTestCA(t)

	hello, err := client.Hello(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if hello.Backend != "se" || len(hello.Serial) != 18 || !strings.HasPrefix(hello.Serial, "0123") || hello.Model != "atecc608a" {
		t.Fatalf("hello %+v", hello)
	}
	nonce := make([]byte, 32)
	keys, err := client.CreateKeys(ctx, proto.CreateKeysRequest{Nonce: nonce, Subject: "ignored"})
	if err != nil {
		t.Fatal(err)
	}
	if !keys.Created || len(keys.IAKPublic) != 0 || len(keys.CertifyInfo) != 0 || len(keys.CertifySignature) != 0 {
		t.Fatalf("create keys: created %v, IAK %d bytes, certify %d bytes", keys.Created, len(keys.IAKPublic), len(keys.CertifyInfo))
	}
	csr, err := x509.ParseCertificateRequest(keys.CSR)
	if err != nil || csr.CheckSignature() != nil || csr.Subject.SerialNumber != hello.Serial {
		t.Fatalf("CSR: %v", err)
	}
	pkix, _ := x509.MarshalPKIXPublicKey(csr.PublicKey)
	if !bytes.Equal(pkix, keys.IDevIDPublic) {
		t.Fatal("CSR key differs from the reported device key")
	}
	// Retried CreateKeys: same key, Created false.
	again, err := client.CreateKeys(ctx, proto.CreateKeysRequest{Nonce: bytes.Repeat([]byte{1}, 32)})
	if err != nil || again.Created || !bytes.Equal(again.IDevIDPublic, keys.IDevIDPublic) {
		t.Fatalf("second CreateKeys: %v created=%v", err, again.Created)
	}

	chain := ca.issueSE(t, keys.CSR, hello.Serial, 10)
	if err := se.CheckDeviceChain(mustParse(t, chain[0]), ca.inter); err != nil {
		t.Fatalf("station-side check: %v", err)
	}
	inst, err := client.InstallChain(ctx, proto.InstallChainRequest{Chain: chain})
	if err != nil {
		t.Fatal(err)
	}
	if len(inst.NVIndices) != 3 || inst.NVIndices[0] != se.SlotDeviceCert {
		t.Fatalf("locations %v", inst.NVIndices)
	}
	want := sha256.Sum256(append(append([]byte(nil), chain[0]...), chain[1]...))
	if !bytes.Equal(inst.SHA256, want[:]) {
		t.Fatal("install digest")
	}
	rb, err := client.ReadChain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rb.Chain) != 2 || !bytes.Equal(rb.Chain[0], chain[0]) || !bytes.Equal(rb.Chain[1], chain[1]) {
		t.Fatal("read-back chain is not byte-identical")
	}
	// Only 72 bytes per certificate are in the chip.
	for _, s := range []int{se.SlotDeviceCert, se.SlotSignerCert} {
		d, _ := b.chip.ReadSlot(s)
		if len(d) != se.CompressedSize {
			t.Fatalf("slot %d: %d bytes", s, len(d))
		}
	}
	digest := sha256.Sum256([]byte("end of line module"))
	sig, err := client.SignDigest(ctx, proto.SignDigestRequest{Digest: digest[:]})
	if err != nil {
		t.Fatal(err)
	}
	leaf := mustParse(t, chain[0])
	if !ecdsa.VerifyASN1(leaf.PublicKey.(*ecdsa.PublicKey), digest[:], sig.Signature) {
		t.Fatal("device signature does not verify with the certificate")
	}
	// Re-delivery of the same chain is accepted without writes.
	if _, err := client.InstallChain(ctx, proto.InstallChainRequest{Chain: chain}); err != nil {
		t.Fatalf("re-delivery: %v", err)
	}

	// Power cycle: the emulator is reloaded from its state file.
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
	b2, closer2 := openEmulatedSE(t, uri)
	defer closer2.Close()
	if b2.Identity().Serial != hello.Serial {
		t.Fatal("serial changed in a power cycle")
	}
	got, err := b2.ReadChain(ctx)
	if err != nil || !bytes.Equal(got[0], chain[0]) || !bytes.Equal(got[1], chain[1]) {
		t.Fatalf("chain after power cycle: %v", err)
	}
	client2 := serveBackend(t, b2)
	ev, err := client2.CreateKeys(ctx, proto.CreateKeysRequest{Nonce: nonce})
	if err != nil || ev.Created {
		t.Fatalf("CreateKeys after power cycle: %v created=%v", err, ev.Created)
	}

	// Lock: irreversible; another chain is then refused with ErrLocked.
	if err := client2.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	cfg, _ := b2.chip.ReadConfig()
	for _, s := range []int{se.SlotDeviceKey, se.SlotDeviceCert, se.SlotSignerPubKey, se.SlotSignerCert} {
		if !cfg.SlotLocked(s) {
			t.Fatalf("slot %d not locked", s)
		}
	}
	if _, err := b2.chip.GenKey(se.SlotDeviceKey); !errors.Is(err, se.StatusExecution) {
		t.Fatalf("GenKey after lock: %v", err)
	}
	other := ca.issueSE(t, keys.CSR, hello.Serial, 5)
	if _, err := client2.InstallChain(ctx, proto.InstallChainRequest{Chain: other}); !errors.Is(err, proto.ErrLocked) {
		t.Fatalf("install over a locked chain: %v", err)
	}
	if err := client2.Lock(ctx); err != nil {
		t.Fatalf("second Lock: %v", err)
	}
	got, err = b2.ReadChain(ctx)
	if err != nil || !bytes.Equal(got[0], chain[0]) {
		t.Fatalf("chain after refused install: %v", err)
	}
}

func TestSEBackendRefusals(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	uri := "emulator:" + filepath.Join(dir, "atecc.json")
	b, closer := openEmulatedSE(t, uri)
	defer closer.Close()
	client := serveBackend(t, b)
	ca := newTestCA(t)

	if _, err := client.ReadChain(ctx); !errors.Is(err, proto.ErrNotProvisioned) {
		t.Fatalf("ReadChain before install: %v", err)
	}
	keys, err := client.CreateKeys(ctx, proto.CreateKeysRequest{Nonce: make([]byte, 16)})
	if err != nil {
		t.Fatal(err)
	}
	serial := b.Identity().Serial
	// A profile that cannot be compressed (one year as 365 days, random
	// serial) is refused before anything is written.
	bad := ca.issueSE(t, keys.CSR, serial, -1)
	_, err = client.InstallChain(ctx, proto.InstallChainRequest{Chain: bad})
	if !errors.Is(err, proto.ErrBadRequest) || !strings.Contains(err.Error(), "not compressible") {
		t.Fatalf("uncompressible chain: %v", err)
	}
	if _, err := os.Stat(DefaultCertDefPath(uri)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("definitions written for a refused chain")
	}
	// Leaf only: refused.
	good := ca.issueSE(t, keys.CSR, serial, 3)
	if _, err := client.InstallChain(ctx, proto.InstallChainRequest{Chain: good[:1]}); !errors.Is(err, proto.ErrBadRequest) {
		t.Fatalf("leaf only: %v", err)
	}
	// A certificate for another key: refused.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if _, err := client.InstallChain(ctx, proto.InstallChainRequest{Chain: ca.issueSE(t, csr, serial, 3)}); !errors.Is(err, proto.ErrBadRequest) {
		t.Fatalf("foreign key: %v", err)
	}
	if _, err := client.InstallChain(ctx, proto.InstallChainRequest{Chain: good}); err != nil {
		t.Fatal(err)
	}
	// Altered definitions: the rebuilt certificate no longer verifies.
	path := DefaultCertDefPath(uri)
	raw, _ := os.ReadFile(path)
	var defs certDefs
	if err := json.Unmarshal(raw, &defs); err != nil {
		t.Fatal(err)
	}
	defs.Device.TBS[len(defs.Device.TBS)-1] ^= 0x20 // a letter of the DNS name changes case
	altered, _ := json.Marshal(defs)
	if err := os.WriteFile(path, []byte(altered), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReadChain(ctx); err == nil {
		t.Fatal("ReadChain accepted altered definitions")
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReadChain(ctx); err != nil {
		t.Fatal(err)
	}
	in, err := b.Describe()
	if err != nil || len(in.Keys) != 1 || len(in.ChainNVIndices) != 3 {
		t.Fatalf("describe: %+v %v", in, err)
	}
}

func TestOpenSEURIs(t *testing.T) {
	for _, bad := range []string{"nope", "emulator:", "emulator:/tmp/x?fast=1", "spi:/dev/spidev0.0", "i2c:/dev/i2c-1@0x1ff"} {
		if _, _, err := OpenSE(bad); err == nil {
			t.Fatalf("OpenSE(%q) succeeded", bad)
		}
	}
	if got := DefaultCertDefPath("emulator:/a/b.json?timings=datasheet"); got != "/a/b.json.certdef.json" {
		t.Fatal(got)
	}
}

func mustParse(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSEBackendWithoutPersonalize(t *testing.T) {
	uri := "emulator:" + filepath.Join(t.TempDir(), "blank.json")
	chip, closer, err := OpenSE(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if _, err := NewSEBackend(chip, WithPersonalize(false)); err == nil {
		t.Fatal("blank chip accepted without personalisation")
	}
	cfg, _ := chip.ReadConfig()
	if cfg.ConfigLocked() {
		t.Fatal("WithPersonalize(false) locked the chip")
	}
	if _, err := chip.Personalize(); err != nil {
		t.Fatal(err)
	}
	b, err := NewSEBackend(chip, WithPersonalize(false))
	if err != nil {
		t.Fatal(err)
	}
	// No definition file configured: InstallChain and ReadChain say so.
	if _, err := b.ReadChain(context.Background()); err == nil || !strings.Contains(err.Error(), "--se-cert-def") {
		t.Fatalf("ReadChain without definitions path: %v", err)
	}
	if _, _, err := OpenSE("i2c:/dev/i2c-99@0x60"); err == nil {
		t.Fatal("opened a bus that does not exist")
	}
}
