package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/sim/simtest"
	"github.com/wsc-project/wsc/devices/tpm"
)

// certifyCC is TPM2_Certify as gatedTPM logs it.
var certifyCC = fmt.Sprintf("%#x", uint32(tpm2.TPMCCCertify))

// gatedTPM records the command code of every command sent to the TPM and,
// once armed, holds the next TPM2_Create until released.
type gatedTPM struct {
	next transport.TPM

	mu      sync.Mutex
	log     []string
	armed   bool
	held    chan struct{} // closed when a Create is held
	release chan struct{}
}

func (g *gatedTPM) note(s string) {
	g.mu.Lock()
	g.log = append(g.log, s)
	g.mu.Unlock()
}

func (g *gatedTPM) Send(cmd []byte) ([]byte, error) {
	cc := tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10]))
	g.mu.Lock()
	hold := g.armed && cc == tpm2.TPMCCCreate
	if hold {
		g.armed = false
	}
	g.mu.Unlock()
	if hold {
		close(g.held)
		<-g.release
		g.note("RELEASED")
	}
	g.note(fmt.Sprintf("%#x", uint32(cc)))
	return g.next.Send(cmd)
}

// TestSigningKeyAhead: asked in CreateKeys, a TPM agent makes its signing
// key in the background, certified over the keys' nonce, and hands it to
// CreateSigningKey with the same nonce; a request that arrives while the
// key is being generated goes before the certification (the station waits
// for its answer; nobody waits for the key yet); a CreateSigningKey with
// another nonce is certified over that nonce, not handed the old evidence.
func TestSigningKeyAhead(t *testing.T) {
	ctx := context.Background()
	tr, err := tpm.OpenTransport(simtest.Blank(t).URI())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	g := &gatedTPM{next: tr, held: make(chan struct{}), release: make(chan struct{})}
	dev, err := tpm.New(g, tpm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewTPMBackend(dev, "DEV-AHEAD")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(b, nil)
	call := func(mt proto.MsgType, req any) (any, error) {
		p, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		return h.Handle(ctx, mt, p)
	}
	hello, err := call(proto.MsgHello, proto.HelloRequest{Versions: []uint8{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	caps := hello.(*proto.HelloResponse).Capabilities
	for _, c := range []string{"signing-key-ahead", "counter-ahead"} {
		if !slices.Contains(caps, c) {
			t.Fatalf("Hello capabilities %v lack %q", caps, c)
		}
	}

	nonce := bytes.Repeat([]byte{0x42}, 32)
	keysReq := proto.CreateKeysRequest{Nonce: nonce, SigningKeyAhead: true, CounterAhead: true}
	arm := func() {
		g.mu.Lock()
		g.armed = true
		g.mu.Unlock()
	}
	// A first CreateKeys makes the device's keys; the second reuses them,
	// so the first Create after arming is the signing key's, made ahead.
	if _, err := call(proto.MsgCreateKeys, proto.CreateKeysRequest{Nonce: nonce}); err != nil {
		t.Fatal(err)
	}
	arm()
	if _, err := call(proto.MsgCreateKeys, keysReq); err != nil {
		t.Fatal(err)
	}
	<-g.held // the signing key's generation is under way (and held)

	fg := make(chan error, 1)
	go func() {
		_, err := call(proto.MsgReadChain, proto.ReadChainRequest{})
		g.note("FOREGROUND-DONE")
		fg <- err
	}()
	// Wait until the request is being served (it waits for the TPM).
	for {
		b.aheadMu.Lock()
		n := b.fg
		b.aheadMu.Unlock()
		if n > 0 {
			break
		}
		runtime.Gosched()
	}
	close(g.release)
	<-fg // ReadChain on a device without a chain fails; it ran, that is what counts

	resp, err := call(proto.MsgCreateSigningKey, proto.CreateSigningKeyRequest{Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	ev := resp.(*proto.CreateSigningKeyResponse)
	if !ev.Created {
		t.Error("the key made ahead is not reported as created")
	}
	if got := certifiedNonce(t, ev.CertifyInfo); !bytes.Equal(got, nonce) {
		t.Fatalf("certified over %x, want the keys' nonce", got)
	}
	g.mu.Lock()
	order := append([]string(nil), g.log...)
	g.mu.Unlock()
	fgAt, certAt := -1, -1
	rel := slices.Index(order, "RELEASED")
	if rel < 0 {
		t.Fatalf("the signing key's generation was never held: %v", order)
	}
	for i := rel; i < len(order); i++ {
		s := order[i]
		switch {
		case s == "FOREGROUND-DONE":
			fgAt = i
		case s == certifyCC && fgAt >= 0 && certAt < 0:
			certAt = i
		case s == certifyCC && fgAt < 0:
			t.Fatalf("the signing key was certified before the waiting request was served: %v", order)
		}
	}
	if fgAt < 0 || certAt < 0 {
		t.Fatalf("command order %v: request done at %d, certify at %d", order, fgAt, certAt)
	}

	// The counter was set up ahead: once that work is done, SetupCounter
	// answers without a TPM command.
	b.waitAhead()
	g.mu.Lock()
	before := len(g.log)
	g.mu.Unlock()
	sc, err := call(proto.MsgSetupCounter, proto.SetupCounterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	after := len(g.log)
	g.mu.Unlock()
	if after != before {
		t.Errorf("SetupCounter sent %d TPM commands; the value was read ahead", after-before)
	}
	if v, err := dev.Counter(); err != nil || v != sc.(*proto.SetupCounterResponse).Value {
		t.Errorf("counter %d (%v), SetupCounter said %d", v, err, sc.(*proto.SetupCounterResponse).Value)
	}

	// Another nonce: certified now, over it.
	other := bytes.Repeat([]byte{0x17}, 32)
	resp, err = call(proto.MsgCreateSigningKey, proto.CreateSigningKeyRequest{Nonce: other})
	if err != nil {
		t.Fatal(err)
	}
	if got := certifiedNonce(t, resp.(*proto.CreateSigningKeyResponse).CertifyInfo); !bytes.Equal(got, other) {
		t.Fatalf("second request certified over %x, want its own nonce", got)
	}
	if !bytes.Equal(resp.(*proto.CreateSigningKeyResponse).LDevIDPublic, ev.LDevIDPublic) {
		t.Error("the second request did not reuse the key made ahead")
	}
	// The same nonce again is not handed the evidence a second time either
	// (it is certified afresh, over the same nonce).
	g.mu.Lock()
	before = len(g.log)
	g.mu.Unlock()
	if _, err := call(proto.MsgCreateSigningKey, proto.CreateSigningKeyRequest{Nonce: nonce}); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	certified := false
	for _, s := range g.log[before:] {
		certified = certified || s == certifyCC
	}
	g.mu.Unlock()
	if !certified {
		t.Error("evidence made ahead was handed out twice")
	}
}

// TestAheadRefusedWithoutCapability: a backend that cannot work ahead
// refuses a keys request that asks it to, before making any key.
func TestAheadRefusedWithoutCapability(t *testing.T) {
	h := NewHandler(plainBackend{}, nil)
	p, err := proto.Marshal(proto.CreateKeysRequest{Nonce: make([]byte, 32), SigningKeyAhead: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Handle(context.Background(), proto.MsgCreateKeys, p); err == nil {
		t.Fatal("a backend without the capability accepted work ahead")
	}
}

// plainBackend is a Backend with no optional capability; it fails the
// test if asked to make keys.
type plainBackend struct{}

func (plainBackend) Identity() Identity { return Identity{Backend: "tpm", Serial: "PLAIN"} }
func (plainBackend) CreateKeys(context.Context, []byte, string) (*KeyEvidence, error) {
	panic("keys made although the request was refused")
}
func (plainBackend) InstallChain(context.Context, [][]byte, bool) ([]uint32, error) { return nil, nil }
func (plainBackend) ReadChain(context.Context) ([][]byte, error)                    { return nil, nil }
func (plainBackend) SignDigest(context.Context, []byte) ([]byte, error)             { return nil, nil }
func (plainBackend) Lock(context.Context) error                                     { return nil }

func certifiedNonce(t *testing.T, certifyInfo []byte) []byte {
	t.Helper()
	b2, err := tpm2.Unmarshal[tpm2.TPM2BAttest](certifyInfo)
	if err != nil {
		t.Fatal(err)
	}
	att, err := b2.Contents()
	if err != nil {
		t.Fatal(err)
	}
	return att.ExtraData.Buffer
}
