package station

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/sim"
	"go.bug.st/serial"
)

// waitReady says Hello to a device so that its agent has finished starting
// (an SE agent personalises a blank chip first).
func waitReady(tb testing.TB, port string) {
	tb.Helper()
	p, err := serial.Open(port, &serial.Mode{BaudRate: 115200})
	if err != nil {
		tb.Fatal(err)
	}
	defer p.Close()
	c := proto.NewClient(p, proto.WithLogger(slog.New(slog.DiscardHandler)))
	defer c.Close()
	if _, err := c.Hello(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkProvisionSE provisions fresh secure-element devices (ATECC608
// emulator with the datasheet's maximum execution times: GenKey and Sign
// 115 ms, Write 45 ms, ...) through the whole station — CSR, issuance with
// the compressed form's serial and dates, compressibility check, chain
// into slots 10-12 with the agent's read-back, station read-back, end-of-
// line signature in the chip — one device at a time, and reports the wall
// time per device and the time spent in the key, install, read-back and
// end-of-line steps. Each iteration starts a new device (not timed).
func BenchmarkProvisionSE(b *testing.B) {
	for _, baud := range []int{0, 115200} {
		name := "uart=none"
		if baud != 0 {
			name = fmt.Sprintf("uart=%d", baud)
		}
		b.Run(name, func(b *testing.B) {
			l := newTestLineOpts(b, sim.BenchConfig{N: 1, Mix: []string{"se"}, SEDatasheetTimings: true, Baud: baud})
			// Each device is a chip as its vendor ships it (attestation key,
			// manufacturer chain), from a vendor the station trusts.
			vendor, err := sim.NewSEVendor()
			if err != nil {
				b.Fatal(err)
			}
			defer vendor.Close()
			roots, inter := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(vendor.Root())
			inter.AddCert(vendor.Signer())
			l.prov.proofs = []Proof{&ATECC608Proof{Roots: roots, Intermediates: inter}}
			var wall, overhead, keys, install, readback, eol []time.Duration
			i := 0
			for b.Loop() {
				b.StopTimer()
				i++
				dir := filepath.Join(l.dir, "bench", fmt.Sprint(i))
				if _, err := vendor.Manufacture(filepath.Join(dir, sim.SEStateFile)); err != nil {
					b.Fatal(err)
				}
				d, err := sim.StartDevice(context.Background(), sim.DeviceConfig{
					Dir: dir, Kind: sim.KindSE, AgentBinary: agentBin,
					SEDatasheetTimings: true, Baud: baud,
				})
				if err != nil {
					b.Fatal(err)
				}
				waitReady(b, d.Port)
				b.StartTimer()
				res, err := l.prov.Provision(context.Background(), Job{Slot: 1, Port: d.Port})
				b.StopTimer()
				_ = d.Close()
				if err != nil {
					b.Fatal(err)
				}
				wall = append(wall, res.Duration)
				overhead = append(overhead, res.Duration-res.Wire.InCall)
				keys = append(keys, res.Steps[StepKeys])
				install = append(install, res.Steps[StepInstall])
				readback = append(readback, res.Steps[StepReadBack])
				eol = append(eol, res.Steps[StepEOL])
				b.StartTimer()
			}
			ms := func(d []time.Duration) float64 { return float64(p50(d).Microseconds()) / 1000 }
			b.ReportMetric(ms(wall), "wall-p50-ms")
			b.ReportMetric(ms(overhead), "overhead-p50-ms")
			b.ReportMetric(ms(keys), "keys-p50-ms")
			b.ReportMetric(ms(install), "install-p50-ms")
			b.ReportMetric(ms(readback), "readback-p50-ms")
			b.ReportMetric(ms(eol), "eol-p50-ms")
		})
	}
}
