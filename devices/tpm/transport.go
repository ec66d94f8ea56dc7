package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// maxResponse bounds a TPM response (the spec's largest is well under 4 KiB;
// 64 KiB leaves room for vendor extensions without trusting a corrupt size).
const maxResponse = 64 << 10

// commandTimeout bounds one command on a socket transport.
const commandTimeout = 2 * time.Minute

// OpenTransport opens a TPM by URI:
//
//	/dev/tpmrm0, /dev/tpm0           Linux character device (tpmrm0 preferred)
//	swtpm:unix:///path/tpm.sock      swtpm server socket (type=unixio)
//	swtpm:tcp://127.0.0.1:2321       swtpm server port (not the ctrl port)
//	tbs                              Windows TPM Base Services (GOOS=windows)
//	sim                              go-tpm-tools in-process simulator (build tag tpmsim)
//
// The swtpm transport is raw: command bytes are written on the server
// socket and the response is read by its header's size. No TPM2_Startup is
// sent (start swtpm with --flags not-need-init,startup-clear).
func OpenTransport(uri string) (transport.TPMCloser, error) {
	switch {
	case uri == "tbs":
		return openTBS()
	case uri == "sim":
		return openSimulator()
	case strings.HasPrefix(uri, "swtpm:"):
		u, err := url.Parse(strings.TrimPrefix(uri, "swtpm:"))
		if err != nil {
			return nil, fmt.Errorf("open tpm %q: %w", uri, err)
		}
		var network, addr string
		switch u.Scheme {
		case "unix":
			network, addr = "unix", u.Path
		case "tcp":
			network, addr = "tcp", u.Host
		default:
			return nil, fmt.Errorf("open tpm %q: %w", uri, ErrUnsupportedTransport)
		}
		if addr == "" {
			return nil, fmt.Errorf("open tpm %q: empty address", uri)
		}
		return DialSWTPM(network, addr)
	case strings.HasPrefix(uri, "/dev/") || strings.HasPrefix(uri, "file:"):
		return openDevice(strings.TrimPrefix(uri, "file:"))
	}
	return nil, fmt.Errorf("open tpm %q: %w", uri, ErrUnsupportedTransport)
}

// DialSWTPM connects to an swtpm server socket ("unix" path or "tcp"
// host:port) and returns a raw transport. swtpm serves one client at a time.
func DialSWTPM(network, addr string) (transport.TPMCloser, error) {
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial swtpm %s %s: %w", network, addr, err)
	}
	return &streamTPM{rwc: c}, nil
}

// streamTPM sends a command on a byte stream and reads exactly one response
// (10-byte header, then the size it announces).
type streamTPM struct {
	mu  sync.Mutex
	rwc io.ReadWriteCloser
}

func (s *streamTPM) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rwc == nil {
		return nil, errors.New("tpm transport closed")
	}
	rsp, err := s.roundTrip(cmd)
	if err != nil {
		// After a failed read or write the stream position is unknown: a
		// late response would be taken as the answer to the next command.
		// Drop the connection; the owner reopens it.
		_ = s.rwc.Close()
		s.rwc = nil
		return nil, err
	}
	return rsp, nil
}

func (s *streamTPM) roundTrip(cmd []byte) ([]byte, error) {
	if c, ok := s.rwc.(net.Conn); ok {
		// A TPM that stops answering must not hang the agent forever; the
		// slowest real operation (RSA keygen) takes well under a minute.
		_ = c.SetDeadline(time.Now().Add(commandTimeout))
	}
	if _, err := s.rwc.Write(cmd); err != nil {
		return nil, fmt.Errorf("write tpm command: %w", err)
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(s.rwc, hdr); err != nil {
		return nil, fmt.Errorf("read tpm response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxResponse {
		return nil, fmt.Errorf("tpm response size %d out of range", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.rwc, rsp[10:]); err != nil {
		return nil, fmt.Errorf("read tpm response body: %w", err)
	}
	return rsp, nil
}

func (s *streamTPM) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rwc == nil {
		return nil
	}
	err := s.rwc.Close()
	s.rwc = nil
	return err
}

// deviceTPM talks to a TPM character device: one write of the command, one
// read of the whole response (the kernel driver hands it out in one piece).
type deviceTPM struct {
	mu sync.Mutex
	f  *os.File
}

func openDevice(path string) (transport.TPMCloser, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open tpm %s: %w", path, err)
	}
	if fi.Mode()&os.ModeDevice == 0 {
		return nil, fmt.Errorf("open tpm %s: not a device (%s)", path, fi.Mode())
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open tpm %s: %w", path, err)
	}
	return &deviceTPM{f: f}, nil
}

func (d *deviceTPM) Send(cmd []byte) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil, errors.New("tpm transport closed")
	}
	if _, err := d.f.Write(cmd); err != nil {
		return nil, fmt.Errorf("write tpm command: %w", err)
	}
	buf := make([]byte, 4096)
	n, err := d.f.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("read tpm response: %w", err)
	}
	if n < 10 {
		return nil, fmt.Errorf("short tpm response (%d bytes)", n)
	}
	return buf[:n], nil
}

func (d *deviceTPM) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	return err
}

// retryTPM re-sends a command the TPM answered with a warning meaning "try
// again" (TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING), a bounded number
// of times with a short back-off.
type retryTPM struct {
	t transport.TPM
}

const (
	rcRetry   = 0x922
	rcYielded = 0x908
	rcTesting = 0x90A
)

func (r retryTPM) Send(cmd []byte) ([]byte, error) {
	delay := time.Millisecond
	for attempt := 0; ; attempt++ {
		rsp, err := r.t.Send(cmd)
		if err != nil || len(rsp) < 10 || attempt >= 20 {
			return rsp, err
		}
		switch binary.BigEndian.Uint32(rsp[6:10]) {
		case rcRetry, rcYielded, rcTesting:
			time.Sleep(delay)
			delay = min(2*delay, 100*time.Millisecond)
			continue
		}
		return rsp, nil
	}
}
