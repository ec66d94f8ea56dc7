package ui

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"
)

// CeremonyStep is one step of a guided CA ceremony (`wsc ca ceremony`).
// Run is the same package ca call the plain command makes; the view only
// says what to do, collects the secret and shows the result.
type CeremonyStep struct {
	// Title names the step ("Sign the station's CSR").
	Title string
	// Machine is where the step runs ("root machine", "station").
	Machine string
	// Carry lists what must be on the removable medium before the step.
	Carry []string
	// Secrets are the prompts of the secrets the step needs, in order
	// ("root key passphrase", "custodian share 1 of 3"); none: no entry.
	Secrets []string
	// Run performs the step with the secrets entered (cleared afterwards)
	// and returns the text for the transcript (fingerprints included).
	Run func(ctx context.Context, secrets [][]byte) (string, error)
}

// CeremonyOptions configure the guided ceremony view.
type CeremonyOptions struct {
	Title string
	Steps []CeremonyStep
	// Transcript, when set, receives the whole transcript at the end (the
	// caller writes or prints it for the paper log).
	Transcript func(string) error
	// Now is the clock for the transcript's timestamps (default time.Now).
	Now func() time.Time
}

// ceremonyDoneMsg reports the end of a step's Run.
type ceremonyDoneMsg struct {
	step int
	out  string
	err  error
	at   time.Time // when the step ended (read in the command, not in Update)
}

// ceremonySavedMsg reports the transcript hand-over.
type ceremonySavedMsg struct{ err error }

type ceremonyState int

const (
	cerInstructions ceremonyState = iota
	cerSecret
	cerRunning
	cerFailed
	cerFinished
)

// CeremonyModel is the bubbletea model of the guided ceremony. Update and
// View are pure; steps run in tea.Cmds.
type CeremonyModel struct {
	opts       CeremonyOptions
	step       int
	state      ceremonyState
	input      textinput.Model
	secrets    [][]byte
	transcript []string
	lastErr    error
	saved      string
	width      int
	keys       ceremonyKeys
}

type ceremonyKeys struct {
	Next, Retry, Quit key.Binding
}

func defaultCeremonyKeys() ceremonyKeys {
	return ceremonyKeys{
		Next:  key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "continue")),
		Retry: key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "retry the step")),
		Quit:  key.NewBinding(key.WithKeys("ctrl+c", "esc"), key.WithHelp("esc", "stop")),
	}
}

// NewCeremonyModel returns the guided ceremony view.
func NewCeremonyModel(o CeremonyOptions) *CeremonyModel {
	if o.Now == nil {
		o.Now = time.Now
	}
	in := textinput.New()
	in.EchoMode = textinput.EchoPassword
	in.EchoCharacter = '•'
	in.CharLimit = 4096
	// A static cursor: no blink ticks while a secret is typed.
	in.Cursor.SetMode(cursor.CursorStatic)
	return &CeremonyModel{opts: o, input: in, keys: defaultCeremonyKeys(), width: 80}
}

// Init implements tea.Model.
func (m *CeremonyModel) Init() tea.Cmd { return nil }

// Transcript returns the transcript so far (no secret is ever in it).
func (m *CeremonyModel) Transcript() string { return strings.Join(m.transcript, "\n") }

// Err returns the error of the failed step, if the ceremony stopped on one.
func (m *CeremonyModel) Err() error { return m.lastErr }

// Finished reports whether every step succeeded.
func (m *CeremonyModel) Finished() bool { return m.state == cerFinished }

func (m *CeremonyModel) clearSecrets() {
	for _, s := range m.secrets {
		clear(s)
	}
	m.secrets = nil
	m.input.SetValue("")
}

func (m *CeremonyModel) run() tea.Cmd {
	st := m.opts.Steps[m.step]
	idx := m.step
	secrets := m.secrets
	now := m.opts.Now
	m.secrets = nil
	m.state = cerRunning
	return func() tea.Msg {
		out, err := st.Run(context.Background(), secrets)
		for _, s := range secrets {
			clear(s)
		}
		return ceremonyDoneMsg{step: idx, out: out, err: err, at: now()}
	}
}

