package station

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/agent"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/sim"
	"go.bug.st/serial"
)

// softBoard is a rogue (or, under an unattested policy, an honest token-less)
// device: an agent.Backend whose key is a software key in this process. It
// answers over a real pseudo-terminal through the real protocol server.
type softBoard struct {
	backend, serial string
	caps            []string
	key             crypto.Signer
	// signWith, when set, signs end-of-line digests with another key.
	signWith crypto.Signer
	// ek, when set, makes the board claim a TPM's endorsement key (public
	// data anyone can read from that TPM) and answer CreateKeys with keys.
	ek   *proto.GetEKResponse
	keys *proto.CreateKeysResponse
	// readErr, when set, fails ReadChain.
	readErr error

	mu    sync.Mutex
	chain [][]byte
}

func (b *softBoard) Identity() agent.Identity {
	return agent.Identity{Backend: b.backend, Serial: b.serial, Model: "rogue", Capabilities: b.caps}
}

func (b *softBoard) CreateKeys(_ context.Context, _ []byte, _ string) (*agent.KeyEvidence, error) {
	if b.keys != nil {
		k := b.keys
		return &agent.KeyEvidence{IAKPublic: k.IAKPublic, IDevIDPublic: k.IDevIDPublic, CertifyInfo: k.CertifyInfo,
			CertifySignature: k.CertifySignature, CSR: k.CSR}, nil
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: b.serial}}, b.key)
	if err != nil {
		return nil, err
	}
	return &agent.KeyEvidence{CSR: csr, Created: true}, nil
}

func (b *softBoard) InstallChain(_ context.Context, chain [][]byte, _ bool) ([]uint32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.chain = chain
	return []uint32{1}, nil
}

func (b *softBoard) ReadChain(context.Context) ([][]byte, error) {
	if b.readErr != nil {
		return nil, b.readErr
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.chain, nil
}

func (b *softBoard) SignDigest(_ context.Context, digest []byte) ([]byte, error) {
	k := b.key
	if b.signWith != nil {
		k = b.signWith
	}
	return k.Sign(rand.Reader, digest, crypto.SHA256)
}

func (b *softBoard) Lock(context.Context) error { return nil }

// claimsTPM is a softBoard that also claims a TPM's endorsement key.
type claimsTPM struct{ *softBoard }

func (b claimsTPM) EK(context.Context) (public, cert []byte, kind string, err error) {
	return b.ek.EKPublic, b.ek.EKCert, "ecc", nil
}

func (b claimsTPM) ActivateCredential(context.Context, []byte, []byte) ([]byte, error) {
	// It cannot: the EK's private key is in the victim's TPM.
	return make([]byte, 32), nil
}

// serveBoard serves backend on a new simulated cable and returns the
// station's port.
func serveBoard(t *testing.T, backend agent.Backend) string {
	t.Helper()
	link, err := sim.NewLink(nil)
	if err != nil {
		t.Fatal(err)
	}
	port, err := serial.Open(link.AgentPath, &serial.Mode{BaudRate: 115200})
	if err != nil {
		link.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = proto.NewServer(port, agent.NewHandler(backend, nil), proto.WithLogger(slog.New(slog.DiscardHandler))).Serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		port.Close()
		<-done
		link.Close()
	})
	return link.StationPath
}

