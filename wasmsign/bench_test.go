package wasmsign

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// bigSignedModule is addModule plus a 4 MiB custom section, signed.
func bigSignedModule(b *testing.B) (*Verifier, []byte) {
	p := newPKI(b, "bench")
	key, leaf := p.leaf(b, leafOpts{})
	blob := make([]byte, 4<<20)
	rand.Read(blob)
	mod := signECDSA(b, cat(addModule, customSection("blob", blob)), key, leaf, p.inter)
	v, err := NewVerifier(p.policy())
	if err != nil {
		b.Fatal(err)
	}
	return v, mod
}

// BenchmarkVerify4MiB compares verification throughput with plain SHA-256
// over the same bytes. Run: go test -run '^$' -bench Verify4MiB ./wasmsign/
func BenchmarkVerify4MiB(b *testing.B) {
	v, mod := bigSignedModule(b)
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(int64(len(mod)))
		for b.Loop() {
			sha256.Sum256(mod)
		}
	})
	b.Run("verify-bytes", func(b *testing.B) {
		b.SetBytes(int64(len(mod)))
		for b.Loop() {
			if _, err := v.Verify(mod); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify-stream", func(b *testing.B) {
		b.SetBytes(int64(len(mod)))
		for b.Loop() {
			if _, err := v.VerifyReader(bytes.NewReader(mod)); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Interleaved in one loop, so that both see the same machine state:
	// the metric is verification throughput / SHA-256 throughput.
	b.Run("ratio", func(b *testing.B) {
		// Minimum of each, as in BenchmarkBatch1000/speedup.
		tSHA, tVerify := time.Duration(1<<62), time.Duration(1<<62)
		for b.Loop() {
			t0 := time.Now()
			sha256.Sum256(mod)
			t1 := time.Now()
			if _, err := v.Verify(mod); err != nil {
				b.Fatal(err)
			}
			tSHA = min(tSHA, t1.Sub(t0))
			tVerify = min(tVerify, time.Since(t1))
		}
		b.ReportMetric(tSHA.Seconds()/tVerify.Seconds(), "verify/sha256")
	})
}

// batchFixture writes n small signed modules from 10 devices.
func batchFixture(b *testing.B, n int) (*TrustPolicy, []string) {
	p := newPKI(b, "benchbatch")
	dir := b.TempDir()
	var files []string
	keys, leaves := make([]*ecdsa.PrivateKey, 10), make([]*x509.Certificate, 10)
	for i := range keys {
		keys[i], leaves[i] = p.leaf(b, leafOpts{label: fmt.Sprint("dev", i), device: fmt.Sprint("DEV-", i)})
	}
	for i := 0; i < n; i++ {
		mod := signECDSA(b, cat(addModule, customSection("build", []byte(fmt.Sprint(i)))), keys[i%10], leaves[i%10], p.inter)
		path := filepath.Join(dir, fmt.Sprintf("d%02d", i%16), fmt.Sprintf("m%04d.wasm", i))
		writeFile(b, path, mod)
		files = append(files, path)
	}
	return p.policy(), files
}

// BenchmarkBatch1000 verifies 1,000 small modules with 1 and 2 workers; each
// iteration uses a fresh Verifier (cold chain cache). The "speedup" run
// alternates both in one loop and reports the fastest workers=1 time over
// the fastest workers=2 time.
// Run: go test -run '^$' -bench Batch1000 ./wasmsign/
func BenchmarkBatch1000(b *testing.B) {
	pol, files := batchFixture(b, 1000)
	run := func(b *testing.B, workers int) time.Duration {
		v, err := NewVerifier(pol)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		res, err := v.BatchVerify(context.Background(), files, workers, nil)
		d := time.Since(t0)
		if err != nil || len(res) != len(files) || res[0].Status != StatusValid || res[len(res)-1].Status != StatusValid {
			b.Fatalf("batch: %v", err)
		}
		return d
	}
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			for b.Loop() {
				run(b, w)
			}
		})
	}
	b.Run("speedup", func(b *testing.B) {
		// Minimum of each: on a shared machine the fastest run is the one
		// least disturbed by other processes.
		t1, t2 := time.Duration(1<<62), time.Duration(1<<62)
		for b.Loop() {
			t1 = min(t1, run(b, 1))
			t2 = min(t2, run(b, 2))
		}
		b.ReportMetric(t1.Seconds()/t2.Seconds(), "x")
		b.ReportMetric(float64(t1.Milliseconds()), "ms-workers=1")
		b.ReportMetric(float64(t2.Milliseconds()), "ms-workers=2")
	})
}
