package qa

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/wsc-project/wsc/station/untrusted"
	"github.com/wsc-project/wsc/wasmsign"
)

// Column layout of the result table: a two-cell cursor marker, then five
// columns two cells apart.
const (
	markerWidth = 2
	columnGap   = 2
	resultWidth = 7 // "invalid", "pending", "skipped"
)

type column struct {
	title string
	width int
}

// columns shares the width among the columns.
func columns(width int) []column {
	avail := max(width-markerWidth-4*columnGap, 40)
	file := avail * 25 / 100
	signer := avail * 15 / 100
	device := min(avail*23/100, 20) // a TPM serial is 20 cells
	reason := avail - file - signer - device - resultWidth
	return []column{{"File", file}, {"Signer serial", signer}, {"Device", device}, {"Result", resultWidth}, {"Reason", reason}}
}

// fit cuts s to w cells (with "…") and pads it to exactly w cells.
func fit(s string, w int) string {
	s = ansi.Truncate(s, w, "…")
	return s + strings.Repeat(" ", max(w-ansi.StringWidth(s), 0))
}

// wrap breaks s at width, every line kept (the caller decides what fits).
func wrap(s string, width int) []string {
	if s == "" {
		return nil
	}
	lines := strings.Split(ansi.Wrap(s, max(width, 20), ""), "\n")
	for i, l := range lines {
		lines[i] = ansi.Truncate(l, max(width, 20), "…")
	}
	return lines
}

// state is the word and style of a row: the colour never stands alone.
func (m Model) state(i int) (string, lipgloss.Style) {
	r := m.results[i]
	switch {
	case r == nil && m.stopped:
		return "skipped", styleDim
	case r == nil:
		return "pending", styleDim
	case r.Status == wasmsign.StatusValid && r.RevocationUnchecked:
		return "valid!", styleWarn
	case r.Status == wasmsign.StatusValid:
		return "valid", styleOK
	default:
		return string(r.Status), styleFail
	}
}

// reasonOf is why a result is not valid, or the warning of a valid one
// that rests on a relaxed policy, or its manifest.
func reasonOf(r *wasmsign.Result) string {
	if r == nil {
		return ""
	}
	if r.Reason != "" {
		return r.Reason
	}
	if r.Warning == "" && r.Manifest != nil {
		return r.Manifest.Summary()
	}
	return r.Warning
}

