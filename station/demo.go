package station

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/sim"
	"github.com/wsc-project/wsc/wasmsign"
)

// DemoConfig describes a demo run: a fresh CA, N simulated devices (TPM,
// or TPM and secure element as Mix says) and the whole provisioning
// sequence for each.
type DemoConfig struct {
	// Workspace is the folder everything goes in (created if missing).
	Workspace string
	// Devices is the number of simulated devices.
	Devices int
	// AgentBinary is the wsc-agent executable the simulated devices run.
	AgentBinary string
	// LatencyProfile makes every agent wait as a real TPM chip would; with
	// it, secure elements take the ATECC608 datasheet's execution times.
	LatencyProfile string
	// Mix assigns device kinds round-robin ("tpm", "se"); empty: all TPM.
	Mix []string
	// Events receives every slot event (safe for concurrent use).
	Events func(Event)
	// Progress receives set-up messages.
	Progress func(string)
}

// DemoReport is what a demo run produced.
type DemoReport struct {
	Workspace string
	Outcomes  []Outcome
	Wall      time.Duration
	// SetUp is the time spent creating the CA and the devices.
	SetUp time.Duration
	// QA holds the verification of every module signed at end of line.
	QA []wasmsign.Result
}

// Failed counts the devices that were not provisioned, or whose signed
// module did not pass QA verification.
func (r *DemoReport) Failed() int {
	n := 0
	for _, o := range r.Outcomes {
		if o.Err != nil {
			n++
		}
	}
	for _, q := range r.QA {
		if q.Status != wasmsign.StatusValid {
			n++
		}
	}
	return n
}

// writeDemoBundle writes the CA's roots and intermediates as a PEM trust
// bundle for QA.
func writeDemoBundle(c interface {
	Roots() []*x509.Certificate
	Intermediates() []*x509.Certificate
}, path string) (string, error) {
	var b []byte
	for _, cert := range append(c.Roots(), c.Intermediates()...) {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})...)
	}
	return path, os.WriteFile(path, b, 0o644)
}

// DemoPassphraseFile is the name of the file in the workspace that holds
// the demo CA's passphrase. A real CA's passphrase is never kept in a file
// beside it; the file's first line says so.
const DemoPassphraseFile = "DEMO-ONLY-ca-passphrase.txt"

// DemoWorkOrder is the work order the demo's devices count against.
const DemoWorkOrder = "DEMO"

