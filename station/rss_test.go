package station

import (
	"context"
	"testing"
)

// TestAgentPeakRSS provisions a device and checks the agent's peak resident
// memory during the run (issue target: ≤ 20 MB).
func TestAgentPeakRSS(t *testing.T) {
	l := newTestLine(t, 1, "")
	d := l.bench.Devices[0]
	if _, err := l.prov.Provision(context.Background(), Job{Slot: 1, Port: d.Port}); err != nil {
		t.Fatal(err)
	}
	rss, err := d.AgentPeakRSS()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("agent peak RSS during a provisioning run: %.1f MiB", float64(rss)/(1<<20))
	if rss > 20<<20 {
		t.Fatalf("agent peak RSS %d bytes > 20 MB", rss)
	}
}
