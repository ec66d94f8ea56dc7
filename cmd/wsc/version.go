package main

import (
	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/cmd/internal/cli"
)

func versionCmd() *cobra.Command { return cli.VersionCmd() }
