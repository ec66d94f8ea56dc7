package tpm

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/wsc-project/wsc/devices/sim/simtest"
)

// The swtpm state is manufactured once per test binary (simtest.Template:
// swtpm_setup with a private vendor CA, about 1 s) and copied for every
// swtpm instance: each instance is then the same TPM (same EKs and
// certificates) in its own state directory.
var swtpmTemplate *simtest.Template

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		// The quick suite (-short) needs no TPM: tests that do skip in
		// startSWTPM. Without a template the full suite's TPM tests fail
		// there with an instruction.
		tp, err := simtest.NewTemplate()
		if err != nil {
			fmt.Fprintln(os.Stderr, "swtpm template (install swtpm and swtpm-tools with scripts/deps):", err)
		}
		swtpmTemplate = tp
	}
	code := m.Run()
	_ = swtpmTemplate.Close()
	os.Exit(code)
}

// swtpmInstance is one running swtpm process.
type swtpmInstance struct {
	sock string // command socket; tpm2-tools reach it as "swtpm:path=" + sock
}

// startSWTPM runs a fresh swtpm (copy of the manufactured state) on a unix
// socket; it is stopped when the test ends.
func startSWTPM(tb testing.TB) *swtpmInstance {
	tb.Helper()
	sw := swtpmTemplate.Start(tb)
	return &swtpmInstance{sock: sw.Socket}
}

// open connects a new client (swtpm serves one at a time).
func (s *swtpmInstance) open(tb testing.TB) transport.TPMCloser {
	tb.Helper()
	var t transport.TPMCloser
	var err error
	// swtpm accepts the next client only after the previous one has gone.
	for range 100 {
		t, err = OpenTransport("swtpm:unix://" + s.sock)
		if err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("open swtpm: %v", err)
	}
	tb.Cleanup(func() { t.Close() })
	return t
}

// newDevice starts swtpm and returns a Device on it.
func newDevice(tb testing.TB, cfg Config) (*Device, *swtpmInstance) {
	tb.Helper()
	s := startSWTPM(tb)
	d, err := New(s.open(tb), cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { d.Close() })
	return d, s
}
