package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// parseTime accepts RFC 3339 or a plain date (UTC).
func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor YYYY-MM-DD", s)
}

// secretSources is the syntax of every --passphrase-source, --pin-source
// and --share flag (ca.ReadPassphrase reads them all the same way).
const secretSources = "prompt, file:PATH (mode 0600), fd:N or env:NAME — never the secret itself"

// aliasOf is the annotation of a deprecated flag spelling: the flag's
// current name.
const aliasOf = "wsc-alias-of"

// deprecatedAlias registers oldName as a hidden spelling of the flag
// newName of fs, sharing its value, kept for one release: using it works
// and warnDeprecated prints a warning on standard error. (pflag's own
// Deprecated is not used: cobra prints its warning on standard output when
// one is set, where it would corrupt --json output.)
func deprecatedAlias(fs *pflag.FlagSet, newName, oldName string) {
	f := fs.Lookup(newName)
	if f == nil {
		panic("deprecatedAlias: no flag --" + newName)
	}
	fs.AddFlag(&pflag.Flag{
		Name:        oldName,
		Usage:       f.Usage,
		Value:       f.Value,
		DefValue:    f.DefValue,
		NoOptDefVal: f.NoOptDefVal,
		Hidden:      true,
		Annotations: map[string][]string{aliasOf: {newName}},
	})
}

// warnDeprecated prints, on the command's standard error, one warning per
// deprecated flag spelling used on its command line.
func warnDeprecated(c *cobra.Command) {
	c.Flags().Visit(func(f *pflag.Flag) {
		if to := f.Annotations[aliasOf]; len(to) == 1 {
			fmt.Fprintf(c.ErrOrStderr(), "wsc: warning: flag --%s is deprecated, use --%s instead (the old spelling goes in the next release)\n", f.Name, to[0])
		}
	})
}

// caDirFlag registers --ca-dir (and the deprecated --dir) for the CA folder.
func caDirFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "ca-dir", "ca", "CA folder")
	deprecatedAlias(fs, "ca-dir", "dir")
}

// outputFlag registers -o/--output (and the deprecated --out).
func outputFlag(fs *pflag.FlagSet, p *string, usage string) {
	fs.StringVarP(p, "output", "o", "", usage)
	deprecatedAlias(fs, "output", "out")
}

// plainBackticks rewrites backticks in every flag's usage text of the tree
// to single quotes: pflag takes the first back-quoted word of a usage as
// the flag's value name, so "`wsc ca bundle`" would show as
// "--trust wsc ca bundle   trust bundle…" in help.
func plainBackticks(c *cobra.Command) {
	fix := func(f *pflag.Flag) { f.Usage = strings.ReplaceAll(f.Usage, "`", "'") }
	c.Flags().VisitAll(fix)
	c.PersistentFlags().VisitAll(fix)
	for _, sub := range c.Commands() {
		plainBackticks(sub)
	}
}
