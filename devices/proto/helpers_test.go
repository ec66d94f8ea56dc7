package proto

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// openPty returns a real pseudo-terminal pair with the slave in raw mode
// (no echo, no line discipline, no CR/LF mapping, no XON/XOFF, 8 bits), the
// way a serial port is configured for a binary protocol. Both ends are closed
// at cleanup.
func openPty(t testing.TB) (master, slave *os.File) {
	t.Helper()
	m, s, err := pty.Open()
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	m = pollable(t, m)
	t.Cleanup(func() {
		_ = m.Close()
		_ = s.Close()
	})
	makeRaw(t, s)
	return m, s
}

// pollable returns f reopened in non-blocking mode under the runtime
// poller. pty.Open calls Fd() on the master, which switches it to blocking
// mode: a Read on it can then be interrupted neither by a deadline nor by
// Close, so a Client could not stop its reader. A dup with O_NONBLOCK passed
// to os.NewFile is pollable again.
func pollable(t testing.TB, f *os.File) *os.File {
	t.Helper()
	fd, err := unix.Dup(int(f.Fd()))
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		t.Fatalf("reopen %s non-blocking: %v", f.Name(), err)
	}
	_ = f.Close()
	return os.NewFile(uintptr(fd), f.Name())
}

// makeRaw is cfmakeraw(3) on f. It goes through SyscallConn so that f stays
// in the runtime poller (f.Fd() would switch it to blocking mode and disable
// deadlines).
func makeRaw(t testing.TB, f *os.File) {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatalf("pty syscall conn: %v", err)
	}
	var terr error
	err = rc.Control(func(fd uintptr) {
		tio, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			terr = err
			return
		}
		tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
		tio.Oflag &^= unix.OPOST
		tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		tio.Cflag &^= unix.CSIZE | unix.PARENB
		tio.Cflag |= unix.CS8
		tio.Cc[unix.VMIN] = 1
		tio.Cc[unix.VTIME] = 0
		terr = unix.IoctlSetTermios(int(fd), unix.TCSETS, tio)
	})
	if err == nil {
		err = terr
	}
	if err != nil {
		t.Fatalf("pty raw mode: %v", err)
	}
}

// testLogger discards everything but errors, which fail nothing but show
// in -v output.
func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

