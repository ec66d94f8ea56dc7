package ui

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/wsc-project/wsc/station"
)

// BenchControl is what the operator view needs from the bench of slots.
// *station.Bench satisfies it. The view calls it only from tea.Cmds, so an
// implementation may block briefly but must be safe for concurrent use.
type BenchControl interface {
	// SetRunning starts (true) or stops (false) the work order.
	SetRunning(on bool)
	// Running reports whether the work order is running.
	Running() bool
	// Retry runs a failed slot again.
	Retry(slot int) error
	// Quarantine sends a slot's device to the red bin.
	Quarantine(slot int) error
	// BindLabel binds a scanned label to a slot (0: the first idle slot
	// without a label) and returns the slot used.
	BindLabel(slot int, label string) (int, error)
	// Snapshot returns the state of every slot.
	Snapshot() []station.SlotStatus
}

// OperatorSetter is an optional capability of a BenchControl: when the
// control has it, the view tells it who signed in, so that the runs it
// records name the operator. It is discovered by type assertion.
type OperatorSetter interface {
	SetOperator(name string)
}

var _ BenchControl = (*station.Bench)(nil)

// BenchOptions configures the operator bench view.
type BenchOptions struct {
	// Control is the bench of slots (required).
	Control BenchControl
	// Auth checks the operator on the login screen; nil skips the login
	// screen and shows Operator.
	Auth Authenticator
	// Title heads the screen (default "wsc station").
	Title string
	// WorkOrder, Station and Operator are shown on the status line.
	WorkOrder string
	Station   string
	Operator  string
	// Now is the clock (default time.Now). It is only read inside commands
	// (ticks, command results), never in Update or View; tests give a
	// fixed clock.
	Now func() time.Time
	// Keys overrides the default key bindings.
	Keys *KeyMap
	// WorkOrders and Switcher, when set, let a supervisor choose the work
	// order on screen (w) among WorkOrders.
	WorkOrders []string
	Switcher   WorkOrderSwitcher
	// RedBins, when set, lets a supervisor release red-binned chips on
	// screen (ctrl+r).
	RedBins RedBinDesk
	// Rework, when set, lets a supervisor run a failed slot's device again
	// under a rework (ctrl+e), with the chip-reset statement when the RMA
	// desk cleared its TPM.
	Rework ReworkDesk
	// ExpectedStep, when set, is the chip profile's expected time of a
	// step; running cards show the step's elapsed time against it. Without
	// it the view learns the times from the shift's passed runs (median).
	// It is asked once per step in NewBenchModel, never while rendering.
	ExpectedStep func(station.Step) time.Duration
	// Plant, when set, reports the plant registry sync ("in sync", "N
	// behind", "offline since …"); the status line shows it, refreshed
	// every PlantEvery.
	Plant func(context.Context) (string, error)
}

// PlantEvery is how often the view asks for the plant sync status.
const PlantEvery = 2 * time.Second

// PlantMsg is the answer of BenchOptions.Plant.
type PlantMsg struct {
	Status string
	Err    error
}

// ProgressReporter is an optional capability of a BenchControl: the work
// order's production as the station database counts it (*station.Bench
// has it). The view asks for it after every finished run.
type ProgressReporter interface {
	Progress(ctx context.Context) (station.WorkOrderProgress, error)
}

// WorkOrderMsg is the answer of a ProgressReporter.
type WorkOrderMsg struct {
	Progress station.WorkOrderProgress
	Err      error
}

// SnapshotMsg seeds the view with the bench's slots. The view asks for it
// in Init; slots it already knows from events keep their state.
type SnapshotMsg struct {
	// Slots and Running are the bench's state, At when it was read.
	Slots   []station.SlotStatus
	Running bool
	At      time.Time
}

// RunningMsg is the result of starting or stopping the work order.
type RunningMsg struct {
	// On is the bench's state after the call.
	On bool
	// At is when it happened (from the injected clock).
	At time.Time
}

// RetryMsg is the result of a retry request for Slot (Err from the bench).
type RetryMsg struct {
	Slot int
	Err  error
}

// QuarantineMsg is the result of a red-bin request for Slot (Err from the
// bench).
type QuarantineMsg struct {
	Slot int
	Err  error
}

// BindLabelMsg is the result of binding a scanned label.
type BindLabelMsg struct {
	// Requested is the slot asked for (0: the next idle slot without a
	// label); Slot is the slot the bench used.
	Requested, Slot int
	Label           string
	Err             error
}

// tickMsg carries the clock into the model (spinner frames, elapsed times,
// devices per hour).
type tickMsg time.Time

// tickEvery is the refresh period of running slots.
const tickEvery = 100 * time.Millisecond

