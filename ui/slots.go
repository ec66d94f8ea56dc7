package ui

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/spinner"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/muesli/termenv"
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
	// stepSince is when the current step started (for its elapsed time).
	stepSince time.Time
	// labelErr says why the label of a passed device was not printed.
	labelErr string
}

// fromStatus builds a slot from a bench snapshot.
func fromStatus(st station.SlotStatus) *slotView {
	s := &slotView{num: st.Slot, port: st.Port, state: st.State, step: st.Step, serial: st.Serial, label: st.Label,
		cert: st.CertSerial, attempts: st.Attempts, started: st.Started, finished: st.Finished, instruction: st.Instruction,
		labelErr: st.LabelErr}
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
		s.labelErr = ""
		if e.LabelErr != nil {
			s.labelErr = oneLine(e.LabelErr.Error())
		}
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
	if e.Step != "" && (e.Step != s.step || s.state != station.StateRunning) {
		s.stepSince = e.Time
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
	cardMinWidth  = 26 // outer width; the inner 22 cells fit a 20-cell TPM serial
	cardMinHeight = 6  // 4 lines of content and the border
	cardMaxHeight = 24
	cardGap       = 1
	tileMinWidth  = 38 // a borderless tile: number, state, serial, step, time
)

// gridMode says how the slots are drawn in the space given.
type gridMode int

const (
	modeCards gridMode = iota // bordered cards, filled with the state colour
	modeTiles                 // filled tiles without border, 1–3 lines each
	modeList                  // one line per slot, scrolled
)

// slotGrid renders the slots: bordered cards when they fit the space it is
// given, filled tiles when they do not (8 or 16 slots at 80×24), one line
// per slot (scrolled) as the last resort.
type slotGrid struct {
	width, height int
	frames        []string
	// expected, when set, is the chip profile's expected time of a step.
	expected func(station.Step) time.Duration
}

func newSlotGrid() slotGrid {
	return slotGrid{width: 80, height: 14, frames: spinner.Dot.Frames}
}

// SetSize gives the grid its space.
func (g *slotGrid) SetSize(width, height int) { g.width, g.height = max(width, 1), max(height, 1) }

// layout picks how n slots are drawn: the mode, the number of columns, and
// each cell's outer width and height. Cards grow with the window (cells are
// about twice as tall as wide, so a card is scored by min(w/2, h)).
func (g slotGrid) layout(n int) (mode gridMode, cols, cellW, cellH int) {
	if n == 0 {
		return modeList, 1, g.width, 1
	}
	best := -1
	for c := 1; c <= n; c++ {
		rows := (n + c - 1) / c
		w := (g.width+cardGap)/c - cardGap
		h := min(g.height/rows, cardMaxHeight)
		if w < cardMinWidth || h < cardMinHeight {
			continue
		}
		if score := min(w/2, h)*1000 - (rows*c - n); score > best {
			best, cols, cellW, cellH = score, c, w, h
		}
	}
	if best >= 0 {
		return modeCards, cols, cellW, cellH
	}
	for c := max(1, min(n, g.width/tileMinWidth)); c >= 1; c-- {
		rows := (n + c - 1) / c
		if rows <= g.height {
			w := (g.width+cardGap)/c - cardGap
			return modeTiles, c, w, min(g.height/rows, 3)
		}
	}
	return modeList, 1, g.width, 1
}

// cols is the number of columns the arrow keys move across.
func (g slotGrid) cols(n int) int {
	_, c, _, _ := g.layout(n)
	return c
}

// spin is the spinner frame for the instant now: the frame follows the
// clock, not a private ticker, so a frozen clock gives a frozen frame.
func (g slotGrid) spin(now time.Time) string {
	if len(g.frames) == 0 {
		return "*"
	}
	return strings.TrimSpace(g.frames[int(now.UnixMilli()/100)%len(g.frames)])
}

// stateName is the word a slot's state is shown with, and its block-letter
// form.
func stateName(s station.State) (word, big string) {
	switch s {
	case station.StateRunning:
		return "RUNNING", "RUN"
	case station.StatePassed:
		return "PASSED", "PASS"
	case station.StateFailed:
		return "FAILED", "FAIL"
	case station.StateQuarantined:
		return "RED BIN", "RED BIN"
	default:
		return "WAITING", "WAIT"
	}
}

// stateWord is the state of a slot with its symbol (for lists and the
// card's first line).
func (g slotGrid) stateWord(s *slotView, now time.Time) string {
	w, _ := stateName(s.state)
	switch s.state {
	case station.StateRunning:
		return g.spin(now) + " " + w
	case station.StatePassed:
		return "✓ " + w
	case station.StateFailed:
		return "✗ " + w
	case station.StateQuarantined:
		return "■ " + w
	default:
		return "· " + w
	}
}

// stateColours are a card's fill and text colours (andon colours: green
// passed, yellow failed — the operator acts —, red red bin, blue running,
// dark grey waiting).
func stateColours(s station.State) (bg, fg lipgloss.Color) {
	switch s {
	case station.StateRunning:
		return colBlue, colWhite
	case station.StatePassed:
		return colGreen, colBlack
	case station.StateFailed:
		return colYellow, colBlack
	case station.StateQuarantined:
		return colRed, colWhite
	default:
		return colDarkGrey, colWhite
	}
}

// textBar is a progress bar of plain characters (so that it keeps the
// card's fill).
func textBar(f float64, w int) string {
	if w <= 0 {
		return ""
	}
	n := int(f*float64(w) + 0.5)
	n = min(max(n, 0), w)
	return strings.Repeat("█", n) + strings.Repeat("░", w-n)
}

// stepText is the current step with its elapsed time, against the chip
// profile's expected time when known: "install 1.2s/0.8s".
func (g slotGrid) stepText(s *slotView, now time.Time) string {
	if s.state == station.StateIdle {
		return ""
	}
	step := string(s.step)
	if s.state == station.StatePassed {
		step = "done"
	}
	if s.state == station.StateRunning && !s.stepSince.IsZero() {
		d := max(now.Sub(s.stepSince), 0)
		step += " " + formatElapsed(d)
		if g.expected != nil {
			if e := g.expected(s.step); e > 0 {
				step += "/" + formatElapsed(e)
			}
		}
	}
	return step
}

// View renders the slots; sel is the index of the selected slot. Cards
// and tiles are lists of lines of known width, joined here without
// measuring them again (the view is redrawn ten times a second).
func (g slotGrid) View(slots []*slotView, sel int, now time.Time) string {
	mode, cols, w, h := g.layout(len(slots))
	if mode == modeList {
		return g.listView(slots, sel, now)
	}
	var b strings.Builder
	gap := strings.Repeat(" ", cardGap)
	for i := 0; i < len(slots); i += cols {
		cells := make([][]string, 0, cols)
		for j := i; j < min(i+cols, len(slots)); j++ {
			if mode == modeCards {
				cells = append(cells, g.card(slots[j], w, h, j == sel, now))
			} else {
				cells = append(cells, g.tile(slots[j], w, h, j == sel, now))
			}
		}
		for l := range len(cells[0]) {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			for k, c := range cells {
				if k > 0 {
					b.WriteString(gap)
				}
				b.WriteString(c[l])
			}
		}
	}
	return b.String()
}

// fit pads or cuts a line of plain text to exactly w cells.
func fit(s string, w int) string {
	n := cellWidth(s)
	if n > w {
		s = ansi.Truncate(s, w, "…")
		n = cellWidth(s)
	}
	if n < w {
		s += strings.Repeat(" ", w-n)
	}
	return s
}

// cellWidth is the display width of plain text. Text made of narrow runes
// (Latin, and the arrows, boxes, blocks, braille and marks the cards use)
// is counted by runes; anything else is measured properly.
func cellWidth(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case r < 0x1100 && r != 0x1b && r >= 0x20:
		case r >= 0x2010 && r <= 0x2027, r >= 0x2190 && r <= 0x21FF, r >= 0x2500 && r <= 0x25A0,
			r == 0x2713 || r == 0x2717, r >= 0x2800 && r <= 0x28FF:
		default:
			return ansi.StringWidth(s)
		}
		n++
	}
	return n
}

