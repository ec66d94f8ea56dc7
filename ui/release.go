package ui

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"
)

// RedBinDesk is what the supervisor release flow needs from the station:
// the devices held in the red bin and their release. Release checks the
// supervisor's PIN and role, and records who released the chip and why.
// It is an option of the bench view (BenchOptions.RedBins).
type RedBinDesk interface {
	RedBins() ([]RedBinItem, error)
	Release(chipID []byte, supervisor, pin, note string) error
}

// RedBinItem is one chip held in the red bin.
type RedBinItem struct {
	ChipID []byte
	Serial string
	Reason string
	At     time.Time
}

// RedBinsMsg is the answer of RedBinDesk.RedBins.
type RedBinsMsg struct {
	Items []RedBinItem
	Err   error
}

// ReleaseMsg is the answer of RedBinDesk.Release.
type ReleaseMsg struct {
	ChipID     []byte
	Supervisor string
	Err        error
}

// releaseForm is the supervisor's red-bin release screen: the chips held,
// one selected, and supervisor id, PIN (masked) and note.
type releaseForm struct {
	open    bool
	items   []RedBinItem
	sel     int
	fields  [3]textinput.Model // supervisor, PIN, note
	focus   int
	pending bool
	err     string
}

func newReleaseForm() releaseForm {
	return releaseForm{fields: supervisorFields("why it may be provisioned again")}
}

// supervisorFields are a supervisor's form fields: id, PIN (never
// echoed) and a third one with the given placeholder.
func supervisorFields(third string) [3]textinput.Model {
	var fields [3]textinput.Model
	for i, ph := range []string{"supervisor id", "PIN", third} {
		t := textinput.New()
		t.Prompt, t.Placeholder, t.CharLimit, t.Width = "", ph, 200, 40
		t.Cursor.SetMode(cursor.CursorStatic)
		fields[i] = t
	}
	fields[1].EchoMode, fields[1].EchoCharacter = textinput.EchoPassword, '•'
	return fields
}

func (f *releaseForm) setFocus(i int) {
	f.focus = (i + len(f.fields)) % len(f.fields)
	for j := range f.fields {
		if j == f.focus {
			f.fields[j].Focus()
		} else {
			f.fields[j].Blur()
		}
	}
}

// releaseCmd lists the red bin.
func (m BenchModel) redBinsCmd() tea.Cmd {
	d := m.desk
	if d == nil {
		return nil
	}
	return func() tea.Msg {
		items, err := d.RedBins()
		return RedBinsMsg{Items: items, Err: err}
	}
}

// releaseKey handles a key while the release screen is open.
func (m BenchModel) releaseKey(k tea.KeyMsg) (BenchModel, tea.Cmd) {
	f := &m.release
	if f.pending {
		return m, nil
	}
	switch {
	case key.Matches(k, m.keys.Esc):
		m.release = newReleaseForm()
		m.note("Red-bin release closed.", false)
		return m, nil
	case key.Matches(k, m.keys.NextField):
		f.setFocus(f.focus + fieldStep(k))
		return m, nil
	case key.Matches(k, m.keys.Up):
		f.sel = max(f.sel-1, 0)
		return m, nil
	case key.Matches(k, m.keys.Down):
		f.sel = min(f.sel+1, max(len(f.items)-1, 0))
		return m, nil
	case key.Matches(k, m.keys.Enter):
		if f.focus < len(f.fields)-1 {
			f.setFocus(f.focus + 1)
			return m, nil
		}
		sup, pin, note := strings.TrimSpace(f.fields[0].Value()), f.fields[1].Value(), strings.TrimSpace(f.fields[2].Value())
		switch {
		case len(f.items) == 0:
			f.err = "Nothing is held in the red bin."
			return m, nil
		case sup == "" || pin == "" || note == "":
			f.err = "A supervisor's id, PIN and a note saying why are all needed."
			return m, nil
		}
		chip, d := f.items[f.sel].ChipID, m.desk
		f.pending, f.err = true, ""
		f.fields[1].Reset()
		return m, func() tea.Msg {
			err := d.Release(chip, sup, pin, note)
			return ReleaseMsg{ChipID: chip, Supervisor: sup, Err: scrub(err, pin)}
		}
	}
	var cmd tea.Cmd
	f.fields[f.focus], cmd = f.fields[f.focus].Update(k)
	return m, cmd
}

// releaseLines renders the release screen in w×h cells (in place of the
// slots).
func (m BenchModel) releaseLines(w, h int) []string {
	f := m.release
	lines := []string{styleTitle.Render("Red-bin release (supervisor)") + styleDim.Render("  ↑↓ chip · tab field · enter release · esc close")}
	if len(f.items) == 0 {
		lines = append(lines, styleDim.Render("Nothing is held in the red bin."))
	}
	for i, it := range f.items {
		mark := "  "
		if i == f.sel {
			mark = "▶ "
		}
		chip := hex.EncodeToString(it.ChipID)
		lines = append(lines, fmt.Sprintf("%s%-20s chip %s… %s", mark, Untrusted(it.Serial), chip[:min(12, len(chip))], Untrusted(it.Reason)))
	}
	lines = append(lines, "")
	for i, name := range []string{"Supervisor", "PIN", "Note"} {
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

// fitLines cuts every line of a form to w cells (an ellipsis marks a cut)
// and pads or cuts the list to h lines: what a form panel of w×h shows.
func fitLines(lines []string, w, h int) []string {
	for i := range lines {
		lines[i] = ansi.Truncate(lines[i], max(w, 1), "…")
	}
	if len(lines) > h {
		lines = lines[:h]
	}
	for len(lines) < h {
		lines = append(lines, "")
	}
	return lines
}

// fieldStep is how far tab (+1) or shift+tab (−1) moves a form's focus.
func fieldStep(k tea.KeyMsg) int {
	if k.String() == "shift+tab" {
		return -1
	}
	return 1
}
