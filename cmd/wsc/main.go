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

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/cmd/internal/cli"
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

// rootCmd builds the whole command tree, with exit codes wired in. The
// root, help, version and exit-codes commands come from cmd/internal/cli,
// shared with the lean front binary (cmd/wsc/front), whose command list
// (cli.Commands) must name these commands with the same Short text
// (TestFrontCommandList).
func rootCmd() *cobra.Command {
	root := cli.Root()
	root.AddCommand(demoCmd(), simCmd(), dbCmd(), stationCmd(), provisionCmd(), auditCmd(), operatorCmd(), caCmd(), signCmd(), verifyCmd(), qaCmd(), versionCmd(), redbinCmd(), plantCmd(), policyCmd(), ownerAuthCmd())
	cli.Finish(root)
	return root
}