// BenchModel is the operator bench view: a login screen (when an
// Authenticator is set), then a card per slot with its state, step progress,
// elapsed time, device serial, label and certificate serial; counters;
// the selected slot's last error with its instruction; the scan field;
// a status line; help.
type BenchModel struct {
	ctl   BenchControl
	title string
	wo    string
	stn   string
	op    string
	clock func() time.Time
	keys  KeyMap
	help  help.Model
	grid  slotGrid

	login    loginForm
	signedIn bool

	now      time.Time
	slots    []*slotView
	selNum   int
	running  bool
	woSince  time.Time
	woActive time.Duration

	// tally counts devices and attempts this shift (shared by the copies
	// of the model: only the newest one is ever used).
	tally *tally
	// wop is the work order's progress as the database counts it (nil
	// until the bench reported it, or when it cannot); complete is set
	// when the bench says the quantity is reached.
	wop      *station.WorkOrderProgress
	complete bool
	// redBins are the red-bin instructions not yet acknowledged, oldest
	// first: they stay on screen (even after the device is pulled and the
	// slot runs the next one) until the operator presses a.
	redBins []redBinNotice

	scan     []rune
	scanOpen bool

	notice    string
	noticeErr bool
	showHelp  bool
	showStats bool
	desk      RedBinDesk
	release   releaseForm
	// reworkDesk and rework are the supervised rework (rework.go).
	reworkDesk ReworkDesk
	rework     reworkForm
	woList     []string
	switcher   WorkOrderSwitcher
	woPick     woForm
	// expectedOpt is BenchOptions.ExpectedStep, asked once per step when
	// the model is built (View does no I/O and calls no callback).
	expectedOpt map[station.Step]time.Duration
	// plantFn reports the plant sync; plant is its last answer.
	plantFn     func(context.Context) (string, error)
	plant       string
	confirmQuit bool
	// confirmRedBin is the slot of a passed device the operator asked to
	// red-bin: that revokes its certificate, so it is confirmed first.
	confirmRedBin int

	width, height int
}

// NewBenchModel returns the operator bench view.
func NewBenchModel(opts BenchOptions) BenchModel {
	m := BenchModel{ctl: opts.Control, title: opts.Title, wo: opts.WorkOrder, stn: opts.Station, op: opts.Operator,
		clock: opts.Now, keys: DefaultKeyMap(), help: newHelp(), grid: newSlotGrid(), width: 80, height: 24, tally: newTally()}
	if f := opts.ExpectedStep; f != nil {
		m.expectedOpt = make(map[station.Step]time.Duration, len(station.Steps))
		for _, st := range station.Steps {
			m.expectedOpt[st] = f(st)
		}
	}
	m.plantFn = opts.Plant
	m.desk, m.release = opts.RedBins, newReleaseForm()
	m.reworkDesk, m.rework = opts.Rework, newReworkForm()
	m.woList, m.switcher, m.woPick = opts.WorkOrders, opts.Switcher, newWOForm()
	if opts.Keys != nil {
		m.keys = *opts.Keys
	}
	if m.title == "" {
		m.title = "wsc station"
	}
	if m.clock == nil {
		m.clock = time.Now
	}
	m.now = m.clock()
	if opts.Auth != nil {
		m.login = newLoginForm(opts.Auth)
	} else {
		m.signedIn = true
	}
	m.relayout()
	return m
}

// Init asks the bench for its slots and starts the clock.
func (m BenchModel) Init() tea.Cmd {
	return tea.Batch(m.snapshotCmd(), m.tick(), m.progressCmd(), m.plantCmd(0))
}

// plantCmd asks for the plant sync status after wait.
func (m BenchModel) plantCmd(wait time.Duration) tea.Cmd {
	f := m.plantFn
	if f == nil {
		return nil
	}
	ask := func() tea.Msg {
		st, err := f(context.Background())
		return PlantMsg{Status: st, Err: err}
	}
	if wait == 0 {
		return ask
	}
	return tea.Tick(wait, func(time.Time) tea.Msg { return ask() })
}

// progressCmd asks the bench for the work order's counters.
func (m BenchModel) progressCmd() tea.Cmd {
	pr, ok := m.ctl.(ProgressReporter)
	if !ok {
		return nil
	}
	return func() tea.Msg {
		p, err := pr.Progress(context.Background())
		return WorkOrderMsg{Progress: p, Err: err}
	}
}

// Operator returns who is signed in ("" before the login).
func (m BenchModel) Operator() string {
	if !m.signedIn {
		return ""
	}
	return m.op
}

func (m BenchModel) tick() tea.Cmd {
	clock := m.clock
	return tea.Tick(tickEvery, func(time.Time) tea.Msg { return tickMsg(clock()) })
}

func (m BenchModel) snapshotCmd() tea.Cmd {
	ctl, clock := m.ctl, m.clock
	if ctl == nil {
		return nil
	}
	return func() tea.Msg { return SnapshotMsg{Slots: ctl.Snapshot(), Running: ctl.Running(), At: clock()} }
}

