package station

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/tpm"
)

func noisy(rate float64, seed int64, counts *proto.FaultCounts) func(a, b io.ReadWriter) func() {
	return func(a, b io.ReadWriter) func() {
		return proto.Relay(a, b, proto.Faults{BitFlipRate: rate, DropRate: rate, DuplicateRate: rate, Seed: seed, Counts: counts})
	}
}

// faultsLanded fails the test unless every kind of fault was injected.
func faultsLanded(t *testing.T, seed int64, c *proto.FaultCounts) {
	t.Helper()
	t.Logf("seed %d: faults injected: %s", seed, c)
	if c.Flipped.Load() == 0 || c.Dropped.Load() == 0 || c.Duplicated.Load() == 0 {
		t.Errorf("seed %d: not every fault landed (%s): the test did not test a noisy line", seed, c)
	}
}

// TestNoisyCable1e4: with bit flips, drops and duplicates each at a byte
// error rate of 1e-4 on a real pty cable, provisioning completes and the
// chain in the TPM is exactly the issued one.
func TestNoisyCable1e4(t *testing.T) {
	seed := int64(1)
	if v, err := strconv.ParseInt(os.Getenv("WSC_NOISE_SEED"), 10, 64); err == nil {
		seed = v
	}
	var counts proto.FaultCounts
	l := newTestLineRelay(t, 2, "", noisy(1e-4, seed, &counts))
	for i, d := range l.bench.Devices {
		res, err := l.prov.Provision(context.Background(), Job{Slot: i + 1, Port: d.Port})
		if err != nil {
			t.Fatalf("%s on a 1e-4 line: %v", d.Serial, err)
		}
		cert, err := l.store.LiveCertificate(context.Background(), d.Serial)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(cert.DER, res.Chain[0].Raw) {
			t.Fatalf("%s: recorded certificate differs from the delivered one", d.Serial)
		}
	}
	faultsLanded(t, seed, &counts)
}

// TestNoisyCable1e2: at 1e-2 the line is unusable; provisioning fails with
// a clear error within a bounded time and no certificate is left without
// its device having read it back.
func TestNoisyCable1e2(t *testing.T) {
	const seed = 5
	var counts proto.FaultCounts
	l := newTestLineRelay(t, 1, "", noisy(1e-2, seed, &counts))
	d := l.bench.Devices[0]
	start := time.Now()
	_, err := l.prov.Provision(context.Background(), Job{Slot: 1, Port: d.Port})
	if err == nil {
		t.Fatal("provisioning succeeded on a 1e-2 line")
	}
	if el := time.Since(start); el > 90*time.Second {
		t.Fatalf("failure took %v", el)
	}
	var se *StepError
	if !errors.As(err, &se) || se.Instruction == "" {
		t.Fatalf("error without an instruction for the operator: %v", err)
	}
	// The line's failure is a transport failure (timeouts after retries, or
	// frames the protocol gave up on), never mistaken for a device refusal.
	if !errors.Is(err, proto.ErrTimeout) && !errors.Is(err, proto.ErrProtocol) {
		t.Errorf("seed %d: failure of kind %T: %v; want a timeout or protocol error", seed, errors.Unwrap(err), err)
	}
	if errors.Is(err, ErrAttestation) || errors.Is(err, ErrRedBin) || errors.Is(err, ErrChipMismatch) {
		t.Errorf("seed %d: a noisy cable was taken for a refusal: %v", seed, err)
	}
	faultsLanded(t, seed, &counts)
}

// TestPullDuringInstall pulls the cable while the chain is being written to
// NV. The station reports the failure; the TPM then holds either no chain
// or the complete chain (its header hash decides), never a mix that reads
// as valid; after reseat and retry the device ends with the issued chain.
func TestPullDuringInstall(t *testing.T) {
	l := newTestLine(t, 1, "slb9670")
	d := l.bench.Devices[0]
	ctx := context.Background()
	var pulled bool
	_, err := l.prov.Provision(ctx, Job{Slot: 1, Port: d.Port, Events: func(e Event) {
		if e.Step == StepInstall && e.State == StateRunning && !pulled {
			pulled = true
			// Let the request reach the agent, then pull.
			time.AfterFunc(150*time.Millisecond, func() { d.Link.SetConnected(false) })
		}
	}})
	if err == nil {
		t.Fatal("provisioning passed with the cable pulled during InstallChain")
	}
	var se *StepError
	// The failure lands on InstallChain or on one of the two requests that
	// follow it (the signing key's collection, the read-back), depending on
	// when the pull cuts the line.
	if !errors.As(err, &se) || (se.Step != StepInstall && se.Step != StepSigningKey && se.Step != StepReadBack) {
		t.Fatalf("failure reported at %v: %v", se, err)
	}
	d.Link.SetConnected(true)

	// Read NV directly: no chain, or the complete issued chain.
	if err := d.StopAgent(); err != nil {
		t.Fatal(err)
	}
	tr, err := tpm.OpenTransport(d.TPM.URI())
	if err != nil {
		t.Fatal(err)
	}
	dev, err := tpm.New(tr, tpm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cert, cerr := l.store.LiveCertificate(ctx, d.Serial)
	if cerr != nil {
		t.Fatal(cerr)
	}
	chain, err := dev.ReadChain()
	switch {
	case errors.Is(err, tpm.ErrNoChain) || errors.Is(err, tpm.ErrCorruptChain):
		t.Logf("NV after the pull: %v (the header decides: not a valid chain)", err)
	case err != nil:
		t.Fatal(err)
	default:
		if !bytes.Equal(chain[0], cert.DER) {
			t.Fatal("NV holds a chain that passes its header check but is not the issued one")
		}
	}
	dev.Close()
	tr.Close()

	if err := d.StartAgent(); err != nil {
		t.Fatal(err)
	}
	res, err := l.prov.Provision(ctx, Job{Slot: 1, Port: d.Port})
	if err != nil {
		t.Fatalf("retry after reseat: %v", err)
	}
	if !res.Redelivered || !bytes.Equal(res.Chain[0].Raw, cert.DER) {
		t.Fatalf("retry issued a new certificate instead of re-delivering (redelivered=%v)", res.Redelivered)
	}
}
