package plant

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsc-project/wsc/db"
)

// Eight stations provision and sync concurrently into one registry; afterwards the row
// counts, every station's witnessed chain and the plant check are exact. 10,000 devices per
// station (WSC_PLANT_SCALE_DEVICES overrides; 1,000 under the race detector, which slows the
// station side tenfold; 300 under -short). The station databases run
// with synchronous=OFF here: the subject is the registry, not the station's disk.
func TestEightStationsConcurrently(t *testing.T) {
	perStation := 10000
	switch {
	case testing.Short():
		perStation = 300
	case raceEnabled:
		perStation = 1000
	}
	if v := os.Getenv("WSC_PLANT_SCALE_DEVICES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		perStation = n
	}
	ctx := context.Background()
	p := newPlant(t)
	var sts []*station
	for i := range 8 {
		id := fmt.Sprintf("line%d", i+1)
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		role := "station_" + id
		if err := p.admin.AddStation(ctx, id, role, &key.PublicKey); err != nil {
			t.Fatal(err)
		}
		st := openStation(t, p, id, role, key, filepath.Join(t.TempDir(), "wsc.db"), db.WithSynchronous("OFF"), db.WithAuditSigner(key, 100))
		sts = append(sts, st)
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(sts))
	for i, st := range sts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sy := &Syncer{Store: st.store, Registry: st.reg, Station: st.id, BatchSize: 1000}
			for done := 0; done < perStation; {
				n := min(500, perStation-done)
				for range n {
					st.n++
					if err := st.provisionOne(ctx, fmt.Sprintf("%s-D%06d", st.id, st.n)); err != nil {
						errs[i] = err
						return
					}
				}
				done += n
				if _, err := sy.SyncOnce(ctx); err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", sts[i].id, err)
		}
	}
	elapsed := time.Since(t0)
	var rows int64
	for _, st := range sts {
		assertExact(t, p, st, perStation, perStation/5)
		h, _, _ := st.store.AuditHead(ctx)
		rows += h
	}
	if got := p.count(t, "SELECT count(*) FROM ledger"); got != rows {
		t.Fatalf("registry holds %d ledger rows, stations %d", got, rows)
	}
	if got := p.count(t, "SELECT count(*) FROM certificates"); got != int64(8*perStation) {
		t.Fatalf("%d certificates, want %d", got, 8*perStation)
	}
	fs, err := p.admin.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 0 {
		var b strings.Builder
		for _, f := range fs[:min(5, len(fs))] {
			fmt.Fprintf(&b, "%+v\n", f)
		}
		t.Fatalf("%d plant-check findings on an honest plant:\n%s", len(fs), b.String())
	}
	t.Logf("8 stations x %d devices: %d ledger rows provisioned and synced in %s", perStation, rows, elapsed.Round(time.Second))
}
