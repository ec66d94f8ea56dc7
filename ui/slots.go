package ui

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/progress"
	"github.com/charmbracelet/bubbles/spinner"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/wsc-project/wsc/station"
)

// slotView is the operator view's own copy of one slot, kept up to date
// from station events (and seeded from one Snapshot).
type slotView struct {
	num      int
	port     string
	state    station.State
	step     station.Step
	serial   string
	label    string
	cert     string
	attempts int
	started  time.Time
	finished time.Time
	// errText and instruction are the last failure and what to do about it;
	// they stay while the slot is retried and clear when it passes or the
	// device is pulled.
	errText     string
	errStep     station.Step
	instruction string
	detail      string
}

// fromStatus builds a slot from a bench snapshot.
func fromStatus(st station.SlotStatus) *slotView {
	s := &slotView{num: st.Slot, port: st.Port, state: st.State, step: st.Step, serial: st.Serial, label: st.Label,
		cert: st.CertSerial, attempts: st.Attempts, started: st.Started, finished: st.Finished, instruction: st.Instruction}
	if s.state == "" {
		s.state = station.StateIdle
	}
	if st.Err != nil {
		s.errText, s.errStep = oneLine(st.Err.Error()), stepOf(st.Err, st.Step)
	}
	return s
}

// oneLine folds a multi-line error (errors.Join) into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// stepOf returns the step a StepError names, or def.
func stepOf(err error, def station.Step) station.Step {
	var se *station.StepError
	if errors.As(err, &se) && se.Step != "" {
		return se.Step
	}
	return def
}

// instructionOf returns the operator instruction carried by err, or a
// generic one that still says what to do.
func instructionOf(err error, slot int) string {
	var se *station.StepError
	if errors.As(err, &se) && se.Instruction != "" {
		return se.Instruction
	}
	return fmt.Sprintf("Check the device on slot %d, then press r to retry or b to put it in the red bin.", slot)
}

// apply updates the slot with one event and reports what it means for the
// counters.
func (s *slotView) apply(e station.Event) (passed, failed, redBin bool) {
	if e.Port != "" {
		s.port = e.Port
	}
	switch e.State {
	case station.StateRunning:
		if s.state != station.StateRunning {
			s.started, s.finished = e.Time, time.Time{}
			s.cert = ""
			s.attempts++
		}
	case station.StatePassed:
		s.finished = e.Time
		s.errText, s.errStep, s.instruction = "", "", ""
		if e.Result != nil {
			s.cert = e.Result.CertSerial
			if e.Result.Serial != "" {
				s.serial = e.Result.Serial
			}
		}
		passed = true
	case station.StateFailed:
		s.finished = e.Time
		if e.Err != nil {
			s.errText, s.errStep = oneLine(e.Err.Error()), stepOf(e.Err, e.Step)
		} else {
			s.errText, s.errStep = "failed", e.Step
		}
		s.instruction = instructionOf(e.Err, s.num)
		var se *station.StepError
		if !errors.As(e.Err, &se) && e.Detail != "" {
			// The bench puts the slot's instruction in Detail.
			s.instruction = e.Detail
		}
		failed = true
	case station.StateQuarantined:
		if s.finished.IsZero() || s.state == station.StateRunning {
			s.finished = e.Time
		}
		if e.Err != nil {
			s.errText, s.errStep = oneLine(e.Err.Error()), stepOf(e.Err, e.Step)
		}
		if e.Detail != "" {
			s.instruction = e.Detail
		} else {
			s.instruction = fmt.Sprintf("Put the device on slot %d in the red bin.", s.num)
		}
		redBin = s.state != station.StateQuarantined
		// The bench ends a run that quarantines its device with this one
		// event (no StateFailed before it): it is a failed attempt too.
		failed = s.state == station.StateRunning && e.Err != nil
	case station.StateIdle:
		// The device was pulled: the bench forgets it, label included.
		*s = slotView{num: s.num, port: s.port, state: station.StateIdle, detail: e.Detail}
		return
	}
	if e.Serial != "" {
		s.serial = e.Serial
	}
	if e.Step != "" {
		s.step = e.Step
	}
	s.state = e.State
	s.detail = e.Detail
	return
}

