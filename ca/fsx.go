package ca

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// A ceremony changes several files of a CA folder (a new key, a
// certificate, the ledger, a CRL). fileTx makes that one step: every output
// is first written to a temporary file beside its target and fsynced;
// Commit then moves each previous version aside and renames the new files
// into place. If anything fails before Commit returns, the folder is put
// back as it was: new files removed, previous versions restored, folders
// the transaction created removed again.
//
// failpoint is the test seam for atomicity tests: it is called with a named
// point before each file operation and an error it returns is injected
// there. nil in production.
var failpoint func(point string) error

func hit(point string) error {
	if failpoint == nil {
		return nil
	}
	if err := failpoint(point); err != nil {
		return fmt.Errorf("%s: %w", point, err)
	}
	return nil
}

type txOp struct {
	path   string
	data   []byte
	perm   os.FileMode
	remove bool
}

type fileTx struct {
	ops  []txOp
	dirs []string // folders to create (0o700), in order
}

// write stages data for path.
func (t *fileTx) write(path string, data []byte, perm os.FileMode) {
	for i := range t.ops {
		if t.ops[i].path == path {
			t.ops[i] = txOp{path: path, data: data, perm: perm}
			return
		}
	}
	t.ops = append(t.ops, txOp{path: path, data: data, perm: perm})
}

// remove stages the removal of path (a missing file is not an error).
func (t *fileTx) remove(path string) {
	t.ops = append(t.ops, txOp{path: path, remove: true})
}

// mkdir stages the creation of a folder (parents first).
func (t *fileTx) mkdir(dir string) { t.dirs = append(t.dirs, dir) }

// empty reports whether nothing is staged.
func (t *fileTx) empty() bool { return len(t.ops) == 0 }

// commit performs the staged operations all or nothing (see fileTx).
func (t *fileTx) commit() (err error) {
	var (
		madeDirs []string
		temps    []string
		backups  = map[string]string{} // target → backup
		placed   []string              // targets that now hold new content or were removed
	)
	defer func() {
		if err == nil {
			return
		}
		// Roll back in reverse: restore previous versions, drop new files.
		for i := len(placed) - 1; i >= 0; i-- {
			p := placed[i]
			if b, ok := backups[p]; ok {
				os.Rename(b, p)
				delete(backups, p)
			} else {
				os.Remove(p)
			}
		}
		for _, tmp := range temps {
			os.Remove(tmp)
		}
		for i := len(madeDirs) - 1; i >= 0; i-- {
			os.Remove(madeDirs[i]) // only if empty
		}
	}()
	for _, d := range t.dirs {
		if _, serr := os.Stat(d); serr == nil {
			continue
		}
		if err = hit("mkdir " + filepath.Base(d)); err != nil {
			return err
		}
		if err = os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
		madeDirs = append(madeDirs, d)
	}
	// Stage 1: temporary files, fsynced.
	tmpOf := map[string]string{}
	for _, op := range t.ops {
		if op.remove {
			continue
		}
		if err = hit("write " + filepath.Base(op.path)); err != nil {
			return err
		}
		var tmp string
		if tmp, err = writeTemp(op.path, op.data, op.perm); err != nil {
			return err
		}
		temps = append(temps, tmp)
		tmpOf[op.path] = tmp
	}
	// Stage 2: move previous versions aside, rename new ones in.
	for _, op := range t.ops {
		if _, serr := os.Lstat(op.path); serr == nil {
			if err = hit("backup " + filepath.Base(op.path)); err != nil {
				return err
			}
			b := filepath.Join(filepath.Dir(op.path), "."+filepath.Base(op.path)+".prev")
			if err = os.Rename(op.path, b); err != nil {
				return fmt.Errorf("replace %s: %w", filepath.Base(op.path), err)
			}
			backups[op.path] = b
			placed = append(placed, op.path)
		} else if !errors.Is(serr, os.ErrNotExist) {
			err = fmt.Errorf("replace %s: %w", filepath.Base(op.path), serr)
			return err
		}
		if op.remove {
			continue
		}
		if err = hit("rename " + filepath.Base(op.path)); err != nil {
			return err
		}
		if err = os.Rename(tmpOf[op.path], op.path); err != nil {
			return fmt.Errorf("replace %s: %w", filepath.Base(op.path), err)
		}
		if _, ok := backups[op.path]; !ok {
			placed = append(placed, op.path)
		}
	}
	// Done: drop the previous versions and sync the folders.
	for _, b := range backups {
		os.Remove(b)
	}
	dirs := map[string]bool{}
	for _, op := range t.ops {
		dirs[filepath.Dir(op.path)] = true
	}
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		if f, oerr := os.Open(d); oerr == nil {
			f.Sync()
			f.Close()
		}
	}
	return nil
}

// writeTemp writes data to a fsynced temporary file beside path.
func writeTemp(path string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	tmp := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return tmp, nil
}
