package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/wsc-project/wsc/devices/sim"
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"github.com/wsc-project/wsc/devices/tpm"
)

var (
	buildOnce          sync.Once
	builtWSC, builtAgt string
	buildErr           error
)

// buildBinaries builds wsc and wsc-agent (pure Go, as shipped) into a
// temporary folder once per test binary run.
func buildBinaries(t *testing.T) (wsc, agent string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wsc-cmd-test-")
		if err != nil {
			buildErr = err
			return
		}
		builtWSC, builtAgt = filepath.Join(dir, "wsc"), filepath.Join(dir, "wsc-agent")
		for _, b := range []struct {
			out, pkg string
			cgo      string
		}{{builtWSC, ".", "1"}, {builtAgt, "../wsc-agent", "0"}} {
			cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED="+b.cgo)
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtWSC, builtAgt
}

type exportRecord struct {
	Serial        string    `json:"serial"`
	Backend       string    `json:"backend"`
	Status        string    `json:"status"`
	Certificate   string    `json:"certificate"`
	Chain         string    `json:"chain"`
	ProvisionedAt time.Time `json:"provisioned_at"`
}

func parsePEMCerts(t *testing.T, s string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("parse certificate: %v", err)
		}
		out = append(out, c)
	}
	return out
}

// TestDemoEndToEnd runs the real demo (wsc + wsc-agent processes, swtpm
// with EK certificates, pseudo-terminals, SQLite) with 2 devices, then checks
// the records against the CA with crypto/x509 and openssl, and against each
// TPM: the certified key is the TPM-resident IDevID with the required
// attributes, and the chain in NV equals the chain in the database.
func TestDemoEndToEnd(t *testing.T) {
	testenv.NeedTools(t, "swtpm", "swtpm_setup", "swtpm_localca", "openssl")
	wsc, agent := buildBinaries(t)
	ws := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, wsc, "demo", "--devices", "2", "--workspace", ws, "--headless", "--agent", agent).CombinedOutput()
	if err != nil {
		t.Fatalf("wsc demo: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "2 of 2 devices provisioned") {
		t.Fatalf("demo summary missing:\n%s", out)
	}

	// No process the demo started is left behind.
	if ps, _ := exec.Command("pgrep", "-f", ws).Output(); len(bytes.TrimSpace(ps)) > 0 {
		t.Fatalf("processes left running for %s: %s", ws, ps)
	}
	// The after-demo commands the summary prints work as printed: openssl
	// verifies the certificate file the demo wrote, QA's wsc verify accepts
	// every module.
	var opensslLine, qaLine string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "openssl verify ") {
			opensslLine = l
		}
		if rest, ok := strings.CutPrefix(l, "firmware QA: "); ok {
			qaLine = rest
		}
	}
	if opensslLine == "" || qaLine == "" {
		t.Fatalf("the summary does not print the after-demo commands:\n%s", out)
	}
	args := strings.Fields(opensslLine)
	if ov, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil || !strings.Contains(string(ov), ": OK") {
		t.Fatalf("%s: %v\n%s", opensslLine, err, ov)
	}
	args = strings.Fields(qaLine)
	if args[0] != "wsc" {
		t.Fatalf("QA command %q", qaLine)
	}
	if qv, err := exec.Command(wsc, args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", qaLine, err, qv)
	}
	if certs, _ := filepath.Glob(filepath.Join(ws, "certs", "*.pem")); len(certs) != 2 {
		t.Fatalf("certificate files %v, want one per device", certs)
	}

	exp, err := exec.Command(wsc, "db", "export", "--db", filepath.Join(ws, "station.db"), "--format", "json").Output()
	if err != nil {
		t.Fatalf("db export: %v", err)
	}
	var recs []exportRecord
	if err := json.Unmarshal(exp, &recs); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, exp)
	}
	if len(recs) != 2 {
		t.Fatalf("export has %d records, want 2", len(recs))
	}

	caRoot := readPEM(t, filepath.Join(ws, "ca", "root.crt"))
	caInter := readPEM(t, filepath.Join(ws, "ca", "intermediate.crt"))
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(caRoot[0])
	inters.AddCert(caInter[0])

	for _, r := range recs {
		if r.Backend != "tpm" || r.Status != "provisioned" || r.ProvisionedAt.IsZero() {
			t.Errorf("%s: backend=%q status=%q provisioned_at=%v", r.Serial, r.Backend, r.Status, r.ProvisionedAt)
		}
		leaf := parsePEMCerts(t, r.Certificate)[0]
		chain := parsePEMCerts(t, r.Chain)
		if len(chain) < 2 || !chain[0].Equal(leaf) {
			t.Fatalf("%s: chain must be leaf first, got %d certificates", r.Serial, len(chain))
		}
		if leaf.Subject.SerialNumber != r.Serial {
			t.Errorf("%s: subject serialNumber %q", r.Serial, leaf.Subject.SerialNumber)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s: chain does not verify to the root: %v", r.Serial, err)
		}
		// Independent check with openssl.
		leafFile := filepath.Join(t.TempDir(), "leaf.pem")
		if err := os.WriteFile(leafFile, []byte(r.Certificate), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(ws, "ca", "root.crt"),
			"-untrusted", filepath.Join(ws, "ca", "intermediate.crt"), leafFile).CombinedOutput(); err != nil {
			t.Errorf("%s: openssl verify: %v\n%s", r.Serial, err, out)
		}

		// Ask the device's own TPM.
		stateDir := filepath.Join(ws, "devices", r.Serial, "tpm")
		sw, err := sim.StartSWTPM(ctx, stateDir)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := tpm.OpenTransport(sw.URI())
		if err != nil {
			t.Fatal(err)
		}
		dev, err := tpm.New(tr, tpm.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		nvChain, err := dev.ReadChain()
		if err != nil {
			t.Errorf("%s: read chain from NV: %v", r.Serial, err)
		} else if len(nvChain) != len(chain) {
			t.Errorf("%s: NV holds %d certificates, database %d", r.Serial, len(nvChain), len(chain))
		} else {
			for i := range chain {
				if !bytes.Equal(nvChain[i], chain[i].Raw) {
					t.Errorf("%s: NV certificate %d differs from the database", r.Serial, i)
				}
			}
		}
		pub, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(tpm.DefaultConfig().IDevIDHandle)}.Execute(tr)
		if err != nil {
			t.Fatalf("%s: read IDevID public area: %v", r.Serial, err)
		}
		area, err := pub.OutPublic.Contents()
		if err != nil {
			t.Fatal(err)
		}
		a := area.ObjectAttributes
		if !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || !a.SignEncrypt || a.Decrypt || a.Restricted {
			t.Errorf("%s: IDevID attributes %+v", r.Serial, a)
		}
		ecc, err := area.Unique.ECC()
		if err != nil {
			t.Fatal(err)
		}
		lk, err := leaf.PublicKey.(*ecdsa.PublicKey).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		tpmPoint := append(append([]byte{4}, ecc.X.Buffer...), ecc.Y.Buffer...)
		if !bytes.Equal(lk, tpmPoint) {
			t.Errorf("%s: certificate key is not the TPM-resident IDevID key", r.Serial)
		}
		_ = dev.Close()
		_ = tr.Close()

		// wsc-agent info reports the same: serial, backend, the IDevID's
		// public key, the chain's NV indices.
		infoOut, err := exec.Command(agent, "info", "--tpm", sw.URI(), "--device-serial", r.Serial, "--json").Output()
		if err != nil {
			t.Fatalf("%s: wsc-agent info: %v", r.Serial, err)
		}
		var info struct {
			Serial  string `json:"serial"`
			Backend string `json:"backend"`
			Keys    []struct {
				Role         string `json:"role"`
				Handle       uint32 `json:"handle"`
				PublicKeyPEM string `json:"public_key_pem"`
			} `json:"keys"`
			ChainNVIndices []uint32 `json:"chain_nv_indices"`
		}
		if err := json.Unmarshal(infoOut, &info); err != nil {
			t.Fatalf("wsc-agent info --json: %v\n%s", err, infoOut)
		}
		if info.Serial != r.Serial || info.Backend != "tpm" || len(info.ChainNVIndices) == 0 {
			t.Errorf("%s: agent info %+v", r.Serial, info)
		}
		foundKey := false
		for _, k := range info.Keys {
			if k.Role != "idevid" {
				continue
			}
			blk, _ := pem.Decode([]byte(k.PublicKeyPEM))
			pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			foundKey = leaf.PublicKey.(*ecdsa.PublicKey).Equal(pub)
		}
		if !foundKey {
			t.Errorf("%s: agent info does not list the certified IDevID key", r.Serial)
		}
		_ = sw.Close()
	}

	// No plaintext private key anywhere in the workspace.
	err = filepath.WalkDir(ws, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, marker := range []string{"BEGIN PRIVATE KEY", "BEGIN EC PRIVATE KEY", "BEGIN RSA PRIVATE KEY"} {
			if bytes.Contains(b, []byte(marker)) {
				t.Errorf("plaintext private key (%s) in %s", marker, p)
			}
		}
		if bytes.Contains(b, []byte("Proc-Type: 4,ENCRYPTED")) {
			t.Errorf("legacy PEM encryption in %s (must be PKCS#8)", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"root.key", "intermediate.key"} {
		b, err := os.ReadFile(filepath.Join(ws, "ca", k))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("BEGIN ENCRYPTED PRIVATE KEY")) {
			t.Errorf("%s is not PKCS#8-encrypted", k)
		}
	}
}