// elapsed is how long the current or last attempt took, measured against
// now while it runs.
func (s *slotView) elapsed(now time.Time) (time.Duration, bool) {
	if s.started.IsZero() || s.state == station.StateIdle {
		return 0, false
	}
	end := s.finished
	if s.state == station.StateRunning || end.IsZero() {
		end = now
	}
	d := end.Sub(s.started)
	if d < 0 {
		d = 0
	}
	return d, true
}

// stepFraction is the share of the steps done: the running step counts as
// reached, a passed slot is full.
func (s *slotView) stepFraction() (float64, int) {
	if s.state == station.StatePassed {
		return 1, len(station.Steps)
	}
	i := s.step.Index()
	if i < 0 {
		return 0, 0
	}
	return float64(i+1) / float64(len(station.Steps)), i + 1
}

// formatElapsed renders a duration for a card: 12.3s, 4m05s, 1h02m.
func formatElapsed(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	default:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
}

// Card geometry.
const (
	cardMinWidth = 26 // outer width; the inner 22 cells fit a 20-cell TPM serial
	cardHeight   = 7  // 5 lines of content and the border
	cardGap      = 1
)

// slotGrid renders the slots: a grid of cards when they fit the space it is
// given, otherwise one line per slot.
type slotGrid struct {
	width, height int
	barRun        progress.Model
	barOK         progress.Model
	barFail       progress.Model
	frames        []string
}

func newSlotGrid() slotGrid {
	return slotGrid{width: 80, height: 14, barRun: newBar(colCyan), barOK: newBar(colGreen), barFail: newBar(colRed),
		frames: spinner.Dot.Frames}
}

// SetSize gives the grid its space.
func (g *slotGrid) SetSize(width, height int) { g.width, g.height = max(width, 1), max(height, 1) }

// layout picks the number of card columns and the card width for n slots;
// list is true when cards do not fit and one line per slot is used.
func (g slotGrid) layout(n int) (cols, cardW int, list bool) {
	if n == 0 {
		return 0, 0, true
	}
	cols = min(n, (g.width+cardGap)/(cardMinWidth+cardGap))
	if cols < 2 && n > 1 {
		return 0, 0, true
	}
	cols = max(cols, 1)
	rows := (n + cols - 1) / cols
	if rows*cardHeight > g.height {
		return 0, 0, true
	}
	cardW = (g.width+cardGap)/cols - cardGap
	return cols, cardW, false
}

// spin is the spinner frame for the instant now: the frame follows the
// clock, not a private ticker, so a frozen clock gives a frozen frame.
func (g slotGrid) spin(now time.Time) string {
	if len(g.frames) == 0 {
		return "*"
	}
	return strings.TrimSpace(g.frames[int(now.UnixMilli()/100)%len(g.frames)])
}

// stateWord is the coloured state of a slot.
func (g slotGrid) stateWord(s *slotView, now time.Time) string {
	switch s.state {
	case station.StateRunning:
		return styleRun.Render(g.spin(now) + " RUNNING")
	case station.StatePassed:
		return styleOK.Render("✓ PASSED")
	case station.StateFailed:
		return styleFail.Render("✗ FAILED")
	case station.StateQuarantined:
		return styleRedBin.Render(" RED BIN ")
	default:
		return styleDim.Render("· idle")
	}
}

func (g slotGrid) bar(s *slotView, width int) string {
	p := g.barRun
	switch s.state {
	case station.StatePassed:
		p = g.barOK
	case station.StateFailed, station.StateQuarantined:
		p = g.barFail
	}
	p.Width = max(width, 1)
	f, _ := s.stepFraction()
	return p.ViewAs(f)
}

