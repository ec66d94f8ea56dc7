package ca_test

// Secure-element attestation checked against the byte-level ATECC608
// emulator (devices/se) as the simulated vendor manufactures it
// (devices/sim.SEVendor), through the real agent backend and protocol. Only
// this external test package imports devices; package ca does not.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/devices/agent"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/se"
	"github.com/wsc-project/wsc/devices/sim"
	"go.bug.st/serial"
)

func newSEVendor(t testing.TB) (*sim.SEVendor, *x509.CertPool) {
	t.Helper()
	v, err := sim.NewSEVendor()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(v.Root())
	return v, roots
}

// seAgent manufactures a chip with vendor v and serves its agent backend
// over an in-memory pipe with the real protocol.
func seAgent(t testing.TB, v *sim.SEVendor, opts ...se.ManufactureOption) *proto.Client {
	t.Helper()
	state := filepath.Join(t.TempDir(), sim.SEStateFile)
	if _, err := v.Manufacture(state, opts...); err != nil {
		t.Fatal(err)
	}
	uri := "emulator:" + state
	chip, closer, err := agent.OpenSE(uri)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closer.Close() })
	b, err := agent.NewSEBackend(chip, agent.WithCertDefPath(agent.DefaultCertDefPath(uri)))
	if err != nil {
		t.Fatal(err)
	}
	a, c := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	srv := proto.NewServer(a, agent.NewHandler(b, nil))
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

func evidenceOf(att *proto.SEAttestation, nonce []byte) ca.SEEvidence {
	return ca.SEEvidence{Serial: att.Serial, Config: att.Config, KeySlot: att.KeySlot, AttestationSlot: att.AttestationSlot,
		GenKeyMode: att.GenKeyMode, SignMode: att.SignMode, RandOut: att.RandOut, PublicKey: att.PublicKey,
		Signature: att.Signature, Chain: att.Chain, Nonce: nonce}
}

func nonce(t testing.TB) []byte {
	n := make([]byte, 32)
	if _, err := rand.Read(n); err != nil {
		t.Fatal(err)
	}
	return n
}

// createKeys runs CreateKeys and returns the evidence and the CSR's key.
func createKeys(t testing.TB, client *proto.Client) (ca.SEEvidence, *ecdsa.PublicKey, *proto.CreateKeysResponse) {
	t.Helper()
	n := nonce(t)
	resp, err := client.CreateKeys(context.Background(), proto.CreateKeysRequest{Nonce: n})
	if err != nil {
		t.Fatal(err)
	}
	if resp.SEAttestation == nil {
		t.Fatal("CreateKeys carries no SE attestation")
	}
	csr, err := x509.ParseCertificateRequest(resp.CSR)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("CSR: %v", err)
	}
	return evidenceOf(resp.SEAttestation, n), csr.PublicKey.(*ecdsa.PublicKey), resp
}

func wantSEErr(t *testing.T, err, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) || !errors.Is(err, ca.ErrAttestation) {
		t.Fatalf("got %v, want %v (wrapping ca.ErrAttestation)", err, sentinel)
	}
	// Each failure has its own sentinel: no other one matches.
	for _, other := range []error{ca.ErrSEEvidenceMalformed, ca.ErrSEMode, ca.ErrSENoChain, ca.ErrSEChainUntrusted,
		ca.ErrSESerialMismatch, ca.ErrSEConfigUnlocked, ca.ErrSESignature, ca.ErrSEKeyMismatch, ca.ErrSEKeyPolicy,
		ca.ErrSEAttestationKeyPolicy} {
		if other != sentinel && errors.Is(err, other) {
			t.Fatalf("%v also matches %v", err, other)
		}
	}
}

