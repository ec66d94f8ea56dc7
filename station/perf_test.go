package station

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/sim"
	"go.bug.st/serial"
)

// resetDevice removes the device's keys and chain so that the next run is a
// first provisioning (new keys, new certificate; the old one superseded).
func resetDevice(tb testing.TB, port string) {
	tb.Helper()
	p, err := serial.Open(port, &serial.Mode{BaudRate: 115200})
	if err != nil {
		tb.Fatal(err)
	}
	c := proto.NewClient(p, proto.WithLogger(slog.New(slog.DiscardHandler)))
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Hello(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := c.Reset(ctx); err != nil {
		tb.Fatal(err)
	}
}

func p50(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkProvisionOverhead provisions one swtpm device again and again
// (reset in between, so every run creates keys and issues a certificate) and
// reports the station's own time per device: wall time minus the time spent
// in protocol calls (wire + device). Target: p50 ≤ 5 ms.
func BenchmarkProvisionOverhead(b *testing.B) {
	l := newTestLine(b, 1, "")
	d := l.bench.Devices[0]
	var overhead, wall []time.Duration
	for b.Loop() {
		b.StopTimer()
		resetDevice(b, d.Port)
		b.StartTimer()
		res, err := l.prov.Provision(context.Background(), Job{Slot: 1, Port: d.Port})
		if err != nil {
			b.Fatal(err)
		}
		wall = append(wall, res.Duration)
		overhead = append(overhead, res.Duration-res.Wire.InCall)
	}
	b.ReportMetric(float64(p50(overhead).Microseconds())/1000, "overhead-p50-ms")
	b.ReportMetric(float64(p50(wall).Microseconds())/1000, "wall-p50-ms")
}

// BenchmarkBenchThroughput measures devices/hour for one device and for 8
// devices in parallel, with SLB9670 latencies and cables paced at 115200
// baud, and the parallel efficiency (throughput ratio / 8). Target ≥ 0.875.
func BenchmarkBenchThroughput(b *testing.B) {
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			l := newTestLineOpts(b, sim.BenchConfig{N: n, LatencyProfile: "slb9670", Baud: 115200})
			jobs := make([]Job, n)
			for i, d := range l.bench.Devices {
				jobs[i] = Job{Slot: i + 1, Port: d.Port}
			}
			var total time.Duration
			runs := 0
			for b.Loop() {
				b.StopTimer()
				for _, d := range l.bench.Devices {
					resetDevice(b, d.Port)
				}
				b.StartTimer()
				t0 := time.Now()
				for _, o := range l.prov.RunJobs(context.Background(), jobs, nil) {
					if o.Err != nil {
						b.Fatal(o.Err)
					}
				}
				total += time.Since(t0)
				runs++
			}
			perRound := total / time.Duration(runs)
			b.ReportMetric(float64(n)/perRound.Hours(), "devices/hour")
			b.ReportMetric(perRound.Seconds(), "s/round")
		})
	}
}

// timedStore measures the time the station spends in its database.
type timedStore struct {
	Store
	d time.Duration
	n int
}

func (s *timedStore) t(t0 time.Time) { s.d += time.Since(t0); s.n++ }

func (s *timedStore) EnsureDevice(ctx context.Context, d db.Device) error {
	defer s.t(time.Now())
	return s.Store.EnsureDevice(ctx, d)
}
func (s *timedStore) StartRun(ctx context.Context, r db.RunStart) (int64, error) {
	defer s.t(time.Now())
	return s.Store.StartRun(ctx, r)
}
func (s *timedStore) StepRun(ctx context.Context, id int64, step string) error {
	defer s.t(time.Now())
	return s.Store.StepRun(ctx, id, step)
}
func (s *timedStore) FinishRun(ctx context.Context, id int64, result, msg string, steps map[string]time.Duration) error {
	defer s.t(time.Now())
	return s.Store.FinishRun(ctx, id, result, msg, steps)
}
func (s *timedStore) BeginIssue(ctx context.Context, in db.IssueIntent) (int64, *db.Certificate, error) {
	defer s.t(time.Now())
	return s.Store.BeginIssue(ctx, in)
}
func (s *timedStore) CompleteIssue(ctx context.Context, id int64, c db.Certificate) error {
	defer s.t(time.Now())
	return s.Store.CompleteIssue(ctx, id, c)
}
func (s *timedStore) MarkDelivered(ctx context.Context, serial string) error {
	defer s.t(time.Now())
	return s.Store.MarkDelivered(ctx, serial)
}
func (s *timedStore) ConfirmAndFinish(ctx context.Context, serial string, id int64, steps map[string]time.Duration) error {
	defer s.t(time.Now())
	return s.Store.ConfirmAndFinish(ctx, serial, id, steps)
}

// BenchmarkProvisionStoreShare reports how much of the station's own time
// per device goes to durable database commits.
func BenchmarkProvisionStoreShare(b *testing.B) {
	l := newTestLine(b, 1, "")
	ts := &timedStore{Store: l.store}
	l.prov.cfg.Store = ts
	d := l.bench.Devices[0]
	var overhead []time.Duration
	for b.Loop() {
		b.StopTimer()
		resetDevice(b, d.Port)
		b.StartTimer()
		res, err := l.prov.Provision(context.Background(), Job{Slot: 1, Port: d.Port})
		if err != nil {
			b.Fatal(err)
		}
		overhead = append(overhead, res.Duration-res.Wire.InCall)
	}
	b.ReportMetric(float64(p50(overhead).Microseconds())/1000, "overhead-p50-ms")
	b.ReportMetric(float64(ts.d.Microseconds())/1000/float64(b.N), "store-ms/device")
	b.ReportMetric(float64(ts.n)/float64(b.N), "store-calls/device")
}
