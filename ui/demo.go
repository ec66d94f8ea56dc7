package ui

import (
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/spinner"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/wsc-project/wsc/station"
)

// EventMsg carries a station event into a model.
type EventMsg station.Event

// ProgressMsg carries a set-up message (before slots run); the bench view
// shows it on its notice line.
type ProgressMsg string

// DoneMsg tells the demo or bench view that the run is over: the program
// quits.
type DoneMsg struct{}

var (
	styleOK    = lipgloss.NewStyle().Foreground(lipgloss.Color("2")).Bold(true)
	styleFail  = lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true)
	styleDim   = lipgloss.NewStyle().Foreground(lipgloss.Color("8"))
	styleTitle = lipgloss.NewStyle().Bold(true)
)

type slotLine struct {
	serial string
	step   station.Step
	state  station.State
	detail string
	start  time.Time
	end    time.Time
}

// DemoModel shows one line per slot: a spinner while it runs, its current
// step, and the result.
type DemoModel struct {
	title    string
	slots    map[int]*slotLine
	order    []int
	spin     spinner.Model
	progress string
	width    int
	// now is the latest instant the model has heard of (spinner ticks and
	// events carry it): View never reads the clock.
	now time.Time
}

// NewDemoModel returns a model for n slots.
func NewDemoModel(title string, n int) DemoModel {
	m := DemoModel{title: title, slots: map[int]*slotLine{}, spin: spinner.New(spinner.WithSpinner(spinner.Dot)), width: 80}
	for i := 1; i <= n; i++ {
		m.slots[i] = &slotLine{state: station.StateIdle}
		m.order = append(m.order, i)
	}
	return m
}

// Init starts the spinner.
func (m DemoModel) Init() tea.Cmd { return m.spin.Tick }

// Update applies a message.
func (m DemoModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		if msg.String() == "ctrl+c" {
			return m, tea.Quit
		}
	case tea.WindowSizeMsg:
		m.width = msg.Width
	case ProgressMsg:
		m.progress = string(msg)
	case EventMsg:
		if msg.Time.After(m.now) {
			m.now = msg.Time
		}
		s, ok := m.slots[msg.Slot]
		if !ok {
			s = &slotLine{}
			m.slots[msg.Slot] = s
			m.order = append(m.order, msg.Slot)
		}
		if s.start.IsZero() {
			s.start = msg.Time
		}
		if msg.Serial != "" {
			s.serial = msg.Serial
		}
		s.step, s.state = msg.Step, msg.State
		s.detail = msg.Detail
		if msg.Err != nil {
			s.detail = msg.Err.Error()
		}
		if msg.State == station.StatePassed || msg.State == station.StateFailed {
			s.end = msg.Time
		}
	case DoneMsg:
		return m, tea.Quit
	case spinner.TickMsg:
		if msg.Time.After(m.now) {
			m.now = msg.Time
		}
		var cmd tea.Cmd
		m.spin, cmd = m.spin.Update(msg)
		return m, cmd
	}
	return m, nil
}

// View renders the slots.
func (m DemoModel) View() string {
	var b strings.Builder
	b.WriteString(styleTitle.Render(m.title) + "\n")
	if m.progress != "" {
		b.WriteString(styleDim.Render(m.progress) + "\n")
	}
	for _, i := range m.order {
		s := m.slots[i]
		icon := " "
		switch s.state {
		case station.StateRunning:
			icon = m.spin.View()
		case station.StatePassed:
			icon = styleOK.Render("✓")
		case station.StateFailed:
			icon = styleFail.Render("✗")
		}
		serial := s.serial
		if serial == "" {
			serial = "—"
		}
		el := ""
		if !s.start.IsZero() {
			end := s.end
			if end.IsZero() {
				end = m.now
			}
			el = fmt.Sprintf("%5.2fs", end.Sub(s.start).Seconds())
		}
		line := fmt.Sprintf("%s slot %-2d %-10s %-9s %7s  %s", icon, i, Untrusted(serial), s.step, el, Untrusted(s.detail))
		if m.width > 0 {
			line = truncate(line, m.width)
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// truncate cuts s to at most w display cells.
func truncate(s string, w int) string {
	if lipgloss.Width(s) <= w {
		return s
	}
	r := []rune(s)
	for len(r) > 0 && lipgloss.Width(string(r)) > w-1 {
		r = r[:len(r)-1]
	}
	return string(r) + "…"
}
