package ca

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// errInjected is the failure injected at a file operation.
var errInjected = errors.New("injected failure")

// step is one ceremony of the atomicity sequence; it works only on the
// folders of m (a copy of the state the steps before it left).
type step struct {
	name string
	run  func(m *machines) error
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
}

// relocate returns the machines of a copied base folder.
func relocate(t *testing.T, base string) *machines {
	return &machines{t: t, root: filepath.Join(base, "root-machine"), station: filepath.Join(base, "station", "ca"), media: filepath.Join(base, "usb"), ctx: context.Background()}
}

func baseOf(m *machines) string { return filepath.Dir(m.root) }

// runAtomicity runs the steps in order. Before each step it runs the step on
// a copy with a counting failpoint to learn its named file operations, then,
// for each of them, on a fresh copy with a failure injected exactly there:
// the step must fail and every folder (both machines and the medium) must
// hash as before. Then the step runs for real and the next one starts from
// its result. The points are enumerated exhaustively (no random draw), so
// every run injects at the same places; their names and counts are logged.
func runAtomicity(t *testing.T, steps []step) {
	m := newMachines(t)
	t.Cleanup(func() { failpoint = nil })
	for _, st := range steps {
		// 1. Count the points.
		var points []string
		probe := filepath.Join(t.TempDir(), "probe")
		copyTree(t, baseOf(m), probe)
		failpoint = func(p string) error { points = append(points, pointName(p)); return nil }
		err := st.run(relocate(t, probe))
		failpoint = nil
		if err != nil {
			t.Fatalf("%s (probe): %v", st.name, err)
		}
		if len(points) == 0 {
			t.Fatalf("%s: no file operation went through the transaction", st.name)
		}
		counts := map[string]int{}
		for _, p := range points {
			counts[p]++
		}
		// 2. Inject at each point in turn.
		hits := map[string]int{}
		for k := range points {
			dir := filepath.Join(t.TempDir(), "inject")
			copyTree(t, baseOf(m), dir)
			mm := relocate(t, dir)
			before := folderHash(t, mm.root, mm.station, mm.media)
			n := 0
			failpoint = func(p string) error {
				n++
				if n == k+1 {
					hits[pointName(p)]++
					return errInjected
				}
				return nil
			}
			err := st.run(mm)
			failpoint = nil
			if !errors.Is(err, errInjected) {
				t.Fatalf("%s: injection at %q (%d): got %v", st.name, points[k], k+1, err)
			}
			if after := folderHash(t, mm.root, mm.station, mm.media); after != before {
				t.Errorf("%s: failure at %q (operation %d) changed the folders: %s", st.name, points[k], k+1, diffTree(t, filepath.Join(baseOf(m)), dir))
			}
		}
		for p, c := range counts {
			if hits[p] != c {
				t.Errorf("%s: point %q hit %d times, want %d", st.name, p, hits[p], c)
			}
		}
		names := make([]string, 0, len(counts))
		for p := range counts {
			names = append(names, p)
		}
		sort.Strings(names)
		t.Logf("%s: %d injections at %s", st.name, len(points), strings.Join(names, ", "))
		// 3. Run it for real.
		if err := st.run(m); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
	}
}

// hexRun matches key ids and serials in file names, which differ between runs.
var hexRun = regexp.MustCompile(`[0-9a-f]{16,}(-[0-9a-f]+)?`)

// pointName is a failpoint name with key ids and serials replaced by <id>.
func pointName(p string) string { return hexRun.ReplaceAllString(p, "<id>") }

// diffTree names files that differ between two trees (for the failure message).
func diffTree(t *testing.T, a, b string) string {
	out, _ := exec.Command("diff", "-rq", a, b).CombinedOutput()
	return string(out)
}

func mediaCRLs(m *machines) []string {
	f, _ := filepath.Glob(filepath.Join(m.media, "crl-*.pem"))
	return f
}

