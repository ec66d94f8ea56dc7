package sim

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsc-project/wsc/devices/proto"
	"go.bug.st/serial"
)

// TestInjectorFailsOneRequest: on a real pty cable, a fault armed at
// install answers the next InstallChain with a device error that the agent
// never sees; the next one passes through, and other requests are never
// touched. The injector counts one hit at install.
func TestInjectorFailsOneRequest(t *testing.T) {
	inj := NewInjector()
	l, err := NewLink(inj.Wrap(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	open := func(path string) serial.Port {
		p, err := serial.Open(path, &serial.Mode{BaudRate: 115200})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	st, ag := open(l.StationPath), open(l.AgentPath)
	defer st.Close()
	defer ag.Close()
	var installs, hellos atomic.Int32
	srv := proto.NewServer(ag, proto.HandlerFunc(func(_ context.Context, typ proto.MsgType, _ []byte) (any, error) {
		switch typ {
		case proto.MsgHello:
			hellos.Add(1)
			return &proto.HelloResponse{Serial: "SIM-1"}, nil
		case proto.MsgInstallChain:
			installs.Add(1)
			return &proto.InstallChainResponse{SHA256: []byte{1}}, nil
		}
		return nil, proto.Errorf(proto.ErrUnsupported, "no")
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { _ = srv.Serve(ctx) }()
	c := proto.NewClient(st)
	defer c.Close()

	if err := inj.Arm("teleport"); !errors.Is(err, ErrUnknownStep) {
		t.Fatalf("unknown point armed: %v", err)
	}
	if err := inj.Arm("install"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Hello(ctx); err != nil {
		t.Fatalf("hello with a fault armed at install: %v", err)
	}
	_, err = c.InstallChain(ctx, proto.InstallChainRequest{Chain: [][]byte{make([]byte, 3000)}})
	if !errors.Is(err, proto.ErrDevice) || !strings.Contains(err.Error(), "install") {
		t.Fatalf("armed install: got %v, want a device error naming install", err)
	}
	if n := installs.Load(); n != 0 {
		t.Fatalf("the agent saw %d install requests while the fault fired", n)
	}
	if _, err := c.InstallChain(ctx, proto.InstallChainRequest{Chain: [][]byte{make([]byte, 3000)}}); err != nil {
		t.Fatalf("install after the fault fired: %v", err)
	}
	if installs.Load() != 1 || hellos.Load() < 1 {
		t.Fatalf("agent saw %d installs, %d hellos", installs.Load(), hellos.Load())
	}
	if h := inj.Hits(); h["install"] != 1 || len(h) != 1 {
		t.Fatalf("hits %v, want install:1", h)
	}
	if a := inj.Armed(); len(a) != 0 {
		t.Fatalf("still armed: %v", a)
	}
}

// TestControlSocket: pull, plug, fail and status over the control socket
// change the real cable and injector of the device named.
func TestControlSocket(t *testing.T) {
	inj := NewInjector()
	l, err := NewLink(inj.Wrap(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b := &Bench{Devices: []*Device{{Serial: "SIM-0001", Kind: KindTPM, Port: l.StationPath, Link: l, Faults: inj}}}
	path := filepath.Join(t.TempDir(), ControlSocket)
	c, err := ServeControl(b, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := ServeControl(b, path); err == nil {
		t.Fatal("a second bench took over a live control socket")
	}
	ctx := context.Background()
	send := func(req string) (string, error) { return SendControl(ctx, path, req) }
	if _, err := send("pull 1"); err != nil || l.Connected() {
		t.Fatalf("pull: %v, connected %v", err, l.Connected())
	}
	if s, _ := send("status"); !strings.Contains(s, "SIM-0001 tpm") || !strings.Contains(s, "pulled") {
		t.Fatalf("status: %q", s)
	}
	if _, err := send("plug 1"); err != nil || !l.Connected() {
		t.Fatalf("plug: %v, connected %v", err, l.Connected())
	}
	if _, err := send("fail 1 install"); err != nil {
		t.Fatal(err)
	}
	if a := inj.Armed(); len(a) != 1 || a[0] != "install" {
		t.Fatalf("armed %v", a)
	}
	for _, bad := range []string{"pull 2", "pull x", "fail 1 teleport", "fail 1", "dance", ""} {
		if _, err := send(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	_ = c.Close()
	if _, err := send("status"); !errors.Is(err, ErrNoBench) {
		t.Fatalf("closed socket: %v", err)
	}
}