// Update applies a message.
func (m BenchModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	var cmd tea.Cmd
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.login.SetSize(msg.Width, msg.Height)
	case tickMsg:
		m.now = time.Time(msg)
		cmd = m.tick()
	case EventMsg:
		m.applyEvent(station.Event(msg))
		if msg.State != station.StateRunning {
			cmd = m.progressCmd()
		}
	case EventBatchMsg:
		refresh := false
		for _, e := range msg {
			m.applyEvent(e)
			refresh = refresh || e.State != station.StateRunning
		}
		if refresh {
			cmd = m.progressCmd()
		}
	case RedBinsMsg:
		f := &m.release
		if msg.Err != nil {
			f.err = "Cannot list the red bin: " + Untrusted(msg.Err.Error())
		} else {
			f.items, f.sel = msg.Items, min(f.sel, max(len(msg.Items)-1, 0))
		}
	case ReleaseMsg:
		f := &m.release
		f.pending = false
		if msg.Err != nil {
			f.err = "Not released: " + Untrusted(msg.Err.Error())
		} else {
			m.note(fmt.Sprintf("Chip %s… released from the red bin by %s.", hex.EncodeToString(msg.ChipID)[:min(12, 2*len(msg.ChipID))], Untrusted(msg.Supervisor)), false)
			f.fields[2].Reset()
			cmd = m.redBinsCmd()
		}
	case ReworkMsg:
		m.reworkDone(msg)
	case WorkOrderSwitchMsg:
		m.woPick.pending = false
		if msg.Err != nil {
			m.woPick.err = "Not switched: " + Untrusted(msg.Err.Error())
			break
		}
		m.woPick = newWOForm()
		m.wo, m.wop, m.complete = msg.ID, nil, false
		m.setRunning(false, m.now)
		m.note(fmt.Sprintf("Work order %s chosen: press s to start it.", Untrusted(msg.ID)), false)
		cmd = m.progressCmd()
	case WorkOrderMsg:
		if msg.Err == nil {
			p := msg.Progress
			m.wop = &p
			if p.Complete && !m.complete {
				// The bench stops itself when the quantity is reached.
				m.complete = true
				m.setRunning(false, m.now)
			}
		}
	case SnapshotMsg:
		m.applySnapshot(msg)
	case RunningMsg:
		m.setRunning(msg.On, msg.At)
		cmd = m.progressCmd()
		if msg.On {
			m.note("Work order started.", false)
		} else {
			m.note("Work order stopped: slots finish their devices and start no new ones.", false)
		}
	case RetryMsg:
		if msg.Err != nil {
			m.note(fmt.Sprintf("Slot %d not retried: %s", msg.Slot, Untrusted(msg.Err.Error())), true)
		} else {
			m.note(fmt.Sprintf("Retrying slot %d.", msg.Slot), false)
		}
	case QuarantineMsg:
		if msg.Err != nil {
			m.note(fmt.Sprintf("Slot %d not sent to the red bin: %s", msg.Slot, Untrusted(msg.Err.Error())), true)
		} else {
			m.note(fmt.Sprintf("Slot %d: put the device in the red bin.", msg.Slot), false)
		}
	case BindLabelMsg:
		m.applyBind(msg)
	case PlantMsg:
		m.plant = msg.Status
		if msg.Err != nil {
			m.plant = "plant: status unknown (" + msg.Err.Error() + ")"
		}
		cmd = m.plantCmd(PlantEvery)
	case ProgressMsg:
		m.note(string(msg), false)
	case DoneMsg:
		return m, tea.Quit
	case LoginResultMsg:
		if m.signedIn {
			break
		}
		m.login = m.login.result(msg)
		if msg.Err == nil {
			m.signedIn, m.op = true, msg.Operator
			m.note(fmt.Sprintf("Signed in as %s.", msg.Operator), false)
			if s, ok := m.ctl.(OperatorSetter); ok {
				name := msg.Operator
				cmd = func() tea.Msg { s.SetOperator(name); return nil }
			}
		}
	case tea.KeyMsg:
		m, cmd = m.key(msg)
	}
	m.relayout()
	return m, cmd
}

// key handles a key press; see ScanRule for how scans and commands are
// told apart.
func (m BenchModel) key(k tea.KeyMsg) (BenchModel, tea.Cmd) {
	if n := m.confirmRedBin; n != 0 {
		m.confirmRedBin = 0
		if key.Matches(k, m.keys.Yes) {
			return m, func() tea.Msg { return QuarantineMsg{Slot: n, Err: m.ctl.Quarantine(n)} }
		}
		m.note(fmt.Sprintf("Slot %d kept: not sent to the red bin.", n), false)
		return m, nil
	}
	if m.confirmQuit {
		m.confirmQuit = false
		if key.Matches(k, m.keys.Yes, m.keys.Quit) {
			return m, tea.Quit
		}
		return m, nil
	}
	if key.Matches(k, m.keys.Quit) {
		if n := m.runningCount(); n > 0 {
			m.confirmQuit = true
			return m, nil
		}
		return m, tea.Quit
	}
	if !m.signedIn {
		var cmd tea.Cmd
		m.login, cmd = m.login.update(k, m.keys)
		return m, cmd
	}
	if m.release.open {
		return m.releaseKey(k)
	}
	if m.rework.open {
		return m.reworkKey(k)
	}
	if m.woPick.open {
		return m.woKey(k)
	}
	if m.scanActive() || isBurst(k) {
		return m.scanKey(k)
	}
	if len(m.redBins) > 0 && key.Matches(k, m.keys.Ack) {
		n := m.redBins[0]
		m.redBins = m.redBins[1:]
		m.note(fmt.Sprintf("Red bin of slot %d acknowledged.", n.slot), false)
		return m, nil
	}
	switch {
	case key.Matches(k, m.keys.StartStop):
		return m, m.setRunningCmd(!m.running)
	case key.Matches(k, m.keys.Retry):
		return m, m.slotCmd(func(ctl BenchControl, n int) tea.Msg { return RetryMsg{Slot: n, Err: ctl.Retry(n)} })
	case key.Matches(k, m.keys.Quarantine):
		if sv := m.slotByNum(m.selNum); sv != nil && sv.state == station.StatePassed {
			m.confirmRedBin = sv.num
			return m, nil
		}
		return m, m.slotCmd(func(ctl BenchControl, n int) tea.Msg { return QuarantineMsg{Slot: n, Err: ctl.Quarantine(n)} })
	case key.Matches(k, m.keys.Left, m.keys.Right, m.keys.Up, m.keys.Down):
		m.move(k)
	case key.Matches(k, m.keys.Slot) && len(k.Runes) == 1 && unicode.IsDigit(k.Runes[0]):
		n := int(k.Runes[0] - '0')
		if m.slotByNum(n) != nil {
			m.selNum = n
		} else {
			m.note(fmt.Sprintf("There is no slot %d on this bench.", n), true)
		}
	case key.Matches(k, m.keys.Scan):
		m.scanOpen = true
	case key.Matches(k, m.keys.Help):
		m.showHelp = !m.showHelp
	case key.Matches(k, m.keys.Stats):
		m.showStats = !m.showStats
	case key.Matches(k, m.keys.WorkOrder):
		if m.switcher == nil || len(m.woList) == 0 {
			m.note("This station has one work order: the shift lead changes it in the station config.", true)
			return m, nil
		}
		m.woPick = newWOForm()
		m.woPick.open = true
		for i, id := range m.woList {
			if id == m.wo {
				m.woPick.sel = i
			}
		}
		return m, nil
	case key.Matches(k, m.keys.Release):
		if m.desk == nil {
			m.note("Red-bin release is not available on this station: use wsc redbin release.", true)
			return m, nil
		}
		m.release = newReleaseForm()
		m.release.open = true
		m.release.setFocus(0)
		return m, m.redBinsCmd()
	case key.Matches(k, m.keys.Rework):
		return m.openRework()
	case key.Matches(k, m.keys.Esc):
		m.showHelp, m.notice = false, ""
	case k.Type == tea.KeyRunes && len(k.Runes) == 1 && unicode.IsPrint(k.Runes[0]):
		// Not a command: the start of a label typed by hand.
		m.scan = append(m.scan, k.Runes[0])
	}
	return m, nil
}