// TestCeremoniesAtomic interrupts every ceremony at every file operation
// and checks that the folders are left exactly as they were.
func TestCeremoniesAtomic(t *testing.T) {
	ctx := context.Background()
	newPass := []byte("a brand new station passphrase, long enough")
	steps := []step{
		{"init (root only)", func(m *machines) error {
			_, err := InitCA(ctx, m.rootCer(), rootPass, InitOptions{RootOnly: true, Organization: "wsc test"})
			return err
		}},
		{"import roots", func(m *machines) error {
			_, err := Import(ctx, m.stationCer(), ImportOptions{Roots: filepath.Join(m.root, RootCertFile)})
			return err
		}},
		{"intermediate csr", func(m *machines) error {
			_, _, err := IntermediateCSR(ctx, m.stationCer(), stationPass, "wsc Station", filepath.Join(m.media, "next.csr"))
			return err
		}},
		{"intermediate sign", func(m *machines) error {
			raw, err := os.ReadFile(filepath.Join(m.media, "next.csr"))
			if err != nil {
				return err
			}
			_, _, err = SignIntermediateCSR(ctx, m.rootCer(), rootPass, pemBody(raw), IntermediateTemplate{}, filepath.Join(m.media, "chain.pem"))
			return err
		}},
		{"intermediate install", func(m *machines) error {
			chain, err := readCerts(filepath.Join(m.media, "chain.pem"))
			if err != nil {
				return err
			}
			_, err = InstallIntermediate(ctx, m.stationCer(), stationPass, chain)
			return err
		}},
		{"root crl", func(m *machines) error {
			_, _, err := RootCRLs(ctx, m.rootCer(), rootPass, 30*24*time.Hour, m.media)
			return err
		}},
		{"import crl", func(m *machines) error {
			_, err := Import(ctx, m.stationCer(), ImportOptions{Files: mediaCRLs(m)})
			return err
		}},
		{"intermediate crl", func(m *machines) error {
			c, err := Open(m.station, stationPass, WithRevocationStore(newMemRevocations()))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.CRLs(ctx)
			return err
		}},
		{"bundle", func(m *machines) error {
			_, _, err := WriteBundle(ctx, m.stationCer(), filepath.Join(m.media, "bundle.pem"))
			return err
		}},
		{"revoke by root", func(m *machines) error {
			cs, err := readCerts(filepath.Join(m.station, IntermediateCertFile))
			if err != nil {
				return err
			}
			_, err = RevokeByRoot(ctx, m.rootCer(), cs[0], ReasonSuperseded)
			return err
		}},
		{"root rollover", func(m *machines) error {
			_, _, err := RolloverFolder(ctx, m.rootCer(), rootPass, RolloverOptions{}, filepath.Join(m.media, "chain.pem"))
			return err
		}},
		{"root crl after rollover", func(m *machines) error {
			_, _, err := RootCRLs(ctx, m.rootCer(), rootPass, 30*24*time.Hour, m.media)
			return err
		}},
		{"import rollover", func(m *machines) error {
			files := append(mediaCRLs(m), filepath.Join(m.root, CrossDir, "new-by-old.crt"), filepath.Join(m.root, CrossDir, "old-by-new.crt"))
			_, err := Import(ctx, m.stationCer(), ImportOptions{Roots: filepath.Join(m.root, RootCertFile), Files: files})
			return err
		}},
		{"install re-certified", func(m *machines) error {
			chain, err := readCerts(filepath.Join(m.media, "chain.pem"))
			if err != nil {
				return err
			}
			_, err = InstallIntermediate(ctx, m.stationCer(), stationPass, chain)
			return err
		}},
		{"root retire", func(m *machines) error {
			roots, err := readCerts(filepath.Join(m.root, RootCertFile))
			if err != nil {
				return err
			}
			_, err = RetireRoot(ctx, m.rootCer(), rootPass, keyIDHex(roots[1]))
			return err
		}},
		{"passphrase change", func(m *machines) error {
			_, err := ChangePassphrase(ctx, m.stationCer(), "intermediate", stationPass, newPass)
			return err
		}},
		{"root passphrase change", func(m *machines) error {
			_, err := ChangePassphrase(ctx, m.rootCer(), "root", rootPass, newPass)
			return err
		}},
	}
	runAtomicity(t, steps)

	// Quorum custody: init and reshare.
	var custody *Custody
	runAtomicity(t, []step{
		{"init with custody", func(m *machines) error {
			c, err := NewCustody([]string{"ann", "bob", "cy"}, 2)
			if err != nil {
				return err
			}
			custody = c
			_, err = InitCA(ctx, m.rootCer(), nil, InitOptions{RootOnly: true, Custody: c})
			return err
		}},
		{"reshare", func(m *machines) error {
			sh := custody.Shares()
			secret, _, err := JoinShares(m.root, []string{sh[0].Words, sh[2].Words})
			if err != nil {
				return err
			}
			defer clear(secret)
			nc, err := NewCustody([]string{"ann", "dee", "eve"}, 2)
			if err != nil {
				return err
			}
			_, err = Reshare(ctx, m.rootCer(), secret, nc)
			return err
		}},
	})
}
