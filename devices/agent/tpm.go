package agent

import (
	"context"
	"crypto/x509/pkix"
	"fmt"
	"sync"

	"github.com/wsc-project/wsc/devices/tpm"
)

// TPMBackend is the Backend of a device with a TPM 2.0: keys are created and
// used inside the TPM, the chain lives in owner-hierarchy NV indices, and the
// TPM's endorsement key makes it an Attester.
type TPMBackend struct {
	dev    *tpm.Device
	serial string
	model  string

	aheadMu sync.Mutex
	ahead   *aheadJob  // what is being made ahead (PrepareAhead)
	fg      int        // requests being served (foreground)
	fgCond  *sync.Cond // signalled when fg drops or a key made ahead is wanted
}

// NewTPMBackend wraps an open TPM. serial is the device serial to report; when
// empty, a serial is derived from the endorsement key (tpm.DeriveSerial).
func NewTPMBackend(dev *tpm.Device, serial string) (*TPMBackend, error) {
	b := &TPMBackend{dev: dev, serial: serial, model: "tpm2"}
	if serial == "" {
		pub, _, _, err := dev.EK()
		if err != nil {
			return nil, fmt.Errorf("derive device serial from the endorsement key: %w", err)
		}
		b.serial = tpm.DeriveSerial(pub)
	}
	if info, err := dev.Info(); err == nil && info.Manufacturer != "" {
		b.model = "tpm2/" + info.Manufacturer
	}
	return b, nil
}

// Identity implements Backend.
func (b *TPMBackend) Identity() Identity {
	return Identity{Backend: "tpm", Serial: b.serial, Model: b.model, Firmware: Version, Capabilities: []string{"nv-chain", "sign-digest"}}
}

// EK implements Attester.
func (b *TPMBackend) EK(context.Context) ([]byte, []byte, string, error) { return b.dev.EK() }

// ActivateCredential implements Attester.
func (b *TPMBackend) ActivateCredential(_ context.Context, blob, secret []byte) ([]byte, error) {
	return b.dev.ActivateCredential(blob, secret)
}

// CreateKeys implements Backend: IAK and IDevID in the TPM (reused when
// already persisted), TPM2_Certify of the IDevID by the IAK over nonce, and a
// CSR signed by the IDevID. The CSR's subject only carries the serial; the CA
// takes names from the station, never from the CSR.
func (b *TPMBackend) CreateKeys(_ context.Context, nonce []byte, _ string) (*KeyEvidence, error) {
	ev, err := b.dev.CreateKeys(nonce)
	if err != nil {
		return nil, err
	}
	csr, err := b.dev.CSR(pkix.Name{SerialNumber: b.serial})
	if err != nil {
		return nil, err
	}
	return &KeyEvidence{IAKPublic: ev.IAKPublic, IDevIDPublic: ev.IDevIDPublic, CertifyInfo: ev.CertifyInfo,
		CertifySignature: ev.CertifySignature, CSR: csr, Created: ev.Created}, nil
}

// InstallChain implements Backend.
func (b *TPMBackend) InstallChain(_ context.Context, chain [][]byte, lock bool) ([]uint32, error) {
	idx, err := b.dev.WriteChain(chain)
	if err != nil {
		return nil, err
	}
	if lock {
		if err := b.dev.LockChain(); err != nil {
			return idx, err
		}
	}
	return idx, nil
}

// ReadChain implements Backend.
func (b *TPMBackend) ReadChain(context.Context) ([][]byte, error) { return b.dev.ReadChain() }

// SignDigest implements Backend.
func (b *TPMBackend) SignDigest(_ context.Context, digest []byte) ([]byte, error) {
	return b.dev.SignDigest(digest)
}

// Lock implements Backend: write-locks the chain's NV indices.
func (b *TPMBackend) Lock(context.Context) error { return b.dev.LockChain() }

// Reset implements Resetter: the TPM's device keys and chain are removed.
func (b *TPMBackend) Reset(context.Context) error {
	b.resetAhead()
	return b.dev.Reset()
}
