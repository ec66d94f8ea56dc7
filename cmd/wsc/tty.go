package main

import (
	"os"

	"golang.org/x/term"
)

// isTerminal reports whether stdout is a terminal.
func isTerminal() bool { return term.IsTerminal(int(os.Stdout.Fd())) }
