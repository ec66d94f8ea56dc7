package agent

import (
	"context"
	"crypto/sha256"
	"path/filepath"
	"testing"

	"github.com/wsc-project/wsc/devices/se"
	"github.com/wsc-project/wsc/devices/sim"
)

// BenchmarkProvisionSE provisions one SE device per iteration, agent side,
// as the station drives it: Hello, CreateKeys (GenKey + CSR signed in the
// chip), the certificate issued (in-process, negligible), InstallChain
// (compress, write slots 10-12, read back and rebuild), ReadChain (the
// station's read-back), SignDigest (end-of-line check). Each iteration
// starts from a personalised, key-less chip. With timings the emulator
// takes the datasheet's maximum execution times and 100 kHz bus time.
// Run: go test -run '^$' -bench ProvisionSE -benchtime 5x ./devices/agent/
func BenchmarkProvisionSE(b *testing.B) {
	dir := b.TempDir()
	state := filepath.Join(dir, "blank.json")
	e0, err := se.OpenEmulator(state)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := se.New(e0, se.DefaultAddress).Personalize(); err != nil {
		b.Fatal(err)
	}
	ca := newTestCA(b)
	for _, timings := range []bool{false, true} {
		name := "emulator-speed"
		if timings {
			name = "datasheet-timings"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			var datasheet, bus int64
			for b.Loop() {
				b.StopTimer()
				e := se.NewEmulator(se.WithDatasheetTimings(timings))
				if err := e.Load(state); err != nil {
					b.Fatal(err)
				}
				def := filepath.Join(b.TempDir(), "certdef.json")
				b.StartTimer()
				be, err := NewSEBackend(se.New(e, se.DefaultAddress), WithCertDefPath(def))
				if err != nil {
					b.Fatal(err)
				}
				id := be.Identity()
				keys, err := be.CreateKeys(ctx, make([]byte, 32), "")
				if err != nil || !keys.Created {
					b.Fatal(err)
				}
				chain := ca.issueSE(b, keys.CSR, id.Serial, 10)
				if _, err := be.InstallChain(ctx, chain, false); err != nil {
					b.Fatal(err)
				}
				if _, err := be.ReadChain(ctx); err != nil {
					b.Fatal(err)
				}
				d := sha256.Sum256([]byte("eol"))
				if _, err := be.SignDigest(ctx, d[:]); err != nil {
					b.Fatal(err)
				}
				st := e.Stats()
				datasheet += st.DatasheetTime.Microseconds()
				bus += int64(st.BytesIn + st.BytesOut)
			}
			b.ReportMetric(float64(datasheet)/1000/float64(b.N), "datasheet-ms/device")
			b.ReportMetric(float64(bus)/float64(b.N), "bus-bytes/device")
		})
	}
}

// BenchmarkPersonalizeSE is the one-time factory step on a blank chip:
// config written and locked, data zone cleared and locked.
func BenchmarkPersonalizeSE(b *testing.B) {
	for _, timings := range []bool{false, true} {
		name := "emulator-speed"
		if timings {
			name = "datasheet-timings"
		}
		b.Run(name, func(b *testing.B) {
			var datasheet int64
			for b.Loop() {
				e := se.NewEmulator(se.WithDatasheetTimings(timings))
				if _, err := se.New(e, se.DefaultAddress).Personalize(); err != nil {
					b.Fatal(err)
				}
				datasheet += e.Stats().DatasheetTime.Microseconds()
			}
			b.ReportMetric(float64(datasheet)/1000/float64(b.N), "datasheet-ms/chip")
		})
	}
}

// BenchmarkCreateKeysAttestedSE is CreateKeys on a chip as the simulated
// vendor ships it: GenKey in digest mode creating the device key, Sign
// internal by the attestation key, config zone read, manufacturer chain
// rebuilt (a GenKey for the attestation key's public key and 12 Reads),
// then the CSR signed in the chip. Each iteration starts from the same
// factory-fresh chip (no device key yet).
// Run: go test -run '^$' -bench CreateKeysAttestedSE -benchtime 5x ./devices/agent/
func BenchmarkCreateKeysAttestedSE(b *testing.B) {
	dir := b.TempDir()
	state := filepath.Join(dir, sim.SEStateFile)
	v, err := sim.NewSEVendor()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := v.Manufacture(state); err != nil {
		b.Fatal(err)
	}
	_ = v.Close()
	for _, timings := range []bool{false, true} {
		name := "emulator-speed"
		if timings {
			name = "datasheet-timings"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			var datasheet int64
			for b.Loop() {
				b.StopTimer()
				e := se.NewEmulator(se.WithDatasheetTimings(timings))
				if err := e.Load(state); err != nil {
					b.Fatal(err)
				}
				be, err := NewSEBackend(se.New(e, se.DefaultAddress), WithMfgDefPath(state+sim.SEMfgDefSuffix))
				if err != nil {
					b.Fatal(err)
				}
				e.ResetStats()
				b.StartTimer()
				keys, err := be.CreateKeys(ctx, make([]byte, 32), "")
				if err != nil || !keys.Created || keys.SEAttestation == nil || len(keys.SEAttestation.Chain) != 2 {
					b.Fatalf("create keys: %v", err)
				}
				datasheet += e.Stats().DatasheetTime.Microseconds()
			}
			b.ReportMetric(float64(datasheet)/1000/float64(b.N), "datasheet-ms/device")
		})
	}
}
