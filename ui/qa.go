package ui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/progress"
	"github.com/charmbracelet/bubbles/table"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/wsc-project/wsc/wasmsign"
)

// VerifyRunner verifies signed modules for the QA view. The caller wires
// the trust policy in (for example with wasmsign.BatchVerify and a bundle
// from wasmsign.LoadTrustBundle). Run is called from a command goroutine;
// progress must be called with the number of modules done and the total,
// and Run must return when ctx is cancelled (with the results so far and
// ctx.Err()).
type VerifyRunner interface {
	Run(ctx context.Context, paths []string, progress func(done, total int)) ([]wasmsign.Result, error)
}

// VerifyFunc adapts a function to VerifyRunner.
type VerifyFunc func(ctx context.Context, paths []string, progress func(done, total int)) ([]wasmsign.Result, error)

// Run calls f.
func (f VerifyFunc) Run(ctx context.Context, paths []string, progress func(done, total int)) ([]wasmsign.Result, error) {
	return f(ctx, paths, progress)
}

// QAOptions configures the QA verification view.
type QAOptions struct {
	// Runner verifies the modules (required).
	Runner VerifyRunner
	// Dir is the folder proposed at start (default ".").
	Dir string
	// Title heads the screen (default "wsc verify").
	Title string
	// Report is the report file name proposed on export (default
	// "wsc-verify-report.json").
	Report string
	// Now is the clock for the "verified in" time, read only in commands
	// (default time.Now).
	Now func() time.Time
}

// QAProgressMsg reports verification progress.
type QAProgressMsg struct {
	// Run numbers the verification; messages of an earlier (cancelled)
	// run are ignored.
	Run int
	// Done modules out of Total.
	Done, Total int
}

// QADoneMsg carries the results of a verification.
type QADoneMsg struct {
	// Run numbers the verification (see QAProgressMsg).
	Run int
	// Results and Err are what the VerifyRunner returned.
	Results []wasmsign.Result
	Err     error
	// Started and At are when the run started and ended (injected clock).
	Started, At time.Time
}

// QAExportMsg is the result of writing the report.
type QAExportMsg struct {
	// Path is the file written, Format "JSON" or "JUnit".
	Path   string
	Format string
	Err    error
}

type qaPhase int

const (
	qaPick qaPhase = iota
	qaRunning
	qaResults
	qaExport
)

// QAModel is the QA verification view: pick a folder, verify every module
// in it with a progress bar, browse the results (file, signer serial,
// device, result, reason), show failures only, export a JSON or JUnit
// report.
type QAModel struct {
	runner VerifyRunner
	title  string
	clock  func() time.Time
	keys   QAKeyMap
	help   help.Model
	bar    progress.Model
	table  table.Model
	dir    textinput.Model
	out    textinput.Model

	phase    qaPhase
	showHelp bool
	run      int
	cancel   context.CancelFunc
	root     string

	done, total  int
	results      []wasmsign.Result
	shown        []int // indexes into results of the table rows
	failuresOnly bool
	runErr       error
	took         time.Duration

	notice    string
	noticeErr bool

	width, height int
}

// NewQAModel returns the QA verification view.
func NewQAModel(opts QAOptions) QAModel {
	m := QAModel{runner: opts.Runner, title: opts.Title, clock: opts.Now, keys: DefaultQAKeyMap(), help: newHelp(),
		bar: newBar(colGreen), width: 80, height: 24}
	if m.title == "" {
		m.title = "wsc verify"
	}
	if m.clock == nil {
		m.clock = time.Now
	}
	dir := opts.Dir
	if dir == "" {
		dir = "."
	}
	m.dir = newField("folder", dir)
	m.dir.Focus()
	rep := opts.Report
	if rep == "" {
		rep = "wsc-verify-report.json"
	}
	m.out = newField("report file", rep)
	st := table.DefaultStyles()
	st.Header = st.Header.BorderStyle(lipgloss.NormalBorder()).BorderForeground(colGrey).BorderBottom(true).Bold(true)
	st.Selected = st.Selected.Foreground(lipgloss.Color("0")).Background(colCyan).Bold(false)
	m.table = table.New(table.WithFocused(true), table.WithStyles(st), table.WithKeyMap(m.keys.tableKeys()))
	m.relayout()
	return m
}

