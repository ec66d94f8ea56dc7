package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// ptyScreen collects what a program writes to its terminal.
type ptyScreen struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	more chan struct{}
}

func (s *ptyScreen) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.buf.Write(p)
	s.mu.Unlock()
	select {
	case s.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

var ansiSeq = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]`)

// text is everything written so far, without escape sequences.
func (s *ptyScreen) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ansiSeq.ReplaceAllString(s.buf.String(), "")
}

// waitFor waits until the output holds every string (the bound only turns
// a hang into a failure; nothing is timed).
func (s *ptyScreen) waitFor(t *testing.T, subs ...string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		txt := s.text()
		ok := true
		for _, sub := range subs {
			if !strings.Contains(txt, sub) {
				ok = false
			}
		}
		if ok {
			return
		}
		select {
		case <-s.more:
		case <-deadline:
			t.Fatalf("the screen never showed %q; it shows:\n%s", subs, txt)
		}
	}
}

// TestFrontQAOnATerminal runs `wsc qa` of the front binary on a real
// pseudo-terminal, without the full binary: the QA screen verifies a
// folder (state words, summary bar), shows a missing folder as an error,
// goes back with Esc, and quits with q, exit 0.
func TestFrontQAOnATerminal(t *testing.T) {
	front, _ := binaries(t)
	bundle, good, bad := signedModules(t)
	dir := filepath.Dir(good)
	cmd := exec.Command(front, "qa", "--trust", bundle, "--dir", dir)
	cmd.Env = append(os.Environ(), stationEnv+"="+filepath.Join(t.TempDir(), "no-wsc-station"), "TERM=xterm-256color")
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 120, Rows: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	scr := &ptyScreen{more: make(chan struct{}, 1)}
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(scr, f); close(copied) }()
	send := func(s string) {
		t.Helper()
		if _, err := f.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	scr.waitFor(t, "Folder to verify")
	send("\r")
	scr.waitFor(t, "Total 2", "Valid 1", "Invalid 1", "Pending 0", filepath.Base(bad), "invalid", "failures only")
	// Back to the folder field, a folder that does not exist.
	send("\x1b")
	scr.waitFor(t, "Esc returns to the last results")
	for range len(dir) {
		send("\x7f")
	}
	send(filepath.Join(dir, "missing") + "\r")
	scr.waitFor(t, "does not exist", "press Esc")
	// Each Esc is followed by a wait for the screen it leads to: an Esc
	// and the next key in one read would be one key, alt+key.
	waitMore := func(sub string, before int) {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for strings.Count(scr.text(), sub) <= before {
			select {
			case <-scr.more:
			case <-deadline:
				t.Fatalf("the screen never showed %q again:\n%s", sub, scr.text())
			}
		}
	}
	n := strings.Count(scr.text(), "Folder to verify")
	send("\x1b")
	waitMore("Folder to verify", n)
	n = strings.Count(scr.text(), "Total 2")
	send("\x1b") // back to the results
	waitMore("Total 2", n)
	send("q")
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("wsc qa: %v\n%s", err, scr.text())
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("wsc qa did not quit on q:\n%s", scr.text())
	}
	<-copied
}
