package qa

import "github.com/charmbracelet/bubbles/key"

// KeyMap holds the key bindings of the QA view. It satisfies help.KeyMap.
type KeyMap struct {
	// Start verifies the folder typed in the folder field; in the export
	// field it writes the report.
	Start key.Binding
	// Back leaves the current screen: it cancels a running verification,
	// leaves the export field, an error or an empty folder, goes from the
	// results to the folder field and from the folder field back to the
	// results (or quits when there are none).
	Back key.Binding
	// Up, Down, PageUp, PageDown, Top and Bottom move in the result table.
	Up, Down, PageUp, PageDown, Top, Bottom key.Binding
	// Failures toggles "failures only".
	Failures key.Binding
	// Export asks for a report file name (.xml: JUnit, otherwise JSON).
	Export key.Binding
	// Open goes back to the folder field to verify another folder.
	Open key.Binding
	// Help shows or hides the full help.
	Help key.Binding
	// Quit leaves the program (q only when no text field has the focus).
	Quit key.Binding
}

// DefaultKeyMap returns the QA view bindings.
func DefaultKeyMap() KeyMap {
	return KeyMap{
		Start:    key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "verify / write")),
		Back:     key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back")),
		Up:       key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up")),
		Down:     key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down")),
		PageUp:   key.NewBinding(key.WithKeys("pgup"), key.WithHelp("pgup", "page up")),
		PageDown: key.NewBinding(key.WithKeys("pgdown"), key.WithHelp("pgdn", "page down")),
		Top:      key.NewBinding(key.WithKeys("home", "g"), key.WithHelp("g", "first")),
		Bottom:   key.NewBinding(key.WithKeys("end", "G"), key.WithHelp("G", "last")),
		Failures: key.NewBinding(key.WithKeys("f"), key.WithHelp("f", "failures only")),
		Export:   key.NewBinding(key.WithKeys("e"), key.WithHelp("e", "export report")),
		Open:     key.NewBinding(key.WithKeys("o"), key.WithHelp("o", "other folder")),
		Help:     key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
		Quit:     key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
	}
}

// ShortHelp is the one-line help of the QA view.
func (k KeyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.Start, k.Back, k.Failures, k.Export, k.Open, k.Help, k.Quit}
}

// FullHelp is the QA help shown with ?.
func (k KeyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{
		{k.Start, k.Back, k.Open},
		{k.Up, k.Down, k.PageUp, k.PageDown, k.Top, k.Bottom},
		{k.Failures, k.Export, k.Help, k.Quit},
	}
}
