package qa

import (
	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/progress"
	"github.com/charmbracelet/lipgloss"
)

// Colours are ANSI palette indexes, the palette of the other wsc screens
// (ui/styles.go), so that the view reads the same on plain 16-colour
// consoles. A state is never told by colour alone: every coloured cell
// also carries its word (valid, invalid, error, pending, skipped).
const (
	colGrey   = lipgloss.Color("8")
	colRed    = lipgloss.Color("1")
	colGreen  = lipgloss.Color("2")
	colYellow = lipgloss.Color("3")
	colWhite  = lipgloss.Color("15")
)

var (
	styleOK       = lipgloss.NewStyle().Foreground(colGreen).Bold(true)
	styleFail     = lipgloss.NewStyle().Foreground(colRed).Bold(true)
	styleDim      = lipgloss.NewStyle().Foreground(colGrey)
	styleTitle    = lipgloss.NewStyle().Bold(true)
	styleWarn     = lipgloss.NewStyle().Foreground(colYellow).Bold(true)
	styleInput    = lipgloss.NewStyle().Foreground(colWhite)
	styleHeader   = lipgloss.NewStyle().Bold(true).Underline(true)
	styleSelected = lipgloss.NewStyle().Bold(true)
	styleSummary  = lipgloss.NewStyle().Reverse(true)
)

// newHelp returns a help bubble readable on a dark factory console.
func newHelp() help.Model {
	h := help.New()
	k := lipgloss.NewStyle().Foreground(colWhite).Bold(true)
	d := lipgloss.NewStyle().Foreground(lipgloss.Color("7"))
	s := lipgloss.NewStyle().Foreground(colGrey)
	h.Styles = help.Styles{Ellipsis: s, ShortKey: k, ShortDesc: d, ShortSeparator: s, FullKey: k, FullDesc: d, FullSeparator: s}
	return h
}

// newBar returns a progress bar in a solid colour that follows lipgloss's
// colour profile (so tests that set an ASCII profile get plain bars).
func newBar(c lipgloss.Color) progress.Model {
	return progress.New(progress.WithSolidFill(string(c)), progress.WithoutPercentage(),
		progress.WithColorProfile(lipgloss.ColorProfile()))
}
