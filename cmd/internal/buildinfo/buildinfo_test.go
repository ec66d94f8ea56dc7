package buildinfo

import (
	"bytes"
	"encoding/json"
	"runtime/debug"
	"strings"
	"testing"
)

// TestFromBuildInfo: every field comes from the embedded build settings.
func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/wsc-project/wsc", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "16acf11a0123456789abcdef0123456789abcdef"},
			{Key: "vcs.time", Value: "2026-11-30T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
			{Key: "-tags", Value: "nobadger,nomysql"},
			{Key: "CGO_ENABLED", Value: "1"},
			{Key: "GOOS", Value: "linux"},
			{Key: "GOARCH", Value: "arm64"},
		}}
	in := fromBuildInfo("wsc", bi)
	if in.Version != "v1.2.3" || in.Revision != "16acf11a0123456789abcdef0123456789abcdef" || in.RevisionTime != "2026-11-30T10:00:00Z" ||
		!in.Modified || !in.CGO || in.Platform != "linux/arm64" || strings.Join(in.Tags, " ") != "nobadger nomysql" || in.GoVersion != "go1.26.8" {
		t.Fatalf("info %+v", in)
	}
	if got, want := in.Short(), "wsc v1.2.3 (16acf11a0123+modified, 2026-11-30T10:00:00Z, go1.26.8 linux/arm64)"; got != want {
		t.Fatalf("Short() = %q, want %q", got, want)
	}
	var buf bytes.Buffer
	if err := in.Write(&buf, true); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"program", "module", "version", "revision", "revision_time", "modified", "go_version", "platform", "tags", "cgo"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, buf.String())
		}
	}
}

// TestNoVCS: a build outside a repository says so instead of printing blanks,
// and the tags are an empty list in JSON, not null.
func TestNoVCS(t *testing.T) {
	in := fromBuildInfo("wsc-agent", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/wsc-project/wsc"}})
	if in.Version != "(devel)" || in.Revision != "" {
		t.Fatalf("info %+v", in)
	}
	if !strings.Contains(in.Short(), "no vcs revision") {
		t.Fatalf("Short() = %q", in.Short())
	}
	var buf bytes.Buffer
	if err := in.Write(&buf, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"tags": []`) {
		t.Fatalf("tags not an empty array: %s", buf.String())
	}
}
