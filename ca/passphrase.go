package ca

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/term"
)

// ErrPassphraseSource reports an unusable passphrase source specification.
var ErrPassphraseSource = errors.New("ca: bad passphrase source")

// maxPassphrase bounds what is read from a file or descriptor.
const maxPassphrase = 4096

// ReadPassphrase obtains a passphrase from source, which is one of
//
//	file:PATH  first line of the file (trailing CR/LF removed)
//	fd:N       everything readable from open file descriptor N (e.g. a pipe)
//	env:NAME   the environment variable NAME
//	prompt     the controlling terminal, without echo
//
// Passphrases are never taken from the command line itself: argv is visible
// to every user through /proc. Errors never contain the passphrase.
func ReadPassphrase(source string) ([]byte, error) {
	kind, arg, _ := strings.Cut(source, ":")
	var (
		p   []byte
		err error
	)
	switch kind {
	case "file":
		if arg == "" {
			return nil, fmt.Errorf("%w: file: needs a path", ErrPassphraseSource)
		}
		var f *os.File
		if f, err = os.Open(arg); err != nil {
			return nil, fmt.Errorf("read passphrase file: %w", err)
		}
		defer f.Close()
		p, err = io.ReadAll(io.LimitReader(f, maxPassphrase))
		if err != nil {
			return nil, fmt.Errorf("read passphrase file: %w", err)
		}
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			p = p[:i]
		}
	case "fd":
		n, convErr := strconv.Atoi(arg)
		if convErr != nil || n < 0 {
			return nil, fmt.Errorf("%w: fd: needs a descriptor number", ErrPassphraseSource)
		}
		f := os.NewFile(uintptr(n), "passphrase-fd")
		if f == nil {
			return nil, fmt.Errorf("%w: fd %d is not open", ErrPassphraseSource, n)
		}
		p, err = io.ReadAll(io.LimitReader(f, maxPassphrase))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read passphrase from fd %d: %w", n, err)
		}
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			p = p[:i]
		}
	case "env":
		if arg == "" {
			return nil, fmt.Errorf("%w: env: needs a variable name", ErrPassphraseSource)
		}
		v, ok := os.LookupEnv(arg)
		if !ok {
			return nil, fmt.Errorf("%w: environment variable %s is not set", ErrPassphraseSource, arg)
		}
		p = []byte(v)
	case "prompt":
		p, err = promptPassphrase()
		if err != nil {
			return nil, err
		}
	default:
		// Do not echo source: a user may have typed the passphrase itself.
		return nil, fmt.Errorf("%w: want file:PATH, fd:N, env:NAME or prompt", ErrPassphraseSource)
	}
	p = bytes.TrimRight(p, "\r\n")
	if len(p) == 0 {
		return nil, ErrEmptyPassphrase
	}
	return p, nil
}

func promptPassphrase() ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		// No controlling terminal (e.g. Windows or a service): fall back to stdin if it is one.
		if !term.IsTerminal(int(os.Stdin.Fd())) {
			return nil, fmt.Errorf("%w: prompt needs a terminal", ErrPassphraseSource)
		}
		fmt.Fprint(os.Stderr, "CA passphrase: ")
		p, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, fmt.Errorf("read passphrase from terminal: %w", err)
		}
		return p, nil
	}
	defer tty.Close()
	fmt.Fprint(tty, "CA passphrase: ")
	p, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return nil, fmt.Errorf("read passphrase from terminal: %w", err)
	}
	return p, nil
}
