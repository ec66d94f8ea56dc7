package main

import (
	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/cmd/internal/buildinfo"
)

// versionLine is the one-line answer to `wsc --version`.
func versionLine() string { return buildinfo.Read("wsc").Short() }

func versionCmd() *cobra.Command {
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
				return internalError(err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