// RunDemo creates a private CA in Workspace/ca, starts the simulated
// devices, provisions all of them concurrently, records everything in
// Workspace/station.db and stops every process it started.
func RunDemo(ctx context.Context, cfg DemoConfig) (rep *DemoReport, err error) {
	t0 := time.Now()
	if cfg.Devices < 1 {
		return nil, fmt.Errorf("demo needs at least one device, got %d", cfg.Devices)
	}
	progress := cfg.Progress
	if progress == nil {
		progress = func(string) {}
	}
	ws := cfg.Workspace
	if err := os.MkdirAll(ws, 0o700); err != nil {
		return nil, fmt.Errorf("workspace: %w", err)
	}
	pass, err := demoPassphrase(filepath.Join(ws, DemoPassphraseFile))
	if err != nil {
		return nil, err
	}
	caDir := filepath.Join(ws, "ca")
	if _, err := os.Stat(filepath.Join(caDir, "root.crt")); errors.Is(err, os.ErrNotExist) {
		progress("creating the private CA (root + station intermediate, P-256, keys PKCS#8-encrypted)")
		if err := ca.Init(caDir, pass, ca.InitOptions{}); err != nil {
			return nil, fmt.Errorf("create CA: %w", err)
		}
		// The explicit initialisation of the audit key, as `wsc ca init` does.
		_, fp, err := CreateAuditKey(caDir, pass)
		if err != nil {
			return nil, err
		}
		progress("audit key created; fingerprint to pin: " + fp)
	}
	auditKey, err := ca.AuditKey(caDir, pass)
	if err != nil {
		return nil, err
	}
	store, err := db.Open(filepath.Join(ws, "station.db"), db.WithActor("demo-station"), db.WithAuditSigner(auditKey, 0),
		db.WithWitness(filepath.Join(caDir, DefaultWitnessFile)))
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	defer store.Close()
	// The CA's embedded authority records into the station database
	// (smallstep AuthDB): issued certificates, revocations, CRL numbers.
	authority, err := ca.Open(caDir, pass, ca.WithStore(CAStore(store)), ca.WithAuditor(store, "demo-station"))
	if err != nil {
		return nil, fmt.Errorf("open CA: %w", err)
	}
	defer authority.Close()
	wo := WorkOrder{ID: DemoWorkOrder, Product: "demo-board", Quantity: max(cfg.Devices, 1000), Lock: "none"}
	if err := EnsureWorkOrder(ctx, store, wo); err != nil {
		return nil, err
	}

	bench, err := sim.StartBench(ctx, sim.BenchConfig{
		Dir: ws, N: cfg.Devices, SerialPrefix: "SIM", AgentBinary: cfg.AgentBinary, Mix: cfg.Mix,
		LatencyProfile: cfg.LatencyProfile, SEDatasheetTimings: cfg.LatencyProfile != "",
		AgentLogDir: filepath.Join(ws, "logs"), Progress: progress,
	})
	if err != nil {
		return nil, fmt.Errorf("start simulated devices: %w", err)
	}
	defer bench.Close()
	pcfg := Config{
		Issuer: authority, Store: store,
		Station: "demo-station", Operator: "demo", WorkOrder: DemoWorkOrder, EOLModuleDir: filepath.Join(ws, "firmware"),
	}
	// The demo's work order accepts what its simulated vendors can prove:
	// TPMs and secure elements, each against its vendor's published root.
	var proofs []string
	fc := FileConfig{}
	if bench.VendorRoot != "" { // the bench has TPM devices
		proofs = append(proofs, "tpm")
		fc.TPMVendorRoots, fc.TPMVendorIntermediates = []string{bench.VendorRoot}, []string{bench.VendorIssuer}
	}
	if bench.SEVendorRoot != "" { // the bench has secure elements
		proofs = append(proofs, "atecc608")
		fc.SEVendorRoots, fc.SEVendorIntermediates = []string{bench.SEVendorRoot}, []string{bench.SEVendorIssuer}
	}
	fc.WorkOrder.Proofs = proofs
	if pcfg.Proofs, err = fc.ProofPolicy(); err != nil {
		return nil, err
	}
	p, err := NewProvisioner(pcfg)
	if err != nil {
		return nil, err
	}
	jobs := make([]Job, len(bench.Devices))
	for i, d := range bench.Devices {
		jobs[i] = Job{Slot: i + 1, Port: d.Port}
	}
	setUp := time.Since(t0)
	progress(fmt.Sprintf("provisioning %d devices", len(jobs)))
	outcomes := p.RunJobs(ctx, jobs, cfg.Events)
	rep = &DemoReport{Workspace: ws, Outcomes: outcomes, SetUp: setUp}
	// QA: verify every module the devices signed at end of line, as QA
	// verifies firmware, against a trust bundle written from the CA.
	bundle, err := writeDemoBundle(authority, filepath.Join(ws, "trust-bundle.pem"))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(ws, "firmware")); err == nil {
		progress("QA: verifying the modules the devices signed against " + bundle)
		// AllowMissingCRL until the demo's bundle carries a CRL of every CA
		// (wsc ca bundle); each result then says revocation was not checked.
		rep.QA, err = wasmsign.BatchVerify(ctx, []string{filepath.Join(ws, "firmware")}, &wasmsign.TrustPolicy{Roots: authority.Roots(), Intermediates: authority.Intermediates(), AllowMissingCRL: true}, 0, nil)
		if err != nil {
			return nil, fmt.Errorf("QA verification: %w", err)
		}
	}
	rep.Wall = time.Since(t0)
	return rep, nil
}

// demoPassphrase reads the demo passphrase file, creating it with a fresh
// random passphrase when it does not exist.
func demoPassphrase(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		raw := make([]byte, 24)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		pass := base64.RawURLEncoding.EncodeToString(raw)
		body := "# DEMO ONLY: the passphrase of the demo CA in ./ca. A real CA passphrase is typed at a prompt or\n" +
			"# passed through a file descriptor, and never kept next to the CA. The last line is the passphrase.\n" + pass + "\n"
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			return nil, fmt.Errorf("write demo passphrase: %w", err)
		}
		return []byte(pass), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read demo passphrase: %w", err)
	}
	var last []byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 && line[0] != '#' {
			last = append([]byte(nil), line...)
		}
	}
	if len(last) == 0 {
		return nil, fmt.Errorf("demo passphrase file %s holds no passphrase", path)
	}
	return last, nil
}
