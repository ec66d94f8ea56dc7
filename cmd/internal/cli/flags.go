package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// ParseTime accepts RFC 3339 or a plain date (UTC).
func ParseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor YYYY-MM-DD", s)
}

// SecretSources is the syntax of every --passphrase-source, --pin-source
// and --share flag (ca.ReadPassphrase reads them all the same way).
const SecretSources = "prompt, file:PATH (mode 0600), fd:N or env:NAME — never the secret itself"

// AliasOf is the annotation of a deprecated flag spelling: the flag's
// current name.
const AliasOf = "wsc-alias-of"

// DeprecatedAlias registers oldName as a hidden spelling of the flag
// newName of fs, sharing its value, kept for one release: using it works
// and WarnDeprecated prints a warning on standard error. (pflag's own
// Deprecated is not used: cobra prints its warning on standard output when
// one is set, where it would corrupt --json output.)
func DeprecatedAlias(fs *pflag.FlagSet, newName, oldName string) {
	f := fs.Lookup(newName)
	if f == nil {
		panic("DeprecatedAlias: no flag --" + newName)
	}
	fs.AddFlag(&pflag.Flag{
		Name:        oldName,
		Usage:       f.Usage,
		Value:       f.Value,
		DefValue:    f.DefValue,
		NoOptDefVal: f.NoOptDefVal,
		Hidden:      true,
		Annotations: map[string][]string{AliasOf: {newName}},
	})
}

// WarnDeprecated prints, on the command's standard error, one warning per
// deprecated flag spelling used on its command line.
func WarnDeprecated(c *cobra.Command) {
	c.Flags().Visit(func(f *pflag.Flag) {
		if to := f.Annotations[AliasOf]; len(to) == 1 {
			fmt.Fprintf(c.ErrOrStderr(), "wsc: warning: flag --%s is deprecated, use --%s instead (the old spelling goes in the next release)\n", f.Name, to[0])
		}
	})
}

// CADirFlag registers --ca-dir (and the deprecated --dir) for the CA folder.
func CADirFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "ca-dir", "ca", "CA folder")
	DeprecatedAlias(fs, "ca-dir", "dir")
}

// OutputFlag registers -o/--output (and the deprecated --out).
func OutputFlag(fs *pflag.FlagSet, p *string, usage string) {
	fs.StringVarP(p, "output", "o", "", usage)
	DeprecatedAlias(fs, "output", "out")
}

// PlainBackticks rewrites backticks in every flag's usage text of the tree
// to single quotes: pflag takes the first back-quoted word of a usage as
// the flag's value name, so "`wsc ca bundle`" would show as
// "--trust wsc ca bundle   trust bundle…" in help.
func PlainBackticks(c *cobra.Command) {
	fix := func(f *pflag.Flag) { f.Usage = strings.ReplaceAll(f.Usage, "`", "'") }
	c.Flags().VisitAll(fix)
	c.PersistentFlags().VisitAll(fix)
	for _, sub := range c.Commands() {
		PlainBackticks(sub)
	}
}
