package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsc-project/wsc/cmd/internal/cli"
	"github.com/wsc-project/wsc/wasmsign"
)

// heavy are the import paths the front must never link: the CA
// (smallstep, go.step.sm), the databases, the station and the device side.
// station/untrusted (a leaf: the escaping rule) and ui/qa (the QA screen,
// without station) are the light exceptions under station and ui.
func heavy(pkg string) bool {
	const us = "github.com/wsc-project/wsc/"
	for _, light := range []string{us + "station/untrusted", us + "ui/qa"} {
		if pkg == light {
			return false
		}
	}
	for _, p := range []string{us + "ca", us + "db", us + "station", us + "devices", us + "ui", us + "cmd/wsc",
		"github.com/smallstep/", "go.step.sm/", "github.com/mattn/go-sqlite3", "github.com/jackc/pgx", "github.com/google/go-tpm"} {
		if pkg == p || strings.HasPrefix(pkg, strings.TrimSuffix(p, "/")+"/") || (strings.HasSuffix(p, "/") && strings.HasPrefix(pkg, p)) {
			if pkg == us+"cmd/wsc/front" {
				continue
			}
			return true
		}
	}
	return false
}

// TestFrontLinksNoHeavyPackage fails when the front links a package of the
// CA, the databases, the station or the devices (go list -deps).
func TestFrontLinksNoHeavyPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 || !bytes.Contains(out, []byte("github.com/spf13/cobra")) || !bytes.Contains(out, []byte("github.com/wsc-project/wsc/wasmsign")) {
		t.Fatalf("go list gave an implausible dependency list:\n%s", out)
	}
	for _, d := range deps {
		if heavy(d) {
			t.Errorf("the front links %s", d)
		}
	}
	// The rule itself: what it must catch.
	for _, d := range []string{"github.com/wsc-project/wsc/ca", "github.com/wsc-project/wsc/db", "github.com/wsc-project/wsc/station",
		"github.com/wsc-project/wsc/ui", "github.com/smallstep/certificates/authority", "go.step.sm/crypto/pemutil", "github.com/mattn/go-sqlite3"} {
		if !heavy(d) {
			t.Errorf("heavy(%q) = false", d)
		}
	}
}

var (
	buildOnce         sync.Once
	frontBin, fullBin string
	buildErr          error
	buildDir          string
)

// binaries builds the front (wsc) and the full binary (wsc-station, with
// the build tags of scripts/build-tags) side by side, once per test run.
func binaries(t *testing.T) (front, full string) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "wsc-front-test-")
		if buildErr != nil {
			return
		}
		tags, err := os.ReadFile("../../../scripts/build-tags")
		if err != nil {
			buildErr = err
			return
		}
		frontBin, fullBin = filepath.Join(buildDir, "wsc"), filepath.Join(buildDir, "wsc-station")
		for _, b := range [][]string{{"-o", frontBin, "."}, {"-tags", strings.TrimSpace(string(tags)), "-o", fullBin, "github.com/wsc-project/wsc/cmd/wsc"}} {
			if out, err := exec.Command("go", append([]string{"build"}, b...)...).CombinedOutput(); err != nil {
				buildErr = errors.New(string(out))
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("build: %v", buildErr)
	}
	return frontBin, fullBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// runBin runs bin with args; station sets WSC_STATION_BIN ("" leaves it
// unset: the front looks next to itself).
func runBin(t *testing.T, bin, station string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	env := []string{}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, stationEnv+"=") {
			env = append(env, e)
		}
	}
	if station != "" {
		env = append(env, stationEnv+"="+station)
	}
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run %s %v: %v", bin, args, err)
	}
	return r
}