func newField(placeholder, value string) textinput.Model {
	t := textinput.New()
	t.Prompt = ""
	t.Placeholder = placeholder
	t.CharLimit = 4096
	t.Cursor.SetMode(cursor.CursorStatic)
	t.TextStyle = styleInput
	t.SetValue(value)
	return t
}

// Init does nothing: the view waits for a folder.
func (m QAModel) Init() tea.Cmd { return nil }

// Update applies a message.
func (m QAModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	var cmd tea.Cmd
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case qaNext:
		if msg.msg.Run == m.run && m.phase == qaRunning {
			m.done, m.total = msg.msg.Done, msg.msg.Total
		}
		cmd = qaWait(msg.prog, msg.done)
	case QAProgressMsg:
		if msg.Run == m.run && m.phase == qaRunning {
			m.done, m.total = msg.Done, msg.Total
		}
	case QADoneMsg:
		if msg.Run == m.run {
			m.finish(msg)
		}
	case QAExportMsg:
		m.phase = qaResults
		m.out.Blur()
		if msg.Err != nil {
			m.note("Report not written: "+Untrusted(msg.Err.Error()), true)
		} else {
			m.note(fmt.Sprintf("%s report written to %s.", msg.Format, Untrusted(msg.Path)), false)
		}
	case tea.KeyMsg:
		m, cmd = m.key(msg)
	}
	m.relayout()
	return m, cmd
}

// qaWait returns the next message of a verification run.
func qaWait(prog <-chan QAProgressMsg, done <-chan QADoneMsg) tea.Cmd {
	return func() tea.Msg {
		// Pending progress first, so that the last report is not overtaken
		// by the end of the run.
		select {
		case p := <-prog:
			return qaNext{msg: p, prog: prog, done: done}
		default:
		}
		select {
		case p := <-prog:
			return qaNext{msg: p, prog: prog, done: done}
		case d := <-done:
			return d
		}
	}
}

// qaNext wraps a progress message with the channels to keep listening on.
type qaNext struct {
	msg  QAProgressMsg
	prog <-chan QAProgressMsg
	done <-chan QADoneMsg
}

func (m QAModel) key(k tea.KeyMsg) (QAModel, tea.Cmd) {
	if k.Type == tea.KeyCtrlC {
		return m, tea.Sequence(m.cancelCmd(), tea.Quit)
	}
	switch m.phase {
	case qaPick:
		switch {
		case key.Matches(k, m.keys.Start):
			return m.start()
		case key.Matches(k, m.keys.Back):
			if len(m.results) > 0 {
				m.phase = qaResults
				m.dir.Blur()
			}
			return m, nil
		}
		var cmd tea.Cmd
		m.dir, cmd = m.dir.Update(k)
		return m, cmd
	case qaRunning:
		if key.Matches(k, m.keys.Back) {
			m.note("Cancelling…", false)
			return m, m.cancelCmd()
		}
		if key.Matches(k, m.keys.Quit) {
			return m, tea.Sequence(m.cancelCmd(), tea.Quit)
		}
		return m, nil
	case qaExport:
		switch {
		case key.Matches(k, m.keys.Start):
			return m, m.exportCmd()
		case key.Matches(k, m.keys.Back):
			m.phase = qaResults
			m.out.Blur()
			return m, nil
		}
		var cmd tea.Cmd
		m.out, cmd = m.out.Update(k)
		return m, cmd
	}
	// Results.
	switch {
	case key.Matches(k, m.keys.Quit):
		return m, tea.Quit
	case key.Matches(k, m.keys.Failures):
		m.failuresOnly = !m.failuresOnly
		m.fillTable()
	case key.Matches(k, m.keys.Export):
		m.phase = qaExport
		m.out.Focus()
		m.out.CursorEnd()
		m.notice = ""
	case key.Matches(k, m.keys.Open):
		m.phase = qaPick
		m.dir.Focus()
		m.dir.CursorEnd()
	case key.Matches(k, m.keys.Help):
		m.showHelp = !m.showHelp
	case key.Matches(k, m.keys.Back):
		m.showHelp, m.notice = false, ""
	default:
		var cmd tea.Cmd
		m.table, cmd = m.table.Update(k)
		return m, cmd
	}
	return m, nil
}

func (m QAModel) cancelCmd() tea.Cmd {
	cancel := m.cancel
	if cancel == nil {
		return nil
	}
	return func() tea.Msg { cancel(); return nil }
}

