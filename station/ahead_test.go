package station

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/agent"
	"github.com/wsc-project/wsc/devices/tpm"
)

// idevidAsSigningKey is a genuine TPM agent that answers CreateSigningKey
// with its identity key: the IAK's Certify of the IDevID over the keys'
// nonce (which the station also uses for a signing key made ahead) and the
// IDevID's CSR. Everything in it is genuine TPM evidence; only the role is
// forged.
type idevidAsSigningKey struct {
	*agent.TPMBackend
	mu   sync.Mutex
	keys *agent.KeyEvidence
}

func (r *idevidAsSigningKey) CreateKeys(ctx context.Context, nonce []byte, subject string) (*agent.KeyEvidence, error) {
	ev, err := r.TPMBackend.CreateKeys(ctx, nonce, subject)
	r.mu.Lock()
	r.keys = ev
	r.mu.Unlock()
	return ev, err
}

func (r *idevidAsSigningKey) CreateSigningKey(context.Context, []byte, *ecdsa.PublicKey, []byte) (*agent.SigningKeyEvidence, error) {
	r.mu.Lock()
	k := r.keys
	r.mu.Unlock()
	return &agent.SigningKeyEvidence{IAKPublic: k.IAKPublic, LDevIDPublic: k.IDevIDPublic, CertifyInfo: k.CertifyInfo,
		CertifySignature: k.CertifySignature, CSR: k.CSR, Created: true}, nil
}

// TestSigningKeyIsNotTheIdentityKey: a device that offers its identity key
// as its code-signing key — with the IAK's genuine Certify over the run's
// nonce — is refused before the CA signs anything for it, and the run's
// identity certificate does not stay live. Without the check the CA would
// issue a codeSigning certificate for the IDevID's key (802.1AR keeps the
// two apart).
func TestSigningKeyIsNotTheIdentityKey(t *testing.T) {
	ctx := context.Background()
	l := newTestLine(t, 1, "")
	d := l.bench.Devices[0]
	if err := d.StopAgent(); err != nil {
		t.Fatal(err)
	}
	tr, err := tpm.OpenTransport(d.TPM.URI())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	dev, err := tpm.New(tr, tpm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	be, err := agent.NewTPMBackend(dev, d.Serial)
	if err != nil {
		t.Fatal(err)
	}
	port := serveBoard(t, &idevidAsSigningKey{TPMBackend: be})
	_, err = l.prov.Provision(ctx, Job{Slot: 1, Port: port})
	if !errors.Is(err, ErrSigningKey) || !strings.Contains(err.Error(), "identity key") {
		t.Fatalf("err = %v, want ErrSigningKey naming the identity key", err)
	}
	if _, err := l.store.LiveSigningCertificate(ctx, d.Serial); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("a signing certificate was issued for the identity key: %v", err)
	}
	if sn := liveCert(t, l.store, d.Serial); sn != "" {
		t.Errorf("the run's identity certificate %s stayed live after the refusal", sn)
	}
}
