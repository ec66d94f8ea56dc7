package ui

import (
	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/lipgloss"
)

// Colours are ANSI palette indexes so that the views read the same on the
// plain 16-colour consoles that line PCs often run.
const (
	colBlack    = lipgloss.Color("0")
	colDarkGrey = lipgloss.Color("236")
	colGrey     = lipgloss.Color("8")
	colRed      = lipgloss.Color("1")
	colGreen    = lipgloss.Color("2")
	colYellow   = lipgloss.Color("3")
	colBlue     = lipgloss.Color("4")
	colCyan     = lipgloss.Color("6")
	colWhite    = lipgloss.Color("15")
)

var (
	styleOK     = lipgloss.NewStyle().Foreground(colGreen).Bold(true)
	styleFail   = lipgloss.NewStyle().Foreground(colRed).Bold(true)
	styleDim    = lipgloss.NewStyle().Foreground(colGrey)
	styleTitle  = lipgloss.NewStyle().Bold(true)
	styleWarn   = lipgloss.NewStyle().Foreground(colYellow).Bold(true)
	styleRedBin = lipgloss.NewStyle().Foreground(colRed).Reverse(true).Bold(true)
	styleKey    = lipgloss.NewStyle().Foreground(colWhite).Bold(true)
	styleStatus = lipgloss.NewStyle().Reverse(true)
	styleBanner = lipgloss.NewStyle().Background(colGreen).Foreground(colBlack).Bold(true)
	styleInstr  = lipgloss.NewStyle().Foreground(colYellow).Bold(true)
	styleInput  = lipgloss.NewStyle().Foreground(colWhite)

	cardBorder    = lipgloss.RoundedBorder()
	cardBorderSel = lipgloss.DoubleBorder()
	styleLoginBox = lipgloss.NewStyle().Border(lipgloss.RoundedBorder()).Padding(1, 2)
)

// newHelp returns a help bubble readable on a dark factory console (the
// bubbles default greys are too faint there).
func newHelp() help.Model {
	h := help.New()
	k := lipgloss.NewStyle().Foreground(colWhite).Bold(true)
	d := lipgloss.NewStyle().Foreground(lipgloss.Color("7"))
	s := lipgloss.NewStyle().Foreground(colGrey)
	h.Styles = help.Styles{Ellipsis: s, ShortKey: k, ShortDesc: d, ShortSeparator: s, FullKey: k, FullDesc: d, FullSeparator: s}
	return h
}
