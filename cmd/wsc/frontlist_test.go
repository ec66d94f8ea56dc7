package main

import (
	"testing"

	"github.com/wsc-project/wsc/cmd/internal/cli"
	"github.com/wsc-project/wsc/cmd/internal/qacmd"
)

// TestFrontCommandList checks that the lean front binary (cmd/wsc/front)
// lists exactly this binary's top-level commands, with the same Short
// text: each is either in cli.StationCommands (handed to wsc-station) or
// one the front builds itself from the shared packages.
func TestFrontCommandList(t *testing.T) {
	own := map[string]string{
		"version":    cli.VersionCmd().Short,
		"verify":     qacmd.VerifyCmd(qacmd.Options{}).Short,
		"qa":         qacmd.QACmd().Short,
		"exit-codes": cli.ExitCodesCmd().Short,
	}
	listed := map[string]string{}
	for _, c := range cli.StationCommands {
		listed[c.Name] = c.Short
	}
	seen := map[string]bool{}
	for _, c := range rootCmd().Commands() {
		name := c.Name()
		seen[name] = true
		if s, ok := own[name]; ok {
			if s != c.Short {
				t.Errorf("%s: Short %q here, %q in the front", name, c.Short, s)
			}
			continue
		}
		s, ok := listed[name]
		if !ok {
			t.Errorf("command %q is missing from cli.StationCommands: the front would not list it or hand it over", name)
			continue
		}
		if s != c.Short {
			t.Errorf("%s: Short %q here, %q in cli.StationCommands", name, c.Short, s)
		}
	}
	for name := range listed {
		if !seen[name] {
			t.Errorf("cli.StationCommands names %q, which this binary does not have", name)
		}
	}
}
