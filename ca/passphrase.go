package ca

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed" // the diceware wordlist
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

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
		if err := checkPassphraseFile(f); err != nil {
			return nil, err
		}
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
		p, err = promptLine("passphrase: ")
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

// Passphrase rules (docs/ca-ceremony.md §2).
var (
	// ErrWeakPassphrase: a new passphrase is shorter than MinPassphraseLen
	// and is not MinDicewareWords words of the wordlist.
	ErrWeakPassphrase = errors.New("ca: passphrase too weak: use at least 20 characters or 5 random words (`--generate-passphrase` makes one)")
	// ErrPassphraseMismatch: the two entries of a new passphrase differ.
	ErrPassphraseMismatch = errors.New("ca: the two passphrase entries differ")
	// ErrPassphraseFileMode: a passphrase file others can read, or owned by
	// another user.
	ErrPassphraseFileMode = errors.New("ca: passphrase file must be mode 0600 and owned by you")
)

// Strength rule for new passphrases.
const (
	MinPassphraseLen = 20
	MinDicewareWords = 5
)

//go:embed wordlist/eff_large_wordlist.txt
var effLarge string

var (
	wordsOnce sync.Once
	words     []string
	wordIdx   map[string]int
)

// wordlist returns the EFF large wordlist (7776 words, CC BY 3.0, from
// https://www.eff.org/dice), used for diceware passphrases and custodian shares.
func wordlist() []string {
	wordsOnce.Do(func() {
		wordIdx = map[string]int{}
		for _, line := range strings.Split(effLarge, "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			wordIdx[f[1]] = len(words)
			words = append(words, f[1])
		}
	})
	return words
}

func wordIndex() map[string]int {
	wordlist()
	return wordIdx
}

// CheckPassphraseStrength applies the rule for new passphrases: at least
// MinPassphraseLen characters, or at least MinDicewareWords words of the
// diceware wordlist (separated by spaces or hyphens).
func CheckPassphraseStrength(p []byte) error {
	if len([]rune(string(p))) >= MinPassphraseLen {
		return nil
	}
	// Words are separated by spaces; a few list words contain a hyphen
	// ("t-shirt"), so hyphens separate words only when there is no space.
	fields := strings.Fields(string(p))
	if len(fields) < 2 {
		fields = strings.Split(string(p), "-")
		fields = rejoinHyphenated(fields)
	}
	if len(fields) >= MinDicewareWords {
		idx := wordIndex()
		ok := true
		for _, f := range fields {
			_, in := idx[strings.ToLower(f)]
			ok = ok && in
		}
		if ok {
			return nil
		}
	}
	return ErrWeakPassphrase
}

// rejoinHyphenated merges neighbouring parts that form a hyphenated list
// word ("t", "shirt" → "t-shirt").
func rejoinHyphenated(parts []string) []string {
	idx := wordIndex()
	var out []string
	for i := 0; i < len(parts); i++ {
		if i+1 < len(parts) {
			if _, ok := idx[strings.ToLower(parts[i]+"-"+parts[i+1])]; ok {
				out = append(out, parts[i]+"-"+parts[i+1])
				i++
				continue
			}
		}
		out = append(out, parts[i])
	}
	return out
}

// GeneratePassphrase returns n words drawn uniformly (crypto/rand) from the
// 7776-word list, joined by hyphens: 12.9 bits each, 64.6 bits for 5 words.
func GeneratePassphrase(n int) ([]byte, error) {
	if n < MinDicewareWords {
		n = MinDicewareWords
	}
	w := wordlist()
	out := make([]string, n)
	for i := range out {
		v, err := rand.Int(rand.Reader, big.NewInt(int64(len(w))))
		if err != nil {
			return nil, fmt.Errorf("generate passphrase: %w", err)
		}
		out[i] = w[v.Int64()]
	}
	return []byte(strings.Join(out, "-")), nil
}

// ReadPassphraseFor is ReadPassphrase with a prompt that names the key
// ("root key passphrase").
func ReadPassphraseFor(source, keyName string) ([]byte, error) {
	if source == "prompt" {
		p, err := promptLine(keyName + " passphrase: ")
		if err != nil {
			return nil, err
		}
		if len(p) == 0 {
			return nil, ErrEmptyPassphrase
		}
		return p, nil
	}
	return ReadPassphrase(source)
}