// isBurst reports whether a key message carries text that came in one go:
// a scanner burst or a paste.
func isBurst(k tea.KeyMsg) bool {
	return k.Paste || (k.Type == tea.KeyRunes && len(k.Runes) > 1)
}

func (m BenchModel) scanActive() bool { return m.scanOpen || len(m.scan) > 0 }

// scanKey handles a key while the scan field is in use.
func (m BenchModel) scanKey(k tea.KeyMsg) (BenchModel, tea.Cmd) {
	switch {
	case k.Type == tea.KeyRunes:
		var cmds []tea.Cmd
		for _, r := range k.Runes {
			switch {
			case r == '\r' || r == '\n':
				// A paste or a scanner that sends its terminator inside
				// the burst.
				cmds = append(cmds, m.commitScan())
			case unicode.IsPrint(r):
				m.scan = append(m.scan, r)
			}
		}
		return m, tea.Batch(cmds...)
	case k.Type == tea.KeySpace:
		if len(m.scan) > 0 {
			m.scan = append(m.scan, ' ')
		}
	case key.Matches(k, m.keys.Enter):
		return m, m.commitScan()
	case k.Type == tea.KeyBackspace:
		if len(m.scan) > 0 {
			m.scan = m.scan[:len(m.scan)-1]
		}
	case key.Matches(k, m.keys.Esc):
		m.scan, m.scanOpen = nil, false
	case key.Matches(k, m.keys.Left, m.keys.Right, m.keys.Up, m.keys.Down):
		m.move(k)
	}
	return m, nil
}

// commitScan empties the scan field and returns the command that binds
// the label (nil when the field held only blanks).
func (m *BenchModel) commitScan() tea.Cmd {
	label := strings.TrimSpace(string(m.scan))
	m.scan, m.scanOpen = nil, false
	if label == "" || m.ctl == nil {
		return nil
	}
	target, ctl := m.scanTarget(), m.ctl
	return func() tea.Msg {
		n, err := ctl.BindLabel(target, label)
		return BindLabelMsg{Requested: target, Slot: n, Label: label, Err: err}
	}
}

// scanTarget is the slot a scan binds to (see ScanRule): the selected slot
// when it is failed or idle without a label, else 0 (the bench's next idle
// slot without a label).
func (m BenchModel) scanTarget() int {
	s := m.selected()
	if s != nil && (s.state == station.StateFailed || (s.state == station.StateIdle && s.label == "")) {
		return s.num
	}
	return 0
}

// predictTarget names the slot a scan would bind to, for the scan line.
func (m BenchModel) predictTarget() int {
	if n := m.scanTarget(); n != 0 {
		return n
	}
	for _, s := range m.slots {
		if s.state == station.StateIdle && s.label == "" {
			return s.num
		}
	}
	return 0
}

func (m BenchModel) setRunningCmd(on bool) tea.Cmd {
	ctl, clock := m.ctl, m.clock
	if ctl == nil {
		return nil
	}
	return func() tea.Msg {
		ctl.SetRunning(on)
		return RunningMsg{On: ctl.Running(), At: clock()}
	}
}

// slotCmd runs call on the selected slot in a command.
func (m *BenchModel) slotCmd(call func(BenchControl, int) tea.Msg) tea.Cmd {
	s := m.selected()
	if s == nil || m.ctl == nil {
		m.note("No slot selected.", true)
		return nil
	}
	ctl, n := m.ctl, s.num
	return func() tea.Msg { return call(ctl, n) }
}

