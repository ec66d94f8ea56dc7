// Package testenv is how a test says which real part outside Go it needs:
// a program (swtpm, openssl, sqlite3, tmux, softhsm2-util, qemu-*), root, or
// a library file. One rule for every such test:
//
//   - under `go test -short` (the quick, hermetic suite: a machine with only
//     Go and a C compiler) the test is skipped, with the reason;
//   - otherwise (`make test`, CI) a missing part fails the test with an
//     instruction; it never silently skips.
//
// Call it from a test's set-up helper, before the part is used.
package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NeedTools marks t as needing the named programs on PATH.
func NeedTools(t testing.TB, names ...string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s (a real part outside Go); skipped under -short — the full suite runs it", strings.Join(names, ", "))
	}
	var missing []string
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("needs %s, not found on PATH: run scripts/deps (as root) to install it, or run the quick suite with go test -short", strings.Join(missing, ", "))
	}
}

// NeedRoot marks t as needing root (mounting a tmpfs, for instance).
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs root (%s); skipped under -short — the full suite runs it", why)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("needs root (%s): run the full suite as root (make test does), or run the quick suite with go test -short", why)
	}
}

// NeedFile marks t as needing a file outside the repository, such as a
// PKCS#11 module; what says what it is and which package provides it.
func NeedFile(t testing.TB, path, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s (%s); skipped under -short — the full suite runs it", what, path)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("needs %s at %s: %v; run scripts/deps (as root) to install it", what, path, err)
	}
}

// SWTPMTCTI returns the tpm2-tools TCTI for the swtpm whose command socket
// is socket (stop the agent using it first: swtpm serves one client). The
// swtpm TCTI finds the control socket at the command socket's path +
// ".ctrl"; a link to the simulator's ctrl.sock beside it is made once.
func SWTPMTCTI(t testing.TB, socket string) string {
	t.Helper()
	link := socket + ".ctrl"
	if _, err := os.Lstat(link); err != nil {
		if err := os.Symlink(filepath.Join(filepath.Dir(socket), "ctrl.sock"), link); err != nil {
			t.Fatal(err)
		}
	}
	return "swtpm:path=" + socket
}

// TPM2 runs a tpm2-tools command (args[0] is its name) against tcti with a
// minute's deadline and returns its combined output.
func TPM2(t testing.TB, tcti string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+tcti)
	b, err := cmd.CombinedOutput()
	return string(b), err
}
