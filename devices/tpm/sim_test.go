//go:build tpmsim

package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// TestSimulator runs the device flow on the go-tpm-tools in-process
// simulator (cgo): go test -tags tpmsim ./devices/tpm/. The simulator has
// no EK certificate, so the test persists an RSA EK from the TCG template.
func TestSimulator(t *testing.T) {
	tr, err := OpenTransport("sim")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	d, err := New(tr, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if eks, err := d.EKs(); err != nil || len(eks) != 0 {
		t.Fatalf("fresh simulator EKs = %v, %v", eks, err)
	}
	cp, err := tpm2.CreatePrimary{PrimaryHandle: d.endorsementAuth(), InPublic: tpm2.New2B(tpm2.RSAEKTemplate)}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.persist(cp.ObjectHandle, cp.Name, 0x81010001); err != nil {
		t.Fatal(err)
	}
	d.flush(cp.ObjectHandle)
	d.eks = nil
	pub, cert, kind, err := d.EK()
	if err != nil || kind != EKKindRSA2048 || cert != nil || len(pub) == 0 {
		t.Fatalf("EK() = %q, cert %d bytes, %v", kind, len(cert), err)
	}

	nonce := []byte("sim-nonce")
	ev, err := d.CreateKeys(nonce)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyCertify(t, ev, nonce); err != nil {
		t.Fatal(err)
	}
	if ev2, err := d.CreateKeys(nonce); err != nil || ev2.Created {
		t.Fatalf("reuse: %v", err)
	}
	digest := sha256.Sum256([]byte("m"))
	sig, err := d.SignDigest(digest[:])
	if err != nil || !ecdsa.VerifyASN1(mustECDSA(t, ev.IDevIDPublic), digest[:], sig) {
		t.Fatalf("SignDigest: %v", err)
	}
	ek := EK{Kind: kind, Public: pub}
	secret := []byte("simulated-secret")
	got, err := activate(t, d, ek, ev.IAKPublic, secret)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("ActivateCredential: %v", err)
	}
	// The simulator's NV is small: a chain over two indices.
	chain := makeChain(t, 2, 30)
	if idx, err := d.WriteChain(chain); err != nil || len(idx) != 2 {
		t.Fatalf("WriteChain: %#x %v", idx, err)
	}
	chain = makeChain(t, 2, 1)
	if _, err := d.WriteChain(chain); err != nil {
		t.Fatal(err)
	}
	if back, err := d.ReadChain(); err != nil || !equalChains(back, chain) {
		t.Fatalf("ReadChain: %v", err)
	}
	if err := d.LockChain(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteChain(chain); !errors.Is(err, tpm2.TPMRCNVLocked) {
		t.Fatalf("write after lock: %v", err)
	}
}