func (m *BenchModel) note(s string, isErr bool) { m.notice, m.noticeErr = s, isErr }

// move changes the selection with an arrow key.
func (m *BenchModel) move(k tea.KeyMsg) {
	if len(m.slots) == 0 {
		return
	}
	i := m.selIndex()
	cols := m.grid.cols(len(m.slots))
	switch {
	case key.Matches(k, m.keys.Left):
		i--
	case key.Matches(k, m.keys.Right):
		i++
	case key.Matches(k, m.keys.Up):
		i -= cols
	case key.Matches(k, m.keys.Down):
		i += cols
	}
	i = min(max(i, 0), len(m.slots)-1)
	m.selNum = m.slots[i].num
}

func (m BenchModel) selIndex() int {
	for i, s := range m.slots {
		if s.num == m.selNum {
			return i
		}
	}
	return 0
}

func (m BenchModel) selected() *slotView {
	if len(m.slots) == 0 {
		return nil
	}
	return m.slots[m.selIndex()]
}

func (m BenchModel) slotByNum(n int) *slotView {
	for _, s := range m.slots {
		if s.num == n {
			return s
		}
	}
	return nil
}

// ensureSlot returns slot n, adding it (in slot order) if the view has not
// seen it yet.
func (m *BenchModel) ensureSlot(n int) *slotView {
	if s := m.slotByNum(n); s != nil {
		return s
	}
	s := &slotView{num: n, state: station.StateIdle}
	m.slots = append(m.slots, s)
	sort.Slice(m.slots, func(i, j int) bool { return m.slots[i].num < m.slots[j].num })
	if m.selNum == 0 {
		m.selNum = n
	}
	return s
}

func (m BenchModel) runningCount() int {
	n := 0
	for _, s := range m.slots {
		if s.state == station.StateRunning {
			n++
		}
	}
	return n
}

// applyEvent updates a slot and the counters from a station event.
func (m *BenchModel) applyEvent(e station.Event) {
	if e.Slot <= 0 {
		return
	}
	// Copy on write: an older BenchModel value shares the slot pointers.
	old := m.ensureSlot(e.Slot)
	s := *old
	passed, failed, redBin := s.apply(e)
	for i := range m.slots {
		if m.slots[i] == old {
			m.slots[i] = &s
		}
	}
	if errors.Is(e.Err, station.ErrWorkOrderComplete) {
		m.complete = true
		m.setRunning(false, e.Time)
		m.note("Work order complete: "+Untrusted(e.Detail), false)
	}
	key := s.serial
	if key == "" {
		// A device that never told its serial counts on its own.
		key = fmt.Sprintf("slot %d at %s", e.Slot, e.Time.Format(time.RFC3339Nano))
	}
	if passed && !m.tally.passed[key] {
		m.tally.passTimes = append(m.tally.passTimes, e.Time)
	}
	if passed {
		if d, ok := s.elapsed(e.Time); ok {
			m.tally.cycles = append(m.tally.cycles, d)
		}
	}
	if failed {
		m.tally.reasons[failureReason(&s)]++
	}
	if passed && e.Result != nil {
		for st, d := range e.Result.Steps {
			ts := append(m.tally.stepTimes[st], d)
			if len(ts) > stepSamples {
				ts = ts[len(ts)-stepSamples:]
			}
			m.tally.stepTimes[st] = ts
		}
	}
	m.tally.add(key, passed, failed, redBin)
	if redBin {
		m.redBins = append(append([]redBinNotice(nil), m.redBins...), redBinNotice{slot: e.Slot, serial: s.serial, instruction: s.instruction})
	}
}

// stepSamples is how many recent passed runs the expected step times
// are learned from.
const stepSamples = 50

// expectedStep is the time a step is expected to take: the option's
// figure when set (the chip profile's), else the median of the step in
// this shift's recent passes; 0 when unknown.
func (m BenchModel) expectedStep(st station.Step) time.Duration {
	if m.expectedOpt != nil {
		return m.expectedOpt[st]
	}
	ts := m.tally.stepTimes[st]
	if len(ts) == 0 {
		return 0
	}
	c := append([]time.Duration(nil), ts...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c[len(c)/2]
}

// failureReason names a failed attempt for the Pareto of the statistics
// panel: its step and the first part of its error (request ids and other
// details after the first colon-separated field are left out).
func failureReason(s *slotView) string {
	text := s.errText
	if i := strings.Index(text, ": "); i >= 0 {
		rest := text[i+2:]
		if j := strings.Index(rest, ": "); j >= 0 {
			rest = rest[:j]
		}
		text = rest
	}
	text = truncateCells(text, 48)
	if s.errStep != "" {
		return string(s.errStep) + ": " + text
	}
	return text
}

// truncateCells cuts s to w cells with an ellipsis.
func truncateCells(s string, w int) string { return ansi.Truncate(s, max(w, 1), "…") }

// redBinNotice is a red-bin instruction waiting for its acknowledgement.
type redBinNotice struct {
	slot        int
	serial      string
	instruction string
}

// tally counts a shift's devices (by serial: a device counts once however
// often it is run) and attempts (every finished run).
type tally struct {
	passed, redBin map[string]bool
	// passTimes are the times devices first passed; cycles the durations
	// of passed attempts; reasons counts failed attempts by reason.
	passTimes []time.Time
	cycles    []time.Duration
	reasons   map[string]int
	// stepTimes are the last durations of each step in passed runs.
	stepTimes map[station.Step][]time.Duration
	// first is the result of each device's first finished attempt.
	first                    map[string]bool
	attempts, failedAttempts int
}

func newTally() *tally {
	return &tally{passed: map[string]bool{}, redBin: map[string]bool{}, first: map[string]bool{}, reasons: map[string]int{},
		stepTimes: map[station.Step][]time.Duration{}}
}

func (t *tally) add(device string, passed, failed, redBin bool) {
	if passed || failed {
		t.attempts++
		if _, ok := t.first[device]; !ok {
			t.first[device] = passed
		}
	}
	if passed {
		t.passed[device] = true
	}
	if failed {
		t.failedAttempts++
	}
	if redBin {
		t.redBin[device] = true
	}
}

// applySnapshot adds the slots the view does not know yet. Slots already
// seen through events keep their state (events are newer than a snapshot
// taken at start-up); only blanks are filled in.
func (m *BenchModel) applySnapshot(msg SnapshotMsg) {
	slots := append([]*slotView(nil), m.slots...)
	for _, st := range msg.Slots {
		found := false
		for i, s := range slots {
			if s.num != st.Slot {
				continue
			}
			found = true
			c := *s
			if c.port == "" {
				c.port = st.Port
			}
			if c.label == "" && c.state == st.State {
				c.label = st.Label
			}
			slots[i] = &c
		}
		if !found {
			slots = append(slots, fromStatus(st))
		}
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i].num < slots[j].num })
	m.slots = slots
	if m.selNum == 0 && len(slots) > 0 {
		m.selNum = slots[0].num
	}
	m.setRunning(msg.Running, msg.At)
}

