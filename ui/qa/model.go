// Package qa is the QA screen of wsc (`wsc qa`): pick a folder of signed
// firmware, watch every module go from pending to valid or invalid, read
// why one failed, export a JSON or JUnit report. It imports wasmsign and
// the leaf escaping rule (station/untrusted) but not station, ca or db, so
// that the lean wsc front binary can run it without the CA's start-up.
//
// Update and View are pure; listing the folder, verifying and writing the
// report happen in tea.Cmds that return typed messages.
package qa

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/progress"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/wsc-project/wsc/station/untrusted"
	"github.com/wsc-project/wsc/wasmsign"
)

// Options configures the QA view.
type Options struct {
	// Runner verifies the modules (required).
	Runner Runner
	// List finds the modules to verify under a folder (default
	// ListModules).
	List func(root string) ([]string, error)
	// Dir is the folder proposed at start (default ".").
	Dir string
	// Title heads the screen (default "wsc qa").
	Title string
	// Report is the report file name proposed on export (default
	// "wsc-verify-report.json").
	Report string
	// Now is the clock for the elapsed time, read only in commands
	// (default time.Now).
	Now func() time.Time
}

// ListedMsg carries the modules found under the folder to verify.
type ListedMsg struct {
	// Run numbers the verification; messages of an earlier run are
	// ignored.
	Run int
	// Files are the modules found; Err says why the folder could not be
	// listed (it wraps ErrFolder).
	Files []string
	Err   error
	// At is when the listing ended (injected clock): the start of the
	// elapsed time.
	At time.Time
}

// ResultMsg carries the result of one module.
type ResultMsg struct {
	// Run numbers the verification (see ListedMsg).
	Run int
	// Index is the module's row; Result its verdict.
	Index  int
	Result wasmsign.Result
	// At is when it was verified (injected clock).
	At time.Time
}

// DoneMsg ends a verification run.
type DoneMsg struct {
	// Run numbers the verification (see ListedMsg).
	Run int
	// Err is what the Runner returned (context.Canceled after Esc).
	Err error
	// At is when the run ended (injected clock).
	At time.Time
}

// ExportMsg is the result of writing the report.
type ExportMsg struct {
	// Path is the file written, Format "JSON" or "JUnit".
	Path   string
	Format string
	Err    error
}

// Screen is one screen of the QA view.
type Screen int

// The screens of the QA view. Esc leaves each of them (KeyMap.Back).
const (
	// ScreenPick asks for the folder to verify.
	ScreenPick Screen = iota
	// ScreenListing looks for the modules in the folder.
	ScreenListing
	// ScreenRunning shows every module, pending until verified.
	ScreenRunning
	// ScreenResults shows the results.
	ScreenResults
	// ScreenExport asks for the report file name over the results.
	ScreenExport
	// ScreenFolderError says the folder does not exist or cannot be read.
	ScreenFolderError
	// ScreenEmpty says the folder holds no module.
	ScreenEmpty
)

// Model is the QA verification view.
type Model struct {
	runner Runner
	list   func(string) ([]string, error)
	title  string
	clock  func() time.Time
	keys   KeyMap
	help   help.Model
	bar    progress.Model
	dir    textinput.Model
	out    textinput.Model

	screen    Screen
	showHelp  bool
	run       int
	cancel    context.CancelFunc
	root      string
	folderErr error

	files        []string
	results      []*wasmsign.Result // per file; nil while pending
	stopped      bool               // the run ended before every file was verified
	shown        []int              // indexes into files of the table rows
	cursor       int                // index into shown
	offset       int                // first row on screen
	failuresOnly bool
	started      time.Time
	elapsed      time.Duration

	notice    string
	noticeErr bool

	width, height int
}

// New returns the QA view.
func New(opts Options) Model {
	m := Model{runner: opts.Runner, list: opts.List, title: opts.Title, clock: opts.Now, keys: DefaultKeyMap(), help: newHelp(),
		bar: newBar(colGreen), width: 80, height: 24}
	if m.title == "" {
		m.title = "wsc qa"
	}
	if m.clock == nil {
		m.clock = time.Now
	}
	if m.list == nil {
		m.list = ListModules
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

// Screen returns the screen shown.
func (m Model) Screen() Screen { return m.screen }

// Results returns the results so far, in file order (pending files have
// none).
func (m Model) Results() []wasmsign.Result {
	out := make([]wasmsign.Result, 0, len(m.results))
	for _, r := range m.results {
		if r != nil {
			out = append(out, *r)
		}
	}
	return out
}

// Init does nothing: the view waits for a folder.
func (m Model) Init() tea.Cmd { return nil }

// Update applies a message.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	var cmd tea.Cmd
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.bar.Width = max(min(m.width-30, 40), 10)
		m.help.Width = m.width
	case ListedMsg:
		if msg.Run == m.run && m.screen == ScreenListing {
			return m.listed(msg)
		}
	case next:
		if msg.msg.Run == m.run && m.screen == ScreenRunning {
			m.result(msg.msg)
		}
		cmd = wait(msg.res, msg.done)
	case ResultMsg:
		if msg.Run == m.run && m.screen == ScreenRunning {
			m.result(msg)
		}
	case DoneMsg:
		if msg.Run == m.run && m.screen == ScreenRunning {
			m.finish(msg)
		}
	case ExportMsg:
		if m.screen == ScreenExport {
			m.screen = ScreenResults
			m.out.Blur()
		}
		if msg.Err != nil {
			m.note("Report not written: "+untrusted.String(msg.Err.Error()), true)
		} else {
			m.note(fmt.Sprintf("%s report written to %s.", msg.Format, untrusted.String(msg.Path)), false)
		}
	case tea.KeyMsg:
		m, cmd = m.key(msg)
	}
	m.scroll()
	return m, cmd
}

