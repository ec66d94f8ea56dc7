package station

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/wsc-project/wsc/station/label"
)

// TestBenchPrintsLabels: after each pass the bench prints the device's
// label — a TCP listener standing for the printer receives ZPL with the
// device serial and the fingerprint of the certificate the database holds;
// when the printer is gone the device still passes and the pass carries the
// label error (event and slot status).
func TestBenchPrintsLabels(t *testing.T) {
	l := newTestLine(t, 1, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(c)
			c.Close()
			got <- string(b)
		}
	}()
	ap, err := LabelPrinter(label.Config{Printer: ln.Addr().String(), Timeout: time.Second}, func() string { return "WO-1" })
	if err != nil {
		t.Fatal(err)
	}
	run := func() Event {
		log := newEventLog()
		bench, err := NewBench(BenchConfig{Provisioner: l.prov, Slots: slotsOf(l.bench), Running: true, Events: log.add, AfterPass: ap, Poll: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- bench.Run(ctx) }()
		defer func() { cancel(); <-done }()
		e := log.waitFor(t, "the pass", 120*time.Second, func(e Event) bool { return e.State == StatePassed })
		if st := bench.Snapshot()[0]; (st.LabelErr == "") != (e.LabelErr == nil) {
			t.Fatalf("slot status label error %q, event %v", st.LabelErr, e.LabelErr)
		}
		return e
	}
	e := run()
	if e.LabelErr != nil || e.Result == nil {
		t.Fatalf("pass: label error %v", e.LabelErr)
	}
	zpl := <-got
	fp := label.Fingerprint(e.Result.Chain[0].Raw)
	if !strings.Contains(zpl, "^FDSN "+e.Serial+"^FS") || !strings.Contains(zpl, "SHA256:"+fp) || !strings.Contains(zpl, "WO-1") {
		t.Fatalf("ZPL:\n%s", zpl)
	}

	// The printer is gone: the device (re-delivered) passes, the label
	// error travels with the pass.
	addr := ln.Addr().String()
	ln.Close()
	e = run()
	if e.State != StatePassed || e.LabelErr == nil || !strings.Contains(e.LabelErr.Error(), addr) {
		t.Fatalf("pass without a printer: state %s, label error %v", e.State, e.LabelErr)
	}
}