func TestVerifySEAttestationEndToEnd(t *testing.T) {
	v, roots := newSEVendor(t)
	defer v.Close()
	client := seAgent(t, v)
	ev, pub, resp := createKeys(t, client)
	if !resp.Created || ev.GenKeyMode != se.GenKeyModeCreate|se.GenKeyModeDigest || ev.SignMode != 0x40 || len(ev.Chain) != 2 {
		t.Fatalf("first CreateKeys: created %v, GenKey mode 0x%02x, Sign mode 0x%02x, chain %d", resp.Created, ev.GenKeyMode, ev.SignMode, len(ev.Chain))
	}
	id, err := ca.VerifySEAttestation(ev, pub, roots, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The documented chip id encoding.
	h := sha256.New()
	h.Write([]byte("wsc se chip id v1\x00"))
	h.Write(ev.Serial)
	h.Write([]byte{0, 0, byte(len(ev.Chain[0]) >> 8), byte(len(ev.Chain[0]))})
	h.Write(ev.Chain[0])
	if !bytes.Equal(id, h.Sum(nil)) {
		t.Fatalf("chip id %x is not the documented encoding", id)
	}
	// The signer is also accepted as a configured intermediate.
	inter := x509.NewCertPool()
	inter.AddCert(v.Signer())
	if _, err := ca.VerifySEAttestation(ev, pub, roots, inter); err != nil {
		t.Fatal(err)
	}

	// Second run on the same chip: the key is reused (GenKey 0x08), the
	// attestation is fresh (new nonce) and the chip id is the same.
	ev2, pub2, resp2 := createKeys(t, client)
	if resp2.Created || ev2.GenKeyMode != se.GenKeyModeDigest || !pub2.Equal(pub) {
		t.Fatalf("second CreateKeys: created %v, mode 0x%02x, same key %v", resp2.Created, ev2.GenKeyMode, pub2.Equal(pub))
	}
	id2, err := ca.VerifySEAttestation(ev2, pub2, roots, nil)
	if err != nil || !bytes.Equal(id, id2) {
		t.Fatalf("second attestation: %v, same chip id %v", err, bytes.Equal(id, id2))
	}
	// Replay of the first attestation against the second run's nonce fails.
	replay := ev
	replay.Nonce = ev2.Nonce
	_, err = ca.VerifySEAttestation(replay, pub, roots, nil)
	wantSEErr(t, err, ca.ErrSESignature)

	// Another chip of the same vendor has another id.
	other := seAgent(t, v)
	evB, pubB, _ := createKeys(t, other)
	idB, err := ca.VerifySEAttestation(evB, pubB, roots, nil)
	if err != nil || bytes.Equal(idB, id) {
		t.Fatalf("second chip: %v, same id %v", err, bytes.Equal(idB, id))
	}
	// Its chain with the first chip's attestation: serial mismatch.
	mixed := ev
	mixed.Chain = evB.Chain
	_, err = ca.VerifySEAttestation(mixed, pub, roots, nil)
	wantSEErr(t, err, ca.ErrSESerialMismatch)
}

func TestVerifySEAttestationRefusals(t *testing.T) {
	v, roots := newSEVendor(t)
	defer v.Close()
	client := seAgent(t, v)
	good, pub, _ := createKeys(t, client)
	if _, err := ca.VerifySEAttestation(good, pub, roots, nil); err != nil {
		t.Fatal(err)
	}
	foreign, foreignRoots := newSEVendor(t)
	defer foreign.Close()
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherXY, _ := se.PublicKeyBytes(&otherKey.PublicKey)

	clone := func(f func(*ca.SEEvidence)) ca.SEEvidence {
		e := good
		e.Serial = bytes.Clone(good.Serial)
		e.Config = bytes.Clone(good.Config)
		e.PublicKey = bytes.Clone(good.PublicKey)
		e.Signature = bytes.Clone(good.Signature)
		e.Chain = append([][]byte(nil), good.Chain...)
		f(&e)
		return e
	}
	cases := []struct {
		name  string
		ev    ca.SEEvidence
		pub   *ecdsa.PublicKey
		roots *x509.CertPool
		want  error
	}{
		{"no manufacturer chain", clone(func(e *ca.SEEvidence) { e.Chain = nil }), pub, roots, ca.ErrSENoChain},
		{"chain to a foreign vendor root", good, pub, foreignRoots, ca.ErrSEChainUntrusted},
		{"no vendor roots configured", good, pub, nil, ca.ErrSEChainUntrusted},
		{"signer only, device certificate missing", clone(func(e *ca.SEEvidence) { e.Chain = e.Chain[1:] }), pub, roots, ca.ErrSEChainUntrusted},
		{"CSR for another key", good, &otherKey.PublicKey, roots, ca.ErrSEKeyMismatch},
		{"attestation claims another key", clone(func(e *ca.SEEvidence) { e.PublicKey = otherXY }), &otherKey.PublicKey, roots, ca.ErrSESignature},
		{"key slot config edited to look secret", clone(func(e *ca.SEEvidence) { e.Config[20] ^= 0x04 }), pub, roots, ca.ErrSESignature},
		{"key slot lock bit edited", clone(func(e *ca.SEEvidence) { e.Config[88] ^= 0x01 }), pub, roots, ca.ErrSESignature},
		{"config zone unlocked", clone(func(e *ca.SEEvidence) { e.Config[87] = 0x55 }), pub, roots, ca.ErrSEConfigUnlocked},
		{"data zone unlocked", clone(func(e *ca.SEEvidence) { e.Config[86] = 0x55 }), pub, roots, ca.ErrSEConfigUnlocked},
		{"wrong serial in the evidence", clone(func(e *ca.SEEvidence) { e.Serial[5] ^= 1 }), pub, roots, ca.ErrSESerialMismatch},
		{"serial edited in evidence and config", clone(func(e *ca.SEEvidence) { e.Serial[5] ^= 1; e.Config[9] ^= 1 }), pub, roots, ca.ErrSESerialMismatch},
		{"other key slot claimed", clone(func(e *ca.SEEvidence) { e.KeySlot = 1 }), pub, roots, ca.ErrSESignature},
		{"GenKey stored-public-key digest mode", clone(func(e *ca.SEEvidence) { e.GenKeyMode = 0x10 }), pub, roots, ca.ErrSEMode},
		{"Sign without serial", clone(func(e *ca.SEEvidence) { e.SignMode = 0x00 }), pub, roots, ca.ErrSEMode},
		{"flipped signature", clone(func(e *ca.SEEvidence) { e.Signature[40] ^= 1 }), pub, roots, ca.ErrSESignature},
		{"short config", clone(func(e *ca.SEEvidence) { e.Config = e.Config[:127] }), pub, roots, ca.ErrSEEvidenceMalformed},
		{"same slot twice", clone(func(e *ca.SEEvidence) { e.AttestationSlot = e.KeySlot }), pub, roots, ca.ErrSEEvidenceMalformed},
		{"no nonce", clone(func(e *ca.SEEvidence) { e.Nonce = nil }), pub, roots, ca.ErrSEEvidenceMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.VerifySEAttestation(tc.ev, tc.pub, tc.roots, nil)
			wantSEErr(t, err, tc.want)
		})
	}
}

