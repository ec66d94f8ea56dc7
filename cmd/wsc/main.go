// Command wsc is the factory provisioning station: the operator's bench
// (terminal UI), the demo, the CA ceremonies, firmware signing and QA
// verification, and the station database's export. It only parses flags and
// wires packages together; the logic lives in station, ca, db, wasmsign, ui.
//
// Exit codes: 0 success, 1 the thing checked is bad, 2 usage or
// configuration error, 3 internal or environment error (exitcode.go,
// `wsc help exit-codes`).
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func main() {
	defer exitOnPanic()
	os.Exit(run(os.Args[1:]))
}

// run executes the command line and returns the process exit code.
func run(args []string) int {
	root := rootCmd()
	root.SetArgs(args)
	err := root.Execute()
	if err != nil {
		fmt.Fprintf(os.Stderr, "wsc: %v\n", err)
	}
	return exitStatus(err)
}

// rootCmd builds the whole command tree, with exit codes wired in.
func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "wsc",
		Short:         "wsc — offline factory provisioning station for device identities",
		Long:          "wsc — offline factory provisioning station for device identities.\n\nExit codes: 0 success, 1 the thing checked is bad, 2 usage or configuration error,\n3 internal or environment error (wsc help exit-codes).",
		Version:       versionLine(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(demoCmd(), simCmd(), dbCmd(), stationCmd(), provisionCmd(), auditCmd(), operatorCmd(), caCmd(), signCmd(), verifyCmd(), qaCmd(), versionCmd(), redbinCmd(), plantCmd(), policyCmd(), ownerAuthCmd())
	root.AddCommand(&cobra.Command{
		Use:   "exit-codes",
		Short: "What each exit code of wsc means (0 ok, 1 check failed, 2 usage, 3 internal)",
		Long:  exitCodesHelp,
	})
	root.SetHelpCommand(helpCmd())
	plainBackticks(root)
	setExitCodes(root)
	return root
}

// helpCmd replaces cobra's help command, which answers an unknown topic with
// the root's usage and exit 0; here it is a usage error (exit 2).
func helpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command | exit-codes]",
		Short: "Help about any command, or a topic (wsc help exit-codes)",
		RunE: func(c *cobra.Command, args []string) error {
			target, rest, err := c.Root().Find(args)
			if err != nil || target == nil || len(rest) > 0 {
				return usagef("unknown help topic %q (see 'wsc --help')", strings.Join(args, " "))
			}
			target.InitDefaultHelpFlag()
			return target.Help()
		},
	}
}
