package se

import (
	"crypto/sha256"
	"path/filepath"
	"testing"
)

// BenchmarkCommand measures each command through the driver against the
// emulator keeping the datasheet's maximum execution times, tWHI and the
// 100 kHz bus byte time: what one operation costs on a real chip in the
// worst case. Run: go test -run '^$' -bench Command -benchtime 5x ./devices/se/
func BenchmarkCommand(b *testing.B) {
	dir := b.TempDir()
	state := filepath.Join(dir, "chip.json")
	_, c0 := newProvisioned(b, WithStateFile(state))
	if _, err := c0.GenKey(SlotDeviceKey); err != nil {
		b.Fatal(err)
	}
	e := NewEmulator(WithDatasheetTimings(true))
	if err := e.Load(state); err != nil {
		b.Fatal(err)
	}
	c := New(e, DefaultAddress)
	pub, err := c.PublicKey(SlotDeviceKey)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("bench"))
	rs, err := c.Sign(SlotDeviceKey, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	slot := make([]byte, 72)
	ops := []struct {
		name string
		fn   func() error
	}{
		{"Info", func() error { _, err := c.Info(); return err }},
		{"Random", func() error { _, err := c.Random(); return err }},
		{"ReadConfig", func() error { _, err := c.ReadConfig(); return err }},
		{"GenKey", func() error { _, err := c.GenKey(SlotDeviceKey); return err }},
		{"PublicKey", func() error { _, err := c.PublicKey(SlotDeviceKey); return err }},
		{"NonceSign", func() error { _, err := c.Sign(SlotDeviceKey, digest[:]); return err }},
		{"NonceVerify", func() error { _, err := c.Verify(pub, digest[:], rs); return err }},
		{"WriteSlot72", func() error { return c.WriteSlot(SlotSignerCert, 0, slot) }},
		{"ReadSlot72", func() error { _, err := c.ReadSlot(SlotSignerCert); return err }},
	}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			e.ResetStats()
			for b.Loop() {
				if err := op.fn(); err != nil {
					b.Fatal(err)
				}
			}
			st := e.Stats()
			b.ReportMetric(float64(st.DatasheetTime.Microseconds())/1000/float64(b.N), "datasheet-ms/op")
			b.ReportMetric(float64(st.BytesIn+st.BytesOut)/float64(b.N), "bus-bytes/op")
		})
	}
}
