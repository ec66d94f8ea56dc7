package cli

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/cmd/internal/buildinfo"
)

// Root returns the root command of wsc, without subcommands: both binaries
// build on it, so `wsc --help` and `wsc --version` read the same from
// either.
func Root() *cobra.Command {
	root := &cobra.Command{
		Use:           "wsc",
		Short:         "wsc — offline factory provisioning station for device identities",
		Long:          "wsc — offline factory provisioning station for device identities.\n\nExit codes: 0 success, 1 the thing checked is bad, 2 usage or configuration error,\n3 internal or environment error (wsc help exit-codes).",
		Version:       VersionLine(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	return root
}

// Finish adds the commands every wsc binary has (help, the exit-codes
// topic) and prepares the tree for ExitStatus. Call it once every command
// is added.
func Finish(root *cobra.Command) {
	root.AddCommand(ExitCodesCmd())
	root.SetHelpCommand(HelpCmd())
	PlainBackticks(root)
	SetExitCodes(root)
}

// ExitCodesCmd is the `wsc help exit-codes` topic.
func ExitCodesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "exit-codes",
		Short: "What each exit code of wsc means (0 ok, 1 check failed, 2 usage, 3 internal)",
		Long:  ExitCodesHelp,
	}
}

// HelpCmd replaces cobra's help command, which answers an unknown topic
// with the root's usage and exit 0; here it is a usage error (exit 2).
func HelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command | exit-codes]",
		Short: "Help about any command, or a topic (wsc help exit-codes)",
		RunE: func(c *cobra.Command, args []string) error {
			target, rest, err := c.Root().Find(args)
			if err != nil || target == nil || len(rest) > 0 {
				return Usagef("unknown help topic %q (see 'wsc --help')", strings.Join(args, " "))
			}
			target.InitDefaultHelpFlag()
			return target.Help()
		},
	}
}

// VersionLine is the one-line answer to `wsc --version`.
func VersionLine() string { return buildinfo.Read("wsc").Short() }

// VersionCmd is `wsc version [--json]`.
func VersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version [--json]",
		Short: "Print the version, VCS revision, Go version and build settings of this binary",
		Long: `version prints what this binary was built from, as the Go toolchain recorded it
(runtime/debug.BuildInfo): module version, VCS revision and its commit time, whether the
work tree had local changes, Go version, platform, build tags and cgo. --json prints the
same as one JSON object with snake_case keys. 'wsc --version' prints one line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := buildinfo.Read("wsc").Write(cmd.OutOrStdout(), asJSON); err != nil {
				return InternalError(err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
