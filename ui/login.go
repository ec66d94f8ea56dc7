package ui

import (
	"errors"
	"strings"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
)

// Authenticator checks who sits at the bench. Login checks an operator name
// and PIN; Badge checks the code read from a badge by the barcode scanner.
// Both return the operator's display name. Errors are shown on the login
// screen (with the PIN and badge code scrubbed from them), so they should be
// plain sentences like "wrong name or PIN".
type Authenticator interface {
	Login(name, pin string) (string, error)
	Badge(code string) (string, error)
}

// LoginResultMsg is the answer of the Authenticator, produced by the
// command the login screen runs.
type LoginResultMsg struct {
	// Operator is the display name of the operator who signed in.
	Operator string
	// Err says why signing in failed. It never contains the PIN or the
	// badge code.
	Err error
}

// loginForm is the sign-in screen shown before the bench: operator name and
// a masked PIN, or a badge scanned into the empty name field.
//
// Badge rule: when the first input into the empty name field is a burst (a
// scanner), the form switches to badge mode: the code is kept out of sight
// ("badge ••••••") and Enter sends it to Authenticator.Badge; Tab instead
// takes the text as a name (for keys that happened to arrive together).
// Typed by hand, Enter in the name field moves to the PIN field and Enter
// there signs in.
type loginForm struct {
	auth          Authenticator
	name, pin     textinput.Model
	badge         []rune
	badgeMode     bool
	pending       bool
	err           string
	width, height int
}

func newLoginForm(auth Authenticator) loginForm {
	name := textinput.New()
	name.Prompt = ""
	name.Placeholder = "name"
	name.CharLimit = 64
	name.Width = 24
	name.Cursor.SetMode(cursor.CursorStatic)
	name.TextStyle = styleInput
	name.Focus()
	pin := textinput.New()
	pin.Prompt = ""
	pin.Placeholder = "PIN"
	pin.CharLimit = 32
	pin.Width = 24
	pin.EchoMode = textinput.EchoPassword
	pin.EchoCharacter = '•'
	pin.Cursor.SetMode(cursor.CursorStatic)
	return loginForm{auth: auth, name: name, pin: pin}
}

// SetSize gives the form the whole terminal; it centres itself.
func (f *loginForm) SetSize(width, height int) { f.width, f.height = width, height }

// update handles a key on the login screen.
func (f loginForm) update(msg tea.KeyMsg, keys KeyMap) (loginForm, tea.Cmd) {
	if f.pending {
		return f, nil
	}
	burst := msg.Paste || (msg.Type == tea.KeyRunes && len(msg.Runes) > 1)
	switch {
	case f.badgeMode:
		switch {
		case key.Matches(msg, keys.Enter):
			return f.submitBadge()
		case key.Matches(msg, keys.Esc):
			f.badge, f.badgeMode = nil, false
		case key.Matches(msg, keys.NextField):
			// Not a badge after all (keys typed so fast they came as one
			// burst): the text is the operator's name.
			f.name.SetValue(string(f.badge))
			f.badge, f.badgeMode = nil, false
			f.toggleFocus()
		case msg.Type == tea.KeyBackspace:
			if len(f.badge) > 0 {
				f.badge = f.badge[:len(f.badge)-1]
			}
		case msg.Type == tea.KeyRunes:
			f.badge = append(f.badge, msg.Runes...)
		}
		return f, nil
	case burst && f.name.Focused() && f.name.Value() == "":
		f.badgeMode, f.badge, f.err = true, append([]rune(nil), msg.Runes...), ""
		return f, nil
	case key.Matches(msg, keys.NextField):
		f.toggleFocus()
		return f, nil
	case key.Matches(msg, keys.Enter):
		if f.name.Focused() {
			if strings.TrimSpace(f.name.Value()) != "" {
				f.toggleFocus()
			}
			return f, nil
		}
		return f.submitLogin()
	}
	var cmd tea.Cmd
	if f.name.Focused() {
		f.name, cmd = f.name.Update(msg)
	} else {
		f.pin, cmd = f.pin.Update(msg)
	}
	return f, cmd
}

func (f *loginForm) toggleFocus() {
	if f.name.Focused() {
		f.name.Blur()
		f.pin.Focus()
	} else {
		f.pin.Blur()
		f.name.Focus()
	}
}

func (f loginForm) submitLogin() (loginForm, tea.Cmd) {
	name, pin := strings.TrimSpace(f.name.Value()), f.pin.Value()
	if name == "" || pin == "" {
		f.err = "Type your name and PIN, or scan your badge."
		return f, nil
	}
	f.pending, f.err = true, ""
	auth := f.auth
	return f, func() tea.Msg {
		op, err := auth.Login(name, pin)
		return LoginResultMsg{Operator: op, Err: scrub(err, pin)}
	}
}

func (f loginForm) submitBadge() (loginForm, tea.Cmd) {
	code := strings.TrimSpace(string(f.badge))
	if code == "" {
		f.badgeMode = false
		return f, nil
	}
	f.pending, f.err = true, ""
	auth := f.auth
	return f, func() tea.Msg {
		op, err := auth.Badge(code)
		return LoginResultMsg{Operator: op, Err: scrub(err, code)}
	}
}

// result applies the Authenticator's answer to the form after a failure:
// name, PIN and badge are cleared and the focus goes back to the empty name
// field, so the next try starts clean whichever way it comes — typed, or a
// badge scanned (a burst into the empty name field is a badge; into a
// half-filled form it would land in the wrong field).
func (f loginForm) result(msg LoginResultMsg) loginForm {
	f.pending = false
	f.pin.Reset()
	f.badge, f.badgeMode = nil, false
	if msg.Err != nil {
		f.err = "Sign-in failed: " + msg.Err.Error()
		f.name.Reset()
		if !f.name.Focused() {
			f.toggleFocus()
		}
	}
	return f
}

// scrub keeps a secret (PIN, badge code) out of an error that will be shown
// on screen, whatever the Authenticator put in it.
func scrub(err error, secret string) error {
	if err == nil {
		return nil
	}
	s := err.Error()
	if secret != "" {
		s = strings.ReplaceAll(s, secret, "****")
	}
	if s == "" {
		s = "rejected"
	}
	return errors.New(s)
}

// View renders the form centred in its space.
func (f loginForm) View(title string, h string) string {
	var b strings.Builder
	b.WriteString(styleTitle.Render(title+" — sign in") + "\n\n")
	if f.badgeMode {
		b.WriteString("Badge     " + strings.Repeat("•", min(len(f.badge), 24)) + "\n")
		b.WriteString(styleDim.Render("Enter signs in with the badge, Tab: it is a name, Esc cancels.") + "\n")
	} else {
		mark := func(focused bool) string {
			if focused {
				return "▸ "
			}
			return "  "
		}
		b.WriteString(mark(f.name.Focused()) + "Operator  " + f.name.View() + "\n")
		b.WriteString(mark(f.pin.Focused()) + "PIN       " + f.pin.View() + "\n")
		b.WriteString("\n" + styleDim.Render("Scan your badge, or type your name, Tab, PIN, Enter.") + "\n")
	}
	switch {
	case f.pending:
		b.WriteString("\n" + styleWarn.Render("Checking…"))
	case f.err != "":
		b.WriteString("\n" + styleFail.Render(ansi.Wrap(f.err, 50, "")))
	}
	box := styleLoginBox.Render(strings.TrimRight(b.String(), "\n"))
	body := box + "\n" + h
	if f.width <= 0 || f.height <= 0 {
		return body
	}
	return lipgloss.Place(f.width, f.height, lipgloss.Center, lipgloss.Center, body)
}