func readPEM(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parsePEMCerts(t, string(b))
}

// TestDemoInterrupted: ctrl+c (SIGINT) while devices are being provisioned
// stops the demo with exit 130 and a one-line summary; every process it
// started is gone, and the records it leaves pass the audit check.
func TestDemoInterrupted(t *testing.T) {
	testenv.NeedTools(t, "swtpm", "swtpm_setup", "swtpm_localca")
	wsc, agent := buildBinaries(t)
	ws := t.TempDir()
	cmd := exec.Command(wsc, "demo", "--devices", "2", "--latency-profile", "slb9670", "--workspace", ws, "--headless", "--agent", agent)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		// The first key creation is under way: interrupt now.
		if !sent && strings.Contains(line, "step=keys state=running") {
			sent = true
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("interrupted demo: %v, want exit 130\n%s", err, out.String())
	}
	if !sent || !strings.Contains(out.String(), "demo interrupted: ") || !strings.Contains(out.String(), "unfinished; devices stopped") {
		t.Fatalf("no one-line summary:\n%s", out.String())
	}
	if ps, _ := exec.Command("pgrep", "-f", ws).Output(); len(bytes.TrimSpace(ps)) > 0 {
		t.Fatalf("processes left running for %s: %s", ws, ps)
	}
	if b, err := exec.Command(wsc, "audit", "verify", "--config", filepath.Join(ws, "station.yaml")).CombinedOutput(); err != nil {
		t.Fatalf("audit verify after an interrupted demo: %v\n%s", err, b)
	}
}