// ReadNewPassphrase reads a new passphrase for keyName: from a terminal it
// is asked twice and both entries must match; from any source it must
// pass CheckPassphraseStrength.
func ReadNewPassphrase(source, keyName string) ([]byte, error) {
	p, err := ReadPassphraseFor(source, "new "+keyName)
	if err != nil {
		return nil, err
	}
	if source == "prompt" {
		again, err := promptLine("repeat the new " + keyName + " passphrase: ")
		if err != nil {
			clear(p)
			return nil, err
		}
		same := bytes.Equal(p, again)
		clear(again)
		if !same {
			clear(p)
			return nil, ErrPassphraseMismatch
		}
	}
	if err := CheckPassphraseStrength(p); err != nil {
		clear(p)
		return nil, err
	}
	return p, nil
}

// checkPassphraseFile refuses a passphrase file that other users can read
// or that belongs to someone else.
func checkPassphraseFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("read passphrase file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: it is %04o (chmod 600 it)", ErrPassphraseFileMode, fi.Mode().Perm())
	}
	if uid, ok := fileOwner(fi); ok && uid != os.Getuid() {
		return fmt.Errorf("%w: it belongs to uid %d", ErrPassphraseFileMode, uid)
	}
	return nil
}

func promptLine(prompt string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		if !term.IsTerminal(int(os.Stdin.Fd())) {
			return nil, fmt.Errorf("%w: prompt needs a terminal", ErrPassphraseSource)
		}
		fmt.Fprint(os.Stderr, prompt)
		p, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, fmt.Errorf("read passphrase from terminal: %w", err)
		}
		return p, nil
	}
	defer tty.Close()
	fmt.Fprint(tty, prompt)
	p, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return nil, fmt.Errorf("read passphrase from terminal: %w", err)
	}
	return p, nil
}

// ChangePassphrase re-encrypts the keys of one kind in dir with a new
// passphrase, all in one atomic step (a failure leaves every key as it
// was): "root" (root.key and older roots' keys still trusted, and the
// folder's ledger key), "intermediate" (intermediate.key, a pending
// intermediate.next.key, retired intermediates' keys) or "audit"
// (audit.key). Every file must unlock with oldPass.
func ChangePassphrase(ctx context.Context, cer Ceremony, key string, oldPass, newPass []byte) (*Result, error) {
	if err := CheckPassphraseStrength(newPass); err != nil {
		return nil, err
	}
	dir := cer.Dir
	var paths []string
	switch key {
	case "root":
		if HasCustody(dir) {
			return nil, fmt.Errorf("passphrase change: the root key is under quorum custody; use `wsc ca custody reshare`")
		}
		paths = rootSecretKeys(dir)
	case "intermediate":
		paths = []string{filepath.Join(dir, IntermediateKeyFile), filepath.Join(dir, NextIntermediateKeyFile)}
		m, _ := filepath.Glob(filepath.Join(dir, RetiredDir, "*.key"))
		for _, p := range m {
			if !strings.HasPrefix(filepath.Base(p), "root-") {
				paths = append(paths, p)
			}
		}
	case "audit":
		paths = []string{filepath.Join(dir, AuditKeyFile)}
	default:
		return nil, fmt.Errorf("passphrase change: --key must be root, intermediate or audit, not %q", key)
	}
	var tx fileTx
	if err := stageReencrypt(&tx, paths, oldPass, newPass); err != nil {
		return nil, fmt.Errorf("passphrase change (%s): %w", key, err)
	}
	if tx.empty() {
		return nil, fmt.Errorf("passphrase change: no %s key file in %s", key, dir)
	}
	res := &Result{Ceremony: "passphrase change", Dir: dir}
	var names []string
	for _, op := range tx.ops {
		names = append(names, filepath.Base(op.path))
	}
	secret := newPass
	if key != "root" {
		secret = nil // the ledger key is protected by the root passphrase
	}
	if err := cer.finish(ctx, &tx, res, secret, "ca.passphrase.change", map[string]any{"key": key, "files": names}); err != nil {
		return nil, err
	}
	return res, nil
}
