package station

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/devices/agent"
	"github.com/wsc-project/wsc/devices/se"
	"github.com/wsc-project/wsc/devices/sim"
)

// openSE opens a simulated device's chip state as a provisioned chip
// (the device's agent must be stopped).
func openSE(t *testing.T, d *sim.Device) (*agent.SEBackend, *se.Chip, func()) {
	t.Helper()
	uri := "emulator:" + d.SEState
	chip, closer, err := agent.OpenSE(uri)
	if err != nil {
		t.Fatal(err)
	}
	b, err := agent.NewSEBackend(chip, agent.WithCertDefPath(agent.DefaultCertDefPath(uri)), agent.WithPersonalize(false))
	if err != nil {
		closer.Close()
		t.Fatal(err)
	}
	return b, chip, func() { closer.Close() }
}

// TestProvisionSE provisions a secure-element device end to end — real
// pseudo-terminal, real wsc-agent process on the ATECC608 emulator, real CA
// and database — and checks what the chip holds: the compressed chain
// rebuilds byte for byte into the issued chain, which verifies to the root.
func TestProvisionSE(t *testing.T) {
	l := newTestLineOpts(t, sim.BenchConfig{N: 1, Mix: []string{"se"}})
	d := l.bench.Devices[0]
	if d.Kind != sim.KindSE || d.Serial == "" || d.TPM != nil {
		t.Fatalf("simulated device: kind %q serial %q tpm %v", d.Kind, d.Serial, d.TPM)
	}
	ctx := context.Background()
	res, err := l.prov.Provision(ctx, Job{Slot: 1, Port: d.Port, Label: d.Serial})
	if err != nil {
		t.Fatal(err)
	}
	if res.Backend != "se" || res.Serial != d.Serial {
		t.Fatalf("result backend %q serial %q, want se %q", res.Backend, res.Serial, d.Serial)
	}
	if _, ok := res.Steps[StepEK]; ok {
		t.Error("an SE device went through the EK step")
	}
	leaf := res.Chain[0]
	// The serial and dates are the compressed form's.
	pub := leaf.PublicKey.(*ecdsa.PublicKey)
	// The default profile says 15 years, the test intermediate lives 5*365
	// days: the most whole years that fit, 4.
	years := leaf.NotAfter.Year() - leaf.NotBefore.Year()
	sn, nb, na, err := se.DeviceCertParams(pub, leaf.NotBefore, years)
	if err != nil {
		t.Fatal(err)
	}
	if years != 4 || !leaf.NotBefore.Equal(nb) || !leaf.NotAfter.Equal(na) || leaf.SerialNumber.Cmp(sn) != 0 {
		t.Errorf("leaf serial %x validity %v..%v (%d years): want derived serial %x, %v..%v, 4 years", leaf.SerialNumber, leaf.NotBefore, leaf.NotAfter, years, sn, nb, na)
	}
	if leaf.NotAfter.After(l.ca.Issuer().NotAfter) {
		t.Errorf("leaf outlives the intermediate: %v > %v", leaf.NotAfter, l.ca.Issuer().NotAfter)
	}

	// Ask the chip itself.
	if err := d.StopAgent(); err != nil {
		t.Fatal(err)
	}
	b, _, done := openSE(t, d)
	defer done()
	got, err := b.ReadChain(ctx)
	if err != nil {
		t.Fatalf("read chain from the chip: %v", err)
	}
	if len(got) != 2 || !bytes.Equal(got[0], leaf.Raw) || !bytes.Equal(got[1], l.ca.Issuer().Raw) {
		t.Fatal("the chain rebuilt from the chip differs from the issued chain")
	}
	rebuilt, err := x509.ParseCertificate(got[0])
	if err != nil {
		t.Fatal(err)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range l.ca.Roots() {
		roots.AddCert(r)
	}
	inters.AddCert(l.ca.Issuer())
	if _, err := rebuilt.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err != nil {
		t.Fatalf("rebuilt certificate does not verify to the root: %v", err)
	}
	if rebuilt.Subject.SerialNumber != d.Serial {
		t.Errorf("subject serialNumber %q, want the chip serial %q", rebuilt.Subject.SerialNumber, d.Serial)
	}
	certs, err := l.store.Certificates(ctx, d.Serial)
	if err != nil || len(certs) != 1 || certs[0].Status != "confirmed" {
		t.Fatalf("database: %d certificates (%v)", len(certs), err)
	}
}

// TestSEProfileNotWholeYears: a profile whose validity is not whole years
// cannot give a compressible certificate; the station refuses it with an
// operator-readable error before the chip makes a key or stores anything.
func TestSEProfileNotWholeYears(t *testing.T) {
	l := newTestLineOpts(t, sim.BenchConfig{N: 1, Mix: []string{"se"}})
	prof := &ca.Profile{Name: "400-days", Validity: ca.Duration(400 * 24 * time.Hour)}
	if err := prof.Validate(); err != nil {
		t.Fatal(err)
	}
	l.prov.cfg.Profile = prof
	d := l.bench.Devices[0]
	_, err := l.prov.Provision(context.Background(), Job{Slot: 1, Port: d.Port})
	var pe *ProfileError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a ProfileError", err)
	}
	var stepErr *StepError
	if !errors.As(err, &stepErr) || stepErr.Step != StepHello || stepErr.Instruction == "" {
		t.Fatalf("step error %+v", stepErr)
	}
	t.Logf("operator sees: %v / %s", err, stepErr.Instruction)
	if err := d.StopAgent(); err != nil {
		t.Fatal(err)
	}
	b, chip, done := openSE(t, d)
	defer done()
	if valid, err := chip.KeyValid(se.SlotDeviceKey); err != nil || valid {
		t.Fatalf("device key slot valid=%v (%v): the chip made a key", valid, err)
	}
	if _, err := b.ReadChain(context.Background()); err == nil {
		t.Fatal("a chain was stored")
	}
	if certs, _ := l.store.Certificates(context.Background(), d.Serial); len(certs) != 0 {
		t.Fatalf("%d certificates issued", len(certs))
	}
}