// View renders the slots; sel is the index of the selected slot.
func (g slotGrid) View(slots []*slotView, sel int, now time.Time) string {
	cols, cardW, list := g.layout(len(slots))
	if list {
		return g.listView(slots, sel, now)
	}
	var rows []string
	for i := 0; i < len(slots); i += cols {
		var row []string
		for j := i; j < min(i+cols, len(slots)); j++ {
			if j > i {
				row = append(row, strings.Repeat(" ", cardGap))
			}
			row = append(row, g.card(slots[j], cardW, j == sel, now))
		}
		rows = append(rows, lipgloss.JoinHorizontal(lipgloss.Top, row...))
	}
	return strings.Join(rows, "\n")
}

// card renders one slot as a bordered card of outer width w.
func (g slotGrid) card(s *slotView, w int, selected bool, now time.Time) string {
	inner := w - 4 // border and padding
	line := func(l, r string) string {
		gap := inner - lipgloss.Width(l) - lipgloss.Width(r)
		if gap < 1 {
			return ansi.Truncate(l+" "+r, inner, "…")
		}
		return l + strings.Repeat(" ", gap) + r
	}
	field := func(name, v string) string {
		if v == "" {
			v = styleDim.Render("—")
		}
		return ansi.Truncate(fmt.Sprintf("%-6s%s", name, v), inner, "…")
	}
	el := ""
	if d, ok := s.elapsed(now); ok {
		el = formatElapsed(d)
	}
	head := line(styleTitle.Render(fmt.Sprintf("#%d", s.num))+" "+g.stateWord(s, now), el)

	var progressLine string
	if s.state == station.StateIdle {
		progressLine = styleDim.Render("waiting for a device")
	} else {
		_, n := s.stepFraction()
		count := fmt.Sprintf(" %d/%d", n, len(station.Steps))
		step := fmt.Sprintf("%-8s ", s.step)
		progressLine = step + g.bar(s, inner-len(step)-len(count)) + count
	}
	// The device serial goes without a caption (TPM serials are 20 cells);
	// before a device answers, the slot's port shows there.
	dev := Untrusted(s.serial) // the device chose it
	switch {
	case dev != "":
	case s.port != "":
		dev = styleDim.Render(s.port)
	default:
		dev = styleDim.Render("no device")
	}
	body := strings.Join([]string{head, progressLine, ansi.Truncate(dev, inner, "…"), field("label", Untrusted(s.label)), field("cert", short(Untrusted(s.cert), 16))}, "\n")

	border, colour := cardBorder, colGrey
	switch s.state {
	case station.StateRunning:
		colour = colCyan
	case station.StatePassed:
		colour = colGreen
	case station.StateFailed, station.StateQuarantined:
		colour = colRed
	}
	if selected {
		border = cardBorderSel
	}
	return styleCardBase.Border(border).BorderForeground(colour).Width(w - 2).Render(body)
}

// listView renders one line per slot, scrolled to keep the selection in
// the space given.
func (g slotGrid) listView(slots []*slotView, sel int, now time.Time) string {
	first := 0
	if len(slots) > g.height {
		first = min(max(sel-g.height/2, 0), len(slots)-g.height)
	}
	var lines []string
	for i := first; i < len(slots) && i < first+g.height; i++ {
		s := slots[i]
		mark := "  "
		if i == sel {
			mark = styleListCur.Render("▶ ")
		}
		el := ""
		if d, ok := s.elapsed(now); ok {
			el = formatElapsed(d)
		}
		state := g.stateWord(s, now)
		state += strings.Repeat(" ", max(0, 10-lipgloss.Width(state)))
		prog := ""
		if s.state != station.StateIdle {
			_, n := s.stepFraction()
			prog = fmt.Sprintf("%-8s %2d/%d", s.step, n, len(station.Steps))
		}
		rest := strings.TrimSpace(strings.Join(nonEmpty(Untrusted(s.serial), Untrusted(s.label), short(Untrusted(s.cert), 12)), "  "))
		l := fmt.Sprintf("%s#%-2d %s %-14s %7s  %s", mark, s.num, state, prog, el, rest)
		lines = append(lines, ansi.Truncate(strings.TrimRight(l, " "), g.width, "…"))
	}
	return strings.Join(lines, "\n")
}

// short cuts a long hex serial to n cells with an ellipsis.
func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
