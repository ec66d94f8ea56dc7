package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/sim"
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"github.com/wsc-project/wsc/station"
)

// TestProvisionReworkChipReset is the RMA round trip through the real
// binaries against swtpm: `wsc provision` with firmware trust seals and
// sets the TPM owner authorisation; a second run is refused with the RMA
// instruction (exit 1); --chip-reset without --rework, and a rework by a
// plain operator, are usage errors (exit 2); the RMA desk unseals the value
// (`wsc owner-auth unseal`), uses it on the chip with tpm2-tools (the
// empty value is refused, the unsealed one resets the owner authorisation)
// and clears the TPM (tpm2_clear); then `wsc provision --rework
// --chip-reset` by a supervisor provisions the device again, the ledger
// holds owner_auth.chip-reset by that supervisor, and `wsc owner-auth
// list` shows both records set, each with its run.
func TestProvisionReworkChipReset(t *testing.T) {
	testenv.NeedTools(t, "tpm2_changeauth", "tpm2_clear", "tpm2_nvdefine")
	f := newStationFixture(t, 1, "")
	wsc, _ := buildBinaries(t)
	d := f.bench.Devices[0]
	ctx := context.Background()

	// The issue-15 work order: firmware trust, owner authorisation sealed
	// to an escrow key.
	escrowPass := secretFile(t, f.dir, "escrow-pass", "escrow passphrase for the rma desk", 0o600)
	keys := filepath.Join(f.dir, "escrow")
	if code, out := execute(t, "owner-auth", "keygen", "-o", keys, "--passphrase-source", "file:"+escrowPass); code != exitOK {
		t.Fatalf("keygen: exit %d\n%s", code, out)
	}
	cfg, err := os.ReadFile(f.config)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(f.dir, "ca", "root.crt")
	s := strings.Replace(string(cfg), "proofs: [tpm]}", fmt.Sprintf("proofs: [tpm], firmware_trust: {roots: [%q], policy_version: 3, device_class: gw-1}}", root), 1)
	s += fmt.Sprintf("owner_auth: {escrow_public_key: %q}\n", filepath.Join(keys, station.EscrowPublicFile))
	if s == string(cfg) {
		t.Fatal("work order not rewritten")
	}
	if err := os.WriteFile(f.config, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(f.dir, "station.db")
	st, err := db.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.UpsertOperator(ctx, db.Operator{ID: "sam", Name: "Sam", Role: "supervisor"}, "1357"); err != nil {
		t.Fatal(err)
	}
	st.Close()

	provision := func(operator, pin string, extra ...string) (int, string) {
		t.Helper()
		args := append([]string{"provision", "--config", f.config, "--port", d.Port, "--operator", operator, "--pin-source", "env:WSC_TEST_PIN"}, extra...)
		cmd := exec.Command(wsc, args...)
		cmd.Dir = f.dir
		cmd.Env = append(os.Environ(), "WSC_TEST_PIN="+pin)
		b, err := cmd.CombinedOutput()
		return exitCode(err), string(b)
	}
	if code, out := provision("ana", "2468"); code != exitOK {
		t.Fatalf("first run: exit %d\n%s", code, out)
	}
	code, out := provision("ana", "2468")
	if code != exitFailed || !strings.Contains(out, "RMA desk") || !strings.Contains(out, "owner-auth-sealed") && !strings.Contains(out, "owner authorisation") {
		t.Fatalf("second run over the sealed owner authorisation: exit %d\n%s", code, out)
	}
	t.Logf("second run (refused):\n%s", out)
	if code, out := provision("sam", "1357", "--chip-reset", "--label", d.Serial); code != exitUsage || !strings.Contains(out, "--rework") {
		t.Fatalf("--chip-reset without --rework: exit %d\n%s", code, out)
	}
	if code, out := provision("ana", "2468", "--rework", "--chip-reset", "--label", d.Serial); code != exitUsage || !strings.Contains(out, "supervisor") {
		t.Fatalf("rework by an operator: exit %d\n%s", code, out)
	}

	// The RMA desk.
	code, out = execute(t, "owner-auth", "unseal", "--serial", d.Serial, "--db", dbPath, "--key", filepath.Join(keys, station.EscrowPrivateFile),
		"--passphrase-source", "file:"+escrowPass, "--actor", "rma", "--json")
	if code != exitOK {
		t.Fatalf("unseal: exit %d\n%s", code, out)
	}
	var unsealed struct {
		OwnerAuth string `json:"owner_auth"`
		State     string `json:"state"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &unsealed); err != nil || !strings.HasPrefix(unsealed.OwnerAuth, "hex:") || unsealed.State != db.OwnerAuthSet {
		t.Fatalf("unseal output %q: %v", out, err)
	}
	if err := d.StopAgent(); err != nil { // swtpm serves one client
		t.Fatal(err)
	}
	tcti := swtpmTCTI(t, d)
	if b, err := tpm2Tool(t, tcti, "tpm2_nvdefine", "-C", "o", "-s", "8", "0x01500041"); err == nil {
		t.Fatalf("tpm2_nvdefine with the empty owner authorisation succeeded:\n%s", b)
	}
	if b, err := tpm2Tool(t, tcti, "tpm2_changeauth", "-c", "o", "-p", unsealed.OwnerAuth); err != nil {
		t.Fatalf("tpm2_changeauth with the unsealed owner authorisation: %v\n%s", err, b)
	}
	if b, err := tpm2Tool(t, tcti, "tpm2_clear", unsealed.OwnerAuth); err != nil { // the lockout value is the owner value
		t.Fatalf("tpm2_clear: %v\n%s", err, b)
	}
	if err := d.StartAgent(); err != nil {
		t.Fatal(err)
	}

	// The supervised rework with the chip reset.
	if code, out := provision("sam", "1357", "--rework", "--chip-reset", "--label", d.Serial); code != exitOK {
		t.Fatalf("rework with --chip-reset: exit %d\n%s", code, out)
	}
	st, err = db.Open(dbPath, db.WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	es, err := st.AuditEntries(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	resets := 0
	for _, e := range es {
		if e.Kind == "owner_auth.chip-reset" {
			resets++
			if e.Actor != "sam" || !strings.Contains(string(e.Detail), d.Serial) {
				t.Fatalf("chip reset recorded by %q: %s", e.Actor, e.Detail)
			}
		}
	}
	if resets != 1 {
		t.Fatalf("%d owner_auth.chip-reset rows, want 1", resets)
	}
	code, out = execute(t, "owner-auth", "list", "--serial", d.Serial, "--db", dbPath, "--json")
	var rows []ownerAuthRow
	if code != exitOK || json.Unmarshal([]byte(out[strings.Index(out, "["):]), &rows) != nil || len(rows) != 2 ||
		rows[0].State != db.OwnerAuthSet || rows[1].State != db.OwnerAuthSet || rows[0].Run == rows[1].Run || rows[1].RunResult != db.RunOK || !rows[1].MaybeSet {
		t.Fatalf("owner-auth list: exit %d\n%s", code, out)
	}
	code, out = execute(t, "owner-auth", "list", "--serial", d.Serial, "--db", dbPath)
	if code != exitOK || strings.Count(out, "set on the chip") != 2 {
		t.Fatalf("owner-auth list: exit %d\n%s", code, out)
	}
	t.Logf("owner-auth list:\n%s", out)
	if _, err := st.VerifyAudit(ctx, db.AuditVerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// swtpmTCTI returns a tpm2-tools TCTI for the device's swtpm (stop its
// agent first: swtpm serves one client).
func swtpmTCTI(t *testing.T, d *sim.Device) string {
	t.Helper()
	return testenv.SWTPMTCTI(t, d.TPM.Socket)
}

func tpm2Tool(t *testing.T, tcti string, args ...string) (string, error) {
	t.Helper()
	return testenv.TPM2(t, tcti, args...)
}

// reworkRecorder stands for the bench behind the operator screen's rework
// (the bench's own rework is tested in station, TestBenchReworkChipReset).
type reworkRecorder struct{ got []string }

func (r *reworkRecorder) Rework(slot int, label string, rw station.Rework) error {
	r.got = append(r.got, fmt.Sprintf("%d %s %s %v", slot, label, rw.Supervisor, rw.ChipReset))
	return nil
}

// TestReworkDeskChecksSupervisor: the operator screen's rework checks the
// PIN (a wrong one never appears in the error) and the supervisor role
// against the real station database before the bench runs anything.
func TestReworkDeskChecksSupervisor(t *testing.T) {
	ctx := context.Background()
	st, err := db.Open(filepath.Join(t.TempDir(), "station.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, op := range []struct{ id, role, pin string }{{"ana", "operator", "2468"}, {"sam", "supervisor", "1357"}} {
		if err := st.UpsertOperator(ctx, db.Operator{ID: op.id, Name: op.id, Role: op.role}, op.pin); err != nil {
			t.Fatal(err)
		}
	}
	rec := &reworkRecorder{}
	d := reworkDesk{ctx: ctx, store: st, bench: rec}
	if err := d.Rework(3, "SN-1", "sam", "9999", true); err == nil || strings.Contains(err.Error(), "9999") {
		t.Fatalf("wrong PIN: %v", err)
	}
	if err := d.Rework(3, "SN-1", "ana", "2468", true); err == nil || !strings.Contains(err.Error(), "only a supervisor") {
		t.Fatalf("operator: %v", err)
	}
	if len(rec.got) != 0 {
		t.Fatalf("the bench ran %v", rec.got)
	}
	if err := d.Rework(3, "SN-1", "sam", "1357", true); err != nil {
		t.Fatal(err)
	}
	if len(rec.got) != 1 || rec.got[0] != "3 SN-1 sam true" {
		t.Fatalf("bench got %v", rec.got)
	}
}
