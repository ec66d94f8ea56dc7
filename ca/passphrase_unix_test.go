//go:build unix

package ca

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"testing"
)

func testReadPassphraseFD(t *testing.T) {
	t.Helper()
	r, w, _ := os.Pipe()
	w.Write(append(testPass, '\r', '\n'))
	w.Close()
	// ReadPassphrase closes the descriptor it reads, as a CLI would; hand it
	// a duplicate so r's own close stays valid.
	fd, err := syscall.Dup(int(r.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	p, err := ReadPassphrase(fmt.Sprintf("fd:%d", fd))
	if err != nil || !bytes.Equal(p, testPass) {
		t.Fatalf("fd: %q %v", p, err)
	}
}