// Update implements tea.Model.
func (m *CeremonyModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width = msg.Width
		return m, nil
	case ceremonyDoneMsg:
		if msg.step != m.step {
			return m, nil
		}
		st := m.opts.Steps[m.step]
		stamp := msg.at.UTC().Format(time.RFC3339)
		if msg.err != nil {
			m.lastErr = msg.err
			m.state = cerFailed
			m.transcript = append(m.transcript, fmt.Sprintf("[%s] %s (%s): FAILED: %v", stamp, st.Title, st.Machine, msg.err))
			return m, nil
		}
		m.lastErr = nil
		m.transcript = append(m.transcript, fmt.Sprintf("[%s] %s (%s): done", stamp, st.Title, st.Machine), strings.TrimRight(msg.out, "\n"))
		m.step++
		if m.step == len(m.opts.Steps) {
			m.state = cerFinished
			if m.opts.Transcript != nil {
				t := m.Transcript()
				save := m.opts.Transcript
				return m, func() tea.Msg { return ceremonySavedMsg{err: save(t)} }
			}
			return m, nil
		}
		m.state = cerInstructions
		return m, nil
	case ceremonySavedMsg:
		if msg.err != nil {
			m.saved = "transcript NOT saved: " + msg.err.Error()
		} else {
			m.saved = "transcript saved"
		}
		return m, nil
	case tea.KeyMsg:
		if key.Matches(msg, m.keys.Quit) {
			m.clearSecrets()
			return m, tea.Quit
		}
		switch m.state {
		case cerInstructions:
			if key.Matches(msg, m.keys.Next) {
				if len(m.opts.Steps[m.step].Secrets) > 0 {
					m.state = cerSecret
					m.input.SetValue("")
					m.input.Focus()
					return m, nil
				}
				return m, m.run()
			}
		case cerSecret:
			if key.Matches(msg, m.keys.Next) {
				m.secrets = append(m.secrets, []byte(m.input.Value()))
				m.input.SetValue("")
				if len(m.secrets) < len(m.opts.Steps[m.step].Secrets) {
					return m, nil
				}
				m.input.Blur()
				return m, m.run()
			}
			var cmd tea.Cmd
			m.input, cmd = m.input.Update(msg)
			return m, cmd
		case cerFailed:
			if key.Matches(msg, m.keys.Retry) {
				m.state = cerInstructions
				return m, nil
			}
		case cerFinished:
			if key.Matches(msg, m.keys.Next) {
				return m, tea.Quit
			}
		}
	}
	return m, nil
}

// View implements tea.Model.
func (m *CeremonyModel) View() string {
	var b strings.Builder
	title := m.opts.Title
	if title == "" {
		title = "wsc ca ceremony"
	}
	b.WriteString(styleKey.Render(title) + "\n")
	for i, st := range m.opts.Steps {
		mark := "  "
		switch {
		case i < m.step:
			mark = "✓ "
		case i == m.step && m.state == cerFailed:
			mark = "✗ "
		case i == m.step && m.state != cerFinished:
			mark = "▶ "
		}
		fmt.Fprintf(&b, "%s%d. %s — %s\n", mark, i+1, st.Title, st.Machine)
	}
	b.WriteString("\n")
	switch m.state {
	case cerInstructions:
		st := m.opts.Steps[m.step]
		fmt.Fprintf(&b, "Step %d on the %s: %s\n", m.step+1, st.Machine, st.Title)
		if len(st.Carry) > 0 {
			b.WriteString("Before you start, the medium must hold:\n")
			for _, c := range st.Carry {
				b.WriteString("  • " + c + "\n")
			}
		}
		b.WriteString("Press enter to continue.\n")
	case cerSecret:
		st := m.opts.Steps[m.step]
		fmt.Fprintf(&b, "%s: %s\n", st.Secrets[len(m.secrets)], m.input.View())
	case cerRunning:
		b.WriteString("Working…\n")
	case cerFailed:
		fmt.Fprintf(&b, "The step failed: %s\nNothing was changed. Press r to try again, esc to stop.\n", ansi.Strip(m.lastErr.Error()))
	case cerFinished:
		b.WriteString("Ceremony complete. Transcript for the paper log:\n\n")
		b.WriteString(m.Transcript() + "\n")
		if m.saved != "" {
			b.WriteString("\n" + m.saved + "\n")
		}
		b.WriteString("\nPress enter to leave.\n")
	}
	return b.String()
}
