package plant

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// assertExact checks that the registry holds exactly the station's ledger and records: no
// row lost, none duplicated, no alarm, and the station's own copy agrees.
func assertExact(t *testing.T, p *testPlant, s *station, devices, failedRuns int) {
	t.Helper()
	ctx := context.Background()
	head, _, err := s.store.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		q    string
		want int64
	}{
		{"SELECT count(*) FROM ledger WHERE station_id = $1", head},
		{"SELECT max(seq) FROM ledger WHERE station_id = $1", head},
		{"SELECT count(*) FROM certificates WHERE station_id = $1", int64(devices)},
		{"SELECT count(DISTINCT serial_hex) FROM certificates WHERE station_id = $1", int64(devices)},
		{"SELECT count(*) FROM confirmations WHERE station_id = $1", int64(devices)},
		{"SELECT count(*) FROM runs WHERE station_id = $1 AND result = 'ok'", int64(devices)},
		{"SELECT count(*) FROM runs WHERE station_id = $1 AND result = 'failed'", int64(failedRuns)},
		{"SELECT count(*) FROM alarms WHERE station_id = $1", 0},
	}
	for _, c := range checks {
		if got := p.count(t, c.q, s.id); got != c.want {
			t.Errorf("%s: %s = %d, want %d", s.id, c.q, got, c.want)
		}
	}
	st, err := s.store.OutboxStatus(ctx)
	if err != nil || st.Pending != 0 || st.FailingSince != nil {
		t.Errorf("%s: outbox %q err %v", s.id, st.String(), err)
	}
	rep, err := VerifyStation(ctx, s.store, p.admin, s.id)
	if err != nil || rep.Witnessed != head {
		t.Errorf("%s: verify against plant: %+v %v", s.id, rep, err)
	}
}

// PostgreSQL is stopped for the length of 1,000 provisionings, then restarted: the station
// keeps recording, the outbox shows it offline, and one sync afterwards catches up exactly.
func TestRegistryDownFor1000Provisionings(t *testing.T) {
	ctx := context.Background()
	p := newPlant(t)
	s := newStation(t, p, "st-a")
	s.provision(t, 10)
	sy := s.syncer()
	if _, err := sy.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	failures := 0
	for i := 0; i < 10; i++ {
		s.provision(t, 100)
		_, err := sy.SyncOnce(ctx)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("sync while the registry is down: %v", err)
		}
		failures++
	}
	st, _ := s.store.OutboxStatus(ctx)
	if st.FailingSince == nil || !strings.HasPrefix(st.String(), "plant: offline since") || st.Pending == 0 {
		t.Fatalf("status while down: %q", st.String())
	}
	items, _ := s.store.Pending(ctx, 1)
	if items[0].Attempts != failures || items[0].LastError == "" {
		t.Fatalf("first pending row: attempts %d (want %d), last error %q", items[0].Attempts, failures, items[0].LastError)
	}
	if err := p.srv.Start(); err != nil {
		t.Fatal(err)
	}
	n, err := sy.SyncOnce(ctx)
	if err != nil {
		t.Fatalf("sync after restart: %v", err)
	}
	if n != st.Pending {
		t.Fatalf("sent %d rows, %d were pending", n, st.Pending)
	}
	assertExact(t, p, s, 1010, 1010/5)
}

// kill -9 of PostgreSQL in the middle of a batch (inside the ingest transaction, before
// COMMIT), at seeded batches: the batch is lost by PostgreSQL, kept by the outbox, re-sent.
func TestRegistryKilledMidBatch(t *testing.T) {
	ctx := context.Background()
	seed := seedFromEnv(t)
	rng := rand.New(rand.NewPCG(seed, 0))
	p := newPlant(t)
	s := newStation(t, p, "st-a")
	s.provision(t, 150)
	sy := s.syncer()
	sy.BatchSize = 100
	kills := map[int]bool{}
	for len(kills) < 2 {
		kills[1+rng.IntN(6)] = true
	}
	batch, hits := 0, 0
	s.reg.fault = func(point string) {
		if point != "ingest:before-commit" {
			return
		}
		batch++
		if kills[batch] {
			hits++
			if err := p.srv.Kill(); err != nil {
				t.Errorf("kill postgres: %v", err)
			}
		}
	}
	for round := 0; ; round++ {
		if round > 10 {
			t.Fatal("not in sync after 10 rounds")
		}
		_, err := sy.SyncOnce(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("round %d: %v", round, err)
		}
		startAfterCrash(t, p)
	}
	if hits != len(kills) {
		t.Fatalf("point ingest:before-commit hit %d times, want %d (batches %v)", hits, len(kills), kills)
	}
	t.Logf("seed %d: postgres killed before commit of batches %v", seed, kills)
	assertExact(t, p, s, 150, 30)
}

