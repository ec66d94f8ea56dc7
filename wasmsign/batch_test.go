package wasmsign

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBatchVerify(t *testing.T) {
	p := newPKI(t, "batch")
	dir := t.TempDir()
	keyA, leafA := p.leaf(t, leafOpts{label: "a", device: "DEV-A"})
	keyB, leafB := p.leaf(t, leafOpts{label: "b", device: "DEV-B"})
	var valid []string
	for i := 0; i < 20; i++ {
		key, leaf := keyA, leafA
		if i%2 == 1 {
			key, leaf = keyB, leafB
		}
		mod := cat(addModule, customSection("build", []byte{byte(i)}))
		path := filepath.Join(dir, "line", string(rune('a'+i%3)), "fw"+string(rune('a'+i))+".wasm")
		writeFile(t, path, signECDSA(t, mod, key, leaf, p.inter))
		valid = append(valid, path)
	}
	tampered := signECDSA(t, addModule, keyA, leafA, p.inter)
	tampered[len(tampered)-2] ^= 1
	writeFile(t, filepath.Join(dir, "bad", "tampered.wasm"), tampered)
	writeFile(t, filepath.Join(dir, "bad", "unsigned.wasm"), addModule)
	writeFile(t, filepath.Join(dir, "notes.txt"), []byte("not a module"))
	missing := filepath.Join(dir, "missing.wasm")
	if err := os.Symlink(valid[1], filepath.Join(dir, "link.wasm")); err != nil {
		t.Fatal(err)
	}

	pol := p.policy()
	pol.At, pol.AtExplicit = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), true
	var mu sync.Mutex
	calls, last := 0, 0
	results, err := BatchVerify(context.Background(), []string{dir, missing, valid[0]}, pol, 2, func(done, total int) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if done != last+1 || total != 24 {
			t.Errorf("progress %d/%d after %d", done, total, last)
		}
		last = done
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 24 || calls != 24 {
		t.Fatalf("%d results, %d progress calls", len(results), calls)
	}
	byFile := map[string]Result{}
	for i, r := range results {
		byFile[r.File] = r
		if i > 0 && results[i-1].File >= r.File {
			t.Fatal("results not sorted by file")
		}
		if !r.AtExplicit || !r.VerifiedAt.Equal(pol.At) {
			t.Fatalf("%s: time %v explicit %v", r.File, r.VerifiedAt, r.AtExplicit)
		}
	}
	for _, f := range valid {
		if byFile[f].Status != StatusValid || !strings.HasPrefix(byFile[f].DeviceSerial, "DEV-") {
			t.Fatalf("%s: %+v", f, byFile[f])
		}
	}
	if r := byFile[filepath.Join(dir, "bad", "tampered.wasm")]; r.Status != StatusInvalid || r.Reason == "" || r.DeviceSerial != "DEV-A" {
		t.Fatalf("tampered: %+v", r)
	}
	if r := byFile[filepath.Join(dir, "bad", "unsigned.wasm")]; r.Status != StatusInvalid {
		t.Fatalf("unsigned: %+v", r)
	}
	if r := byFile[missing]; r.Status != StatusError {
		t.Fatalf("missing: %+v", r)
	}

	// The chain cache: two devices, so two chain verifications.
	v, _ := NewVerifier(pol)
	files, _ := ExpandPaths([]string{dir})
	if _, err := v.BatchVerify(context.Background(), files, 2, nil); err != nil {
		t.Fatal(err)
	}
	if n := v.checks.Load(); n != 2 {
		t.Fatalf("%d chain verifications for 2 distinct chains", n)
	}

	// Reports.
	rep := NewReport(results)
	if rep.Total != 24 || rep.Valid != 21 || rep.Invalid != 2 || rep.Errors != 1 || rep.OK() || !rep.AtExplicit {
		t.Fatalf("report %+v", rep)
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back struct {
		AtExplicit bool `json:"at_explicit"`
		Results    []struct {
			File, SignerSerial, DeviceSerial, Result, Reason string
		} `json:"results"`
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"signer_serial"`, `"device_serial"`, `"result": "valid"`, `"reason"`, `"at_explicit": true`} {
		if !bytes.Contains(js.Bytes(), []byte(k)) {
			t.Fatalf("JSON report lacks %s", k)
		}
	}
	if !back.AtExplicit || len(back.Results) != 24 {
		t.Fatal("JSON report content")
	}
	var xb bytes.Buffer
	if err := rep.WriteJUnit(&xb); err != nil {
		t.Fatal(err)
	}
	var suites junitSuites
	if err := xml.Unmarshal(xb.Bytes(), &suites); err != nil {
		t.Fatalf("JUnit XML: %v\n%s", err, xb.String())
	}
	s := suites.Suites[0]
	if s.Tests != 24 || s.Failures != 2 || s.Errors != 1 || len(s.Cases) != 24 {
		t.Fatalf("JUnit suite %+v", s)
	}
	if !bytes.Contains(xb.Bytes(), []byte(`name="at_explicit" value="true"`)) {
		t.Fatal("JUnit report does not show the explicit time")
	}

	// Cancellation returns what was done and the context error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := BatchVerify(ctx, []string{dir}, pol, 2, nil); err != context.Canceled {
		t.Fatalf("cancelled batch: %v", err)
	}
}