// spread puts l at the left and r at the right of w cells.
func spread(l, r string, w int) string {
	if gap := w - cellWidth(l) - cellWidth(r); gap >= 1 {
		return l + strings.Repeat(" ", gap) + r
	}
	return fit(l+" "+r, w)
}

// centre places plain text in the middle of w cells.
func centre(s string, w int) string {
	n := cellWidth(s)
	if n >= w {
		return fit(s, w)
	}
	left := (w - n) / 2
	return strings.Repeat(" ", left) + s + strings.Repeat(" ", w-n-left)
}

// paint colours plain text with a state's fill (and bold), in the colour
// profile lipgloss detected; nothing on a terminal without colours.
func paint(st station.State, s string) string {
	p := lipgloss.ColorProfile()
	if p == termenv.Ascii {
		return s
	}
	bg, fg := stateColours(st)
	return termenv.Style{}.Background(p.Color(string(bg))).Foreground(p.Color(string(fg))).Bold().Styled(s)
}

// paintFG colours plain text in a foreground colour.
func paintFG(c lipgloss.Color, s string) string {
	p := lipgloss.ColorProfile()
	if p == termenv.Ascii {
		return s
	}
	return termenv.Style{}.Foreground(p.Color(string(c))).Styled(s)
}

// card renders one slot as a bordered card of outer size w×h, filled with
// its state colour: number, state and time; the state in block letters when
// the card is big enough; serial; step with its elapsed time and a bar;
// label and certificate; what to do (wrapped) after a failure.
func (g slotGrid) card(s *slotView, w, h int, selected bool, now time.Time) []string {
	inner, lines := w-4, h-2
	el := ""
	if d, ok := s.elapsed(now); ok {
		el = formatElapsed(d)
	}
	var out []string
	out = append(out, spread(fmt.Sprintf("#%d %s", s.num, g.stateWord(s, now)), el, inner))
	word, bigWord := stateName(s.state)
	big := blockText(bigWord)
	// Block letters when there is room for them and for the other lines.
	if cellWidth(big[0]) <= inner && lines >= 5+len(big)+1 {
		for _, b := range big {
			out = append(out, centre(b, inner))
		}
	} else if lines >= 6 {
		out = append(out, centre("━━ "+word+" ━━", inner))
	}
	dev := Untrusted(s.serial) // the device chose it
	switch {
	case dev != "":
	case s.port != "":
		dev = shortEnd(s.port, inner) // the end of a path names the port
	default:
		dev = "no device"
	}
	out = append(out, fit(dev, inner))
	if s.state == station.StateIdle {
		out = append(out, fit("waiting for a device", inner))
	} else {
		f, n := s.stepFraction()
		st := g.stepText(s, now)
		count := fmt.Sprintf(" %d/%d", n, len(station.Steps))
		barW := inner - cellWidth(st) - len(count) - 1
		if barW >= 4 {
			out = append(out, st+" "+textBar(f, barW)+count)
		} else {
			out = append(out, fit(st+count, inner))
		}
	}
	if s.label != "" {
		out = append(out, fit("label "+Untrusted(s.label), inner))
	}
	if s.cert != "" {
		out = append(out, fit("cert  "+short(Untrusted(s.cert), 16), inner))
	}
	if s.labelErr != "" {
		out = append(out, fit("label not printed: "+Untrusted(s.labelErr), inner))
	}
	if (s.state == station.StateFailed || s.state == station.StateQuarantined) && s.instruction != "" {
		for _, l := range strings.Split(ansi.Wrap("→ "+Untrusted(s.instruction), inner, ""), "\n") {
			out = append(out, fit(l, inner))
		}
	}
	if len(out) > lines {
		// Keep the head; an instruction that does not fit stays in the
		// detail lines below the grid, which wrap it whole.
		out = out[:lines]
		if s.instruction != "" && (s.state == station.StateFailed || s.state == station.StateQuarantined) {
			out[lines-1] = fit("→ see below", inner)
		}
	}
	for len(out) < lines {
		out = append(out, "")
	}
	for i := range out {
		out[i] = fit(out[i], inner)
	}
	border := cardBorder
	if selected {
		border = cardBorderSel
	}
	// The border in the state's colour, the inside filled with it.
	bc := stateBorder(s.state)
	res := make([]string, 0, h)
	res = append(res, paintFG(bc, border.TopLeft+strings.Repeat(border.Top, w-2)+border.TopRight))
	left, right := paintFG(bc, border.Left), paintFG(bc, border.Right)
	for _, l := range out {
		res = append(res, left+paint(s.state, " "+l+" ")+right)
	}
	res = append(res, paintFG(bc, border.BottomLeft+strings.Repeat(border.Bottom, w-2)+border.BottomRight))
	return res
}

