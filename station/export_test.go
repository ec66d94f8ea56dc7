package station

import (
	"testing"
	"time"
)

// NewLineForTest gives external test packages (station_test: benchmarks of
// the operator view against the real station) a line of n simulated TPM
// devices on ptys with its provisioner, CA and database (newTestLine), their
// TPMs as slow as the named chip profile ("" for plain swtpm).
func NewLineForTest(tb testing.TB, n int, profile string) (*Provisioner, []string) {
	l := newTestLine(tb, n, profile)
	var ports []string
	for _, d := range l.bench.Devices {
		ports = append(ports, d.Port)
	}
	return l.prov, ports
}

// ResetDeviceForTest makes a simulated device forget its keys (resetDevice).
func ResetDeviceForTest(tb testing.TB, port string) { resetDevice(tb, port) }

// P50ForTest is the median of d (p50).
func P50ForTest(d []time.Duration) time.Duration { return p50(d) }