func (m *BenchModel) applyBind(msg BindLabelMsg) {
	if msg.Err != nil {
		where := "the next free slot"
		if msg.Requested != 0 {
			where = fmt.Sprintf("slot %d", msg.Requested)
		}
		m.note(fmt.Sprintf("Label %s not bound to %s: %s", Untrusted(msg.Label), where, Untrusted(msg.Err.Error())), true)
		return
	}
	old := m.ensureSlot(msg.Slot)
	s := *old
	s.label = msg.Label
	for i := range m.slots {
		if m.slots[i] == old {
			m.slots[i] = &s
		}
	}
	m.selNum = msg.Slot
	m.note(fmt.Sprintf("Label %s bound to slot %d.", Untrusted(msg.Label), msg.Slot), false)
}

// setRunning records a work order start or stop at instant at, for the
// devices-per-hour rate.
func (m *BenchModel) setRunning(on bool, at time.Time) {
	switch {
	case on && !m.running:
		m.woSince = at
	case !on && m.running:
		if !m.woSince.IsZero() && at.After(m.woSince) {
			m.woActive += at.Sub(m.woSince)
		}
		m.woSince = time.Time{}
	}
	m.running = on
}

// Counters are the shift figures shown above the slots, from the events
// this view has seen.
type Counters struct {
	// Passed and RedBin count devices (by serial, each once); Failed counts
	// failed attempts and Attempts every finished attempt.
	Passed, Failed, RedBin, Attempts int
	// Yield is passed attempts over finished attempts, in percent;
	// FirstPass is the share of devices that passed at their first
	// attempt. Both -1 before the first finished attempt.
	Yield, FirstPass float64
	// Active is how long the work order has been running (stops excluded).
	Active time.Duration
	// PerHour is passed devices per hour of Active time; -1 before the
	// work order has run.
	PerHour float64
}

// Counters returns the figures as of the model's clock.
func (m BenchModel) Counters() Counters {
	t := m.tally
	c := Counters{Passed: len(t.passed), Failed: t.failedAttempts, RedBin: len(t.redBin), Attempts: t.attempts,
		Yield: -1, FirstPass: -1, PerHour: -1, Active: m.woActive}
	if m.running && !m.woSince.IsZero() && m.now.After(m.woSince) {
		c.Active += m.now.Sub(m.woSince)
	}
	if t.attempts > 0 {
		c.Yield = 100 * float64(t.attempts-t.failedAttempts) / float64(t.attempts)
	}
	if n := len(t.first); n > 0 {
		ok := 0
		for _, p := range t.first {
			if p {
				ok++
			}
		}
		c.FirstPass = 100 * float64(ok) / float64(n)
	}
	if c.Active > 0 {
		c.PerHour = float64(c.Passed) / c.Active.Hours()
	}
	return c
}

// Layout: the lines around the grid.
const (
	detailLines = 4
	fixedLines  = 1 /*title*/ + 1 /*work order*/ + 1 /*counters*/ + detailLines + 1 /*notice*/ + 1 /*scan*/ + 1 /*status*/
)

// relayout gives the grid the height left by the other parts. The detail
// lines grow when the selected slot's instruction needs more than
// detailLines: an instruction is wrapped, never cut.
func (m *BenchModel) relayout() {
	m.help.Width = m.width
	m.grid.SetSize(m.width, m.height-fixedLines-(len(m.detail())-detailLines)-lipgloss.Height(m.helpView()))
}

func (m BenchModel) helpView() string {
	k := m.keys
	if !m.showHelp {
		// The short help says what s will do now.
		if m.running {
			k.StartStop = brief(k.StartStop, "stop WO")
		} else {
			k.StartStop = brief(k.StartStop, "start WO")
		}
		return m.help.ShortHelpView(k.ShortHelp())
	}
	return m.help.FullHelpView(k.FullHelp()) + "\n" + styleDim.Render(ansi.Wrap(ScanRule, max(m.width, 20), ""))
}