// TestVerifySEAttestationChipWithoutChain: a chip that has an attestation
// key but no manufacturer certificates attests, and is refused.
func TestVerifySEAttestationChipWithoutChain(t *testing.T) {
	v, roots := newSEVendor(t)
	defer v.Close()
	client := seAgent(t, v, se.WithoutMfgCertificates())
	ev, pub, _ := createKeys(t, client)
	if len(ev.Chain) != 0 {
		t.Fatalf("chip without certificates sent a chain of %d", len(ev.Chain))
	}
	_, err := ca.VerifySEAttestation(ev, pub, roots, nil)
	wantSEErr(t, err, ca.ErrSENoChain)
}

// driverEvidence manufactures a chip whose configuration f changes before
// the lock and attests slot 0 with the driver directly (the agent refuses
// such a chip before it attests anything).
func driverEvidence(t *testing.T, v *sim.SEVendor, f func(*se.Config)) (ca.SEEvidence, *ecdsa.PublicKey, *se.Chip) {
	t.Helper()
	chip := se.New(se.NewEmulator(), se.DefaultAddress)
	defs, err := chip.Manufacture(v.Issue, se.WithFactoryConfig(f))
	if err != nil {
		t.Fatal(err)
	}
	n := nonce(t)
	ka, err := chip.AttestKey(se.SlotDeviceKey, se.SlotAttestationKey, true, se.NumInFromNonce(n))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := chip.ReadConfig()
	if err != nil {
		t.Fatal(err)
	}
	chain, err := chip.ReadMfgChain(defs, cfg.SerialNumber())
	if err != nil {
		t.Fatal(err)
	}
	sn := cfg.SerialNumber()
	xy, _ := se.PublicKeyBytes(ka.PublicKey)
	return ca.SEEvidence{Serial: sn[:], Config: cfg.Raw[:], KeySlot: uint8(ka.Slot), AttestationSlot: uint8(ka.AttestationSlot),
		GenKeyMode: ka.GenKeyMode, SignMode: ka.SignMode, RandOut: ka.RandOut[:], PublicKey: xy, Signature: ka.Signature[:],
		Chain: chain, Nonce: n}, ka.PublicKey, chip
}