func p256(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// liveCert returns the device's live certificate serial ("" when none).
func liveCert(t *testing.T, s *db.Store, serial string) string {
	t.Helper()
	c, err := s.LiveCertificate(context.Background(), serial)
	if errors.Is(err, db.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialHex
}

// TestRogueDevices attacks a station whose work order accepts TPM proofs
// only, after a genuine device (the victim) was provisioned. Each rogue is
// refused with its own sentinel and instruction; afterwards no rogue holds a
// live certificate and the victim's certificate is untouched.
func TestRogueDevices(t *testing.T) {
	ctx := context.Background()
	l := newTestLine(t, 2, "")
	victim, other := l.bench.Devices[0], l.bench.Devices[1]
	res, err := l.prov.Provision(ctx, Job{Slot: 1, Port: victim.Port})
	if err != nil {
		t.Fatalf("victim: %v", err)
	}
	if res.Proof != ca.ProofTPM || ca.CertificateProof(res.Chain[0], nil) != ca.ProofTPM {
		t.Fatalf("victim's certificate rests on %q / says %q, want tpm", res.Proof, ca.CertificateProof(res.Chain[0], nil))
	}
	victimCert := liveCert(t, l.store, victim.Serial)

	// The victim's public endorsement data and a recording of its genuine
	// CreateKeys answer (to an old nonce), as an attacker with the board on
	// their own bench could collect them.
	if err := victim.StopAgent(); err != nil {
		t.Fatal(err)
	}
	rec := recordGenuine(t, victim)

	cases := []struct {
		name string
		b    agent.Backend
		want error
	}{
		{"software key says pkcs11", &softBoard{backend: "pkcs11", serial: "ROGUE-1", key: p256(t)}, ErrNoProof},
		{"software key says se", &softBoard{backend: "se", serial: "ROGUE-2", key: p256(t)}, ErrNoProof},
		{"software key says TPM", &softBoard{backend: "TPM", serial: "ROGUE-3", key: p256(t)}, ErrNoProof},
		{"software key says nothing", &softBoard{backend: "", serial: "ROGUE-4", key: p256(t)}, ErrNoProof},
		{"software key says tpm without attestation", &softBoard{backend: "tpm", serial: "ROGUE-5", key: p256(t)}, ErrNoProof},
		{"software key claims the victim's EK and serial", claimsTPM{&softBoard{backend: "tpm", serial: victim.Serial, key: p256(t),
			caps: []string{"nv-chain"}, ek: rec.ek, keys: &proto.CreateKeysResponse{IAKPublic: rec.keys.IAKPublic, IDevIDPublic: rec.keys.IDevIDPublic,
				CertifyInfo: rec.keys.CertifyInfo, CertifySignature: rec.keys.CertifySignature, CSR: mustCSR(t, p256(t))}}}, ErrAttestation},
		{"replay of the victim's genuine evidence to an old nonce", claimsTPM{&softBoard{backend: "tpm", serial: victim.Serial, key: p256(t),
			ek: rec.ek, keys: rec.keys}}, ErrAttestation},
		{"serial of 200 KB", &softBoard{backend: "tpm", serial: strings.Repeat("S", 200<<10), key: p256(t)}, ErrSerialInvalid},
		{"serial with a terminal escape and a newline", &softBoard{backend: "tpm", serial: "SIM\x1b[2J\nFORGED", key: p256(t)}, ErrSerialInvalid},
		{"serial that climbs out of a folder", &softBoard{backend: "tpm", serial: "../../etc/x", key: p256(t)}, ErrSerialInvalid},
		{"serial formula for a spreadsheet", &softBoard{backend: "tpm", serial: "=HYPERLINK(1)", key: p256(t)}, ErrSerialInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			port := serveBoard(t, tc.b)
			_, err := l.prov.Provision(ctx, Job{Slot: 2, Port: port})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var se *StepError
			if !errors.As(err, &se) || se.Instruction == "" || strings.Contains(se.Instruction, "Reseat") {
				t.Errorf("instruction %q: want the refusal's own instruction", se.Instruction)
			}
			serial := tc.b.Identity().Serial
			if serial != victim.Serial && len(serial) <= MaxSerialLen {
				if sn := liveCert(t, l.store, serial); sn != "" {
					t.Errorf("rogue %q holds live certificate %s", serial, sn)
				}
			}
			if got := liveCert(t, l.store, victim.Serial); got != victimCert {
				t.Errorf("victim's live certificate is %q, was %q", got, victimCert)
			}
		})
	}

	// A genuine TPM (the other device) claiming the victim's serial: its EK
	// is not the one the victim's serial is bound to.
	t.Run("genuine TPM claims the victim's serial", func(t *testing.T) {
		port, _ := restartAs(t, other, victim.Serial)
		_, err := l.prov.Provision(ctx, Job{Slot: 2, Port: port})
		if !errors.Is(err, ErrChipMismatch) {
			t.Fatalf("err = %v, want ErrChipMismatch", err)
		}
		if got := liveCert(t, l.store, victim.Serial); got != victimCert {
			t.Errorf("victim's live certificate is %q, was %q", got, victimCert)
		}
	})
	// The victim's own TPM, reset (keys evicted) and claiming a new serial:
	// one chip, one serial.
	t.Run("genuine TPM reset claims another serial", func(t *testing.T) {
		port, _ := restartAs(t, victim, "T-9999")
		c := dial(t, port)
		if err := c.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		c.Close()
		_, err := l.prov.Provision(ctx, Job{Slot: 2, Port: port})
		if !errors.Is(err, ErrChipMismatch) {
			t.Fatalf("err = %v, want ErrChipMismatch", err)
		}
		if sn := liveCert(t, l.store, "T-9999"); sn != "" {
			t.Errorf("reset TPM holds live certificate %s under the new serial", sn)
		}
		if got := liveCert(t, l.store, victim.Serial); got != victimCert {
			t.Errorf("victim's live certificate is %q, was %q", got, victimCert)
		}
	})
	// Every refusal of a proof is in the ledger.
	entries, err := l.store.AuditEntries(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	fails := 0
	for _, e := range entries {
		if e.Kind == "attest.fail" {
			fails++
		}
	}
	if want := len(cases) - 4 + 2; fails != want { // serial refusals happen before a proof is chosen
		t.Errorf("%d attest.fail ledger entries, want %d", fails, want)
	}
}

// TestUnattestedPolicy: a work order that lists unattested certifies a
// software key, and the certificate says it is not hardware-attested; RSA
// and P-384 keys are refused before anything is signed; a device that
// stores the chain but fails its end-of-line check has its certificate
// revoked at once and its key red-binned; a device that fails before
// confirming keeps its certificate until the session ends, then loses it.
func TestUnattestedPolicy(t *testing.T) {
	ctx := context.Background()
	l := newTestLine(t, 1, "")
	p, err := NewProvisioner(Config{Issuer: l.ca, Store: l.store, Station: "test", Operator: "op", WorkOrder: "WO-1", Proofs: []Proof{UnattestedProof{}}})
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]crypto.Signer{"RSA-2048": rsaKey, "P-384": p384} {
		board := &softBoard{backend: "pkcs11", serial: "TOKEN-" + strings.ReplaceAll(name, "-", ""), key: key}
		_, err := p.Provision(ctx, Job{Slot: 1, Port: serveBoard(t, board)})
		if !errors.Is(err, ErrKeyPolicy) {
			t.Errorf("%s: err = %v, want ErrKeyPolicy", name, err)
		}
		if sn := liveCert(t, l.store, board.serial); sn != "" {
			t.Errorf("%s: certificate %s was issued", name, sn)
		}
	}

	ok := &softBoard{backend: "pkcs11", serial: "TOKEN-1", key: p256(t)}
	res, err := p.Provision(ctx, Job{Slot: 1, Port: serveBoard(t, ok)})
	if err != nil {
		t.Fatal(err)
	}
	if got := ca.CertificateProof(res.Chain[0], nil); got != ca.ProofUnattested || res.Proof != ca.ProofUnattested {
		t.Errorf("certificate says %q, run says %q, want unattested", got, res.Proof)
	}
	hw, err := ca.HardwareModuleNames(res.Chain[0])
	if err != nil || len(hw) != 1 || hw[0].Type.Equal(ca.OIDTPM20HWType) {
		t.Errorf("hwType %+v %v: an unattested key must not carry the TPM hwType", hw, err)
	}

	// End-of-line signature by another key: revoked now, key red-binned.
	bad := &softBoard{backend: "pkcs11", serial: "TOKEN-2", key: p256(t), signWith: p256(t)}
	_, err = p.Provision(ctx, Job{Slot: 1, Port: serveBoard(t, bad)})
	if !errors.Is(err, ErrEndOfLine) || !strings.Contains(err.Error(), "revoked (cessationOfOperation)") {
		t.Fatalf("bad end of line: %v", err)
	}
	certs, err := l.store.Certificates(ctx, "TOKEN-2")
	if err != nil || len(certs) != 1 || certs[0].RevokeReason != "cessationOfOperation" {
		t.Fatalf("TOKEN-2 certificates %+v %v: want one, revoked cessationOfOperation", certs, err)
	}
	_, err = p.Provision(ctx, Job{Slot: 1, Port: serveBoard(t, bad)})
	if !errors.Is(err, ErrRedBin) {
		t.Errorf("TOKEN-2 again: %v, want ErrRedBin (the red bin sticks)", err)
	}

	// Read-back fails (a device error, not a mismatch): the certificate
	// stays live for a retry, and the end of the session revokes it.
	flaky := &softBoard{backend: "pkcs11", serial: "TOKEN-3", key: p256(t), readErr: errors.New("flash busy")}
	_, err = p.Provision(ctx, Job{Slot: 1, Port: serveBoard(t, flaky)})
	if err == nil || !strings.Contains(err.Error(), "issued but not confirmed") {
		t.Fatalf("flaky read-back: %v", err)
	}
	sn := liveCert(t, l.store, "TOKEN-3")
	if sn == "" {
		t.Fatal("TOKEN-3's certificate was revoked before the session ended")
	}
	revoked, err := p.SweepUnconfirmed(ctx)
	if err != nil || len(revoked) != 1 || db.NormalizeSerial(revoked[0]) != db.NormalizeSerial(sn) {
		t.Fatalf("sweep revoked %v (%v), want [%s]", revoked, err, sn)
	}
	if got := liveCert(t, l.store, "TOKEN-3"); got != "" {
		t.Errorf("TOKEN-3 still holds %s after the sweep", got)
	}
}

// TestRedBinSticks: a device red-binned on the bench is refused when it is
// plugged in again, by chip identity, until a supervisor releases it; a
// device whose certificate was revoked for key compromise is refused too.
func TestRedBinSticks(t *testing.T) {
	ctx := context.Background()
	l := newTestLine(t, 1, "")
	d := l.bench.Devices[0]
	res, err := l.prov.Provision(ctx, Job{Slot: 1, Port: d.Port})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.store.RedBin(ctx, db.RedBinEntry{ChipID: res.ChipID, Serial: d.Serial, Reason: "cracked housing", Operator: "op"}); err != nil {
		t.Fatal(err)
	}
	_, err = l.prov.Provision(ctx, Job{Slot: 1, Port: d.Port})
	if !errors.Is(err, ErrRedBin) || !strings.Contains(err.Error(), "cracked housing") {
		t.Fatalf("red-binned device: %v, want ErrRedBin with its reason", err)
	}
	if err := l.store.ReleaseRedBin(ctx, res.ChipID, "sup-1", "housing replaced"); err != nil {
		t.Fatal(err)
	}
	res2, err := l.prov.Provision(ctx, Job{Slot: 1, Port: d.Port})
	if err != nil {
		t.Fatalf("released device: %v", err)
	}
	if !res2.Redelivered || res2.CertSerial != res.CertSerial {
		t.Errorf("released device got %s (redelivered %v), want its certificate %s again", res2.CertSerial, res2.Redelivered, res.CertSerial)
	}
	// Key compromise: the revocation holds the chip.
	if err := l.store.RecordRevocation(ctx, res.CertSerial, res.Chain[0].AuthorityKeyId, db.ReasonKeyCompromise, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = l.prov.Provision(ctx, Job{Slot: 1, Port: d.Port})
	if !errors.Is(err, ErrRedBin) || !strings.Contains(err.Error(), "keyCompromise") {
		t.Fatalf("revoked device: %v, want ErrRedBin (keyCompromise)", err)
	}
	if err := l.store.ReleaseRedBin(ctx, res.ChipID, "sup-1", "re-keyed under supervision"); err != nil {
		t.Fatal(err)
	}
	// Released, the device cannot reuse its revoked key: it resets itself
	// (it offers "reset") and proves a new key.
	res3, err := l.prov.Provision(ctx, Job{Slot: 1, Port: d.Port})
	if err != nil {
		t.Fatalf("released after revocation: %v", err)
	}
	if res3.CertSerial == res.CertSerial || res3.Redelivered {
		t.Errorf("got certificate %s (redelivered %v), want a new one", res3.CertSerial, res3.Redelivered)
	}
	kinds := map[string]int{}
	entries, err := l.store.AuditEntries(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		kinds[e.Kind]++
	}
	if kinds["redbin"] != 1 || kinds["redbin.release"] != 2 || kinds["device.bind"] != 1 {
		t.Errorf("ledger kinds %v: want 1 redbin, 2 redbin.release, 1 device.bind", kinds)
	}
}

// genuine is what an attacker can record from a genuine TPM device.
type genuine struct {
	ek   *proto.GetEKResponse
	keys *proto.CreateKeysResponse
}

// recordGenuine runs the device's real agent on a fresh cable and records
// its endorsement key and a CreateKeys answer to a nonce of its own.
func recordGenuine(t *testing.T, d *sim.Device) genuine {
	t.Helper()
	port, stop := restartAs(t, d, d.Serial)
	defer stop()
	c := dial(t, port)
	defer c.Close()
	ctx := context.Background()
	ek, err := c.GetEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := c.CreateKeys(ctx, proto.CreateKeysRequest{Nonce: make([]byte, 32), Subject: d.Serial})
	if err != nil {
		t.Fatal(err)
	}
	return genuine{ek: ek, keys: keys}
}

// restartAs stops the device's agent and starts the real agent binary on
// the same TPM over a new cable, reporting serial; it returns the station's
// port and a function that stops that agent (it is stopped at the end of the
// test in any case).
func restartAs(t *testing.T, d *sim.Device, serialNo string) (string, func()) {
	t.Helper()
	if err := d.StopAgent(); err != nil {
		t.Fatal(err)
	}
	link, err := sim.NewLink(nil)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(agentBin, "serve", "--serial", link.AgentPath, "--tpm", d.TPM.URI(), "--device-serial", serialNo)
	if err := cmd.Start(); err != nil {
		link.Close()
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			link.Close()
		})
	}
	t.Cleanup(stop)
	waitReady(t, link.StationPath)
	return link.StationPath, stop
}

