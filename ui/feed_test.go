package ui

import (
	"testing"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/wsc-project/wsc/station"
)

// TestFeedNeverBlocksAndKeepsOrder: while the view is busy (send blocked),
// the station's Event calls return at once; when the view takes messages
// again it gets every event, in order, the piled-up ones in one batch.
func TestFeedNeverBlocksAndKeepsOrder(t *testing.T) {
	release := make(chan struct{})
	got := make(chan tea.Msg, 200)
	first := true
	f := NewFeed(func(m tea.Msg) {
		if first { // the view is busy drawing: it takes nothing until released
			first = false
			<-release
		}
		got <- m
	})
	for i := 1; i <= 100; i++ {
		f.Event(station.Event{Slot: i})
	}
	// All 100 calls returned although the view has not taken even the first.
	close(release)
	f.Close()
	close(got)
	var slots []int
	batches := 0
	for m := range got {
		switch m := m.(type) {
		case EventMsg:
			slots = append(slots, m.Slot)
		case EventBatchMsg:
			batches++
			for _, e := range m {
				slots = append(slots, e.Slot)
			}
		default:
			t.Fatalf("unexpected message %T", m)
		}
	}
	if len(slots) != 100 {
		t.Fatalf("%d events delivered, want 100", len(slots))
	}
	for i, s := range slots {
		if s != i+1 {
			t.Fatalf("event %d is slot %d: order lost", i+1, s)
		}
	}
	if batches == 0 {
		t.Fatal("events that piled up behind a busy view were not batched")
	}
}

// TestEventBatchAppliesEach: a batch updates the model as the same events
// one by one do.
func TestEventBatchAppliesEach(t *testing.T) {
	one, _ := newTestBench(t, 2)
	batch := one
	evs := []EventMsg{ev(1, 0, station.StateRunning, station.StepConnect, ""), passEv(1, 1.5, "TPM-A", "01"),
		ev(2, 0, station.StateRunning, station.StepConnect, ""),
		failEv(2, 3, station.StepReadBack, "TPM-B", station.ErrReadBack, "Reseat the cable on slot 2 and press r.")}
	var b EventBatchMsg
	for _, e := range evs {
		one = settle(t, one, e)
		b = append(b, station.Event(e))
	}
	batch = settle(t, batch, b)
	if one.View() != batch.View() || one.Counters() != batch.Counters() {
		t.Fatalf("one by one:\n%s\nas a batch:\n%s", one.View(), batch.View())
	}
}