// TestVerifySEAttestationSlotPolicies: genuine attestations (the chip
// signed them) of keys in slots configured to let the key out, and of an
// attestation key that also signs host digests, are refused.
func TestVerifySEAttestationSlotPolicies(t *testing.T) {
	v, roots := newSEVendor(t)
	defer v.Close()
	// Control: the factory configuration passes.
	ev, pub, _ := driverEvidence(t, v, func(*se.Config) {})
	if _, err := ca.VerifySEAttestation(ev, pub, roots, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sc   se.SlotConfig
	}{
		{"IsSecret clear", 0x2003},
		{"PrivWrite allowed", 0x6083},
		{"EncryptRead set", 0x20C3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, pub, _ := driverEvidence(t, v, func(c *se.Config) { c.SetSlotConfig(se.SlotDeviceKey, tc.sc) })
			_, err := ca.VerifySEAttestation(ev, pub, roots, nil)
			wantSEErr(t, err, ca.ErrSEKeyPolicy)
		})
	}

	// An attestation key that may sign external digests: the host can forge
	// an "attestation" of a software key. The forgery verifies
	// cryptographically; the policy check refuses it.
	ev, _, chip := driverEvidence(t, v, func(c *se.Config) { c.SetSlotConfig(se.SlotAttestationKey, 0x0083) })
	soft, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged := ev
	forged.PublicKey, _ = se.PublicKeyBytes(&soft.PublicKey)
	cfg, _ := se.ParseConfig(ev.Config)
	var randOut [32]byte
	copy(randOut[:], ev.RandOut)
	ka := &se.KeyAttestation{Slot: int(ev.KeySlot), AttestationSlot: int(ev.AttestationSlot), GenKeyMode: ev.GenKeyMode,
		SignMode: ev.SignMode, RandOut: randOut, PublicKey: &soft.PublicKey}
	msg, err := ka.Message(cfg, se.NumInFromNonce(ev.Nonce))
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(msg[:])
	rs, err := chip.Sign(se.SlotAttestationKey, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	forged.Signature = rs[:]
	_, err = ca.VerifySEAttestation(forged, &soft.PublicKey, roots, nil)
	wantSEErr(t, err, ca.ErrSEAttestationKeyPolicy)

	// With the factory policy (internal Sign only) the chip refuses to sign
	// the host's digest at all.
	_, _, good := driverEvidence(t, v, func(*se.Config) {})
	if _, err := good.Sign(se.SlotAttestationKey, digest[:]); !errors.Is(err, se.StatusExecution) {
		t.Fatalf("external Sign with the attestation key: %v", err)
	}
}

