// Command wsc is the factory provisioning station: the operator's bench
// (terminal UI), the demo, the CA ceremonies, firmware signing and QA
// verification, and the station database's export. It only parses flags and
// wires packages together; the logic lives in station, ca, db, wasmsign, ui.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	root := &cobra.Command{
		Use:           "wsc",
		Short:         "wsc — offline factory provisioning station for device identities",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(demoCmd(), dbCmd(), stationCmd(), provisionCmd(), auditCmd(), operatorCmd(), caCmd(), signCmd(), verifyCmd(), qaCmd())
	root.AddCommand(plantCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "wsc: %v\n", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}