// View renders the screen.
func (m BenchModel) View() string {
	if !m.signedIn {
		return m.login.View(m.title, m.help.ShortHelpView(loginHelp{m.keys}.ShortHelp()))
	}
	g := m.grid
	g.expected = m.expectedStep
	grid := g.View(m.slots, m.selIndex(), m.now)
	switch {
	case m.woPick.open:
		grid = strings.Join(m.woLines(m.width, m.grid.height), "\n")
	case m.release.open:
		grid = strings.Join(m.releaseLines(m.width, m.grid.height), "\n")
	case m.rework.open:
		grid = strings.Join(m.reworkLines(m.width, m.grid.height), "\n")
	case m.showStats:
		grid = strings.Join(m.statsLines(m.width, m.grid.height), "\n")
	}
	parts := []string{
		ansi.Truncate(styleTitle.Render(m.title), m.width, "…"),
		m.workOrderView(),
		m.countersView(),
		grid,
		m.detailView(),
		m.noticeView(),
		m.scanView(),
		m.statusView(),
		m.helpView(),
	}
	return strings.Join(parts, "\n")
}

func (m BenchModel) countersView() string {
	c := m.Counters()
	pct := func(v float64) string {
		if v < 0 {
			return "—"
		}
		return fmt.Sprintf("%.0f%%", v)
	}
	yield, rate := "—", "—"
	if c.Yield >= 0 {
		yield = fmt.Sprintf("%.1f%%", c.Yield)
	}
	if c.PerHour >= 0 {
		rate = fmt.Sprintf("%.1f", c.PerHour)
	}
	p, f, r := styleOK.Render(fmt.Sprint(c.Passed)), styleFail.Render(fmt.Sprint(c.Failed)), styleFail.Render(fmt.Sprint(c.RedBin))
	s := fmt.Sprintf("Passed %s · Red bin %s devices │ Attempts %d, failed %s │ Yield %s · First-pass %s │ %s/h", p, r, c.Attempts, f, yield, pct(c.FirstPass), rate)
	if lipgloss.Width(s) > m.width {
		s = fmt.Sprintf("Passed %s · Red bin %s │ Attempts %d, failed %s │ FPY %s │ %s/h", p, r, c.Attempts, f, pct(c.FirstPass), rate)
	}
	if lipgloss.Width(s) > m.width {
		s = fmt.Sprintf("✓ %s  bin %s  att %d ✗ %s  FPY %s  %s/h", p, r, c.Attempts, f, pct(c.FirstPass), rate)
	}
	return ansi.Truncate(s, m.width, "…")
}

// workOrderView is the work order panel: quantity, done, remaining and
// failed runs as the database counts them (the figures of wsc db stats),
// a progress bar with the time left at the current rate, or the COMPLETE
// banner once the quantity is reached.
func (m BenchModel) workOrderView() string {
	wo := orDash(m.wo)
	p := m.wop
	if m.complete {
		done := ""
		if p != nil {
			done = fmt.Sprintf(" · %d of %d devices", p.Done, p.Quantity)
		}
		s := fmt.Sprintf(" ✓ WORK ORDER %s COMPLETE%s · pull the last devices ", wo, done)
		s = ansi.Truncate(s, m.width, "…")
		if pad := m.width - lipgloss.Width(s); pad > 0 {
			left := pad / 2
			s = strings.Repeat(" ", left) + s + strings.Repeat(" ", pad-left)
		}
		return styleBanner.Render(s)
	}
	if p == nil {
		return ansi.Truncate("Work order "+wo, m.width, "…")
	}
	eta := "—"
	if c := m.Counters(); c.PerHour > 0 && p.Remaining() > 0 {
		eta = "~" + formatElapsed(time.Duration(float64(p.Remaining())/c.PerHour*float64(time.Hour)).Truncate(time.Second))
	}
	tail := fmt.Sprintf(" %d/%d done · %d left · %d failed runs · ETA %s", p.Done, p.Quantity, p.Remaining(), p.RunsFailed, eta)
	head := "WO " + wo + " "
	barW := m.width - lipgloss.Width(head) - lipgloss.Width(tail)
	if barW < 6 {
		return ansi.Truncate(head+strings.TrimSpace(tail), m.width, "…")
	}
	f := 0.0
	if p.Quantity > 0 {
		f = float64(p.Done) / float64(p.Quantity)
	}
	return head + styleOK.Render(textBar(f, min(barW, 40))) + tail
}

// detailView is the selected slot's story in plain words: what it is
// doing, its last error and what the operator should do now. It takes
// detailLines lines, more when the instruction needs them.
func (m BenchModel) detailView() string {
	return strings.Join(m.detail(), "\n")
}