// row renders the table row of file i.
func (m Model) row(i int, selected bool, cols []column) string {
	r := m.results[i]
	var signer, device string
	if r != nil {
		signer, device = r.SignerSerial, r.DeviceSerial
	}
	word, style := m.state(i)
	// Every cell but the state is chosen by whoever made the file or its
	// certificates: escaped.
	cells := []string{
		fit(untrusted.String(m.relPath(m.files[i])), cols[0].width),
		fit(orDash(untrusted.String(signer)), cols[1].width),
		fit(orDash(untrusted.String(device)), cols[2].width),
		style.Render(fit(word, cols[3].width)),
		fit(untrusted.String(firstLine(reasonOf(r))), cols[4].width),
	}
	marker := "  "
	if selected {
		marker = "› "
		cells[0] = styleSelected.Render(cells[0])
	}
	return strings.TrimRight(marker+strings.Join(cells, strings.Repeat(" ", columnGap)), " ")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (m Model) helpView() string {
	if m.showHelp {
		return m.help.FullHelpView(m.keys.FullHelp())
	}
	k := m.keys
	b := func(keys, desc string) key.Binding {
		return key.NewBinding(key.WithKeys(keys), key.WithHelp(keys, desc))
	}
	quit := b("ctrl+c", "quit")
	var short []key.Binding
	switch m.screen {
	case ScreenPick:
		if len(m.files) > 0 {
			short = []key.Binding{b("enter", "verify"), b("esc", "back to results"), quit}
		} else {
			short = []key.Binding{b("enter", "verify"), b("esc", "quit")}
		}
	case ScreenListing:
		short = []key.Binding{b("esc", "back"), quit}
	case ScreenRunning:
		short = []key.Binding{b("↑/↓", "move"), b("esc", "cancel"), quit}
	case ScreenExport:
		short = []key.Binding{b("enter", "write report"), b("esc", "back"), quit}
	case ScreenFolderError, ScreenEmpty:
		short = []key.Binding{b("esc", "choose another folder"), k.Quit}
	default:
		short = []key.Binding{b("↑/↓", "move"), k.Failures, k.Export, b("esc", "back"), k.Open, k.Help, k.Quit}
	}
	return m.help.ShortHelpView(short)
}

// View renders the screen (no I/O: everything shown is in the model).
func (m Model) View() string {
	title := ansi.Truncate(styleTitle.Render(m.title+" — batch verification of signed firmware"), m.width, "…")
	var body string
	switch m.screen {
	case ScreenPick:
		body = m.pickView()
	case ScreenListing:
		body = "Looking for .wasm modules in " + untrusted.String(m.root) + " …\n\n" + styleDim.Render("Esc goes back.")
	case ScreenFolderError:
		what, instruction := folderProblem(m.root, m.folderErr)
		body = m.problemView(styleFail.Render("ERROR"), what, instruction)
	case ScreenEmpty:
		body = m.problemView(styleWarn.Render("EMPTY"), fmt.Sprintf("No .wasm module found in %s (sub-folders included).", untrusted.String(m.root)),
			"Choose a folder that holds signed modules (*.wasm): press Esc and type its path.")
	default:
		return title + "\n" + m.tableView()
	}
	return title + "\n" + body + "\n" + m.helpView()
}

func (m Model) pickView() string {
	body := "Folder to verify (every .wasm file in it and below):\n\n  " + m.dir.View() + "\n\n" +
		styleDim.Render("Enter starts the verification against the trust bundle.")
	if len(m.files) > 0 {
		body += styleDim.Render(" Esc returns to the last results.")
	} else {
		body += styleDim.Render(" Esc quits.")
	}
	if n := m.noticeLines(); len(n) > 0 {
		body += "\n\n" + strings.Join(n, "\n")
	}
	return body + "\n"
}

// problemView is a screen that says what is wrong and what to do.
func (m Model) problemView(word, what, instruction string) string {
	lines := []string{""}
	lines = append(lines, wrap(word+"  "+what, m.width)...)
	lines = append(lines, "")
	lines = append(lines, wrap(instruction, m.width)...)
	return strings.Join(lines, "\n") + "\n"
}

// summary is the bar above the table: total, valid, invalid, pending,
// elapsed time — each a word and a number, coloured only in addition.
func (m Model) summary() string {
	valid, invalid, pending := m.counts()
	validS := fmt.Sprintf("Valid %d", valid)
	if valid > 0 {
		validS = styleOK.Render(validS)
	}
	invalidS := fmt.Sprintf("Invalid %d", invalid)
	if invalid > 0 {
		invalidS = styleFail.Render(invalidS)
	}
	pendingWord := "Pending"
	if m.stopped {
		pendingWord = "Skipped"
	}
	parts := []string{untrusted.String(m.root), fmt.Sprintf("Total %d", len(m.files)), validS, invalidS,
		fmt.Sprintf("%s %d", pendingWord, pending), fmt.Sprintf("Elapsed %.2f s", m.elapsed.Seconds())}
	if n := m.unchecked(); n > 0 {
		parts = append(parts, styleWarn.Render(fmt.Sprintf("%d accepted WITHOUT CRL CHECK (!)", n)))
	}
	if m.failuresOnly {
		parts = append(parts, styleWarn.Render("failures only"))
	}
	return ansi.Truncate(strings.Join(parts, " · "), m.width, "…")
}

// details is the whole story of the selected row, wrapped to the width.
func (m Model) details() []string {
	if len(m.shown) == 0 {
		if m.failuresOnly {
			return []string{styleOK.Render("No failures.")}
		}
		return nil
	}
	i := m.shown[m.cursor]
	word, style := m.state(i)
	text := untrusted.String(m.relPath(m.files[i])) + ": " + style.Render(word)
	r := m.results[i]
	if why := reasonOf(r); why != "" {
		text += " — " + untrusted.String(why)
	}
	if r != nil && r.Signer != "" {
		text += " (signer " + untrusted.String(r.Signer) + ")"
	}
	return wrap(text, m.width)
}

func (m Model) noticeLines() []string {
	if m.notice == "" {
		return nil
	}
	style := styleDim
	if m.noticeErr {
		style = styleFail
	}
	lines := wrap(m.notice, m.width)
	for i, l := range lines {
		lines[i] = style.Render(l)
	}
	return lines
}

// layout returns the lines below the table (details, notice, export field)
// and how many table rows fit: the details and the notice are wrapped and
// kept whole unless the screen is too small for them and three rows.
func (m Model) layout() (below []string, rows int) {
	head := 3 // title, summary, table header
	if m.screen == ScreenRunning {
		head++ // progress bar
	}
	helpH := lipgloss.Height(m.helpView())
	var tail []string
	tail = append(tail, m.noticeLines()...)
	if m.screen == ScreenExport {
		tail = append(tail, fmt.Sprintf("Export %s report to: %s  %s", exportFormat(m.out.Value()), m.out.View(),
			styleDim.Render("(.xml: JUnit, else JSON; enter writes, esc goes back)")))
	}
	det := m.details()
	room := m.height - head - 1 /*blank*/ - helpH - len(tail) - 3 /*rows at least*/
	if len(det) > room {
		det = det[:max(room, 1)]
		det[len(det)-1] = ansi.Truncate(det[len(det)-1], max(m.width-1, 1), "") + "…"
	}
	below = append(append([]string{""}, det...), tail...)
	rows = max(m.height-head-helpH-len(below), 3)
	return below, rows
}

// tableHeight is how many rows the table shows.
func (m Model) tableHeight() int {
	_, rows := m.layout()
	return rows
}

// scroll keeps the cursor on screen.
func (m *Model) scroll() {
	h := m.tableHeight()
	if m.cursor < m.offset {
		m.offset = m.cursor
	}
	if m.cursor >= m.offset+h {
		m.offset = m.cursor - h + 1
	}
	m.offset = max(min(m.offset, len(m.shown)-h), 0)
}

func (m Model) tableView() string {
	below, rows := m.layout()
	cols := columns(m.width)
	lines := []string{m.summary()}
	if m.screen == ScreenRunning {
		_, _, pending := m.counts()
		done := len(m.files) - pending
		lines = append(lines, fmt.Sprintf("Verifying … %s %d/%d  %s", m.bar.ViewAs(float64(done)/float64(max(len(m.files), 1))), done, len(m.files),
			styleDim.Render("Esc cancels.")))
	}
	hdr := make([]string, len(cols))
	for i, c := range cols {
		hdr[i] = fit(c.title, c.width)
	}
	lines = append(lines, styleHeader.Render(strings.TrimRight(strings.Repeat(" ", markerWidth)+strings.Join(hdr, strings.Repeat(" ", columnGap)), " ")))
	for r := m.offset; r < m.offset+rows; r++ {
		if r < len(m.shown) {
			lines = append(lines, m.row(m.shown[r], r == m.cursor, cols))
		} else {
			lines = append(lines, "")
		}
	}
	lines = append(lines, below...)
	return strings.Join(lines, "\n") + "\n" + m.helpView()
}
