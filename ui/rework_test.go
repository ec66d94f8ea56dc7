package ui

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/wsc-project/wsc/station"
)

// fakeRework records the reworks the screen asks for; it stands for the
// station side (cmd/wsc wires the real one), whose PIN check it mimics.
type fakeRework struct {
	mu    sync.Mutex
	calls []string
}

func (d *fakeRework) Rework(slot int, label, sup, pin string, chipReset bool) error {
	if sup != "sam" || pin != "1357" {
		return fmt.Errorf("%s: wrong PIN %s or not a supervisor", sup, pin)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, fmt.Sprintf("slot %d label %s by %s chip-reset=%v", slot, label, sup, chipReset))
	return nil
}

func (d *fakeRework) Calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.calls...)
}

// ownerAuthFailure is the refusal of a device whose TPM owner
// authorisation the station sealed earlier (slot 3).
func ownerAuthFailure() tea.Msg {
	return failEv(3, 7.5, station.StepIssue, "TPM-00A1B2C3D4E5F603", station.ErrOwnerAuthSealed,
		"The TPM of the device on slot 3 holds an owner authorisation this station sealed earlier: take it to the RMA desk.")
}

// TestReworkChipResetFlow: ctrl+e on a slot that did not fail only says
// so; on the failed slot it opens the supervisor's rework. A wrong PIN is
// refused and never shown. With the chip-reset box ticked, enter asks for
// the confirmation of the statement first (esc goes back, nothing runs);
// enter again runs the rework with ChipReset. Without the tick the rework
// runs at once with ChipReset false.
func TestReworkChipResetFlow(t *testing.T) {
	d := &fakeRework{}
	m := NewBenchModel(BenchOptions{Control: newFakeBench(4), Rework: d, Now: fixedClock(t0)})
	m = settle(t, m, append(append([]tea.Msg{tea.WindowSizeMsg{Width: 100, Height: 30}}, shift()...), ownerAuthFailure(), keyRunes("2"), keyType(tea.KeyCtrlE))...)
	mustContain(t, m.View(), "Select a failed slot to rework its device")
	if m.rework.open {
		t.Fatal("rework opened on a slot that did not fail")
	}
	m = settle(t, m, keyRunes("3"), keyType(tea.KeyCtrlE))
	mustContain(t, m.View(), "Rework of slot 3 (supervisor)", "[ ] I confirm "+ChipResetStatement)
	fill := func(sup, pin, label string, tick bool) {
		msgs := append(typeKeys(sup), keyType(tea.KeyTab))
		msgs = append(append(msgs, typeKeys(pin)...), keyType(tea.KeyTab))
		msgs = append(append(msgs, typeKeys(label)...), keyType(tea.KeyTab))
		if tick {
			msgs = append(msgs, keyType(tea.KeySpace))
		}
		m = settle(t, m, append(msgs, keyType(tea.KeyEnter))...)
	}
	fill("sam", "9999", "TPM-00A1B2C3D4E5F603", false)
	v := m.View()
	mustContain(t, v, "Not reworked: sam: wrong PIN ****")
	if strings.Contains(v, "9999") || len(d.Calls()) != 0 {
		t.Fatalf("wrong PIN: calls %v\n%s", d.Calls(), v)
	}

	m = settle(t, m, keyType(tea.KeyEsc), keyType(tea.KeyCtrlE))
	fill("sam", "1357", "TPM-00A1B2C3D4E5F603", true)
	v = m.View()
	mustContain(t, v, "[x] I confirm "+ChipResetStatement, "Confirm: "+ChipResetStatement+"?", "The ledger records it as your statement")
	if len(d.Calls()) != 0 {
		t.Fatalf("ran before the confirmation: %v", d.Calls())
	}
	// esc goes back to the form; nothing runs.
	m = settle(t, m, keyType(tea.KeyEsc))
	if strings.Contains(m.View(), "Confirm: ") || !m.rework.open || len(d.Calls()) != 0 {
		t.Fatalf("esc at the confirmation: calls %v\n%s", d.Calls(), m.View())
	}
	// Back in the form (focus on the tick box): enter asks again, enter runs.
	m = settle(t, m, keyType(tea.KeyEnter), keyType(tea.KeyEnter))
	if got := d.Calls(); len(got) != 1 || got[0] != "slot 3 label TPM-00A1B2C3D4E5F603 by sam chip-reset=true" {
		t.Fatalf("calls %v", got)
	}
	v = m.View()
	mustContain(t, v, "Slot 3 runs again: rework with the chip reset authorised by sam (recorded).")
	if strings.Contains(v, "1357") || m.rework.open {
		t.Fatalf("after the rework:\n%s", v)
	}

	// Without the tick: no confirmation step, ChipReset false.
	m = settle(t, m, ownerAuthFailure(), keyType(tea.KeyCtrlE))
	fill("sam", "1357", "TPM-00A1B2C3D4E5F603", false)
	if got := d.Calls(); len(got) != 2 || got[1] != "slot 3 label TPM-00A1B2C3D4E5F603 by sam chip-reset=false" {
		t.Fatalf("calls %v", got)
	}
}

// TestReworkGolden: the confirmation screen of a rework with the chip
// reset, as the supervisor sees it before anything runs.
func TestReworkGolden(t *testing.T) {
	t.Run("chip_reset_confirm", func(t *testing.T) {
		m, _ := benchAt(4, 12)
		m.reworkDesk = &fakeRework{}
		tm := startProgram(t, m, 100, 30, "#4")
		msgs := append(shift(), ownerAuthFailure(), keyRunes("3"), keyType(tea.KeyCtrlE))
		msgs = append(append(msgs, typeKeys("sam")...), keyType(tea.KeyTab))
		msgs = append(append(msgs, typeKeys("1357")...), keyType(tea.KeyTab))
		msgs = append(append(msgs, typeKeys("TPM-00A1B2C3D4E5F603")...), keyType(tea.KeyTab), keyType(tea.KeySpace), keyType(tea.KeyEnter))
		finish(t, tm, msgs...)
	})
}
