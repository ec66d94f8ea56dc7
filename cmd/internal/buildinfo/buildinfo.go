// Package buildinfo reports what a wsc binary was built from: the module
// version, the VCS revision and its time, whether the work tree had local
// changes, the Go version, the platform and the build tags. Everything comes
// from runtime/debug.ReadBuildInfo, which the Go toolchain embeds in every
// binary; nothing is injected with -ldflags, so the builds stay reproducible.
// Both binaries (wsc and wsc-agent) print it for `version` / `--version`.
package buildinfo

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// Info is what a binary knows about its own build. The JSON names are the
// stable, snake_case contract scripts read (`wsc version --json`).
type Info struct {
	// Program is the binary's name (wsc, wsc-agent).
	Program string `json:"program"`
	// Module is the main module's path.
	Module string `json:"module"`
	// Version is the main module's version as the toolchain stamped it:
	// a tag (v1.2.3), a pseudo-version derived from the VCS revision, or
	// "(devel)" when the toolchain could not tell.
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from ("" when built
	// outside a repository or with -buildvcs=false).
	Revision string `json:"revision"`
	// RevisionTime is the commit time of Revision (RFC 3339, UTC). The Go
	// toolchain records no wall-clock build time, on purpose: builds are
	// reproducible.
	RevisionTime string `json:"revision_time"`
	// Modified is true when the work tree had uncommitted changes.
	Modified bool `json:"modified"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"go_version"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
	// Tags are the build tags (-tags), empty when none.
	Tags []string `json:"tags"`
	// CGO tells whether cgo was enabled.
	CGO bool `json:"cgo"`
}

// Read returns the build information of the running binary, named program.
func Read(program string) Info {
	in := Info{Program: program, Version: "(unknown)", GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH, Tags: []string{}}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return in
	}
	return fromBuildInfo(program, bi)
}

func fromBuildInfo(program string, bi *debug.BuildInfo) Info {
	in := Info{Program: program, Module: bi.Main.Path, Version: bi.Main.Version, GoVersion: bi.GoVersion,
		Platform: runtime.GOOS + "/" + runtime.GOARCH, Tags: []string{}}
	if in.Version == "" {
		in.Version = "(devel)"
	}
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.time":
			in.RevisionTime = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		case "-tags":
			for _, t := range strings.Split(s.Value, ",") {
				if t = strings.TrimSpace(t); t != "" {
					in.Tags = append(in.Tags, t)
				}
			}
		case "CGO_ENABLED":
			in.CGO = s.Value == "1"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" && goarch != "" {
		in.Platform = goos + "/" + goarch
	}
	return in
}

// Short is the one-line form (`wsc --version`):
// "wsc v0.0.0-2026…-16acf11 (16acf11a, 2026-11-30T10:00:00Z, go1.26.8 linux/amd64)".
func (in Info) Short() string {
	rev := in.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		rev = "no vcs revision"
	}
	if in.Modified {
		rev += "+modified"
	}
	parts := []string{rev}
	if in.RevisionTime != "" {
		parts = append(parts, in.RevisionTime)
	}
	parts = append(parts, in.GoVersion+" "+in.Platform)
	return fmt.Sprintf("%s %s (%s)", in.Program, in.Version, strings.Join(parts, ", "))
}

// Write prints the long form, one field per line, or JSON when asJSON.
func (in Info) Write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(in)
	}
	tags := strings.Join(in.Tags, ",")
	if tags == "" {
		tags = "(none)"
	}
	rev := in.Revision
	if rev == "" {
		rev = "(not built from a repository)"
	}
	_, err := fmt.Fprintf(w, "%s %s\n  module:        %s\n  revision:      %s\n  revision time: %s\n  modified:      %t\n  go:            %s\n  platform:      %s\n  build tags:    %s\n  cgo:           %t\n",
		in.Program, in.Version, in.Module, rev, orNone(in.RevisionTime), in.Modified, in.GoVersion, in.Platform, tags, in.CGO)
	return err
}

func orNone(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