func startAfterCrash(t *testing.T, p *testPlant) {
	t.Helper()
	var err error
	for range 20 { // a killed postmaster's children may still hold shared memory briefly
		if err = p.srv.Start(); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("restart after crash: %v\n%s", err, p.srv.Log())
}

func seedFromEnv(t *testing.T) uint64 {
	if v := os.Getenv("WSC_FAULT_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("seed %d (WSC_FAULT_SEED)", n)
		return n
	}
	n := uint64(time.Now().UnixNano())
	t.Logf("seed %d (rerun with WSC_FAULT_SEED=%d)", n, n)
	return n
}

// The syncer process is killed with SIGKILL at seeded named points of its batches: before
// sending, after the registry committed but before the outbox acknowledged (the batch is
// re-sent: a replay), and after the acknowledgement. Nothing is lost or duplicated.
func TestSyncerKilledAtSeededPoints(t *testing.T) {
	if os.Getenv("WSC_PLANT_CHILD") != "" {
		syncerChild(t)
		return
	}
	seed := seedFromEnv(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	p := newPlant(t)
	s := newStation(t, p, "st-a")
	s.provision(t, 200)
	points := []string{"batch:read", "batch:committed", "batch:acked"}
	hits := map[string]int{}
	plan := append([]string{}, points...) // each point at least once, then seeded extras
	for range 3 {
		plan = append(plan, points[rng.IntN(len(points))])
	}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	run := func(point string, nth int) (killed bool, out string) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSyncerKilledAtSeededPoints$", "-test.v")
		cmd.Env = append(os.Environ(), "WSC_PLANT_CHILD=1", "WSC_CHILD_DB="+s.store.Path(), "WSC_CHILD_DSN="+p.stationDSN(s.role),
			"WSC_CHILD_STATION="+s.id, "WSC_CHILD_POINT="+point, "WSC_CHILD_NTH="+strconv.Itoa(nth))
		b, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
				return true, string(b)
			}
		}
		if err != nil {
			t.Fatalf("child: %v\n%s", err, b)
		}
		return false, string(b)
	}
	// The parent's store must not hold the file while children write it.
	for i, pt := range plan {
		s.provision(t, 20) // new work between crashes
		nth := 1 + rng.IntN(2)
		killed, out := run(pt, nth)
		if !killed {
			t.Fatalf("step %d: child not killed at %s #%d:\n%s", i, pt, nth, out)
		}
		if !strings.Contains(out, "FAULT "+pt) {
			t.Fatalf("step %d: child died elsewhere than %s:\n%s", i, pt, out)
		}
		hits[pt]++
	}
	if killed, out := run("", 0); killed {
		t.Fatalf("final child killed:\n%s", out)
	}
	want := map[string]int{}
	for _, pt := range plan {
		want[pt]++
	}
	for _, pt := range points {
		if hits[pt] != want[pt] || hits[pt] == 0 {
			t.Fatalf("hits %v, want %v", hits, want)
		}
	}
	t.Logf("seed %d: kill -9 hits per point %v", seed, hits)
	total := 200 + 20*len(plan)
	assertExact(t, p, s, total, total/5)
}

