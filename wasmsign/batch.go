package wasmsign

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// ModuleExt is the file extension BatchVerify looks for inside folders.
const ModuleExt = ".wasm"

// ExpandPaths turns files and folders into the list of modules to verify:
// a file is taken as given, a folder is walked recursively for *.wasm files.
// The result is sorted and free of duplicates.
func ExpandPaths(paths []string) ([]string, error) {
	seen := make(map[string]bool)
	var out []string
	add := func(p string) {
		p = filepath.Clean(p)
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			// Reported as a per-file error by the verification itself.
			add(p)
			continue
		}
		if !st.IsDir() {
			add(p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("walk %s: %w", path, err)
			}
			if !strings.EqualFold(filepath.Ext(path), ModuleExt) {
				return nil
			}
			regular := d.Type().IsRegular()
			if d.Type()&fs.ModeSymlink != 0 {
				// A link to a module counts; links to folders are not
				// followed (no cycles).
				st, err := os.Stat(path)
				regular = err == nil && st.Mode().IsRegular()
			}
			if regular {
				add(path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	return out, nil
}

// BatchVerify verifies every module named by paths (files, and folders
// walked recursively for *.wasm) on workers goroutines (all cores when
// workers <= 0), sharing one Verifier so that each distinct chain is checked
// once. Results come in the order of the sorted file list, one per file;
// per-file failures are results, not errors. progress, when not nil, is
// called after each file with the number done and the total, from one
// goroutine at a time. On cancellation the results so far are returned with
// ctx.Err(); files not verified have no result.
func BatchVerify(ctx context.Context, paths []string, policy *TrustPolicy, workers int, progress func(done, total int)) ([]Result, error) {
	v, err := NewVerifier(policy)
	if err != nil {
		return nil, err
	}
	files, err := ExpandPaths(paths)
	if err != nil {
		return nil, err
	}
	return v.BatchVerify(ctx, files, workers, progress)
}

// BatchVerify verifies the given module files with this Verifier; see the
// package-level BatchVerify. files are verified as given (no folder walk).
func (v *Verifier) BatchVerify(ctx context.Context, files []string, workers int, progress func(done, total int)) ([]Result, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if workers > len(files) {
		workers = max(len(files), 1)
	}
	results := make([]Result, len(files))
	verified := make([]bool, len(files))
	// Workers claim files with an atomic counter: no feeder goroutine and
	// no channel hand-off per file.
	var next atomic.Int64
	var mu sync.Mutex
	done := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(files) {
					return
				}
				res, _ := v.VerifyFile(files[i])
				results[i] = *res
				verified[i] = true
				if progress != nil {
					mu.Lock()
					done++
					progress(done, len(files))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		out := results[:0]
		for i, ok := range verified {
			if ok {
				out = append(out, results[i])
			}
		}
		return out, err
	}
	return results, nil
}