// detail returns the detail lines, at least detailLines of them.
func (m BenchModel) detail() []string {
	var lines []string
	s := m.selected()
	switch {
	case s == nil:
		lines = []string{styleDim.Render("Waiting for the bench to report its slots…")}
	case s.state == station.StateIdle:
		head := fmt.Sprintf("Slot %d · waiting for a device", s.num)
		if s.label != "" {
			head += " · label " + Untrusted(s.label)
		}
		hint := "Scan the label, then plug the device in."
		switch {
		case m.complete:
			hint = "The work order is complete: pull the devices; the shift lead starts the next work order."
		case !m.running:
			hint = "The work order is stopped: press s to start it."
		}
		lines = []string{head, styleDim.Render(hint)}
	case s.state == station.StateRunning:
		_, n := s.stepFraction()
		head := fmt.Sprintf("Slot %d · provisioning %s · step %s (%d/%d) · attempt %d", s.num, orDash(Untrusted(s.serial)), s.step, n, len(station.Steps), max(s.attempts, 1))
		lines = []string{head}
		if s.errText != "" {
			lines = append(lines, styleDim.Render("Last error: "+Untrusted(s.errText)))
		}
	case s.state == station.StatePassed:
		el := ""
		if d, ok := s.elapsed(m.now); ok {
			el = " in " + formatElapsed(d)
		}
		lines = []string{
			fmt.Sprintf("Slot %d · %s passed%s · certificate %s", s.num, orDash(Untrusted(s.serial)), el, orDash(Untrusted(s.cert))),
			styleInstr.Render("→ Pull the device; the slot then waits for the next one."),
		}
		if s.labelErr != "" {
			lines = append(lines, styleWarn.Render("Label not printed (the device passed): "+Untrusted(s.labelErr)))
		}
	default: // failed, quarantined
		what := fmt.Sprintf("failed at %s", orDash(string(s.errStep)))
		if s.state == station.StateQuarantined {
			what = styleRedBin.Render(" RED BIN ")
		}
		head := fmt.Sprintf("Slot %d · %s · %s", s.num, orDash(Untrusted(s.serial)), what)
		if s.attempts > 0 {
			head += fmt.Sprintf(" · attempt %d", s.attempts)
		}
		lines = []string{head}
		if s.errText != "" {
			lines = append(lines, styleFail.Render("Error: "+Untrusted(s.errText)))
		}
		if s.instruction != "" {
			// The instruction is what the operator acts on: it is wrapped,
			// never cut (the detail grows; the grid gives way).
			for _, l := range strings.Split(ansi.Wrap("→ "+Untrusted(s.instruction), max(m.width, 20), ""), "\n") {
				lines = append(lines, styleInstr.Render(l))
			}
		}
	}
	for i := range lines {
		lines[i] = ansi.Truncate(lines[i], m.width, "…")
	}
	for len(lines) < detailLines {
		lines = append(lines, "")
	}
	return lines
}

func (m BenchModel) noticeView() string {
	switch {
	case m.confirmRedBin == 0 && !m.confirmQuit && len(m.redBins) > 0:
		n := m.redBins[0]
		more := ""
		if len(m.redBins) > 1 {
			more = fmt.Sprintf(" (%d more)", len(m.redBins)-1)
		}
		return ansi.Truncate(styleRedBin.Render(" RED BIN ")+styleWarn.Render(fmt.Sprintf(" slot %d %s: in the red bin? press a%s", n.slot, orDash(Untrusted(n.serial)), more)), m.width, "…")
	case m.confirmRedBin != 0:
		return ansi.Truncate(styleWarn.Render(fmt.Sprintf("Slot %d passed. Red-bin it and revoke its certificate? y / N", m.confirmRedBin)), m.width, "…")
	case m.confirmQuit:
		n := m.runningCount()
		return ansi.Truncate(styleWarn.Render(fmt.Sprintf("%d slot(s) still provisioning. Quit anyway? y / N", n)), m.width, "…")
	case m.notice == "":
		return ""
	case m.noticeErr:
		return ansi.Truncate(styleFail.Render(m.notice), m.width, "…")
	default:
		return ansi.Truncate(styleDim.Render(m.notice), m.width, "…")
	}
}

func (m BenchModel) scanView() string {
	var s string
	if m.scanActive() {
		where := "no free slot"
		if n := m.predictTarget(); n != 0 {
			where = fmt.Sprintf("slot %d", n)
		}
		s = styleKey.Render("Scan ▸ ") + styleInput.Render(string(m.scan)) + "▏ " +
			styleDim.Render(fmt.Sprintf("enter binds to %s · esc clears", where))
	} else {
		s = styleKey.Render("Scan ▸ ") + styleDim.Render("scan a label (or / to type one)")
	}
	return ansi.Truncate(s, m.width, "…")
}

// statusView is the status line: work order state first (it must stay
// visible on narrow screens), then work order, operator and station —
// captioned when the width allows.
func (m BenchModel) statusView() string {
	state := "■ STOPPED"
	if m.running {
		state = "● RUNNING"
	}
	if c := m.Counters(); c.Active > 0 {
		state += " " + formatElapsed(c.Active.Truncate(time.Second))
	}
	parts := []string{state, "WO " + orDash(m.wo), "operator " + orDash(m.Operator()), "station " + orDash(m.stn)}
	if m.plant != "" {
		parts = append(parts, Untrusted(m.plant))
	}
	s := " " + strings.Join(parts, " │ ") + " "
	if lipgloss.Width(s) > m.width {
		s = " " + strings.Join([]string{state, orDash(m.wo), orDash(m.Operator()), orDash(m.stn)}, " │ ") + " "
	}
	s = ansi.Truncate(s, m.width, "…")
	if pad := m.width - lipgloss.Width(s); pad > 0 {
		s += strings.Repeat(" ", pad)
	}
	return styleStatus.Render(s)
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
