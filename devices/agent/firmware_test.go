package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/wsc-project/wsc/devices/anchors"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/sim/simtest"
	"github.com/wsc-project/wsc/devices/tpm"
	"github.com/wsc-project/wsc/wasmsign"
)

// answerModule is (func (export "answer") (result i32) i32.const 42).
var answerModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f,
	0x03, 0x02, 0x01, 0x00,
	0x07, 0x0a, 0x01, 0x06, 'a', 'n', 's', 'w', 'e', 'r', 0x00, 0x00,
	0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x2a, 0x0b,
}

// fwPKI is a firmware-signing PKI: root, intermediate, a release signer
// (codeSigning), and CRLs with numbers.
type fwPKI struct {
	root, inter, leaf *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
	leafKey           *ecdsa.PrivateKey
}

func newFWPKI(t testing.TB, name string) *fwPKI {
	t.Helper()
	p := &fwPKI{}
	p.rootKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.interKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.leafKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	mk := func(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, key *ecdsa.PrivateKey) *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c
	}
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " root"}, NotBefore: now.Add(-24 * time.Hour),
		NotAfter: now.AddDate(20, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	p.root = mk(rt, rt, &p.rootKey.PublicKey, p.rootKey)
	it := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name + " release CA"}, NotBefore: now.Add(-24 * time.Hour),
		NotAfter: now.AddDate(5, 0, 0), IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	p.inter = mk(it, p.root, &p.interKey.PublicKey, p.rootKey)
	lt := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: name + " release signer", SerialNumber: "REL-1"},
		NotBefore: now.Add(-24 * time.Hour), NotAfter: now.AddDate(2, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	p.leaf = mk(lt, p.inter, &p.leafKey.PublicKey, p.interKey)
	return p
}

// bundle returns PEM: root, intermediate, root CRL number rootN, release
// CA CRL number interN, both issued an hour ago.
func (p *fwPKI) bundle(t testing.TB, rootN, interN int64) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, c := range []*x509.Certificate{p.root, p.inter} {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	now := time.Now()
	for _, x := range []struct {
		ca  *x509.Certificate
		key *ecdsa.PrivateKey
		n   int64
	}{{p.root, p.rootKey, rootN}, {p.inter, p.interKey, interN}} {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(x.n),
			ThisUpdate: now.Add(-time.Hour), NextUpdate: now.AddDate(0, 1, 0)}, x.ca, x.key)
		if err != nil {
			t.Fatal(err)
		}
		_ = pem.Encode(&b, &pem.Block{Type: "X509 CRL", Bytes: der})
	}
	return b.Bytes()
}

