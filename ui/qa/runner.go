package qa

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/wsc-project/wsc/station/untrusted"
	"github.com/wsc-project/wsc/wasmsign"
)

// Runner verifies module files for the QA view. Verify is called from a
// command goroutine; it calls each once per verified file with the file's
// index in files (from one goroutine at a time) and returns when every file
// is verified, or with ctx.Err() when ctx is cancelled (files not reached
// get no call). A per-file failure is a result, not an error.
type Runner interface {
	Verify(ctx context.Context, files []string, each func(i int, r wasmsign.Result)) error
}

// RunnerFunc adapts a function to Runner.
type RunnerFunc func(ctx context.Context, files []string, each func(i int, r wasmsign.Result)) error

// Verify calls f.
func (f RunnerFunc) Verify(ctx context.Context, files []string, each func(i int, r wasmsign.Result)) error {
	return f(ctx, files, each)
}

// PolicyRunner verifies with one wasmsign.Verifier for the policy (each
// distinct chain is checked once) on workers goroutines (all cores when
// workers <= 0). Files are claimed in order, so with one worker the results
// come in file order.
func PolicyRunner(policy *wasmsign.TrustPolicy, workers int) Runner {
	return RunnerFunc(func(ctx context.Context, files []string, each func(int, wasmsign.Result)) error {
		v, err := wasmsign.NewVerifier(policy)
		if err != nil {
			return err
		}
		if workers <= 0 {
			workers = runtime.GOMAXPROCS(0)
		}
		workers = max(min(workers, len(files)), 1)
		var next atomic.Int64
		var mu sync.Mutex
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
					res, _ := v.VerifyFile(files[i]) // a failure is in res
					mu.Lock()
					each(i, *res)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return ctx.Err()
	})
}

// ErrFolder is wrapped by every error ListModules returns: the folder (or
// file) to verify does not exist or cannot be read. The view shows it as
// an error with an instruction, never as a module that failed.
var ErrFolder = errors.New("folder cannot be verified")

// ListModules returns the modules under root: root itself when it is a
// file, else every *.wasm file below it (wasmsign.ExpandPaths). A root that
// does not exist or a folder that cannot be read is an error wrapping
// ErrFolder and the cause (fs.ErrNotExist, fs.ErrPermission).
func ListModules(root string) ([]string, error) {
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFolder, err)
	}
	if st.IsDir() {
		// Opening the folder tells an unreadable folder from an empty one
		// (the walk below reports only what it reaches).
		f, err := os.Open(root)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrFolder, err)
		}
		_, err = f.ReadDir(1)
		f.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: read %s: %w", ErrFolder, root, err)
		}
	}
	files, err := wasmsign.ExpandPaths([]string{root})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFolder, err)
	}
	return files, nil
}

// CRLInstruction tells QA what to do when verification refused modules
// because of the trust bundle's CRLs: it names the CAs concerned (escaped)
// and, per problem, where a good bundle comes from — for a CA without CRL
// also what --allow-missing-crl means. It is "" when no result failed for
// a CRL reason.
func CRLInstruction(results []wasmsign.Result) string {
	kinds := []struct {
		sentinel error
		format   string
	}{
		{wasmsign.ErrCRLMissing, "No CRL for %s in the trust bundle: revocation cannot be checked, modules refused. " +
			"Ask security staff for a bundle made by `wsc ca bundle`, or pass --allow-missing-crl to accept the risk; the report will say so."},
		{wasmsign.ErrCRLStale, "The CRL of %s is not valid at the verification time (expired or not yet valid): modules refused. " +
			"Ask security staff for a fresh bundle made by `wsc ca bundle`."},
		{wasmsign.ErrCRLSignature, "A CRL in the trust bundle names %s but is not signed by it: the bundle was edited or mixed up, modules refused. " +
			"Ask security staff for a new bundle made by `wsc ca bundle`."},
	}
	var out []string
	for _, k := range kinds {
		var names []string
		seen := map[string]bool{}
		for _, r := range results {
			var ce *wasmsign.CRLError
			if !errors.As(r.Err, &ce) || !errors.Is(ce, k.sentinel) {
				continue
			}
			for _, c := range ce.CAs {
				if n := c.Subject.String(); !seen[n] {
					seen[n] = true
					names = append(names, untrusted.String(n))
				}
			}
		}
		if len(names) > 0 {
			out = append(out, fmt.Sprintf(k.format, strings.Join(names, "; ")))
		}
	}
	return strings.Join(out, " ")
}