// next wraps a result with the channels to keep listening on.
type next struct {
	msg  ResultMsg
	res  <-chan ResultMsg
	done <-chan DoneMsg
}

// wait returns the next message of a verification run: pending results
// first, so that the last one is not overtaken by the end of the run.
func wait(res <-chan ResultMsg, done <-chan DoneMsg) tea.Cmd {
	return func() tea.Msg {
		select {
		case r := <-res:
			return next{msg: r, res: res, done: done}
		default:
		}
		select {
		case r := <-res:
			return next{msg: r, res: res, done: done}
		case d := <-done:
			return d
		}
	}
}

func (m Model) key(k tea.KeyMsg) (Model, tea.Cmd) {
	if k.Type == tea.KeyCtrlC {
		return m, tea.Sequence(m.cancelCmd(), tea.Quit)
	}
	switch m.screen {
	case ScreenPick:
		switch {
		case key.Matches(k, m.keys.Start):
			return m.start()
		case key.Matches(k, m.keys.Back):
			if len(m.files) > 0 {
				m.screen = ScreenResults
				m.dir.Blur()
				return m, nil
			}
			return m, tea.Quit
		}
		var cmd tea.Cmd
		m.dir, cmd = m.dir.Update(k)
		return m, cmd
	case ScreenListing:
		if key.Matches(k, m.keys.Back) {
			m.run++ // the listing's answer is ignored
			m.toPick()
		}
		return m, nil
	case ScreenRunning:
		switch {
		case key.Matches(k, m.keys.Back):
			m.note("Cancelling…", false)
			return m, m.cancelCmd()
		case key.Matches(k, m.keys.Quit):
			return m, tea.Sequence(m.cancelCmd(), tea.Quit)
		}
		return m.move(k), nil
	case ScreenFolderError, ScreenEmpty:
		switch {
		case key.Matches(k, m.keys.Back), key.Matches(k, m.keys.Start), key.Matches(k, m.keys.Open):
			m.toPick()
		case key.Matches(k, m.keys.Quit):
			return m, tea.Quit
		}
		return m, nil
	case ScreenExport:
		switch {
		case key.Matches(k, m.keys.Start):
			return m, m.exportCmd()
		case key.Matches(k, m.keys.Back):
			m.screen = ScreenResults
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
		m.fill()
	case key.Matches(k, m.keys.Export):
		m.screen = ScreenExport
		m.out.Focus()
		m.out.CursorEnd()
		m.notice = ""
	case key.Matches(k, m.keys.Open):
		m.toPick()
	case key.Matches(k, m.keys.Help):
		m.showHelp = !m.showHelp
	case key.Matches(k, m.keys.Back):
		if m.showHelp {
			m.showHelp = false
		} else {
			m.toPick()
		}
	default:
		return m.move(k), nil
	}
	return m, nil
}

// toPick shows the folder field.
func (m *Model) toPick() {
	m.screen = ScreenPick
	m.showHelp = false
	m.dir.Focus()
	m.dir.CursorEnd()
}

// move moves the cursor in the table.
func (m Model) move(k tea.KeyMsg) Model {
	page := max(m.tableHeight(), 1)
	switch {
	case key.Matches(k, m.keys.Up):
		m.cursor--
	case key.Matches(k, m.keys.Down):
		m.cursor++
	case key.Matches(k, m.keys.PageUp):
		m.cursor -= page
	case key.Matches(k, m.keys.PageDown):
		m.cursor += page
	case key.Matches(k, m.keys.Top):
		m.cursor = 0
	case key.Matches(k, m.keys.Bottom):
		m.cursor = len(m.shown) - 1
	}
	m.cursor = max(min(m.cursor, len(m.shown)-1), 0)
	return m
}

func (m Model) cancelCmd() tea.Cmd {
	cancel := m.cancel
	if cancel == nil {
		return nil
	}
	return func() tea.Msg { cancel(); return nil }
}

// start lists the folder in the folder field (a command: I/O).
func (m Model) start() (Model, tea.Cmd) {
	root := strings.TrimSpace(m.dir.Value())
	if root == "" {
		root = "."
	}
	if m.runner == nil {
		m.note("No verifier configured.", true)
		return m, nil
	}
	m.run++
	m.root, m.screen, m.notice, m.folderErr = root, ScreenListing, "", nil
	m.dir.Blur()
	run, list, clock := m.run, m.list, m.clock
	return m, func() tea.Msg {
		files, err := list(root)
		return ListedMsg{Run: run, Files: files, Err: err, At: clock()}
	}
}

// listed starts the verification of the modules found, or shows why there
// is none.
func (m Model) listed(msg ListedMsg) (Model, tea.Cmd) {
	switch {
	case msg.Err != nil:
		m.screen, m.folderErr = ScreenFolderError, msg.Err
		return m, nil
	case len(msg.Files) == 0:
		m.screen = ScreenEmpty
		return m, nil
	}
	m.files, m.results, m.stopped = msg.Files, make([]*wasmsign.Result, len(msg.Files)), false
	m.cursor, m.offset, m.failuresOnly = 0, 0, false
	m.started, m.elapsed = msg.At, 0
	m.screen = ScreenRunning
	m.fill()
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	run, runner, clock, files := m.run, m.runner, m.clock, msg.Files
	res := make(chan ResultMsg, len(files)) // never blocks the runner
	done := make(chan DoneMsg, 1)
	w := wait(res, done)
	return m, func() tea.Msg {
		go func() {
			err := runner.Verify(ctx, files, func(i int, r wasmsign.Result) {
				res <- ResultMsg{Run: run, Index: i, Result: r, At: clock()}
			})
			cancel()
			done <- DoneMsg{Run: run, Err: err, At: clock()}
		}()
		return w()
	}
}

// result records one module's verdict.
func (m *Model) result(msg ResultMsg) {
	if msg.Index < 0 || msg.Index >= len(m.results) {
		return
	}
	r := msg.Result
	m.results[msg.Index] = &r
	m.tick(msg.At)
	if m.failuresOnly {
		m.fill()
	}
}

// tick updates the elapsed time from a message's clock reading.
func (m *Model) tick(at time.Time) {
	if !m.started.IsZero() && at.After(m.started) {
		m.elapsed = at.Sub(m.started)
	}
}

// finish shows the results of a run.
func (m *Model) finish(msg DoneMsg) {
	m.tick(msg.At)
	m.cancel = nil
	m.screen = ScreenResults
	_, _, pending := m.counts()
	m.stopped = pending > 0
	switch {
	case errors.Is(msg.Err, context.Canceled):
		m.note(fmt.Sprintf("Verification cancelled after %d of %d modules; the others are marked skipped.", len(m.files)-pending, len(m.files)), true)
	case msg.Err != nil:
		m.note("Verification failed: "+untrusted.String(msg.Err.Error())+". Check the trust bundle and press o to try again.", true)
	default:
		m.notice = ""
		if hint := CRLInstruction(m.Results()); hint != "" {
			m.note(hint, true)
		}
	}
	m.fill()
}

// isFailure reports whether a file's result is known and not valid.
func (m Model) isFailure(i int) bool {
	return m.results[i] != nil && m.results[i].Status != wasmsign.StatusValid
}

// fill chooses the rows: every file, or the failures only.
func (m *Model) fill() {
	m.shown = m.shown[:0]
	for i := range m.files {
		if m.failuresOnly && !m.isFailure(i) {
			continue
		}
		m.shown = append(m.shown, i)
	}
	m.cursor = max(min(m.cursor, len(m.shown)-1), 0)
}

// relPath shows a file relative to the verified folder.
func (m Model) relPath(p string) string {
	if rel, err := filepath.Rel(m.root, p); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
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
func (m Model) exportCmd() tea.Cmd {
	name := strings.TrimSpace(m.out.Value())
	if name == "" {
		return nil
	}
	results := m.Results()
	return func() tea.Msg {
		format := exportFormat(name)
		err := writeReport(name, format, results)
		return ExportMsg{Path: name, Format: format, Err: err}
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

func (m *Model) note(s string, isErr bool) { m.notice, m.noticeErr = s, isErr }

// counts returns the valid, invalid (including unreadable) and pending
// counts.
func (m Model) counts() (valid, invalid, pending int) {
	for _, r := range m.results {
		switch {
		case r == nil:
			pending++
		case r.Status == wasmsign.StatusValid:
			valid++
		default:
			invalid++
		}
	}
	return
}

// unchecked counts the results accepted without a CRL check.
func (m Model) unchecked() int {
	n := 0
	for _, r := range m.results {
		if r != nil && r.RevocationUnchecked {
			n++
		}
	}
	return n
}

// folderProblem is the sentence and the instruction for a folder that
// cannot be verified.
func folderProblem(root string, err error) (what, instruction string) {
	root = untrusted.String(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("The folder %s does not exist.", root),
			"Check the path (a folder of .wasm files, or one .wasm file), then press Esc and type it again."
	case errors.Is(err, fs.ErrPermission):
		return fmt.Sprintf("The folder %s cannot be read: permission denied.", root),
			"Ask for read access to it (or copy the modules to a folder you can read), then press Esc and choose it."
	default:
		why := strings.TrimPrefix(err.Error(), ErrFolder.Error()+": ")
		return fmt.Sprintf("The folder %s cannot be read: %s.", root, untrusted.String(why)),
			"Check the path and the disk, then press Esc and choose the folder again."
	}
}
