package ui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/wsc-project/wsc/station"
)

// ReworkDesk is what the supervised rework on the operator screen needs
// from the station (BenchOptions.Rework): run the device on a failed slot
// again under a supervisor's rework (station.Rework) against its scanned
// label. Rework checks the supervisor's PIN and role; chipReset is the
// supervisor's statement that the RMA desk cleared the chip's TPM, which
// the run records in the ledger (owner_auth.chip-reset) — the same as
// `wsc provision --rework --chip-reset`.
type ReworkDesk interface {
	Rework(slot int, label, supervisor, pin string, chipReset bool) error
}

// ReworkMsg is the answer of ReworkDesk.Rework.
type ReworkMsg struct {
	Slot       int
	Supervisor string
	ChipReset  bool
	Err        error
}

// ChipResetStatement is what a supervisor ticks, and then confirms, to
// rework a device whose TPM owner authorisation the station sealed: the
// station cannot check it (a chip that was not cleared refuses the run's
// owner-authorised writes), so it is recorded as that supervisor's word.
const ChipResetStatement = "the RMA desk cleared this chip's TPM (owner authorisation reset)"

// reworkForm is the supervisor's rework screen for one failed slot:
// supervisor id, PIN (masked), the scanned label, and the chip-reset tick
// box. A ticked box asks for one more confirmation before anything runs.
type reworkForm struct {
	open      bool
	slot      int
	serial    string
	fields    [3]textinput.Model // supervisor, PIN, label
	focus     int                // 0-2 the fields, 3 the tick box
	chipReset bool
	confirm   bool // the box is ticked and the supervisor pressed enter: confirm once more
	pending   bool
	err       string
}

// reworkTick is the focus index of the chip-reset tick box.
const reworkTick = 3

func newReworkForm() reworkForm {
	return reworkForm{fields: supervisorFields("scan the device's label")}
}

func (f *reworkForm) setFocus(i int) {
	f.focus = (i + reworkTick + 1) % (reworkTick + 1)
	for j := range f.fields {
		if j == f.focus {
			f.fields[j].Focus()
		} else {
			f.fields[j].Blur()
		}
	}
}

// openRework opens the rework screen for the selected slot, which must
// have failed (a device the line refused).
func (m BenchModel) openRework() (BenchModel, tea.Cmd) {
	if m.reworkDesk == nil {
		m.note("Rework is not available on this screen: a supervisor uses wsc provision --rework.", true)
		return m, nil
	}
	sv := m.selected()
	if sv == nil || sv.state != station.StateFailed {
		m.note("Select a failed slot to rework its device (ctrl+e).", true)
		return m, nil
	}
	m.rework = newReworkForm()
	m.rework.open, m.rework.slot, m.rework.serial = true, sv.num, sv.serial
	m.rework.fields[2].SetValue(sv.label)
	m.rework.setFocus(0)
	return m, nil
}

// reworkKey handles a key while the rework screen is open.
func (m BenchModel) reworkKey(k tea.KeyMsg) (BenchModel, tea.Cmd) {
	f := &m.rework
	if f.pending {
		return m, nil
	}
	if f.confirm {
		switch {
		case key.Matches(k, m.keys.Enter), key.Matches(k, m.keys.Yes):
			return m.submitRework()
		case key.Matches(k, m.keys.Esc):
			f.confirm = false
		}
		return m, nil
	}
	switch {
	case key.Matches(k, m.keys.Esc):
		m.rework = newReworkForm()
		m.note("Rework closed: nothing was run.", false)
		return m, nil
	case key.Matches(k, m.keys.NextField):
		f.setFocus(f.focus + fieldStep(k))
		return m, nil
	case f.focus == reworkTick && (k.Type == tea.KeySpace || (k.Type == tea.KeyRunes && string(k.Runes) == "x")):
		f.chipReset = !f.chipReset
		return m, nil
	case key.Matches(k, m.keys.Enter):
		if f.focus < reworkTick {
			f.setFocus(f.focus + 1)
			return m, nil
		}
		sup, pin, label := strings.TrimSpace(f.fields[0].Value()), f.fields[1].Value(), strings.TrimSpace(f.fields[2].Value())
		if sup == "" || pin == "" || label == "" {
			f.err = "A supervisor's id, PIN and the device's scanned label are all needed."
			return m, nil
		}
		if f.chipReset {
			f.confirm, f.err = true, ""
			return m, nil
		}
		return m.submitRework()
	}
	if f.focus == reworkTick {
		return m, nil
	}
	var cmd tea.Cmd
	f.fields[f.focus], cmd = f.fields[f.focus].Update(k)
	return m, cmd
}

// submitRework hands the rework to the station; the PIN field is cleared
// at once and never comes back in an error.
func (m BenchModel) submitRework() (BenchModel, tea.Cmd) {
	f := &m.rework
	sup, pin, label := strings.TrimSpace(f.fields[0].Value()), f.fields[1].Value(), strings.TrimSpace(f.fields[2].Value())
	slot, reset, d := f.slot, f.chipReset, m.reworkDesk
	f.pending, f.confirm, f.err = true, false, ""
	f.fields[1].Reset()
	return m, func() tea.Msg {
		err := d.Rework(slot, label, sup, pin, reset)
		return ReworkMsg{Slot: slot, Supervisor: sup, ChipReset: reset, Err: scrub(err, pin)}
	}
}

// reworkDone applies the station's answer.
func (m *BenchModel) reworkDone(msg ReworkMsg) {
	f := &m.rework
	f.pending = false
	if msg.Err != nil {
		f.err = "Not reworked: " + Untrusted(msg.Err.Error())
		return
	}
	m.rework = newReworkForm()
	what := "rework"
	if msg.ChipReset {
		what = "rework with the chip reset"
	}
	m.note(fmt.Sprintf("Slot %d runs again: %s authorised by %s (recorded).", msg.Slot, what, Untrusted(msg.Supervisor)), false)
}

// reworkLines renders the rework screen in w×h cells (in place of the
// slots).
func (m BenchModel) reworkLines(w, h int) []string {
	f := m.rework
	lines := []string{styleTitle.Render(fmt.Sprintf("Rework of slot %d (supervisor)", f.slot)) + styleDim.Render("  tab field · space tick · enter run · esc close")}
	if f.serial != "" {
		lines = append(lines, styleDim.Render("Device "+Untrusted(f.serial)+": it runs again under your rework, recorded in the ledger."))
	}
	lines = append(lines, "")
	for i, name := range []string{"Supervisor", "PIN", "Label"} {
		mark := "  "
		if f.focus == i {
			mark = "▸ "
		}
		lines = append(lines, fmt.Sprintf("%s%-11s%s", mark, name, f.fields[i].View()))
	}
	mark, box := "  ", "[ ]"
	if f.focus == reworkTick {
		mark = "▸ "
	}
	if f.chipReset {
		box = "[x]"
	}
	lines = append(lines, fmt.Sprintf("%s%s I confirm %s", mark, box, ChipResetStatement))
	lines = append(lines, styleDim.Render("    Tick it only for a device the RMA desk unsealed and cleared; otherwise leave it empty."))
	switch {
	case f.confirm:
		lines = append(lines, "", styleWarn.Render(fmt.Sprintf("Confirm: %s?", ChipResetStatement)),
			styleWarn.Render("The ledger records it as your statement. enter: confirm and run · esc: back"))
	case f.pending:
		lines = append(lines, styleWarn.Render("Checking…"))
	case f.err != "":
		lines = append(lines, styleFail.Render(f.err))
	}
	return fitLines(lines, w, h)
}
