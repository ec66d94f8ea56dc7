package ui

import (
	"github.com/charmbracelet/bubbles/key"
)

// ScanRule is how the operator bench tells a barcode scan from a command
// key. A scanner types like a keyboard, so the rule has to be explicit; the
// full help (?) shows this text.
//
//  1. Text that arrives as a burst — several characters in one key message,
//     which is what a scanner or a paste produces — goes into the scan field.
//  2. While the scan field holds text (or was opened with /), every
//     printable key goes into it: Enter binds the label, Backspace edits,
//     Esc clears; the arrow keys still choose the slot it will bind to.
//  3. Only when the scan field is empty is a single key a command. A single
//     printable key that is not a command (an upper-case letter, say) starts
//     the scan field. To type by hand a label that begins with a command key
//     or a digit, press / first.
//
// Enter binds the label to the selected slot when that slot is failed (a
// rescan after a label mismatch) or idle without a label; otherwise to the
// first idle slot without a label. The selection then moves to that slot.
const ScanRule = "Scanning: a scanner burst (or / then typing) fills the scan field; Enter binds the label " +
	"to the selected slot if it is failed or idle without a label, else to the next idle slot without one. " +
	"While the scan field holds text every key types into it (Esc clears it); single-key commands work " +
	"only when it is empty. Labels that start with a digit or a command letter: press / first."

// KeyMap holds every key binding of the operator bench and its login
// screen. It satisfies help.KeyMap; the QA view (ui/qa) has its own.
type KeyMap struct {
	// StartStop starts or stops the work order.
	StartStop key.Binding
	// Retry runs the selected failed slot again.
	Retry key.Binding
	// Quarantine sends the selected slot's device to the red bin.
	Quarantine key.Binding
	// Left, Right, Up and Down move the slot selection (Up/Down by a row of
	// cards).
	Left, Right, Up, Down key.Binding
	// Slot selects slot 1-9 directly.
	Slot key.Binding
	// Scan opens the scan field to type a label by hand.
	Scan key.Binding
	// Enter commits the scan field (and submits the login form).
	Enter key.Binding
	// Esc clears the scan field, closes help or answers no.
	Esc key.Binding
	// NextField moves between the login fields.
	NextField key.Binding
	// Help shows or hides the full help.
	Help key.Binding
	// Quit leaves the program; it asks first while slots are provisioning.
	Quit key.Binding
	// Yes confirms a question (quit while running).
	Yes key.Binding
	// Ack acknowledges the oldest red-bin instruction (only while one is
	// shown; otherwise the key starts a label typed by hand).
	Ack key.Binding
	// Stats shows or hides the statistics panel in place of the slots.
	Stats key.Binding
	// Release opens the supervisor's red-bin release screen.
	Release key.Binding
	// WorkOrder opens the supervisor's work-order picker.
	WorkOrder key.Binding
	// Rework opens the supervisor's rework of the selected failed slot.
	Rework key.Binding
}

// DefaultKeyMap returns the operator bench bindings.
func DefaultKeyMap() KeyMap {
	return KeyMap{
		StartStop:  key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "start/stop work order")),
		Retry:      key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "retry slot")),
		Quarantine: key.NewBinding(key.WithKeys("b"), key.WithHelp("b", "red bin")),
		Left:       key.NewBinding(key.WithKeys("left"), key.WithHelp("←", "previous slot")),
		Right:      key.NewBinding(key.WithKeys("right"), key.WithHelp("→", "next slot")),
		Up:         key.NewBinding(key.WithKeys("up"), key.WithHelp("↑", "slot above")),
		Down:       key.NewBinding(key.WithKeys("down"), key.WithHelp("↓", "slot below")),
		Slot:       key.NewBinding(key.WithKeys("1", "2", "3", "4", "5", "6", "7", "8", "9"), key.WithHelp("1-9", "slot")),
		Scan:       key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "type a label by hand")),
		Enter:      key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "bind scanned label")),
		Esc:        key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "clear scan, help")),
		NextField:  key.NewBinding(key.WithKeys("tab", "shift+tab"), key.WithHelp("tab", "next field")),
		Help:       key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
		Quit:       key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "quit")),
		Yes:        key.NewBinding(key.WithKeys("y", "Y"), key.WithHelp("y", "yes")),
		Stats:      key.NewBinding(key.WithKeys("t"), key.WithHelp("t", "statistics")),
		WorkOrder:  key.NewBinding(key.WithKeys("w"), key.WithHelp("w", "choose work order (supervisor)")),
		Release:    key.NewBinding(key.WithKeys("ctrl+r"), key.WithHelp("ctrl+r", "red-bin release (supervisor)")),
		Ack:        key.NewBinding(key.WithKeys("a"), key.WithHelp("a", "red bin done (acknowledge)")),
		Rework:     key.NewBinding(key.WithKeys("ctrl+e"), key.WithHelp("ctrl+e", "rework failed slot (supervisor)")),
	}
}

// ShortHelp is the one-line help under the bench; it fits 80 columns.
func (k KeyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.StartStop, brief(k.Retry, "retry"), brief(k.Quarantine, "red bin"), arrows(k),
		brief(k.Scan, "label"), k.Help, k.Quit}
}

// brief is b with a shorter description, for the one-line help.
func brief(b key.Binding, desc string) key.Binding {
	b.SetHelp(b.Help().Key, desc)
	return b
}

// FullHelp is the help shown with ?, grouped by column.
func (k KeyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{
		{k.StartStop, k.WorkOrder, k.Retry, k.Quarantine, k.Ack, k.Release, k.Rework, k.Stats, k.Help, k.Quit},
		{k.Left, k.Right, k.Up, k.Down, k.Slot},
		{k.Scan, k.Enter, k.Esc},
	}
}

// loginHelp is the help of the login screen.
type loginHelp struct{ k KeyMap }

func (h loginHelp) ShortHelp() []key.Binding {
	return []key.Binding{
		h.k.NextField,
		key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "sign in")),
		h.k.Quit,
	}
}

func (h loginHelp) FullHelp() [][]key.Binding { return [][]key.Binding{h.ShortHelp()} }

// arrows is a display-only binding that stands for the four arrow keys.
func arrows(k KeyMap) key.Binding {
	return key.NewBinding(key.WithKeys(append(append(append(k.Left.Keys(), k.Right.Keys()...), k.Up.Keys()...), k.Down.Keys()...)...),
		key.WithHelp("←↑↓→", "slot"))
}
