package ui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
)

// WorkOrderSwitcher switches the bench to another work order once a
// supervisor has signed (id and PIN; the implementation checks the role).
type WorkOrderSwitcher interface {
	SwitchWorkOrder(id, supervisor, pin string) error
}

// WorkOrderSwitchMsg is the answer of WorkOrderSwitcher.SwitchWorkOrder.
type WorkOrderSwitchMsg struct {
	ID  string
	Err error
}

// woForm is the supervisor's work-order picker.
type woForm struct {
	open    bool
	sel     int
	fields  [2]textinput.Model // supervisor, PIN
	focus   int
	pending bool
	err     string
}

func newWOForm() woForm {
	var f woForm
	for i, ph := range []string{"supervisor id", "PIN"} {
		t := textinput.New()
		t.Prompt, t.Placeholder, t.CharLimit, t.Width = "", ph, 64, 24
		t.Cursor.SetMode(cursor.CursorStatic)
		f.fields[i] = t
	}
	f.fields[1].EchoMode, f.fields[1].EchoCharacter = textinput.EchoPassword, '•'
	f.fields[0].Focus()
	return f
}

// woKey handles a key while the picker is open.
func (m BenchModel) woKey(k tea.KeyMsg) (BenchModel, tea.Cmd) {
	f := &m.woPick
	if f.pending {
		return m, nil
	}
	switch {
	case key.Matches(k, m.keys.Esc):
		m.woPick = newWOForm()
		return m, nil
	case key.Matches(k, m.keys.Up):
		f.sel = max(f.sel-1, 0)
		return m, nil
	case key.Matches(k, m.keys.Down):
		f.sel = min(f.sel+1, max(len(m.woList)-1, 0))
		return m, nil
	case key.Matches(k, m.keys.NextField) || (key.Matches(k, m.keys.Enter) && f.focus == 0):
		f.focus = 1 - f.focus
		f.fields[f.focus].Focus()
		f.fields[1-f.focus].Blur()
		return m, nil
	case key.Matches(k, m.keys.Enter):
		sup, pin := strings.TrimSpace(f.fields[0].Value()), f.fields[1].Value()
		if sup == "" || pin == "" || len(m.woList) == 0 {
			f.err = "A supervisor's id and PIN are needed."
			return m, nil
		}
		if m.runningCount() > 0 {
			f.err = "Slots are still provisioning: wait for them, then switch."
			return m, nil
		}
		id, sw := m.woList[f.sel], m.switcher
		f.pending, f.err = true, ""
		f.fields[1].Reset()
		return m, func() tea.Msg { return WorkOrderSwitchMsg{ID: id, Err: scrub(sw.SwitchWorkOrder(id, sup, pin), pin)} }
	}
	var cmd tea.Cmd
	f.fields[f.focus], cmd = f.fields[f.focus].Update(k)
	return m, cmd
}

// woLines renders the picker in w×h cells (in place of the slots).
func (m BenchModel) woLines(w, h int) []string {
	f := m.woPick
	lines := []string{styleTitle.Render("Choose the work order (supervisor)") + styleDim.Render("  ↑↓ work order · tab field · enter switch · esc close")}
	for i, id := range m.woList {
		mark, now := "  ", ""
		if i == f.sel {
			mark = "▶ "
		}
		if id == m.wo {
			now = styleDim.Render("  (current)")
		}
		lines = append(lines, mark+Untrusted(id)+now)
	}
	lines = append(lines, "")
	for i, name := range []string{"Supervisor", "PIN"} {
		mark := "  "
		if f.focus == i {
			mark = "▸ "
		}
		lines = append(lines, fmt.Sprintf("%s%-11s%s", mark, name, f.fields[i].View()))
	}
	switch {
	case f.pending:
		lines = append(lines, styleWarn.Render("Checking…"))
	case f.err != "":
		lines = append(lines, styleFail.Render(f.err))
	}
	return fitLines(lines, w, h)
}