// dial opens a protocol client on a station port.
func dial(t *testing.T, port string) *proto.Client {
	t.Helper()
	p, err := serial.Open(port, &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	c := proto.NewClient(p)
	t.Cleanup(func() { p.Close() })
	return c
}

func mustCSR(t *testing.T, k crypto.Signer) []byte {
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// TestSupervisedRework: a board whose chip was replaced (here: the second
// device's TPM reporting the first device's serial) is refused without a
// rework; with a supervisor's rework against the scanned label it is
// re-bound, gets a new certificate, and the old chip's certificate is
// superseded. The ledger names the supervisor.
func TestSupervisedRework(t *testing.T) {
	ctx := context.Background()
	l := newTestLine(t, 2, "")
	first, second := l.bench.Devices[0], l.bench.Devices[1]
	old, err := l.prov.Provision(ctx, Job{Slot: 1, Port: first.Port})
	if err != nil {
		t.Fatal(err)
	}
	port, _ := restartAs(t, second, first.Serial)
	if _, err := l.prov.Provision(ctx, Job{Slot: 2, Port: port, Label: first.Serial}); !errors.Is(err, ErrChipMismatch) {
		t.Fatalf("replacement chip without rework: %v, want ErrChipMismatch", err)
	}
	if _, err := l.prov.Provision(ctx, Job{Slot: 2, Port: port, Rework: &Rework{Supervisor: "sup-1"}}); err == nil {
		t.Fatal("a rework without a scanned label passed")
	}
	res, err := l.prov.Provision(ctx, Job{Slot: 2, Port: port, Label: first.Serial, Rework: &Rework{Supervisor: "sup-1"}})
	if err != nil {
		t.Fatalf("supervised rework: %v", err)
	}
	if res.CertSerial == old.CertSerial || string(res.ChipID) == string(old.ChipID) {
		t.Fatalf("rework kept the old certificate or chip")
	}
	certs, err := l.store.Certificates(ctx, first.Serial)
	if err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, c := range certs {
		switch {
		case c.RevokedAt == nil:
			live++
		case db.NormalizeSerial(c.SerialHex) == db.NormalizeSerial(old.CertSerial) && c.RevokeReason != "superseded":
			t.Errorf("old certificate revoked as %q, want superseded", c.RevokeReason)
		}
	}
	if live != 1 {
		t.Errorf("%d live certificates after the rework", live)
	}
	entries, err := l.store.AuditEntries(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	rebinds := 0
	for _, e := range entries {
		if e.Kind == "device.rebind" && e.Actor == "sup-1" {
			rebinds++
		}
	}
	if rebinds != 1 {
		t.Errorf("%d device.rebind entries by sup-1, want 1", rebinds)
	}
}
