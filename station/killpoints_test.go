package station

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
)

// killChildEnv carries the child's job (JSON) when the test binary is
// re-executed as a station that kills itself at a named point.
const killChildEnv = "WSC_KILL_CHILD"

type killJob struct {
	CADir, DB, VendorRoot, VendorIssuer, Port, Point, Marker string
	// EscrowPub, when set, gives the run the issue-15 work order: firmware
	// trust under the CA's roots, owner authorisation sealed to this key.
	EscrowPub, EOLDir string
}

// killChild provisions one device and SIGKILLs itself at the named point,
// after writing the point to the marker file. It returns 0 when the run
// finished without reaching the point, 2 on a set-up error, 3 when the run
// failed.
func killChild() int {
	var j killJob
	if err := json.Unmarshal([]byte(os.Getenv(killChildEnv)), &j); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	store, err := db.Open(j.DB)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c, err := ca.Open(j.CADir, []byte("test passphrase"), ca.WithStore(CAStore(store)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	roots, err := LoadCertPool(j.VendorRoot)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	inter, err := LoadCertPool(j.VendorIssuer)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var trust TrustConfig
	if j.EscrowPub != "" {
		pub, err := LoadEscrowPublicKey(j.EscrowPub)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		trust = TrustConfig{Firmware: &FirmwareTrust{PolicyVersion: 3, DeviceClass: "gw-1", Roots: c.Roots()}, OwnerAuth: OwnerAuthPolicy{Escrow: pub}}
	}
	p, err := NewProvisioner(Config{Issuer: c, Store: store, Station: "kill", Operator: "op", WorkOrder: "WO-1",
		VendorRoots: roots, VendorIntermediates: inter, Trust: trust, EOLModuleDir: j.EOLDir,
		FaultPoint: func(point string) {
			if point != j.Point {
				return
			}
			if err := os.WriteFile(j.Marker, []byte(point), 0o600); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if _, err := p.Provision(context.Background(), Job{Slot: 1, Port: j.Port}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	return 0
}

// TestKillAtNamedPoints kills a station process (SIGKILL) at each named
// point of the sequence — after the intent, after signing, after install,
// after read-back, after end of line — on seeded, shuffled devices, three
// times per point, each time on a device that was just reset so that the
// run issues a new certificate. After every kill the database passes
// integrity_check and the ledger verifies; the next run of that device
// (not killed) passes with at most one live certificate, the one the
// killed run signed when it got that far (delivered again, not issued
// twice). The test counts the kills per point and requires every planned
// kill to have landed at its point.
func TestKillAtNamedPoints(t *testing.T) {
	seed := uint64(20261130)
	t.Logf("seed %d", seed)
	ctx := context.Background()
	l := newTestLine(t, 3, "")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	type cycle struct {
		point string
		dev   int
	}
	var plan []cycle
	rng := rand.New(rand.NewPCG(seed, 1))
	for range 3 {
		for _, p := range FaultPoints {
			plan = append(plan, cycle{p, rng.IntN(len(l.bench.Devices))})
		}
	}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	hits := map[string]int{}
	for i, c := range plan {
		d := l.bench.Devices[c.dev]
		resetDevice(t, d.Port)
		marker := filepath.Join(t.TempDir(), "marker")
		job, _ := json.Marshal(killJob{CADir: filepath.Join(l.dir, "ca"), DB: filepath.Join(l.dir, "station.db"),
			VendorRoot: l.bench.VendorRoot, VendorIssuer: l.bench.VendorIssuer, Port: d.Port, Point: c.point, Marker: marker})
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), killChildEnv+"="+string(job))
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("seed %d cycle %d (%s on %s): child was not killed: %v\n%s", seed, i, c.point, d.Serial, err, out)
		}
		got, err := os.ReadFile(marker)
		if err != nil || string(got) != c.point {
			t.Fatalf("seed %d cycle %d: killed at %q, planned %q (%v)", seed, i, got, c.point, err)
		}
		hits[c.point]++

		if err := l.store.IntegrityCheck(ctx); err != nil {
			t.Fatalf("seed %d cycle %d (%s): %v", seed, i, c.point, err)
		}
		if _, err := l.store.VerifyAudit(ctx, db.AuditVerifyOptions{}); err != nil {
			t.Fatalf("seed %d cycle %d (%s): ledger: %v", seed, i, c.point, err)
		}
		var killedCert string
		if live, err := l.store.LiveCertificate(ctx, d.Serial); err == nil && live.Status != db.CertConfirmed {
			killedCert = live.SerialHex // the killed run signed it and never confirmed it
		}
		res, err := l.prov.Provision(ctx, Job{Slot: 1, Port: d.Port})
		if err != nil {
			t.Fatalf("seed %d cycle %d (%s): the run after the kill failed: %v", seed, i, c.point, err)
		}
		signed := c.point != FaultIntent
		if signed != (killedCert != "") {
			t.Errorf("seed %d cycle %d (%s): unconfirmed certificate after the kill: %q", seed, i, c.point, killedCert)
		}
		if signed && (!res.Redelivered || db.NormalizeSerial(res.CertSerial) != killedCert) {
			t.Errorf("seed %d cycle %d (%s): got %s (redelivered %v), want the killed run's %s delivered again",
				seed, i, c.point, res.CertSerial, res.Redelivered, killedCert)
		}
		certs, err := l.store.Certificates(ctx, d.Serial)
		if err != nil {
			t.Fatal(err)
		}
		live := 0
		for _, cert := range certs {
			if cert.RevokedAt == nil {
				live++
				if cert.Status != db.CertConfirmed {
					t.Errorf("seed %d cycle %d: live certificate %s is %s", seed, i, cert.SerialHex, cert.Status)
				}
			}
		}
		if live != 1 {
			t.Errorf("seed %d cycle %d (%s): %s has %d live certificates", seed, i, c.point, d.Serial, live)
		}
	}
	t.Logf("seed %d: kills per point: %v", seed, hits)
	for _, p := range FaultPoints {
		if hits[p] != 3 {
			t.Errorf("seed %d: %d kills at %s, want 3", seed, hits[p], p)
		}
	}
}