// startServer runs a Server on rw until the test ends.
func startServer(t testing.TB, rw io.ReadWriter, h Handler, opts ...ServerOption) *Server {
	t.Helper()
	opts = append([]ServerOption{WithLogger(testLogger())}, opts...)
	s := NewServer(rw, h, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				t.Logf("serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return s
}

// newClientOn returns a Client on rw, closed at cleanup.
func newClientOn(t testing.TB, rw io.ReadWriter, opts ...ClientOption) *Client {
	t.Helper()
	opts = append([]ClientOption{WithLogger(testLogger())}, opts...)
	c := NewClient(rw, opts...)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// fakeDevice is a Handler with fixed, realistic-size answers that counts
// how often each message type reached it.
type fakeDevice struct {
	mu     sync.Mutex
	counts map[MsgType]int
	data   exchangeData
	delay  time.Duration
	// fastHello exempts Hello from delay.
	fastHello bool
}

func newFakeDevice() *fakeDevice {
	return &fakeDevice{counts: map[MsgType]int{}, data: newExchangeData()}
}

func (d *fakeDevice) count(t MsgType) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.counts[t]
}

func (d *fakeDevice) Handle(ctx context.Context, t MsgType, payload []byte) (any, error) {
	d.mu.Lock()
	d.counts[t]++
	d.mu.Unlock()
	if d.delay > 0 && (t != MsgHello || !d.fastHello) {
		time.Sleep(d.delay)
	}
	x := d.data
	switch t {
	case MsgHello:
		return &HelloResponse{Backend: "tpm", Serial: "TPM-0011223344556677", Model: "SLB9672", Firmware: "16.13",
			Capabilities: []string{"ecc-p256", "rsa2048"}}, nil
	case MsgGetEK:
		return GetEKResponse{EKPublic: x.ekPublic, EKCert: x.ekCert, EKKind: "ecc-p384"}, nil
	case MsgCreateKeys:
		var req CreateKeysRequest
		if err := Unmarshal(payload, &req); err != nil {
			return nil, Errorf(ErrBadRequest, "create keys: %v", err)
		}
		if len(req.Nonce) == 0 {
			return nil, Errorf(ErrBadRequest, "create keys: empty nonce")
		}
		return &CreateKeysResponse{IAKPublic: x.iak, IDevIDPublic: x.idevid, CertifyInfo: x.attest,
			CertifySignature: x.certSig, CSR: x.csr, Created: d.count(MsgCreateKeys) == 1}, nil
	case MsgActivateCredential:
		var req ActivateCredentialRequest
		if err := Unmarshal(payload, &req); err != nil {
			return nil, Errorf(ErrBadRequest, "activate credential: %v", err)
		}
		return ActivateCredentialResponse{Secret: x.secret}, nil
	case MsgInstallChain:
		var req InstallChainRequest
		if err := Unmarshal(payload, &req); err != nil {
			return nil, Errorf(ErrBadRequest, "install chain: %v", err)
		}
		return InstallChainResponse{SHA256: x.chainHash, NVIndices: []uint32{0x01500010, 0x01500011}}, nil
	case MsgReadChain:
		return ReadChainResponse{Chain: x.chain, SHA256: x.chainHash}, nil
	case MsgSignDigest:
		var req SignDigestRequest
		if err := Unmarshal(payload, &req); err != nil {
			return nil, Errorf(ErrBadRequest, "sign: %v", err)
		}
		if len(req.Digest) != 32 {
			return nil, Errorf(ErrBadRequest, "sign: digest of %d bytes, want 32", len(req.Digest))
		}
		return SignDigestResponse{Signature: x.sig}, nil
	case MsgLock:
		return nil, nil
	case MsgReset:
		return nil, Errorf(ErrLocked, "device is locked; reset refused")
	case MsgSetOwnerAuth:
		return SetOwnerAuthResponse{}, nil
	case MsgWriteAnchors:
		var req WriteAnchorsRequest
		if err := Unmarshal(payload, &req); err != nil {
			return nil, Errorf(ErrBadRequest, "write anchors: %v", err)
		}
		return WriteAnchorsResponse{Anchors: req.Anchors, Locked: req.Lock}, nil
	case MsgReadAnchors:
		return ReadAnchorsResponse{Anchors: x.chainHash, Locked: true}, nil
	case MsgSetupCounter:
		return SetupCounterResponse{Value: 41}, nil
	case MsgCreateSigningKey:
		return CreateSigningKeyResponse{IAKPublic: x.iak, LDevIDPublic: x.idevid, CertifyInfo: x.attest, CertifySignature: x.certSig, CSR: x.csr}, nil
	case MsgInstallSigningChain:
		return InstallChainResponse{SHA256: x.chainHash, NVIndices: []uint32{0x01500020}}, nil
	case MsgSignWithSigningKey:
		return SignDigestResponse{Signature: x.sig}, nil
	case MsgSignWithOwnerPolicy:
		var req SignWithOwnerPolicyRequest
		if err := Unmarshal(payload, &req); err != nil || len(req.Digest) != 32 || len(req.FleetKey) == 0 {
			return nil, Errorf(ErrBadRequest, "sign with owner policy: digest, fleet key and policy reference required")
		}
		return SignDigestResponse{Signature: x.sig}, nil
	}
	return nil, Errorf(ErrUnsupported, "no handler for %s", t)
}

// exchangeData holds payloads of realistic sizes for one TPM provisioning:
// 600 B CSR, 1.2 KB EK certificate, 2 × 90 B TPM2B_PUBLIC, 150 B attest,
// 1.5 KB chain, and the small items that go with them.
type exchangeData struct {
	nonce, ekPublic, ekCert, iak, idevid, attest, certSig, csr []byte
	credBlob, encSecret, secret, chainHash, digest, sig        []byte
	chain                                                      [][]byte
}

func filled(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func newExchangeData() exchangeData {
	return exchangeData{
		nonce:     filled(32, 1),
		ekPublic:  filled(122, 2), // ECC P-384 TPM2B_PUBLIC
		ekCert:    filled(1200, 3),
		iak:       filled(90, 4),
		idevid:    filled(90, 5),
		attest:    filled(150, 6),
		certSig:   filled(72, 7),
		csr:       filled(600, 8),
		credBlob:  filled(68, 9),
		encSecret: filled(98, 10), // ECC EK: TPM2B_ENCRYPTED_SECRET holding a point
		secret:    filled(32, 11),
		chain:     [][]byte{filled(800, 12), filled(700, 13)},
		chainHash: filled(32, 14),
		digest:    filled(32, 15),
		sig:       filled(71, 16),
	}
}
