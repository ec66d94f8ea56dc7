package station

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/anchors"
	"github.com/wsc-project/wsc/devices/sim"
	"github.com/wsc-project/wsc/devices/tpm"
	"github.com/wsc-project/wsc/wasmsign"
)

// trustProvisioner is the line's provisioner with the issue-15 work order:
// firmware trust under the line's CA roots, owner authorisation sealed to
// a fresh escrow key (returned with its private half).
func trustProvisioner(t *testing.T, l *testLine, mod func(*Config)) (*Provisioner, *EscrowPrivateKey) {
	t.Helper()
	dir := t.TempDir()
	pass := []byte("escrow test passphrase")
	pubPath, privPath, err := GenerateEscrowKey(dir, pass)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadEscrowPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := LoadEscrowPrivateKey(privPath, pass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadEscrowPrivateKey(privPath, []byte("wrong")); !errors.Is(err, ErrOwnerAuth) {
		t.Fatalf("escrow key opened with a wrong passphrase: %v", err)
	}
	cfg := l.prov.cfg
	cfg.EOLModuleDir = filepath.Join(dir, "eol")
	cfg.Trust = TrustConfig{Firmware: &FirmwareTrust{PolicyVersion: 3, DeviceClass: "gw-1", Roots: l.ca.Roots()}, OwnerAuth: OwnerAuthPolicy{Escrow: pub}}
	if mod != nil {
		mod(&cfg)
	}
	if err := cfg.Trust.Check(); err != nil {
		t.Fatal(err)
	}
	p, err := NewProvisioner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, priv
}

// swtpmTCTI stops the device's agent (swtpm serves one client) and
// returns a tpm2-tools TCTI for its TPM.
func swtpmTCTI(t *testing.T, d *sim.Device) string {
	t.Helper()
	if err := d.StopAgent(); err != nil {
		t.Fatal(err)
	}
	return testenv.SWTPMTCTI(t, d.TPM.Socket)
}

func tpm2Run(t *testing.T, tcti string, args ...string) (string, error) {
	t.Helper()
	return testenv.TPM2(t, tcti, args...)
}

// TestProvisionTrustSigningKeyOwnerAuth: one run of the station's sequence
// on swtpm over a real pty ends with an IDevID (clientAuth only), an
// LDevID (codeSigning only, its own key, recorded as the device's live
// signing certificate and confirmed), the end-of-line module signed by
// the LDevID and verifying under codeSigning, the anchors in NV readable
// with tpm2_nvread and write-locked per tpm2_nvreadpublic, and the owner
// authorisation sealed in the database: it opens only with the escrow
// private key and its binding, it works as the owner authorisation on the
// chip, and the empty one no longer does.
func TestProvisionTrustSigningKeyOwnerAuth(t *testing.T) {
	testenvTools(t, "tpm2_nvread", "tpm2_nvreadpublic", "tpm2_nvdefine")
	ctx := context.Background()
	l := newTestLine(t, 1, "")
	p, escrow := trustProvisioner(t, l, nil)
	d := l.bench.Devices[0]
	res, err := p.Provision(ctx, Job{Slot: 1, Port: d.Port})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Chain[0].ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Fatalf("IDevID EKUs %v, want clientAuth only", res.Chain[0].ExtKeyUsage)
	}
	if len(res.SigningChain) == 0 || !slices.Equal(res.SigningChain[0].ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}) {
		t.Fatalf("LDevID chain %d certificates", len(res.SigningChain))
	}
	ld := res.SigningChain[0]
	if ld.Subject.SerialNumber != d.Serial || bytes.Equal(ld.RawSubjectPublicKeyInfo, res.Chain[0].RawSubjectPublicKeyInfo) {
		t.Fatalf("LDevID subject %v, same key as the IDevID: %v", ld.Subject, bytes.Equal(ld.RawSubjectPublicKeyInfo, res.Chain[0].RawSubjectPublicKeyInfo))
	}
	id, err := l.store.LiveCertificate(ctx, d.Serial)
	if err != nil || !bytes.Equal(id.DER, res.Chain[0].Raw) || id.Status != db.CertConfirmed {
		t.Fatalf("recorded IDevID: %+v, %v", id, err)
	}
	sc, err := l.store.LiveSigningCertificate(ctx, d.Serial)
	if err != nil || !bytes.Equal(sc.DER, ld.Raw) || sc.Status != db.CertConfirmed {
		t.Fatalf("recorded LDevID: %+v, %v", sc, err)
	}

	// The end-of-line module: signed by the LDevID, verified as QA does.
	mod, err := os.ReadFile(filepath.Join(p.cfg.EOLModuleDir, d.Serial+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	vr, err := wasmsign.Verify(mod, &wasmsign.TrustPolicy{Roots: l.ca.Roots(), Intermediates: l.ca.Intermediates(), AllowMissingCRL: true})
	if err != nil || vr.DeviceSerial != d.Serial {
		t.Fatalf("EOL module: %v", err)
	}
	if !bytes.Equal(vr.Chain[0].Raw, ld.Raw) {
		t.Fatal("the EOL module is not signed by the LDevID")
	}

	// The ledger: the signing certificate, the sealed and set owner
	// authorisation, the anchors' digest and policy version.
	entries, err := l.store.AuditEntries(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range entries {
		switch {
		case e.Kind == "cert.issue" && strings.Contains(string(e.Detail), `"role":"ldevid"`):
			kinds["cert.issue ldevid"]++
		case e.Kind == "trust.anchors" && strings.Contains(string(e.Detail), `"policy_version":3`) && strings.Contains(string(e.Detail), `"anchors_sha256"`):
			kinds[e.Kind]++
		case strings.HasPrefix(e.Kind, "owner_auth."):
			kinds[e.Kind]++
		}
	}
	if kinds["cert.issue ldevid"] != 1 || kinds["trust.anchors"] != 1 || kinds["owner_auth.seal"] != 1 || kinds["owner_auth.set"] != 1 {
		t.Fatalf("ledger rows %v", kinds)
	}

	// The sealed owner authorisation.
	recs, err := l.store.OwnerAuths(ctx, d.Serial)
	if err != nil || len(recs) != 1 || recs[0].Policy != db.OwnerAuthSealed || recs[0].State != db.OwnerAuthSet {
		t.Fatalf("owner auth records %+v, %v", recs, err)
	}
	auth, err := UnsealOwnerAuth(escrow, recs[0])
	if err != nil || len(auth) != 32 {
		t.Fatalf("unseal: %v", err)
	}
	for _, s := range []string{fmt.Sprint(auth), fmt.Sprintf("%x %X %v %+v %#v %s %d %q", auth, auth, auth, auth, auth, auth, auth, auth), fmt.Sprint(escrow), fmt.Sprintf("%#v", escrow)} {
		if strings.Contains(strings.ToLower(s), fmt.Sprintf("%x", []byte(auth))[:16]) || strings.Contains(s, fmt.Sprint([]byte(auth))[1:12]) {
			t.Fatalf("the owner authorisation prints: %s", s)
		}
	}
	other := recs[0]
	other.DeviceSerial = "OTHER-1"
	if _, err := UnsealOwnerAuth(escrow, other); !errors.Is(err, ErrUnseal) {
		t.Fatalf("unsealed under another serial: %v", err)
	}
	_, otherPriv := trustProvisioner(t, l, nil)
	if _, err := UnsealOwnerAuth(otherPriv, recs[0]); !errors.Is(err, ErrUnseal) {
		t.Fatalf("unsealed with another escrow key: %v", err)
	}

	// Independent reader: tpm2-tools on the device's TPM.
	tcti := swtpmTCTI(t, d)
	idx := fmt.Sprintf("%#x", tpm.DefaultAnchorsIndex)
	pub, err := tpm2Run(t, tcti, "tpm2_nvreadpublic", idx)
	if err != nil || !strings.Contains(pub, "writelocked") {
		t.Fatalf("tpm2_nvreadpublic: %v\n%s", err, pub)
	}
	out := filepath.Join(t.TempDir(), "anchors.bin")
	if b, err := tpm2Run(t, tcti, "tpm2_nvread", "-C", idx, "-o", out, idx); err != nil {
		t.Fatalf("tpm2_nvread: %v\n%s", err, b)
	}
	enc, _ := os.ReadFile(out)
	pol, err := anchors.Parse(enc)
	if err != nil || pol.Version != 3 || pol.DeviceClass != "gw-1" || !pol.HasRoot(anchors.RootFingerprint(l.ca.Roots()[0])) {
		t.Fatalf("anchors read by tpm2_nvread: %+v, %v", pol, err)
	}
	// The empty owner authorisation no longer works; the unsealed one does.
	if b, err := tpm2Run(t, tcti, "tpm2_nvdefine", "-C", "o", "-s", "8", "0x01500040"); err == nil {
		t.Fatalf("tpm2_nvdefine with the empty owner authorisation succeeded:\n%s", b)
	}
	if b, err := tpm2Run(t, tcti, "tpm2_nvdefine", "-C", "o", "-P", auth.Hex(), "-s", "8", "0x01500040"); err != nil {
		t.Fatalf("tpm2_nvdefine with the unsealed owner authorisation: %v\n%s", err, b)
	}
	// The lockout hierarchy (which authorizes TPM2_Clear) has a value too:
	// with the empty factory value anyone could clear the chip and define
	// the anchors afresh. Read by tpm2-tools, without trying it (a failed
	// lockout authorization locks the hierarchy out).
	if b, err := tpm2Run(t, tcti, "tpm2_getcap", "properties-variable"); err != nil || !regexp.MustCompile(`lockoutAuthSet:\s+1`).MatchString(b) {
		t.Fatalf("tpm2_getcap: lockout authorization not set (%v):\n%s", err, b)
	}
	if err := d.StartAgent(); err != nil {
		t.Fatal(err)
	}
	// A second run on the line cannot know the sealed value: refused with
	// an instruction for the RMA desk, nothing revoked.
	_, err = p.Provision(ctx, Job{Slot: 1, Port: d.Port})
	if !errors.Is(err, ErrOwnerAuthSealed) || ReasonCode(err) != ReasonOwnerAuthSealed {
		t.Fatalf("second run over a sealed owner authorisation: %v (%s)", err, ReasonCode(err))
	}
	var se *StepError
	if !errors.As(err, &se) || !strings.Contains(se.Instruction, "RMA desk") {
		t.Fatalf("no RMA instruction: %v", err)
	}
	if c, err := l.store.LiveSigningCertificate(ctx, d.Serial); err != nil || c.SerialHex != sc.SerialHex {
		t.Fatalf("the signing certificate changed: %v", err)
	}
}

// TestTrustFaultPoints: a failure injected at each issue-15 point (in an
// order drawn from a printed seed, one device per point) fails the run
// with the step's reason code and revokes every certificate the run
// issued — identity and signing — each point hit exactly once.
func TestTrustFaultPoints(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("WSC_FAULT_SEED"); v != "" {
		fmt.Sscan(v, &seed)
	}
	t.Logf("seed %d (WSC_FAULT_SEED)", seed)
	points := slices.Clone(TrustFaultPoints)
	rand.New(rand.NewPCG(seed, seed)).Shuffle(len(points), func(i, j int) { points[i], points[j] = points[j], points[i] })
	want := map[string]string{FaultSigningKey: ReasonSigningKey, FaultOwnerAuthSealed: ReasonOwnerAuth, FaultAnchors: ReasonAnchors}
	sentinel := map[string]error{FaultSigningKey: ErrSigningKey, FaultOwnerAuthSealed: ErrOwnerAuth, FaultAnchors: ErrAnchors}

	ctx := context.Background()
	l := newTestLine(t, len(points), "")
	var mu sync.Mutex
	var armed string
	hits := map[string]int{}
	p, _ := trustProvisioner(t, l, func(c *Config) {
		c.FaultInject = func(point string) error {
			mu.Lock()
			defer mu.Unlock()
			if point != armed {
				return nil
			}
			hits[point]++
			return fmt.Errorf("%w: injected at %s", sentinel[point], point)
		}
	})
	for i, point := range points {
		d := l.bench.Devices[i]
		mu.Lock()
		armed = point
		mu.Unlock()
		_, err := p.Provision(ctx, Job{Slot: i + 1, Port: d.Port})
		if err == nil || ReasonCode(err) != want[point] {
			t.Fatalf("%s at %s: %v (reason %s, want %s)", d.Serial, point, err, ReasonCode(err), want[point])
		}
		certs, err := l.store.Certificates(ctx, d.Serial)
		if err != nil {
			t.Fatal(err)
		}
		sigs, err := l.store.SigningCertificates(ctx, d.Serial)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, sigs...)
		if len(certs) != 2 {
			t.Fatalf("%s at %s: %d certificates issued, want identity and signing", d.Serial, point, len(certs))
		}
		for _, c := range certs {
			if c.RevokedAt == nil {
				t.Errorf("%s at %s: certificate %s left live (%s)", d.Serial, point, c.SerialHex, c.Status)
			}
		}
		recs, _ := l.store.OwnerAuths(ctx, d.Serial)
		switch point {
		case FaultSigningKey:
			if len(recs) != 0 {
				t.Errorf("%s: owner authorisation recorded before the anchors step", d.Serial)
			}
		case FaultOwnerAuthSealed:
			if len(recs) != 1 || recs[0].State != db.OwnerAuthAbandoned {
				t.Errorf("%s: sealed-not-set record %+v", d.Serial, recs)
			}
		case FaultAnchors:
			if len(recs) != 1 || recs[0].State != db.OwnerAuthSet {
				t.Errorf("%s: set record %+v", d.Serial, recs)
			}
		}
	}
	for _, point := range TrustFaultPoints {
		if hits[point] != 1 {
			t.Errorf("seed %d: point %s hit %d times, want 1", seed, point, hits[point])
		}
	}
}

// TestSESignsWithIDevID: with the same work order an ATECC608 device gets
// no signing key; its IDevID keeps the profile's codeSigning and signs the
// end-of-line module; its firmware trust anchors go into the chip's data
// zone and are recorded, with no owner authorisation (a secure element
// has none).
func TestSESignsWithIDevID(t *testing.T) {
	ctx := context.Background()
	l := newTestLineOpts(t, sim.BenchConfig{N: 1, Mix: []string{"se"}})
	p, _ := trustProvisioner(t, l, nil)
	d := l.bench.Devices[0]
	res, err := p.Provision(ctx, Job{Slot: 1, Port: d.Port})
	if err != nil {
		t.Fatal(err)
	}
	if recs, err := l.store.OwnerAuths(ctx, d.Serial); err != nil || len(recs) != 0 {
		t.Fatalf("SE owner authorisation records: %d, %v", len(recs), err)
	}
	entries, err := l.store.AuditEntries(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	anchorsRows := 0
	for _, e := range entries {
		if e.Kind == "trust.anchors" && strings.Contains(string(e.Detail), `"device":"`+d.Serial+`"`) && strings.Contains(string(e.Detail), `"policy_version":3`) {
			anchorsRows++
		}
	}
	if anchorsRows != 1 {
		t.Fatalf("%d trust.anchors ledger rows for the SE, want 1", anchorsRows)
	}
	if res.SigningChain != nil || !slices.Contains(res.Chain[0].ExtKeyUsage, x509.ExtKeyUsageCodeSigning) {
		t.Fatalf("SE: signing chain %v, IDevID EKUs %v", res.SigningChain != nil, res.Chain[0].ExtKeyUsage)
	}
	if _, err := l.store.LiveSigningCertificate(ctx, d.Serial); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("SE has a signing certificate: %v", err)
	}
}

func testenvTools(t *testing.T, tools ...string) {
	t.Helper()
	testenv.NeedTools(t, tools...)
}

// BenchmarkEOLExtraSLB9670 is the whole provisioning sequence of one
// fresh TPM device on the SLB9670 latency profile with its cable paced at
// 115200 baud (as BenchmarkBenchThroughput), without the issue-15 steps
// (signing_key off, no firmware trust) and with all of them (signing key,
// EOL check with it, owner authorisation sealed and set, counter, anchors
// written, locked and read back). The difference of the two is the extra
// end-of-line work per device. A fresh device per iteration: the anchors
// are locked for good.
func BenchmarkEOLExtraSLB9670(b *testing.B) {
	benchEOLExtra(b, 1)
}

// BenchmarkEOLExtraThroughputSLB9670 is BenchmarkEOLExtraSLB9670 on a bench
// of 8 slots provisioned together (as BenchmarkBenchThroughput's
// devices=8): ms/device is the round's time divided by 8, the time each
// device costs the line; the difference of the two runs is what the
// issue-15 steps add per device in the bench's throughput.
func BenchmarkEOLExtraThroughputSLB9670(b *testing.B) {
	benchEOLExtra(b, 8)
}

func benchEOLExtra(b *testing.B, slots int) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("issue15=%v", on), func(b *testing.B) {
			var total time.Duration
			n := 0
			for b.Loop() {
				b.StopTimer()
				l := newTestLineOpts(b, sim.BenchConfig{N: slots, LatencyProfile: "slb9670", Baud: 115200})
				cfg := l.prov.cfg
				if on {
					pubPath, _, err := GenerateEscrowKey(b.TempDir(), []byte("bench escrow passphrase"))
					if err != nil {
						b.Fatal(err)
					}
					pub, err := LoadEscrowPublicKey(pubPath)
					if err != nil {
						b.Fatal(err)
					}
					cfg.Trust = TrustConfig{Firmware: &FirmwareTrust{PolicyVersion: 1, DeviceClass: "gw-1", Roots: l.ca.Roots()}, OwnerAuth: OwnerAuthPolicy{Escrow: pub}}
				} else {
					cfg.Trust = TrustConfig{SigningKey: SigningKeyOff}
				}
				p, err := NewProvisioner(cfg)
				if err != nil {
					b.Fatal(err)
				}
				jobs := make([]Job, slots)
				for i, d := range l.bench.Devices {
					jobs[i] = Job{Slot: i + 1, Port: d.Port}
				}
				b.StartTimer()
				t0 := time.Now()
				for _, o := range p.RunJobs(context.Background(), jobs, nil) {
					if o.Err != nil {
						b.Fatal(o.Err)
					}
					if on != (o.Result.SigningChain != nil) {
						b.Fatalf("signing chain present: %v", o.Result.SigningChain != nil)
					}
				}
				total += time.Since(t0)
				n += slots
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(n), "ms/device")
		})
	}
}
