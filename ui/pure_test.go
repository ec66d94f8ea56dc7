package ui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/wsc-project/wsc/station"
)

// sourceGuard records every call into a model's data sources (bench
// control, operator directory, red-bin desk, work-order switcher, plant
// sync, clock, expected step times, ceremony steps) while armed. The tests
// below arm it around each Update and View: a source touched then is I/O
// outside a tea.Cmd — the database, a device, the file system behind a
// source, or the clock.
type sourceGuard struct {
	armed bool
	hits  []string
}

func (g *sourceGuard) touch(what string) {
	if g.armed {
		g.hits = append(g.hits, what)
	}
}

// guardedBench forwards to a fakeBench and reports each call to the guard.
type guardedBench struct {
	f *fakeBench
	g *sourceGuard
}

func (b guardedBench) SetRunning(on bool) { b.g.touch("SetRunning"); b.f.SetRunning(on) }
func (b guardedBench) Running() bool      { b.g.touch("Running"); return b.f.Running() }
func (b guardedBench) Retry(n int) error  { b.g.touch("Retry"); return b.f.Retry(n) }
func (b guardedBench) Quarantine(n int) error {
	b.g.touch("Quarantine")
	return b.f.Quarantine(n)
}
func (b guardedBench) BindLabel(n int, l string) (int, error) {
	b.g.touch("BindLabel")
	return b.f.BindLabel(n, l)
}
func (b guardedBench) Snapshot() []station.SlotStatus { b.g.touch("Snapshot"); return b.f.Snapshot() }
func (b guardedBench) SetOperator(name string)        { b.g.touch("SetOperator"); b.f.SetOperator(name) }
func (b guardedBench) Progress(ctx context.Context) (station.WorkOrderProgress, error) {
	b.g.touch("Progress")
	return b.f.Progress(ctx)
}

type guardedAuth struct{ g *sourceGuard }

func (a guardedAuth) Login(name, pin string) (string, error) {
	a.g.touch("Login")
	return fakeAuth{}.Login(name, pin)
}
func (a guardedAuth) Badge(code string) (string, error) {
	a.g.touch("Badge")
	return fakeAuth{}.Badge(code)
}

type guardedDesk struct{ g *sourceGuard }

func (d guardedDesk) RedBins() ([]RedBinItem, error) { d.g.touch("RedBins"); return nil, nil }
func (d guardedDesk) Release([]byte, string, string, string) error {
	d.g.touch("Release")
	return nil
}

type guardedSwitcher struct{ g *sourceGuard }

func (s guardedSwitcher) SwitchWorkOrder(string, string, string) error {
	s.g.touch("SwitchWorkOrder")
	return nil
}

// checkPure applies msg with the guard armed, then renders twice: no
// source may be touched and both renderings must be the same.
func checkPure(t *testing.T, g *sourceGuard, name string, m tea.Model, msg tea.Msg) tea.Model {
	t.Helper()
	g.armed, g.hits = true, nil
	defer func() { g.armed = false }()
	m, _ = m.Update(msg) // commands are not run: their answers are sent as messages
	v1, v2 := m.View(), m.View()
	if len(g.hits) > 0 {
		t.Errorf("%s: Update/View touched %s", name, strings.Join(g.hits, ", "))
	}
	if v1 != v2 {
		t.Errorf("%s: two renderings differ:\n%s\n---\n%s", name, v1, v2)
	}
	return m
}