// start launches a verification of the folder in the folder field.
func (m QAModel) start() (QAModel, tea.Cmd) {
	root := strings.TrimSpace(m.dir.Value())
	if root == "" {
		root = "."
	}
	if m.runner == nil {
		m.note("No verifier configured.", true)
		return m, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.run++
	m.cancel, m.root = cancel, root
	m.phase, m.done, m.total, m.runErr, m.notice = qaRunning, 0, 0, nil, ""
	m.dir.Blur()
	run, runner, clock := m.run, m.runner, m.clock
	prog := make(chan QAProgressMsg, 64)
	done := make(chan QADoneMsg, 1)
	wait := qaWait(prog, done)
	return m, func() tea.Msg {
		go func() {
			t0 := clock()
			res, err := runner.Run(ctx, []string{root}, func(d, t int) {
				select {
				case prog <- QAProgressMsg{Run: run, Done: d, Total: t}:
				default: // the view is behind; a later report supersedes this one
				}
			})
			cancel()
			done <- QADoneMsg{Run: run, Results: res, Err: err, Started: t0, At: clock()}
		}()
		return wait()
	}
}

// finish shows the results of a run.
func (m *QAModel) finish(msg QADoneMsg) {
	m.results, m.runErr = msg.Results, msg.Err
	if msg.Err == nil {
		m.done, m.total = len(msg.Results), len(msg.Results)
	}
	m.took = 0
	if !msg.Started.IsZero() && msg.At.After(msg.Started) {
		m.took = msg.At.Sub(msg.Started)
	}
	m.cancel = nil
	m.phase = qaResults
	if msg.Err != nil && len(msg.Results) == 0 {
		m.phase = qaPick
		m.dir.Focus()
	}
	switch {
	case errors.Is(msg.Err, context.Canceled):
		m.note(fmt.Sprintf("Verification cancelled after %d of %d modules.", len(msg.Results), m.total), true)
	case msg.Err != nil:
		m.note("Verification failed: "+Untrusted(msg.Err.Error()), true)
	case len(msg.Results) == 0:
		m.note(fmt.Sprintf("No .wasm module found in %s.", Untrusted(m.root)), true)
		m.phase = qaPick
		m.dir.Focus()
	default:
		if hint := CRLInstruction(msg.Results); hint != "" {
			m.note(hint, true)
		}
	}
	m.fillTable()
}

// failed reports whether a result is not valid.
func failed(r wasmsign.Result) bool { return r.Status != wasmsign.StatusValid }

// resultWord is the status of a result, marked with "!" when the module
// was accepted without a CRL check (the policy allowed missing CRLs).
func resultWord(r wasmsign.Result) string {
	if r.RevocationUnchecked {
		return string(r.Status) + "!"
	}
	return string(r.Status)
}

// reasonOf is why a result is not valid, or the warning of a valid one
// that rests on a relaxed policy.
func reasonOf(r wasmsign.Result) string {
	if r.Reason != "" {
		return r.Reason
	}
	if r.Warning == "" && r.Manifest != nil {
		return r.Manifest.Summary()
	}
	return r.Warning
}

// CRLInstruction tells QA what to do when verification refused modules
// because of the trust bundle's CRLs: it names the CAs concerned (escaped)
// and, per problem, where a good bundle comes from — for a CA without CRL
// also what --allow-missing-crl means. It is "" when no result failed for
// a CRL reason.
func CRLInstruction(results []wasmsign.Result) string {
	kinds := []struct {
		sentinel error
		format   string
	}{
		{wasmsign.ErrCRLMissing, "No CRL for %s in the trust bundle: revocation cannot be checked, modules refused. " +
			"Ask security staff for a bundle made by `wsc ca bundle`, or pass --allow-missing-crl to accept the risk; the report will say so."},
		{wasmsign.ErrCRLStale, "The CRL of %s is not valid at the verification time (expired or not yet valid): modules refused. " +
			"Ask security staff for a fresh bundle made by `wsc ca bundle`."},
		{wasmsign.ErrCRLSignature, "A CRL in the trust bundle names %s but is not signed by it: the bundle was edited or mixed up, modules refused. " +
			"Ask security staff for a new bundle made by `wsc ca bundle`."},
	}
	var out []string
	for _, k := range kinds {
		var names []string
		seen := map[string]bool{}
		for _, r := range results {
			var ce *wasmsign.CRLError
			if !errors.As(r.Err, &ce) || !errors.Is(ce, k.sentinel) {
				continue
			}
			for _, c := range ce.CAs {
				if n := c.Subject.String(); !seen[n] {
					seen[n] = true
					names = append(names, Untrusted(n))
				}
			}
		}
		if len(names) > 0 {
			out = append(out, fmt.Sprintf(k.format, strings.Join(names, "; ")))
		}
	}
	return strings.Join(out, " ")
}

// fillTable puts the results (or the failures only) into the table.
func (m *QAModel) fillTable() {
	m.shown = m.shown[:0]
	rows := make([]table.Row, 0, len(m.results))
	for i, r := range m.results {
		if m.failuresOnly && !failed(r) {
			continue
		}
		m.shown = append(m.shown, i)
		// Every cell but the status is chosen by whoever made the file or
		// its certificates: escaped (Untrusted).
		rows = append(rows, table.Row{Untrusted(m.relPath(r.File)), orDash(Untrusted(r.SignerSerial)), orDash(Untrusted(r.DeviceSerial)),
			resultWord(r), Untrusted(reasonOf(r))})
	}
	m.table.SetRows(rows)
	if m.table.Cursor() >= len(rows) {
		m.table.SetCursor(max(len(rows)-1, 0))
	}
}

// relPath shows a file relative to the verified folder.
func (m QAModel) relPath(p string) string {
	if rel, err := filepath.Rel(m.root, p); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}

// exportFormat is the report format for a file name: JUnit XML for .xml,
// JSON otherwise.
func exportFormat(name string) string {
	if strings.EqualFold(filepath.Ext(name), ".xml") {
		return "JUnit"
	}
	return "JSON"
}

// exportCmd writes every result (not only the shown ones) to the file named
// in the export field.
func (m QAModel) exportCmd() tea.Cmd {
	name := strings.TrimSpace(m.out.Value())
	if name == "" {
		return nil
	}
	results := m.results
	return func() tea.Msg {
		format := exportFormat(name)
		err := writeReport(name, format, results)
		return QAExportMsg{Path: name, Format: format, Err: err}
	}
}

func writeReport(name, format string, results []wasmsign.Result) (err error) {
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("create report: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close report: %w", cerr)
		}
	}()
	if format == "JUnit" {
		return wasmsign.WriteJUnit(f, results)
	}
	return wasmsign.WriteJSON(f, results)
}

