package ca

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/wsc-project/wsc/devices/sim"
	"github.com/wsc-project/wsc/devices/sim/simtest"
)

// rawTPM is the raw swtpm transport: command bytes out, 10-byte header in,
// then the rest of the response.
type rawTPM struct {
	mu   sync.Mutex
	conn net.Conn
}

func (r *rawTPM) Send(cmd []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 0; ; i++ {
		rsp, err := r.send(cmd)
		if err != nil || i == 50 {
			return rsp, err
		}
		switch binary.BigEndian.Uint32(rsp[6:10]) {
		case 0x922, 0x908, 0x90a: // TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING
			time.Sleep(time.Millisecond)
			continue
		}
		return rsp, nil
	}
}

func (r *rawTPM) send(cmd []byte) ([]byte, error) {
	if _, err := r.conn.Write(cmd); err != nil {
		return nil, err
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(r.conn, hdr); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > 1<<20 {
		return nil, fmt.Errorf("bad response size %d", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(r.conn, rsp[10:]); err != nil {
		return nil, err
	}
	return rsp, nil
}

var _ transport.TPM = (*rawTPM)(nil)

// vendorCA is the simulated TPM vendor (swtpm local CA) of the tests' TPMs.
type vendorCA struct {
	*sim.Vendor
}

func newVendorCA(t testing.TB) *vendorCA {
	t.Helper()
	return &vendorCA{simtest.Vendor(t)}
}

// startSwtpm manufactures a TPM with EK certificates from vendor v and
// serves it; the raw transport is closed when the test ends.
func startSwtpm(t testing.TB, v *vendorCA) transport.TPM {
	t.Helper()
	sw := simtest.SWTPM(t, v.Vendor)
	conn, err := net.Dial("unix", sw.Socket)
	if err != nil {
		t.Fatalf("connect swtpm: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawTPM{conn: conn}
}

func (v *vendorCA) roots(t testing.TB) []byte {
	b, err := os.ReadFile(v.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (v *vendorCA) intermediate(t testing.TB) []byte {
	b, err := os.ReadFile(v.IssuerCert)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nvReadAll reads a whole NV index in chunks.
func nvReadAll(t testing.TB, tpm transport.TPM, index uint32) []byte {
	t.Helper()
	rp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(index)}.Execute(tpm)
	if err != nil {
		t.Fatalf("NVReadPublic %#x: %v", index, err)
	}
	pub, err := rp.NVPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for off := 0; off < int(pub.DataSize); {
		n := min(1024, int(pub.DataSize)-off)
		r, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: rp.NVName},
			Size:       uint16(n),
			Offset:     uint16(off),
		}.Execute(tpm)
		if err != nil {
			t.Fatalf("NVRead %#x: %v", index, err)
		}
		out = append(out, r.Data.Buffer...)
		off += n
	}
	return out
}