// FuzzVerifySEAttestation: arbitrary evidence never panics and is refused
// with ErrAttestation.
func FuzzVerifySEAttestation(f *testing.F) {
	f.Add([]byte{1, 2, 3}, []byte{}, uint8(0), uint8(2), uint8(0x0C), uint8(0x40), []byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Add(bytes.Repeat([]byte{0}, 9+128+32+64+64+32), []byte{0x30}, uint8(0), uint8(2), uint8(0x08), uint8(0x40), []byte{})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	roots := x509.NewCertPool()
	f.Fuzz(func(t *testing.T, blob, cert []byte, ks, as, gm, sm uint8, extra []byte) {
		take := func(n int) []byte {
			if len(blob) < n {
				n = len(blob)
			}
			b := blob[:n]
			blob = blob[n:]
			return b
		}
		ev := ca.SEEvidence{Serial: take(9), Config: take(128), RandOut: take(32), PublicKey: take(64), Signature: take(64),
			Nonce: take(32), KeySlot: ks, AttestationSlot: as, GenKeyMode: gm, SignMode: sm, Chain: [][]byte{cert, extra}}
		if _, err := ca.VerifySEAttestation(ev, &key.PublicKey, roots, nil); !errors.Is(err, ca.ErrAttestation) {
			t.Fatalf("fuzzed evidence: %v", err)
		}
	})
}

// TestVerifySEAttestationOverPTY: the whole path with real parts — a bench
// of simulated SE devices (chips made by the simulated vendor, whose CA
// keys are gone once the bench runs), the real wsc-agent binary on a real
// pseudo-terminal, the station's end speaking the protocol, and the vendor
// certificates the bench published.
func TestVerifySEAttestationOverPTY(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "wsc-agent")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/wsc-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, out)
	}
	b, err := sim.StartBench(context.Background(), sim.BenchConfig{Dir: filepath.Join(dir, "ws"), N: 2, Mix: []string{sim.KindSE}, AgentBinary: bin})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.SEVendorRoot == "" || b.SEVendorIssuer == "" || b.VendorRoot != "" {
		t.Fatalf("bench vendor paths: SE %q %q, TPM %q", b.SEVendorRoot, b.SEVendorIssuer, b.VendorRoot)
	}
	pool := func(path string) *x509.CertPool {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(raw) {
			t.Fatalf("%s: no certificate", path)
		}
		return p
	}
	roots, inter := pool(b.SEVendorRoot), pool(b.SEVendorIssuer)
	ids := map[string]bool{}
	for _, d := range b.Devices {
		port, err := serial.Open(d.Port, &serial.Mode{BaudRate: 115200})
		if err != nil {
			t.Fatal(err)
		}
		client := proto.NewClient(port)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		hello, err := client.Hello(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if hello.Backend != "se" || hello.Serial != d.Serial || !slices.Contains(hello.Capabilities, agent.CapKeyAttestation) {
			t.Fatalf("hello %+v", hello)
		}
		ev, pub, _ := createKeys(t, client)
		id, err := ca.VerifySEAttestation(ev, pub, roots, inter)
		if err != nil {
			t.Fatalf("%s: %v", d.Serial, err)
		}
		ids[string(id)] = true
		// An empty root pool trusts nothing.
		if _, err := ca.VerifySEAttestation(ev, pub, x509.NewCertPool(), nil); !errors.Is(err, ca.ErrSEChainUntrusted) {
			t.Fatalf("empty root pool: %v", err)
		}
		cancel()
		_ = client.Close()
		_ = port.Close()
	}
	if len(ids) != 2 {
		t.Fatalf("%d distinct chip ids for 2 chips", len(ids))
	}
}
