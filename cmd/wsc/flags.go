package main

import (
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/wsc-project/wsc/cmd/internal/cli"
)

// The flag helpers live in cmd/internal/cli, shared with the lean front
// binary; these names keep the command files short.

// parseTime accepts RFC 3339 or a plain date (UTC).
func parseTime(s string) (time.Time, error) { return cli.ParseTime(s) }

// secretSources is the syntax of every --passphrase-source, --pin-source
// and --share flag (ca.ReadPassphrase reads them all the same way).
const secretSources = cli.SecretSources

// deprecatedAlias registers oldName as a hidden spelling of newName
// (cli.DeprecatedAlias).
func deprecatedAlias(fs *pflag.FlagSet, newName, oldName string) {
	cli.DeprecatedAlias(fs, newName, oldName)
}

// warnDeprecated warns about deprecated flag spellings (cli.WarnDeprecated).
func warnDeprecated(c *cobra.Command) { cli.WarnDeprecated(c) }

// caDirFlag registers --ca-dir (and the deprecated --dir) for the CA folder.
func caDirFlag(fs *pflag.FlagSet, p *string) { cli.CADirFlag(fs, p) }

// outputFlag registers -o/--output (and the deprecated --out).
func outputFlag(fs *pflag.FlagSet, p *string, usage string) { cli.OutputFlag(fs, p, usage) }

// plainBackticks rewrites backticks in flag usages (cli.PlainBackticks).
func plainBackticks(c *cobra.Command) { cli.PlainBackticks(c) }

// aliasOf is the annotation of a deprecated flag spelling (cli.AliasOf).
const aliasOf = cli.AliasOf