// plainIssuer drops the compressed form's serial and dates from SE
// requests: the CA then issues an ordinary certificate (random serial,
// backdated a minute), which a secure element cannot store.
type plainIssuer struct{ *ca.CA }

func (p plainIssuer) Issue(ctx context.Context, csr []byte, req ca.IssueRequest) ([]*x509.Certificate, error) {
	req.SerialNumber, req.NotBefore, req.NotAfter, req.Validity = nil, time.Time{}, time.Time{}, 365*24*time.Hour
	return p.CA.Issue(ctx, csr, req)
}

// TestSENotCompressibleRefused: a certificate that cannot be stored
// compressed is refused before InstallChain, with a clear error; nothing
// reaches the chip's certificate slots.
func TestSENotCompressibleRefused(t *testing.T) {
	l := newTestLineOpts(t, sim.BenchConfig{N: 1, Mix: []string{"se"}})
	l.prov.cfg.Issuer = plainIssuer{l.ca}
	d := l.bench.Devices[0]
	_, err := l.prov.Provision(context.Background(), Job{Slot: 1, Port: d.Port})
	var stepErr *StepError
	if !errors.As(err, &stepErr) || stepErr.Step != StepIssue || !errors.Is(err, se.ErrNotCompressible) {
		t.Fatalf("err = %v, want a refusal at the issue step wrapping se.ErrNotCompressible", err)
	}
	t.Logf("operator sees: %v", err)
	if err := d.StopAgent(); err != nil {
		t.Fatal(err)
	}
	b, _, done := openSE(t, d)
	defer done()
	if _, err := b.ReadChain(context.Background()); err == nil {
		t.Fatal("a chain was stored in the chip")
	}
}

// TestSEProofRefusals: the atecc608 proof refuses a blank chip (no factory
// attestation key or manufacturer chain) and a chip whose vendor the
// station does not trust; a secure element under a TPM-only work order is
// refused before it makes a key. None of them gets a certificate.
func TestSEProofRefusals(t *testing.T) {
	ctx := context.Background()
	l := newTestLineOpts(t, sim.BenchConfig{N: 1, Mix: []string{"se"}})
	start := func(name string, vendor *sim.SEVendor) *sim.Device {
		dir := filepath.Join(l.dir, name)
		if vendor != nil {
			if _, err := vendor.Manufacture(filepath.Join(dir, sim.SEStateFile)); err != nil {
				t.Fatal(err)
			}
		}
		d, err := sim.StartDevice(ctx, sim.DeviceConfig{Dir: dir, Kind: sim.KindSE, AgentBinary: agentBin})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		waitReady(t, d.Port)
		return d
	}
	foreign, err := sim.NewSEVendor()
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	for name, d := range map[string]*sim.Device{"blank chip": start("blank", nil), "foreign vendor": start("foreign", foreign)} {
		_, err := l.prov.Provision(ctx, Job{Slot: 1, Port: d.Port})
		if !errors.Is(err, ErrAttestation) {
			t.Errorf("%s: err = %v, want ErrAttestation", name, err)
		}
		if certs, _ := l.store.Certificates(ctx, d.Serial); len(certs) != 0 {
			t.Errorf("%s: %d certificates issued", name, len(certs))
		}
	}
	tpmOnly, err := NewProvisioner(Config{Issuer: l.ca, Store: l.store, WorkOrder: "WO-1", Proofs: []Proof{&TPMProof{Roots: x509.NewCertPool()}}})
	if err != nil {
		t.Fatal(err)
	}
	d := l.bench.Devices[0]
	if _, err := tpmOnly.Provision(ctx, Job{Slot: 1, Port: d.Port}); !errors.Is(err, ErrNoProof) {
		t.Errorf("secure element under a TPM-only work order: %v, want ErrNoProof", err)
	}
	if err := d.StopAgent(); err != nil {
		t.Fatal(err)
	}
	_, chip, done := openSE(t, d)
	defer done()
	if valid, err := chip.KeyValid(se.SlotDeviceKey); err != nil || valid {
		t.Fatalf("device key slot valid=%v (%v): the chip made a key before the proof was chosen", valid, err)
	}
}