// stateBorder is a card's border colour.
func stateBorder(s station.State) lipgloss.Color {
	switch s {
	case station.StateRunning:
		return colCyan
	case station.StatePassed:
		return colGreen
	case station.StateFailed:
		return colYellow
	case station.StateQuarantined:
		return colRed
	}
	return colGrey
}

// tile renders one slot as a filled block of w×h without a border: the
// compact layout for many slots on a small screen. Line 1 always holds
// number, state, serial, step and time; a selected tile is marked ▶.
func (g slotGrid) tile(s *slotView, w, h int, selected bool, now time.Time) []string {
	mark := " "
	if selected {
		mark = "▶"
	}
	el := ""
	if d, ok := s.elapsed(now); ok {
		el = formatElapsed(d)
	}
	dev := Untrusted(s.serial)
	if dev == "" && s.state == station.StateIdle {
		dev = "—"
	}
	state := g.stateWord(s, now)
	state += strings.Repeat(" ", max(0, 10-cellWidth(state)))
	step := g.stepText(s, now)
	if s.state == station.StateRunning || s.state == station.StatePassed {
		step = strings.Fields(step + " ")[0]
	}
	left, right := fmt.Sprintf("%s#%-2d %s ", mark, s.num, state), strings.TrimSpace(step+" "+el)
	// The serial gets the room left; its end (where serials differ) stays.
	dev = shortEnd(dev, w-cellWidth(left)-cellWidth(right)-1)
	l1 := spread(left+dev, right, w)
	out := []string{l1}
	if h >= 2 {
		var l2 string
		switch s.state {
		case station.StateFailed, station.StateQuarantined:
			l2 = "  → " + Untrusted(s.instruction)
		case station.StateRunning:
			f, n := s.stepFraction()
			l2 = fmt.Sprintf("  %s %d/%d", textBar(f, max(w-10, 1)), n, len(station.Steps))
		case station.StatePassed:
			l2 = "  cert " + short(Untrusted(s.cert), 16)
			if s.labelErr != "" {
				l2 = "  label not printed: " + Untrusted(s.labelErr)
			}
		default:
			if s.label != "" {
				l2 = "  label " + Untrusted(s.label)
			}
		}
		out = append(out, l2)
	}
	for len(out) < h {
		out = append(out, "")
	}
	for i := range out {
		out[i] = fit(out[i], w)
	}
	for i := range out {
		out[i] = paint(s.state, out[i])
	}
	return out[:h]
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
		lines = append(lines, g.tile(slots[i], g.width, 1, i == sel, now)...)
	}
	return strings.Join(lines, "\n")
}

// shortEnd keeps the last n-1 cells of s after an ellipsis.
func shortEnd(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n <= 1 {
		return ""
	}
	return "…" + string(r[len(r)-(n-1):])
}

// short cuts a long hex serial to n cells with an ellipsis.
func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
