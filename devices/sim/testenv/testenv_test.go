package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestHelperProcess is run as a child by TestShortSkipsFullFails.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv("TESTENV_CHILD") {
	case "tool":
		NeedTools(t, "wsc-no-such-tool-7f3a")
	case "file":
		NeedFile(t, "/nonexistent/libwsc-none.so", "a PKCS#11 module")
	case "root":
		NeedRoot(t, "mount a tmpfs")
	default:
		return
	}
	t.Log("REACHED")
}

// TestShortSkipsFullFails: a missing part skips with the reason under
// -short and fails with an instruction without it; it is never silently
// skipped in the full suite.
func TestShortSkipsFullFails(t *testing.T) {
	run := func(kind string, short bool) (string, error) {
		args := []string{"-test.run=^TestHelperProcess$", "-test.v"}
		if short {
			args = append(args, "-test.short")
		}
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "TESTENV_CHILD="+kind)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, kind := range []string{"tool", "file"} {
		out, err := run(kind, true)
		if err != nil || !strings.Contains(out, "SKIP") || !strings.Contains(out, "skipped under -short") || strings.Contains(out, "REACHED") {
			t.Fatalf("%s under -short: %v\n%s", kind, err, out)
		}
		out, err = run(kind, false)
		if err == nil || !strings.Contains(out, "FAIL") || !strings.Contains(out, "scripts/deps") || strings.Contains(out, "SKIP") {
			t.Fatalf("%s without -short: %v\n%s", kind, err, out)
		}
	}
	out, err := run("root", true)
	if err != nil || !strings.Contains(out, "needs root (mount a tmpfs)") {
		t.Fatalf("root under -short: %v\n%s", err, out)
	}
	out, err = run("root", false)
	if os.Geteuid() == 0 {
		if err != nil || !strings.Contains(out, "REACHED") {
			t.Fatalf("root as root: %v\n%s", err, out)
		}
	} else if err == nil || !strings.Contains(out, "needs root") {
		t.Fatalf("root as a user: %v\n%s", err, out)
	}
}
