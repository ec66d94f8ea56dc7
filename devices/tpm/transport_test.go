package tpm

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
)

// A response cut short breaks the connection for good instead of letting a
// late answer be read as the next command's.
func TestStreamTPMDropsBrokenConnection(t *testing.T) {
	a, b := net.Pipe()
	go func() {
		buf := make([]byte, 64)
		if _, err := b.Read(buf); err != nil {
			return
		}
		hdr := make([]byte, 10)
		binary.BigEndian.PutUint16(hdr, 0x8001)
		binary.BigEndian.PutUint32(hdr[2:], 20) // announces 20 bytes, sends 10
		b.Write(hdr)
		b.Close()
	}()
	s := &streamTPM{rwc: a}
	if _, err := s.Send([]byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 1, 0x7b}); err == nil {
		t.Fatal("short response accepted")
	}
	if _, err := s.Send([]byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 1, 0x7b}); err == nil {
		t.Fatal("send on a broken stream succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// fakeRetry answers TPM_RC_RETRY n times, then success (a real TPM does
// this under load; swtpm rarely).
type fakeRetry struct{ n, calls int }

func (f *fakeRetry) Send([]byte) ([]byte, error) {
	f.calls++
	rsp := make([]byte, 10)
	binary.BigEndian.PutUint16(rsp, 0x8001)
	binary.BigEndian.PutUint32(rsp[2:], 10)
	if f.calls <= f.n {
		binary.BigEndian.PutUint32(rsp[6:], rcRetry)
	}
	return rsp, nil
}

func TestRetryTPM(t *testing.T) {
	f := &fakeRetry{n: 3}
	rsp, err := retryTPM{t: f}.Send([]byte{0})
	if err != nil || binary.BigEndian.Uint32(rsp[6:]) != 0 || f.calls != 4 {
		t.Fatalf("rc %#x calls %d err %v", binary.BigEndian.Uint32(rsp[6:]), f.calls, err)
	}
	f = &fakeRetry{n: 1000}
	rsp, _ = retryTPM{t: f}.Send([]byte{0})
	if binary.BigEndian.Uint32(rsp[6:]) != rcRetry || f.calls > 30 {
		t.Fatalf("unbounded retries: %d calls", f.calls)
	}
}

var _ io.Closer = (*streamTPM)(nil)