func (m *QAModel) note(s string, isErr bool) { m.notice, m.noticeErr = s, isErr }

// unchecked counts the results accepted without a CRL check.
func (m QAModel) unchecked() int {
	n := 0
	for _, r := range m.results {
		if r.RevocationUnchecked {
			n++
		}
	}
	return n
}

// counts returns valid, invalid and error counts.
func (m QAModel) counts() (valid, invalid, errs int) {
	for _, r := range m.results {
		switch r.Status {
		case wasmsign.StatusValid:
			valid++
		case wasmsign.StatusInvalid:
			invalid++
		default:
			errs++
		}
	}
	return
}

// Layout of the results screen around the table.
const qaFixedLines = 1 /*title*/ + 1 /*summary*/ + 1 /*blank*/ + 2 /*reason*/ + 1 /*notice*/ + 1 /*export*/

// relayout sizes the table, its columns and the progress bar.
func (m *QAModel) relayout() {
	m.help.Width = m.width
	m.bar.Width = max(min(m.width-14, 60), 10)
	h := m.height - qaFixedLines - lipgloss.Height(m.helpView()) - (lipgloss.Height(m.noticeView()) - 1)
	m.table.SetHeight(max(h, 3))
	m.table.SetWidth(m.width)
	m.table.SetColumns(qaColumns(m.width))
}

// qaColumns shares the width among the columns (each cell has one space of
// padding on both sides).
func qaColumns(width int) []table.Column {
	avail := max(width-2*5, 40)
	file := avail * 25 / 100
	signer := avail * 15 / 100
	device := min(avail*23/100, 20) // a TPM serial is 20 cells
	result := 7
	reason := avail - file - signer - device - result
	return []table.Column{
		{Title: "File", Width: file},
		{Title: "Signer serial", Width: signer},
		{Title: "Device", Width: device},
		{Title: "Result", Width: result},
		{Title: "Reason", Width: reason},
	}
}