// signedModules writes a trust bundle (root + its CRL) and two modules
// signed by a device leaf under it, the second tampered after signing.
func signedModules(t *testing.T) (bundle, good, bad string) {
	t.Helper()
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "front test root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, rt, rt, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	lt := &x509.Certificate{SerialNumber: big.NewInt(0x5f3a01), Subject: pkix.Name{CommonName: "device SIM-0001", SerialNumber: "SIM-0001"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	if der, err = x509.CreateCertificate(rand.Reader, lt, root, &key.PublicKey, rootKey); err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(24 * time.Hour)}, root, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bundle = filepath.Join(dir, "bundle.pem")
	pemOut := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl})...)
	if err := os.WriteFile(bundle, pemOut, 0o644); err != nil {
		t.Fatal(err)
	}
	module := append([]byte("\x00asm\x01\x00\x00\x00\x00\x0b\x04note"), "v1.2.3"...)
	signed, err := wasmsign.Sign(module, key, []*x509.Certificate{leaf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	good, bad = filepath.Join(dir, "good.wasm"), filepath.Join(dir, "bad.wasm")
	tampered := bytes.Clone(signed)
	tampered[len(tampered)-1] ^= 1
	for p, b := range map[string][]byte{good: signed, bad: tampered} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return bundle, good, bad
}

// TestFrontRunsItsOwnCommands: with the full binary pointed at a file that
// does not exist, version, --version, verify (every exit code), help and
// the exit-codes topic still work: the front runs them itself.
func TestFrontRunsItsOwnCommands(t *testing.T) {
	front, _ := binaries(t)
	missing := filepath.Join(t.TempDir(), "no-wsc-station")
	bundle, good, bad := signedModules(t)
	for _, tt := range []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"version", []string{"version"}, 0, "wsc"},
		{"version json", []string{"version", "--json"}, 0, `"program": "wsc"`},
		{"--version", []string{"--version"}, 0, "wsc"},
		{"verify valid", []string{"verify", "--trust", bundle, good}, 0, "1 modules: 1 valid"},
		{"verify json", []string{"verify", "--json", "--trust", bundle, good}, 0, `"valid": 1`},
		{"verify invalid", []string{"verify", "--trust", bundle, good, bad}, 1, "1 invalid"},
		{"verify missing trust flag", []string{"verify", good}, 2, ""},
		{"verify missing path", []string{"verify", "--trust", bundle, filepath.Join(t.TempDir(), "nope.wasm")}, 2, ""},
		{"verify bad --at", []string{"verify", "--trust", bundle, "--at", "yesterday", good}, 2, ""},
		{"help exit-codes", []string{"help", "exit-codes"}, 0, "A script can therefore tell bad firmware (1)"},
		{"unknown command", []string{"frobnicate"}, 2, ""},
		{"qa without a terminal", []string{"qa", "--trust", bundle}, 2, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runBin(t, front, missing, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stdout, tt.out) {
				t.Fatalf("wsc %v: exit %d (want %d)\nstdout: %s\nstderr: %s", tt.args, r.code, tt.code, r.stdout, r.stderr)
			}
			if strings.Contains(r.stderr, "wsc-station") {
				t.Fatalf("wsc %v reached for the full binary: %s", tt.args, r.stderr)
			}
		})
	}
}

// TestFrontHelpListsEveryCommand: `wsc --help` of the front is the full
// binary's, command for command.
func TestFrontHelpListsEveryCommand(t *testing.T) {
	front, full := binaries(t)
	missing := filepath.Join(t.TempDir(), "no-wsc-station")
	f, s := runBin(t, front, missing, "--help"), runBin(t, full, "", "--help")
	if f.code != 0 || s.code != 0 {
		t.Fatalf("--help: front exit %d, full exit %d", f.code, s.code)
	}
	if f.stdout != s.stdout {
		t.Fatalf("wsc --help differs between the front and the full binary:\nfront:\n%s\nfull:\n%s", f.stdout, s.stdout)
	}
	for _, c := range cli.StationCommands {
		if !strings.Contains(f.stdout, c.Short) {
			t.Errorf("--help lacks %s: %s", c.Name, c.Short)
		}
	}
}

