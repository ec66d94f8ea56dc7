package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"testing"

	"github.com/wsc-project/wsc/devices/anchors"
	"github.com/wsc-project/wsc/wasmsign"
)

// benchFirmware provisions a swtpm with the SLB9670 latency profile and
// returns a Firmware, a signed 4 MiB module and its bundle.
func benchFirmware(b *testing.B) (*Firmware, *TPMBackend, []byte, []byte) {
	b.Helper()
	dev := startTPMProfile(b, "slb9670")
	be, err := NewTPMBackend(dev, "DEV-B")
	if err != nil {
		b.Fatal(err)
	}
	pki := newFWPKI(b, "bench")
	provisionTrust(b, NewHandler(be, nil), &anchors.Policy{Version: 1, DeviceClass: "gw-1",
		Roots: []anchors.Fingerprint{anchors.RootFingerprint(pki.root)}})
	blob := make([]byte, 4<<20)
	for i := range blob {
		blob[i] = byte(i * 7)
	}
	name := []byte("blob")
	payload := append([]byte{byte(len(name))}, name...)
	payload = append(payload, blob...)
	sec := []byte{0}
	n := uint32(len(payload))
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n != 0 {
			sec = append(sec, c|0x80)
			continue
		}
		sec = append(sec, c)
		break
	}
	mod := append(bytes.Clone(answerModule), append(sec, payload...)...)
	m, err := wasmsign.AddManifest(mod, &wasmsign.Manifest{Format: 1, Component: "fw", Version: 1, MinVersion: 1, DeviceClass: "gw-1"})
	if err != nil {
		b.Fatal(err)
	}
	signed, err := wasmsign.Sign(m, pki.leafKey, []*x509.Certificate{pki.leaf, pki.inter}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return &Firmware{Store: be, Serial: "DEV-B"}, be, signed, pki.bundle(b, 1, 1)
}

// BenchmarkFirmwareVerify4MiBSLB9670 is `wsc-agent verify` of a 4 MiB
// module with the chip reads at SLB9670 latency. Compare with
// BenchmarkBaselineSHA256AndNVReadsSLB9670 (issue 15: ≤ 1.2×).
func BenchmarkFirmwareVerify4MiBSLB9670(b *testing.B) {
	fw, _, signed, bundle := benchFirmware(b)
	ctx := context.Background()
	b.SetBytes(int64(len(signed)))
	b.ResetTimer()
	for b.Loop() {
		res, err := fw.Verify(ctx, bytes.NewReader(signed), bundle)
		if err != nil || !res.Accepted {
			b.Fatal(err)
		}
	}
}

// BenchmarkBaselineSHA256AndNVReadsSLB9670 is the floor: SHA-256 over the
// same module plus the chip reads verify needs (anchors, counter).
func BenchmarkBaselineSHA256AndNVReadsSLB9670(b *testing.B) {
	_, be, signed, _ := benchFirmware(b)
	ctx := context.Background()
	b.SetBytes(int64(len(signed)))
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := be.ReadAnchors(ctx); err != nil {
			b.Fatal(err)
		}
		if _, err := be.Counter(ctx); err != nil {
			b.Fatal(err)
		}
		sha256.Sum256(signed)
	}
}
