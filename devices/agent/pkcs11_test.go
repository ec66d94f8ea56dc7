//go:build cgo && pkcs11

package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/wsc-project/wsc/devices/pkcs11"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/sim/simtest"
)

func newSoftHSMToken(t testing.TB) string {
	t.Helper()
	pin := simtest.SoftHSMToken(t, "wsc-dev", "1234")
	return "pkcs11:module-path=" + simtest.SoftHSMModule + ";token=wsc-dev?pin-source=file:" + pin
}

// TestPKCS11DeviceProvisioned provisions a SoftHSM2-backed device through
// the protocol: key generated on the token, CSR, chain stored and read
// back, signature, lock; and checks through PKCS#11 that the key is
// sensitive and cannot be extracted.
func TestPKCS11DeviceProvisioned(t *testing.T) {
	ctx := context.Background()
	b, err := OpenPKCS11Backend(newSoftHSMToken(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	client := serveBackend(t, b)
	ca := newTestCA(t)

	hello, err := client.Hello(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if hello.Backend != "pkcs11" || !strings.HasPrefix(hello.Serial, "P11-") || !strings.Contains(hello.Model, "SoftHSM") {
		t.Fatalf("hello %+v", hello)
	}
	keys, err := client.CreateKeys(ctx, proto.CreateKeysRequest{Nonce: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	if !keys.Created {
		t.Fatal("key not created")
	}
	again, err := client.CreateKeys(ctx, proto.CreateKeysRequest{Nonce: bytes.Repeat([]byte{7}, 32)})
	if err != nil || again.Created || !bytes.Equal(again.IDevIDPublic, keys.IDevIDPublic) {
		t.Fatalf("second CreateKeys: %v", err)
	}
	// Through PKCS#11: sensitive, never extractable, value unreadable.
	k, err := b.Token().FindKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := k.Attributes()
	if err != nil {
		t.Fatal(err)
	}
	if !a.Sensitive || a.Extractable || !a.NeverExtractable || !a.AlwaysSensitive || !a.Token {
		t.Fatalf("key attributes %+v", a)
	}
	if v, err := k.PrivateValue(); !pkcs11.IsSensitiveRefusal(err) || v != nil {
		t.Fatalf("private key value readable: %d bytes, %v", len(v), err)
	}

	chain := ca.issueSE(t, keys.CSR, hello.Serial, 3)
	if _, err := client.InstallChain(ctx, proto.InstallChainRequest{Chain: chain}); err != nil {
		t.Fatal(err)
	}
	rb, err := client.ReadChain(ctx)
	if err != nil || len(rb.Chain) != 2 || !bytes.Equal(rb.Chain[0], chain[0]) || !bytes.Equal(rb.Chain[1], chain[1]) {
		t.Fatalf("read back: %v", err)
	}
	digest := sha256.Sum256([]byte("eol"))
	sig, err := client.SignDigest(ctx, proto.SignDigestRequest{Digest: digest[:]})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(chain[0])
	if !ecdsa.VerifyASN1(leaf.PublicKey.(*ecdsa.PublicKey), digest[:], sig.Signature) {
		t.Fatal("token signature does not verify with the certificate")
	}
	if err := client.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := client.InstallChain(ctx, proto.InstallChainRequest{Chain: chain[:1]}); !errors.Is(err, proto.ErrLocked) {
		t.Fatalf("install over a locked chain: %v", err)
	}
}
