// Command wsc (built from cmd/wsc/front, installed as bin/wsc) is the lean
// front of the station: it runs what QA and scripts call often and want
// fast — `wsc version`/`--version`, `wsc verify`, `wsc qa`, `wsc help
// exit-codes` and the command list of `wsc --help` — itself, linking only
// cobra, wasmsign, the QA screen and cmd/internal. It hands every other
// command line to the full binary wsc-station (built from cmd/wsc, installed
// next to it) with execve: same arguments, environment, terminal, signals
// and exit code, so `wsc ca …` or `wsc demo` behave exactly as before.
//
// Why: the full binary links smallstep's CA and SQLite (about 300 packages,
// 49 MB); loading and initialising them cost more than verifying a 14 MB
// module (docs/performance.md). The front links none of them
// (TestFrontLinksNoHeavyPackage).
//
// WSC_STATION_BIN overrides where the full binary is looked for (tests).
// When it is missing, every handed-over command exits 3 with an
// instruction.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/cmd/internal/cli"
	"github.com/wsc-project/wsc/cmd/internal/qacmd"
)

// stationEnv names the environment variable that overrides the path of
// the full binary.
const stationEnv = "WSC_STATION_BIN"

// stationName is the full binary's file name, next to this one.
const stationName = "wsc-station"

func main() {
	defer cli.ExitOnPanic()
	os.Exit(run(os.Args[1:]))
}

// run executes the command line and returns the process exit code; a
// handed-over command line never returns here (execve), unless the full
// binary cannot be started.
func run(args []string) int {
	if handOver(args) {
		return execStation(args)
	}
	root := rootCmd(args)
	root.SetArgs(args)
	err := root.Execute()
	if err != nil && !errors.Is(err, errHandOver) {
		fmt.Fprintf(os.Stderr, "wsc: %v\n", err)
	}
	return cli.ExitStatus(err, nil)
}

// handOver reports whether the full binary runs this command line: a
// station command (cli.StationCommands), its help (`wsc help ca`), shell
// completion (cobra's hidden __complete commands answer for the whole
// tree, which only the full binary has).
func handOver(args []string) bool {
	if len(args) == 0 {
		return false
	}
	switch args[0] {
	case "completion", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
		return true
	case "help":
		return len(args) > 1 && cli.IsStationCommand(args[1])
	}
	return cli.IsStationCommand(args[0])
}

// rootCmd is the front's command tree: the shared root, the commands it
// runs itself, and a stand-in for every station command so that `wsc
// --help` lists them all with their Short text.
func rootCmd(args []string) *cobra.Command {
	root := cli.Root()
	root.CompletionOptions.DisableDefaultCmd = true // handed over (handOver)
	root.AddCommand(cli.VersionCmd(), qacmd.VerifyCmd(qacmd.Options{Delegate: func() error {
		// `wsc verify --db …` records in the station database: the full
		// binary does it all, before any module is verified here.
		return errExec(execStation(args))
	}}), qacmd.QACmd())
	for _, c := range append(cli.StationCommands, cli.Command{Name: "completion", Short: "Generate the autocompletion script for the specified shell"}) {
		root.AddCommand(&cobra.Command{
			Use:                c.Name,
			Short:              c.Short,
			DisableFlagParsing: true,
			RunE: func(_ *cobra.Command, _ []string) error {
				return errExec(execStation(args))
			},
		})
	}
	cli.Finish(root)
	return root
}

// errHandOver is the error of a hand-over that failed; execStation has
// already said why.
var errHandOver = errors.New("the full station binary could not be started")

// errExec turns the exit code of a failed hand-over into an error that
// carries it, with nothing more to print.
func errExec(code int) error { return &cli.ExitError{Code: code, Err: errHandOver} }

// stationPath is where the full binary is: $WSC_STATION_BIN, else
// wsc-station next to this executable.
func stationPath() (string, error) {
	if p := os.Getenv(stationEnv); p != "" {
		return p, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locate this executable: %w", err)
	}
	return filepath.Join(filepath.Dir(exe), stationName), nil
}

// execStation replaces this process with the full binary, same arguments
// and environment (the terminal, signals and exit code follow, as it is
// the same process). It returns only when that fails: it prints why, with
// an instruction, and returns exit code 3.
func execStation(args []string) int {
	path, err := stationPath()
	if err == nil {
		var st fs.FileInfo
		if st, err = os.Stat(path); err == nil && (st.IsDir() || st.Mode().Perm()&0o111 == 0) {
			err = fmt.Errorf("%s is not an executable file", path)
		}
	}
	if err == nil {
		err = syscall.Exec(path, append([]string{path}, args...), os.Environ())
	}
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "wsc: this command needs the full station binary, which is missing (%s): install wsc-station next to wsc: make build\n", path)
	} else {
		fmt.Fprintf(os.Stderr, "wsc: cannot start the full station binary %s: %v: install wsc-station next to wsc: make build\n", path, err)
	}
	return cli.ExitInternal
}
