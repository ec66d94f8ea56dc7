package main

import (
	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/cmd/internal/cli"
)

// versionLine is the one-line answer to `wsc --version`.
func versionLine() string { return cli.VersionLine() }

func versionCmd() *cobra.Command { return cli.VersionCmd() }
