package plant

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"sort"
	"testing"
	"time"

	"github.com/wsc-project/wsc/db"
)

func TestPlantChecksFindCrossStationFaults(t *testing.T) {
	ctx := context.Background()
	p := newPlant(t)
	a, b := newStation(t, p, "st-a"), newStation(t, p, "st-b")
	a.provision(t, 5)
	b.provision(t, 5)
	sync := func() {
		t.Helper()
		for _, s := range []*station{a, b} {
			if _, err := s.syncer().SyncOnce(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	sync()
	fs, err := p.admin.Check(ctx)
	if err != nil || len(fs) != 0 {
		t.Fatalf("clean plant: %v %+v", err, fs)
	}
	// The chip of a's first device shows up at b under another serial.
	chip := db.KeyHash([]byte("ek:st-a-D000001"))
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := b.provisionWith(ctx, "CLONE-1", chip, k1, true); err != nil {
		t.Fatal(err)
	}
	// One device key certified at both stations.
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := a.provisionWith(ctx, "SHARED-KEY-A", db.KeyHash([]byte("chip-ka")), k2, true); err != nil {
		t.Fatal(err)
	}
	if err := b.provisionWith(ctx, "SHARED-KEY-B", db.KeyHash([]byte("chip-kb")), k2, true); err != nil {
		t.Fatal(err)
	}
	// One serial with two chips (at two stations).
	k3, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k4, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := a.provisionWith(ctx, "TWIN", db.KeyHash([]byte("chip-t1")), k3, true); err != nil {
		t.Fatal(err)
	}
	if err := b.provisionWith(ctx, "TWIN", db.KeyHash([]byte("chip-t2")), k4, true); err != nil {
		t.Fatal(err)
	}
	// A confirmed certificate without any run.
	k5, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := a.provisionWith(ctx, "NORUN", db.KeyHash([]byte("chip-nr")), k5, false); err != nil {
		t.Fatal(err)
	}
	sync()
	fs, err = p.admin.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, f := range fs {
		got[f.Check]++
		if len(f.Stations) == 0 || f.Subject == "" {
			t.Errorf("finding without subject or station: %+v", f)
		}
	}
	want := map[string]int{CheckChipTwoStations: 1, CheckKeyTwoStations: 1, CheckSerialTwoChips: 1, CheckCertWithoutRun: 1}
	if len(got) != len(want) {
		t.Fatalf("findings %v, want %v (%+v)", got, want, fs)
	}
	for k, n := range want {
		if got[k] != n {
			t.Fatalf("findings %v, want %v (%+v)", got, want, fs)
		}
	}
	for _, f := range fs {
		if f.Check == CheckSerialTwoChips {
			sort.Strings(f.Stations)
			if f.Subject != "TWIN" || len(f.Stations) != 2 {
				t.Fatalf("serial finding %+v", f)
			}
		}
	}
	// Lookup by device serial and by certificate serial.
	ls, err := p.admin.Find(ctx, "TWIN")
	if err != nil || len(ls) != 2 {
		t.Fatalf("find TWIN: %v %+v", err, ls)
	}
	byCert, err := p.admin.Find(ctx, ls[0].CertSerial)
	if err != nil || len(byCert) != 1 || byCert[0].Device != "TWIN" || !byCert[0].Confirmed {
		t.Fatalf("find by certificate serial: %v %+v", err, byCert)
	}
	// Report: today's numbers equal what the stations did.
	day := time.Now().UTC().Truncate(24 * time.Hour)
	rep, err := p.admin.Report(ctx, day, day.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var devices, runs int64
	for _, r := range rep.Rows {
		devices += r.Devices
		runs += r.Runs
		if r.FirstPassYield <= 0 || r.FirstPassYield > 1 || r.MeanCycle <= 0 || r.P95Cycle < r.MeanCycle*0 {
			t.Fatalf("row %+v", r)
		}
	}
	okRuns := p.count(t, "SELECT count(*) FROM runs WHERE result = 'ok'")
	allRuns := p.count(t, "SELECT count(*) FROM runs")
	if devices != okRuns || runs != allRuns {
		t.Fatalf("report: %d devices, %d runs; registry: %d ok, %d runs", devices, runs, okRuns, allRuns)
	}
	if len(rep.Pareto) != 1 || rep.Pareto[0].Error != "credential activation failed" {
		t.Fatalf("pareto %+v", rep.Pareto)
	}
	var paretoSum int64
	for _, x := range rep.Pareto {
		paretoSum += x.Count
	}
	if paretoSum != allRuns-okRuns {
		t.Fatalf("pareto counts %d failures, registry has %d", paretoSum, allRuns-okRuns)
	}
}