// TestBenchUpdateViewNoIO walks the bench view through a shift — login,
// events, statistics, help, scan, work-order picker, red-bin release, quit
// confirmation — with every data source guarded: Update and View never
// call one (only the tea.Cmds they return do).
func TestBenchUpdateViewNoIO(t *testing.T) {
	g := &sourceGuard{}
	f := newFakeBench(4)
	m := NewBenchModel(BenchOptions{
		Control: guardedBench{f, g}, Auth: guardedAuth{g}, RedBins: guardedDesk{g}, Switcher: guardedSwitcher{g},
		WorkOrder: "WO-A", WorkOrders: []string{"WO-A", "WO-B"}, Station: "ST-01",
		Now:          func() time.Time { g.touch("clock"); return t0 },
		ExpectedStep: func(station.Step) time.Duration { g.touch("ExpectedStep"); return 3 * time.Second },
		Plant:        func(context.Context) (string, error) { g.touch("Plant"); return "in sync", nil },
	})
	msgs := []tea.Msg{tea.WindowSizeMsg{Width: 100, Height: 30}}
	msgs = append(msgs, typeKeys("alice")...)
	msgs = append(msgs, keyType(tea.KeyTab))
	msgs = append(msgs, typeKeys("1234")...)
	msgs = append(msgs, keyType(tea.KeyEnter), LoginResultMsg{Operator: "Alice Martin"},
		SnapshotMsg{Slots: f.Snapshot(), Running: true, At: t0}, PlantMsg{Status: "in sync"},
		WorkOrderMsg{Progress: station.WorkOrderProgress{WorkOrder: "WO-A", Quantity: 10, Done: 3, RunsFailed: 1}})
	msgs = append(msgs, shift()...)
	msgs = append(msgs, tickMsg(t0.Add(12*time.Second)), keyRunes("3"), keyRunes("r"), RetryMsg{Slot: 3},
		keyRunes("t"), keyRunes("t"), keyRunes("?"), keyRunes("?"), keyRunes("/"))
	msgs = append(msgs, typeKeys("SN-24-00")...)
	msgs = append(msgs, keyType(tea.KeyEnter), BindLabelMsg{Slot: 4, Label: "SN-24-00"},
		keyRunes("w"), keyType(tea.KeyDown), keyType(tea.KeyEsc),
		keyType(tea.KeyCtrlR), RedBinsMsg{Items: []RedBinItem{{ChipID: []byte{0xab}, Serial: "TPM-B", Reason: "failed 3 times"}}},
		keyType(tea.KeyEsc), keyRunes("s"), RunningMsg{On: false, At: t0.Add(13 * time.Second)},
		PlantMsg{Err: errors.New("offline")}, keyType(tea.KeyCtrlC), keyRunes("n"))
	var tm tea.Model = m
	for i, msg := range msgs {
		tm = checkPure(t, g, fmt.Sprintf("bench message %d (%s)", i, typeName(msg)), tm, msg)
	}
	if v := tm.View(); !strings.Contains(v, "Alice Martin") || !strings.Contains(v, "#4") {
		t.Fatalf("the walk did not reach the bench:\n%s", v)
	}
}

// TestCeremonyUpdateViewNoIO walks the guided ceremony through two steps
// (one with a secret) to the saved transcript with its step runner,
// transcript writer and clock guarded.
func TestCeremonyUpdateViewNoIO(t *testing.T) {
	g := &sourceGuard{}
	step := func(title string, secrets ...string) CeremonyStep {
		return CeremonyStep{Title: title, Machine: "root machine", Secrets: secrets, Carry: []string{"csr.pem"},
			Run: func(context.Context, [][]byte) (string, error) { g.touch("Run " + title); return "fingerprint 01", nil }}
	}
	m := NewCeremonyModel(CeremonyOptions{Title: "root ceremony",
		Steps:      []CeremonyStep{step("Sign the CSR", "root key passphrase"), step("Publish the CRL")},
		Transcript: func(string) error { g.touch("Transcript"); return nil },
		Now:        func() time.Time { g.touch("clock"); return t0 },
	})
	msgs := []tea.Msg{tea.WindowSizeMsg{Width: 80, Height: 24}, keyType(tea.KeyEnter)}
	msgs = append(msgs, typeKeys("hunter2")...)
	msgs = append(msgs, keyType(tea.KeyEnter), ceremonyDoneMsg{step: 0, err: errors.New("wrong passphrase"), at: t0},
		keyRunes("r"), keyType(tea.KeyEnter))
	msgs = append(msgs, typeKeys("hunter3")...)
	msgs = append(msgs, keyType(tea.KeyEnter), ceremonyDoneMsg{step: 0, out: "fingerprint 01", at: t0},
		keyType(tea.KeyEnter), ceremonyDoneMsg{step: 1, out: "crl 2", at: t0.Add(time.Minute)}, ceremonySavedMsg{})
	var tm tea.Model = m
	for _, msg := range msgs {
		tm = checkPure(t, g, "ceremony "+typeName(msg), tm, msg)
	}
	v := tm.View()
	if !strings.Contains(v, "Ceremony complete") || !strings.Contains(v, "[2026-11-30T08:01:00Z] Publish the CRL") || strings.Contains(v, "hunter") {
		t.Fatalf("ceremony view:\n%s", v)
	}
}

func typeName(msg tea.Msg) string {
	if k, ok := msg.(tea.KeyMsg); ok {
		return "key " + k.String()
	}
	return fmt.Sprintf("%T", msg)
}