// module returns answerModule with a manifest, signed by the release signer.
func (p *fwPKI) module(t testing.TB, m wasmsign.Manifest) []byte {
	t.Helper()
	m.Format = wasmsign.ManifestFormat
	if m.Component == "" {
		m.Component = "sensor-fw"
	}
	if m.DeviceClass == "" {
		m.DeviceClass = "gw-1"
	}
	mod, err := wasmsign.AddManifest(answerModule, &m)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := wasmsign.Sign(mod, p.leafKey, []*x509.Certificate{p.leaf, p.inter}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// startTPM runs a fresh swtpm (no EK is needed here) and returns a Device.
func startTPM(t testing.TB) *tpm.Device { return startTPMProfile(t, "") }

// startTPMProfile is startTPM with a chip latency profile.
func startTPMProfile(t testing.TB, profile string) *tpm.Device {
	t.Helper()
	tr, err := tpm.OpenTransport(simtest.Blank(t).URI())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	cfg := tpm.DefaultConfig()
	tr, err = tpm.WithLatencyProfile(tr, profile)
	if err != nil {
		t.Fatal(err)
	}
	d, err := tpm.New(tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// provisionTrust does what the station does at end of line, over the
// agent's protocol handler: owner auth, counter, anchors written + locked.
func provisionTrust(t testing.TB, h *Handler, p *anchors.Policy) {
	t.Helper()
	ctx := context.Background()
	call := func(mt proto.MsgType, req any) any {
		b, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := h.Handle(ctx, mt, b)
		if err != nil {
			t.Fatalf("%s: %v", mt, err)
		}
		return resp
	}
	if _, ok := h.b.(OwnerAuthSetter); ok {
		call(proto.MsgSetOwnerAuth, proto.SetOwnerAuthRequest{NewAuth: bytes.Repeat([]byte{0x5a}, 32)})
	} else {
		b, _ := proto.Marshal(proto.SetOwnerAuthRequest{NewAuth: bytes.Repeat([]byte{0x5a}, 32)})
		if _, err := h.Handle(ctx, proto.MsgSetOwnerAuth, b); !errors.Is(err, proto.ErrUnsupported) {
			t.Fatalf("SetOwnerAuth on a backend without owner auth: %v", err)
		}
	}
	p.CounterBase = call(proto.MsgSetupCounter, proto.SetupCounterRequest{}).(*proto.SetupCounterResponse).Value
	enc, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	wr := call(proto.MsgWriteAnchors, proto.WriteAnchorsRequest{Anchors: enc, Lock: true}).(*proto.WriteAnchorsResponse)
	if !bytes.Equal(wr.Anchors, enc) || !wr.Locked {
		t.Fatalf("read back after write: equal %v locked %v", bytes.Equal(wr.Anchors, enc), wr.Locked)
	}
	// A rewrite with other content is refused as locked, not as a device error.
	other := *p
	other.Version++
	enc2, _ := other.Marshal()
	b, _ := proto.Marshal(proto.WriteAnchorsRequest{Anchors: enc2})
	if _, err := h.Handle(ctx, proto.MsgWriteAnchors, b); !errors.Is(err, proto.ErrLocked) {
		t.Fatalf("rewrite of locked anchors: %v", err)
	}
}

func runAnswer(t testing.TB, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	mod, err := r.Instantiate(ctx, b)
	if err != nil {
		t.Fatalf("instantiate %s: %v", path, err)
	}
	got, err := mod.ExportedFunction("answer").Call(ctx)
	if err != nil || len(got) != 1 || got[0] != 42 {
		t.Fatalf("answer() = %v, %v", got, err)
	}
}

// TestFirmwareInstallMatrixTPM is the accept/refuse matrix of issue 15 on
// swtpm: trust anchors and the counter in the TPM, A/B slots on disk.
func TestFirmwareInstallMatrixTPM(t *testing.T) {
	dev := startTPM(t)
	b, err := NewTPMBackend(dev, "DEV-1")
	if err != nil {
		t.Fatal(err)
	}
	runFirmwareMatrix(t, b, "DEV-1")
}

// TestFirmwareInstallMatrixSE is the same matrix on the ATECC608
// emulator: anchors in data slot 8 (slot-locked), monotonic counter 0.
func TestFirmwareInstallMatrixSE(t *testing.T) {
	b, closer := openEmulatedSE(t, "emulator:"+filepath.Join(t.TempDir(), "atecc.json"))
	t.Cleanup(func() { closer.Close() })
	runFirmwareMatrix(t, b, b.Identity().Serial)
}

func runFirmwareMatrix(t *testing.T, ts TrustStore, serial string) {
	ctx := context.Background()
	pki := newFWPKI(t, "good")
	evil := newFWPKI(t, "evil")
	policy := &anchors.Policy{Version: 1, DeviceClass: "gw-1", Roots: []anchors.Fingerprint{anchors.RootFingerprint(pki.root)},
		CRLFloors: []anchors.CRLFloor{{Issuer: anchors.IssuerID(pki.inter.RawSubject), MinNumber: 5}, {Issuer: anchors.IssuerID(pki.root.RawSubject), MinNumber: 2}}}
	if be, ok := ts.(Backend); ok {
		provisionTrust(t, NewHandler(be, nil), policy)
	}
	fw := &Firmware{Store: ts, Serial: serial}
	dir := t.TempDir()
	slots := &Slots{Dir: filepath.Join(dir, "slots")}
	bundle := pki.bundle(t, 2, 5)
	install := func(mod []byte, bundle []byte) (*FirmwareResult, error) {
		return slots.Install(ctx, fw, bytes.NewReader(mod), bundle)
	}
	v2 := pki.module(t, wasmsign.Manifest{Version: 2, MinVersion: 2})

	// Valid module: installed as pending, runs, commit advances the counter.
	res, err := install(v2, bundle)
	if err != nil || !res.Accepted || res.Manifest.Version != 2 || res.TrustedTime.IsZero() {
		t.Fatalf("valid module: %+v %v", res, err)
	}
	st, _ := slots.State()
	if st.Pending != "a" || st.Active != "" {
		t.Fatalf("state after first install: %+v", st)
	}
	runAnswer(t, slots.SlotPath("a"))
	before, _ := ts.Counter(ctx)
	if _, err := slots.Commit(ctx, fw, bundle); err != nil {
		t.Fatal(err)
	}
	after, _ := ts.Counter(ctx)
	if after != before+2 {
		t.Fatalf("counter %d -> %d, want +2", before, after)
	}
	if p, _ := slots.Runnable(); p != slots.SlotPath("a") {
		t.Fatalf("runnable %q", p)
	}

	refusals := []struct {
		name   string
		mod    []byte
		bundle []byte
		want   error
	}{
		{"root not in chip", evil.module(t, wasmsign.Manifest{Version: 9, MinVersion: 9}), append(bytes.Clone(bundle), evil.bundle(t, 2, 5)...), ErrRootNotAnchored},
		{"anchors file swapped on disk", evil.module(t, wasmsign.Manifest{Version: 9, MinVersion: 9}), evil.bundle(t, 2, 5), ErrRootNotAnchored},
		{"good module, swapped bundle", v2, evil.bundle(t, 100, 100), ErrRootNotAnchored},
		{"older version", pki.module(t, wasmsign.Manifest{Version: 1, MinVersion: 1}), bundle, ErrRollback},
		{"CRL older than the chip minimum", pki.module(t, wasmsign.Manifest{Version: 3, MinVersion: 3}), pki.bundle(t, 2, 4), ErrCRLRollback},
		{"root CRL older than the chip minimum", pki.module(t, wasmsign.Manifest{Version: 3, MinVersion: 3}), pki.bundle(t, 1, 9), ErrCRLRollback},
		{"another device class", pki.module(t, wasmsign.Manifest{Version: 3, MinVersion: 3, DeviceClass: "gw-2"}), bundle, ErrWrongClass},
		{"another serial", pki.module(t, wasmsign.Manifest{Version: 3, MinVersion: 3, Serials: []string{"DEV-2"}}), bundle, ErrNotForSerial},
		{"expired before the CRL time", pki.module(t, wasmsign.Manifest{Version: 3, MinVersion: 3, Expires: time.Now().Add(-2 * time.Hour).Unix()}), bundle, ErrManifestExpired},
		{"no manifest", mustSign(t, pki), bundle, ErrNoManifest},
		{"tampered", flipLast(pki.module(t, wasmsign.Manifest{Version: 3, MinVersion: 3})), bundle, wasmsign.ErrHashMismatch},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := slots.State()
			res, err := install(tc.mod, tc.bundle)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrRefused) || res == nil || res.Accepted {
				t.Fatalf("install: %v (accepted %v), want %v", err, res != nil && res.Accepted, tc.want)
			}
			after, _ := slots.State()
			if *before != *after {
				t.Fatalf("refused install changed the slot state: %+v -> %+v", before, after)
			}
			if _, err := os.Stat(slots.SlotPath("b")); !os.IsNotExist(err) {
				t.Fatalf("refused module written to a slot: %v", err)
			}
		})
	}

	// Same version again: accepted (reinstall), committed, counter unchanged.
	if res, err := install(v2, bundle); err != nil || !res.Accepted {
		t.Fatalf("same version: %v", err)
	}
	if _, err := slots.Commit(ctx, fw, bundle); err != nil {
		t.Fatal(err)
	}
	if c, _ := ts.Counter(ctx); c != after {
		t.Fatalf("counter moved on a same-version commit: %d -> %d", after, c)
	}
	if p, _ := slots.Runnable(); p != slots.SlotPath("b") {
		t.Fatalf("runnable after reinstall %q", p)
	}

	// Crash between install and commit: the previous module stays runnable.
	v3 := pki.module(t, wasmsign.Manifest{Version: 3, MinVersion: 3})
	for _, point := range []string{"copied", "slot-written"} {
		hits := 0
		slots.crash = func(p string) error {
			if p == point {
				hits++
				return fmt.Errorf("power cut at %s", p)
			}
			return nil
		}
		_, err := install(v3, bundle)
		if err == nil || hits != 1 {
			t.Fatalf("crash at %s: %v, %d hits", point, err, hits)
		}
		st, _ := slots.State()
		if st.Active != "b" || st.Pending != "" {
			t.Fatalf("crash at %s changed the state: %+v", point, st)
		}
	}
	slots.crash = nil
	if _, err := install(v3, bundle); err != nil {
		t.Fatal(err)
	}
	prev, _ := slots.Runnable()
	if prev != slots.SlotPath("b") {
		t.Fatalf("runnable between install and commit: %q", prev)
	}
	if res, err := fw.Verify(ctx, mustOpen(t, prev), bundle); err != nil || res.Manifest.Version != 2 {
		t.Fatalf("previous module no longer verifies: %v", err)
	}
	runAnswer(t, prev)
	// A commit cut after the first counter step is finished by commit again.
	hits := 0
	slots.crash = func(p string) error {
		if p == "counter-advanced" {
			hits++
			return errors.New("power cut")
		}
		return nil
	}
	if _, err := slots.Commit(ctx, fw, bundle); err == nil || hits != 1 {
		t.Fatalf("cut commit: %v, %d hits", err, hits)
	}
	slots.crash = nil
	if p, _ := slots.Runnable(); p != slots.SlotPath("b") {
		t.Fatalf("runnable after a cut commit: %q", p)
	}
	if _, err := slots.Commit(ctx, fw, bundle); err != nil {
		t.Fatal(err)
	}
	if c, _ := ts.Counter(ctx); c != after+1 {
		t.Fatalf("counter after v3 commit %d, want %d", c, after+1)
	}
	runAnswer(t, mustRunnable(t, slots))
	// v2 is now below the counter.
	if _, err := install(v2, bundle); !errors.Is(err, ErrRollback) {
		t.Fatalf("v2 after v3 commit: %v", err)
	}
	if _, err := slots.Commit(ctx, fw, bundle); !errors.Is(err, ErrNothingPending) {
		t.Fatalf("commit with nothing pending: %v", err)
	}
}

func mustSign(t testing.TB, p *fwPKI) []byte {
	signed, err := wasmsign.Sign(answerModule, p.leafKey, []*x509.Certificate{p.leaf, p.inter}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func flipLast(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)-2] ^= 1
	return b
}

func mustOpen(t testing.TB, p string) *os.File {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func mustRunnable(t testing.TB, s *Slots) string {
	p, err := s.Runnable()
	if err != nil || p == "" {
		t.Fatalf("runnable: %q %v", p, err)
	}
	return p
}
