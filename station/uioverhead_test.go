package station_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/wsc-project/wsc/station"
	"github.com/wsc-project/wsc/ui"
)

// BenchmarkProvisionOverheadStatsPanel: the station's overhead per device
// (wall time minus the time in protocol calls, as BenchmarkProvisionOverhead)
// with the operator view running beside it, as on the line: a real bubbletea
// program (output discarded) fed every event of the run, at 120×40, with the
// statistics panel shown ("t"). "view=none" is the same line without a view,
// side by side in one run; on plain swtpm (chip time ≈ 0, so whatever the
// station overlaps with the chip shows as overhead) and on the SLB9670 chip
// profile (a real chip's times). Issue 13's target: ≤ 5 ms p50 with the
// panel on.
func BenchmarkProvisionOverheadStatsPanel(b *testing.B) {
	for _, profile := range []string{"", "slb9670"} {
		for _, withView := range []bool{false, true} {
			// Short names: the test's temporary folder, named after the
			// benchmark, holds swtpm's Unix sockets (at most 108 bytes).
			name := "swtpm"
			if profile != "" {
				name = profile
			}
			if withView {
				name += "/panel"
			} else {
				name += "/none"
			}
			b.Run(name, func(b *testing.B) { benchOverheadWithView(b, profile, withView) })
		}
	}
}

func benchOverheadWithView(b *testing.B, profile string, withView bool) {
	prov, ports := station.NewLineForTest(b, 1, profile)
	bench, err := station.NewBench(station.BenchConfig{Provisioner: prov, Slots: []station.SlotSpec{{Slot: 1, Port: ports[0]}}})
	if err != nil {
		b.Fatal(err)
	}
	var events func(station.Event)
	nEvents := 0
	if withView {
		m := ui.NewBenchModel(ui.BenchOptions{Control: bench, WorkOrder: "WO-1", Station: "bench", Operator: "op"})
		p := tea.NewProgram(m, tea.WithInput(nil), tea.WithOutput(io.Discard), tea.WithoutSignalHandler())
		final := make(chan tea.Model, 1)
		go func() { fm, _ := p.Run(); final <- fm }()
		defer func() {
			p.Quit()
			// The figures count only if the panel was on.
			if fm, ok := (<-final).(ui.BenchModel); !ok || !strings.Contains(fm.View(), "Statistics this shift") {
				b.Fatal("the statistics panel was not shown")
			}
		}()
		p.Send(tea.WindowSizeMsg{Width: 120, Height: 40})
		p.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("t")})
		feed := ui.NewFeed(p.Send)
		defer feed.Close()
		events = func(e station.Event) { nEvents++; feed.Event(e) }
	}
	var overhead []time.Duration
	for b.Loop() {
		b.StopTimer()
		station.ResetDeviceForTest(b, ports[0])
		b.StartTimer()
		res, err := prov.Provision(context.Background(), station.Job{Slot: 1, Port: ports[0], Events: events})
		if err != nil {
			b.Fatal(err)
		}
		overhead = append(overhead, res.Duration-res.Wire.InCall)
	}
	b.ReportMetric(float64(station.P50ForTest(overhead).Microseconds())/1000, "overhead-p50-ms")
	b.ReportMetric(float64(nEvents)/float64(len(overhead)), "events/device")
}
