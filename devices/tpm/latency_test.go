package tpm

import (
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// clock is the test's clock: a LatencyTPM waits on it instead of sleeping,
// so no verdict depends on the machine's speed.
type clock struct{ now time.Duration }

func (c *clock) wait(d time.Duration) { c.now += d }

// TestLatencyTPM runs a Device on swtpm behind a LatencyTPM with the
// SLB9670 profile and a test clock, and checks the waits per command code:
// the per-operation schedule the Device used to apply itself (keygen per
// Create/CreatePrimary, Sign per Sign/Certify/NV chunk), nothing for other
// commands, and the clock advanced by exactly the sum.
func TestLatencyTPM(t *testing.T) {
	lat := LatencyProfiles["slb9670"]
	var clk clock
	s := startSWTPM(t)
	lt := NewLatencyTPM(s.open(t), lat, WithWaitFunc(clk.wait))
	d, err := New(lt, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	waits, total := lt.Waits()
	if len(waits) != 0 || total != 0 || clk.now != 0 {
		t.Fatalf("New waited: %v %v", waits, total)
	}

	step := func(name string, f func() error, want map[tpm2.TPMCC]int) {
		t.Helper()
		before, t0 := lt.Waits()
		c0 := clk.now
		if err := f(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		after, t1 := lt.Waits()
		got := map[tpm2.TPMCC]int{}
		for cc, n := range after {
			if n-before[cc] != 0 {
				got[cc] = n - before[cc]
			}
		}
		t.Logf("%s: %v", name, got)
		var sum time.Duration
		for cc, n := range want {
			if got[cc] != n {
				t.Errorf("%s: %d waits for command %#x, want %d (all: %v)", name, got[cc], uint32(cc), n, got)
			}
			switch cc {
			case tpm2.TPMCCCreate, tpm2.TPMCCCreatePrimary:
				sum += time.Duration(n) * lat.ECCKeygen
			default:
				sum += time.Duration(n) * lat.Sign
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: waits %v, want %v", name, got, want)
		}
		if t1-t0 != sum || clk.now-c0 != sum {
			t.Errorf("%s: waited %v (clock %v), want %v", name, t1-t0, clk.now-c0, sum)
		}
	}
	step("CreateKeys", func() error { _, err := d.CreateKeys([]byte("nonce")); return err },
		map[tpm2.TPMCC]int{tpm2.TPMCCCreatePrimary: 1, tpm2.TPMCCCreate: 2, tpm2.TPMCCCertify: 1})
	digest := sha256.Sum256([]byte("x"))
	step("SignDigest", func() error { _, err := d.SignDigest(digest[:]); return err },
		map[tpm2.TPMCC]int{tpm2.TPMCCSign: 1})
	// 2.4 KB: two NV indices (2048 bytes at most each), written and read in
	// chunks of at most TPM_PT_NV_BUFFER_MAX (1024): three writes (2048 +
	// the rest, the chain header travelling in the last content write,
	// chain.go) and four reads (the header first).
	chain := [][]byte{derOf(t, 1500), derOf(t, 900)}
	step("WriteChain", func() error { _, err := d.WriteChain(chain); return err },
		map[tpm2.TPMCC]int{tpm2.TPMCCNVWrite: 3})
	step("ReadChain", func() error { _, err := d.ReadChain(); return err },
		map[tpm2.TPMCC]int{tpm2.TPMCCNVRead: 4})
}

// TestLatencyFor checks the command-code table on hand-made commands,
// including an RSA template and commands too short to read.
func TestLatencyFor(t *testing.T) {
	lat := Latency{ECCKeygen: 3 * time.Millisecond, Sign: 2 * time.Millisecond, RSAKeygen: 5 * time.Millisecond}
	cmd := func(tag tpm2.TPMST, cc tpm2.TPMCC, body ...byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(tag))
		b = binary.BigEndian.AppendUint32(b, uint32(10+len(body)))
		b = binary.BigEndian.AppendUint32(b, uint32(cc))
		return append(b, body...)
	}
	create := func(alg tpm2.TPMAlgID) []byte {
		body := []byte{0x40, 0, 0, 1}                                 // TPM_RH_OWNER
		body = append(body, 0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 1, 0, 0) // one password session
		body = append(body, 0, 4, 0, 0, 0, 0)                         // inSensitive
		body = append(body, 0, 2, byte(alg>>8), byte(alg))            // inPublic: type
		return cmd(tpm2.TPMSTSessions, tpm2.TPMCCCreatePrimary, body...)
	}
	for _, tc := range []struct {
		name string
		cmd  []byte
		want time.Duration
	}{
		{"ecc primary", create(tpm2.TPMAlgECC), lat.ECCKeygen},
		{"rsa primary", create(tpm2.TPMAlgRSA), lat.RSAKeygen},
		{"keyedhash primary", create(tpm2.TPMAlgKeyedHash), 0},
		{"truncated create", create(tpm2.TPMAlgECC)[:20], 0},
		{"create with a huge auth size", cmd(tpm2.TPMSTSessions, tpm2.TPMCCCreate, 0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff), 0},
		{"sign", cmd(tpm2.TPMSTSessions, tpm2.TPMCCSign), lat.Sign},
		{"nv read", cmd(tpm2.TPMSTSessions, tpm2.TPMCCNVRead), lat.Sign},
		{"get capability", cmd(tpm2.TPMSTNoSessions, tpm2.TPMCCGetCapability), 0},
		{"short", []byte{0x80, 0x01, 0, 0}, 0},
	} {
		if got := lat.For(tc.cmd); got != tc.want {
			t.Errorf("%s: For = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// derOf returns one DER SEQUENCE of about n bytes.
func derOf(t *testing.T, n int) []byte {
	t.Helper()
	b, err := asn1.Marshal(struct{ B []byte }{make([]byte, n-8)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