// syncerChild is the syncer process of TestSyncerKilledAtSeededPoints.
func syncerChild(t *testing.T) {
	ctx := context.Background()
	store, err := openDBStore(os.Getenv("WSC_CHILD_DB")) // no audit signer: the syncer only reads the ledger
	if err != nil {
		t.Fatal(err)
	}
	reg, err := Open(ctx, os.Getenv("WSC_CHILD_DSN"))
	if err != nil {
		t.Fatal(err)
	}
	point := os.Getenv("WSC_CHILD_POINT")
	nth, _ := strconv.Atoi(os.Getenv("WSC_CHILD_NTH"))
	seen := 0
	sy := &Syncer{Store: store, Registry: reg, Station: os.Getenv("WSC_CHILD_STATION"), BatchSize: 50}
	sy.fault = func(p string) {
		if p != point {
			return
		}
		seen++
		if seen == nth {
			fmt.Fprintf(os.Stdout, "FAULT %s #%d\n", p, nth)
			os.Stdout.Sync()
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	if _, err := sy.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if point != "" {
		// Fewer batches than the planned kill: go once more through the points.
		t.Fatalf("point %s #%d never reached (seen %d)", point, nth, seen)
	}
}

// A TCP proxy between the syncer and PostgreSQL drops new connections, delays traffic and
// cuts connections in the middle of a batch, at seeded points; every hit is counted. Batches
// whose COMMIT outcome the syncer never learns are re-sent and count as replays.
func TestSyncThroughFaultyNetwork(t *testing.T) {
	ctx := context.Background()
	seed := seedFromEnv(t)
	p := newPlant(t)
	s := newStation(t, p, "st-a")
	px := startProxy(t, fmt.Sprintf("127.0.0.1:%d", p.srv.Port), seed)
	reg, err := Open(ctx, p.srv.ClientDSN(s.role, p.db, px.addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	sy := &Syncer{Store: s.store, Registry: reg, Station: s.id, BatchSize: 40}
	fails := 0
	for round := 0; round < 6; round++ {
		s.provision(t, 40)
		for attempt := 0; ; attempt++ {
			if attempt > 60 {
				t.Fatalf("not in sync after 60 attempts; proxy hits %v", px.hitsCopy())
			}
			_, err := sy.SyncOnce(ctx)
			if err == nil {
				break
			}
			if errors.Is(err, ErrTampered) {
				t.Fatalf("honest station refused: %v", err)
			}
			fails++
		}
	}
	hits := px.hitsCopy()
	t.Logf("seed %d: proxy hits %v, failed sync rounds %d", seed, hits, fails)
	for _, pt := range []string{"drop-connect", "delay", "cut-midstream"} {
		if hits[pt] == 0 {
			t.Errorf("point %s never hit (%v)", pt, hits)
		}
	}
	if fails == 0 {
		t.Errorf("no sync round failed despite %v", hits)
	}
	px.disable()
	assertExact(t, p, s, 240, 48)
}

// proxy forwards TCP connections and injects faults chosen by a seeded generator.
type proxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	rng    *rand.Rand
	hits   map[string]int
	off    bool
}

func startProxy(t *testing.T, target string, seed uint64) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &proxy{t: t, ln: ln, target: target, rng: rand.New(rand.NewPCG(seed, 2)), hits: map[string]int{}}
	t.Cleanup(func() { ln.Close() })
	go px.serve()
	return px
}

func (px *proxy) addr() string { return px.ln.Addr().String() }

func (px *proxy) hitsCopy() map[string]int {
	px.mu.Lock()
	defer px.mu.Unlock()
	m := map[string]int{}
	for k, v := range px.hits {
		m[k] = v
	}
	return m
}

func (px *proxy) disable() { px.mu.Lock(); px.off = true; px.mu.Unlock() }

// decide draws whether a new connection is dropped at connect (1 in 4).
func (px *proxy) decide() bool {
	px.mu.Lock()
	defer px.mu.Unlock()
	if px.off || px.rng.IntN(4) != 0 {
		return false
	}
	px.hits["drop-connect"]++
	return true
}

// chunk draws the fault for one chunk of client traffic: cut the connection (1 in 25),
// delay it (1 in 4), or pass it.
func (px *proxy) chunk() string {
	px.mu.Lock()
	defer px.mu.Unlock()
	if px.off {
		return ""
	}
	switch x := px.rng.IntN(100); {
	case x < 4:
		px.hits["cut-midstream"]++
		return "cut"
	case x < 29:
		px.hits["delay"]++
		return "delay"
	}
	return ""
}

func (px *proxy) serve() {
	for {
		c, err := px.ln.Accept()
		if err != nil {
			return
		}
		if px.decide() {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", px.target)
		if err != nil {
			c.Close()
			continue
		}
		var once sync.Once
		closeBoth := func() { once.Do(func() { c.Close(); up.Close() }) }
		go func() { // server -> client
			io.Copy(c, up)
			closeBoth()
		}()
		go func() { // client -> server, with the faults
			defer closeBoth()
			buf := make([]byte, 16<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					switch px.chunk() {
					case "cut":
						return
					case "delay":
						time.Sleep(20 * time.Millisecond) // a slow network, not synchronisation
					}
					if _, werr := up.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}