func (m QAModel) helpView() string {
	if m.showHelp {
		return m.help.FullHelpView(m.keys.FullHelp())
	}
	k := m.keys
	quit := key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "quit"))
	var short []key.Binding
	switch m.phase {
	case qaPick:
		short = []key.Binding{key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "verify")), quit}
		if len(m.results) > 0 {
			short = []key.Binding{short[0], key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back to results")), quit}
		}
	case qaRunning:
		short = []key.Binding{key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "cancel")), quit}
	case qaExport:
		short = []key.Binding{key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "write report")),
			key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "cancel")), quit}
	default:
		short = []key.Binding{k.Up, k.Down, k.Failures, k.Export, k.Open, k.Help, k.Quit}
	}
	return m.help.ShortHelpView(short)
}

// View renders the screen.
func (m QAModel) View() string {
	title := ansi.Truncate(styleTitle.Render(m.title+" — batch verification of signed firmware"), m.width, "…")
	var body string
	switch m.phase {
	case qaPick:
		body = "Folder to verify (every .wasm file in it and below):\n\n  " + m.dir.View() + "\n\n" +
			styleDim.Render("Enter starts the verification against the trust bundle.")
		if len(m.results) > 0 {
			body += styleDim.Render(" Esc returns to the last results.")
		}
		body += "\n\n" + m.noticeView()
	case qaRunning:
		pct := 0.0
		if m.total > 0 {
			pct = float64(m.done) / float64(m.total)
		}
		body = fmt.Sprintf("Verifying %s …\n\n  %s  %d/%d\n\n%s\n\n%s", Untrusted(m.root), m.bar.ViewAs(pct), m.done, m.total,
			styleDim.Render("Esc cancels."), m.noticeView())
	default:
		body = m.resultsView()
	}
	return title + "\n" + body + "\n" + m.helpView()
}

func (m QAModel) resultsView() string {
	valid, invalid, errs := m.counts()
	sum := fmt.Sprintf("%s: %d modules · %s · %s · %s", Untrusted(m.root), len(m.results),
		styleOK.Render(fmt.Sprintf("%d valid", valid)), styleFail.Render(fmt.Sprintf("%d invalid", invalid)),
		styleFail.Render(fmt.Sprintf("%d errors", errs)))
	if m.took > 0 {
		sum += fmt.Sprintf(" · %.2f s", m.took.Seconds())
	}
	if n := m.unchecked(); n > 0 {
		sum += " · " + styleWarn.Render(fmt.Sprintf("%d accepted WITHOUT CRL CHECK (!)", n))
	}
	if m.failuresOnly {
		sum += " · " + styleWarn.Render("failures only")
	}
	lines := []string{ansi.Truncate(sum, m.width, "…"), m.table.View(), ""}

	// The full reason of the selected row, which the table cuts.
	reason := []string{"", ""}
	if c := m.table.Cursor(); c >= 0 && c < len(m.shown) {
		r := m.results[m.shown[c]]
		text := Untrusted(m.relPath(r.File)) + ": " + string(r.Status)
		if why := reasonOf(r); why != "" {
			text += " — " + Untrusted(why)
		}
		if r.Signer != "" {
			text += " (signer " + Untrusted(r.Signer) + ")"
		}
		w := strings.Split(ansi.Wrap(text, max(m.width, 20), ""), "\n")
		for i := 0; i < len(w) && i < 2; i++ {
			reason[i] = ansi.Truncate(w[i], m.width, "…")
		}
	} else if m.failuresOnly {
		reason[0] = styleOK.Render("No failures.")
	}
	lines = append(lines, reason...)
	lines = append(lines, m.noticeView())
	if m.phase == qaExport {
		lines = append(lines, fmt.Sprintf("Export %s report to: %s  %s", exportFormat(m.out.Value()), m.out.View(),
			styleDim.Render("(.xml: JUnit, else JSON; enter writes, esc cancels)")))
	} else {
		lines = append(lines, "")
	}
	return strings.Join(lines, "\n")
}

// qaNoticeLines is the most lines a notice takes: an instruction is
// wrapped, not cut, up to this.
const qaNoticeLines = 3

func (m QAModel) noticeView() string {
	if m.notice == "" {
		return ""
	}
	style := styleDim
	if m.noticeErr {
		style = styleFail
	}
	lines := strings.Split(ansi.Wrap(m.notice, max(m.width, 20), ""), "\n")
	if len(lines) > qaNoticeLines {
		lines = lines[:qaNoticeLines]
		lines[qaNoticeLines-1] += "…"
	}
	for i, l := range lines {
		lines[i] = ansi.Truncate(style.Render(l), m.width, "…")
	}
	return strings.Join(lines, "\n")
}