// TestFrontHandsOver: station commands run in the full binary through
// execve — found next to the front or through WSC_STATION_BIN — with the
// exit code unchanged; without the full binary they exit 3 with an
// instruction.
func TestFrontHandsOver(t *testing.T) {
	front, full := binaries(t)
	missing := filepath.Join(t.TempDir(), "no-wsc-station")
	noDB := filepath.Join(t.TempDir(), "missing", "station.db")
	for _, tt := range []struct {
		name string
		args []string
		out  string
	}{
		{"ca help", []string{"ca", "--help"}, "Ceremonies on the station's offline CA"},
		{"help ca", []string{"help", "ca"}, "Ceremonies on the station's offline CA"},
		{"db stats on a missing database", []string{"db", "stats", "--db", noDB}, ""},
		{"unknown ca subcommand", []string{"ca", "frobnicate"}, ""},
		{"bad flag", []string{"demo", "--mix", "foo", "--no-such-flag"}, ""},
		{"completion", []string{"completion", "bash"}, "bash completion"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := runBin(t, full, "", tt.args...)
			for _, station := range []string{"", full} { // next to the front, then by the variable
				got := runBin(t, front, station, tt.args...)
				if got.code != want.code || got.stdout != want.stdout || got.stderr != want.stderr {
					t.Fatalf("wsc %v (WSC_STATION_BIN=%q): exit %d, want %d as wsc-station\nstdout: %s\nstderr: %s\nwsc-station stderr: %s",
						tt.args, station, got.code, want.code, got.stdout, got.stderr, want.stderr)
				}
				if !strings.Contains(got.stdout, tt.out) {
					t.Fatalf("wsc %v: stdout lacks %q:\n%s", tt.args, tt.out, got.stdout)
				}
			}
			r := runBin(t, front, missing, tt.args...)
			if r.code != 3 || !strings.Contains(r.stderr, "install wsc-station next to wsc: make build") || !strings.Contains(r.stderr, missing) {
				t.Fatalf("wsc %v without the full binary: exit %d\n%s", tt.args, r.code, r.stderr)
			}
		})
	}
	// The codes themselves, as today: a missing database is a usage error
	// (2), an unknown subcommand too.
	if r := runBin(t, front, full, "db", "stats", "--db", noDB); r.code != 2 {
		t.Errorf("db stats on a missing database: exit %d, want 2\n%s", r.code, r.stderr)
	}
	if r := runBin(t, front, full, "ca", "frobnicate"); r.code != 2 {
		t.Errorf("ca frobnicate: exit %d, want 2", r.code)
	}
}

// TestFrontVerifyRecordsThroughStation: `wsc verify --db` needs the
// station database, so the front hands the whole command line over; the
// verdict (exit 1 for a tampered module) comes back unchanged, and the
// output is the full binary's.
func TestFrontVerifyRecordsThroughStation(t *testing.T) {
	front, full := binaries(t)
	bundle, _, bad := signedModules(t)
	dbPath := filepath.Join(t.TempDir(), "station.db")
	args := []string{"verify", "--trust", bundle, "--db", dbPath, bad}
	want := runBin(t, full, "", args...)
	got := runBin(t, front, full, args...)
	// Only the full binary records (and says what it did not record).
	if got.code != 1 || !strings.Contains(got.stdout, "not recorded: their signer is not a device of this station's database") {
		t.Fatalf("verify --db of a tampered module: exit %d\n%s%s", got.code, got.stdout, got.stderr)
	}
	// (The outputs differ only in the second of "checked now".)
	if got.code != want.code || got.stderr != want.stderr {
		t.Fatalf("verify --db: front exit %d, full exit %d\nfront: %s%s\nfull: %s%s", got.code, want.code, got.stdout, got.stderr, want.stdout, want.stderr)
	}
	if r := runBin(t, front, filepath.Join(t.TempDir(), "none"), args...); r.code != 3 || !strings.Contains(r.stderr, "make build") {
		t.Fatalf("verify --db without the full binary: exit %d\n%s", r.code, r.stderr)
	}
}
