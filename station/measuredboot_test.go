package station

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/devices/agent"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/sim"
	"github.com/wsc-project/wsc/devices/tpm"
	"github.com/wsc-project/wsc/wasmsign"
)

// openSimTPM opens the device's swtpm in this process (its agent must be
// stopped: swtpm serves one client); close it before tpm2-tools runs.
func openSimTPM(t *testing.T, d *sim.Device) (*tpm.Device, func()) {
	t.Helper()
	tr, err := tpm.OpenTransport(d.TPM.URI())
	if err != nil {
		t.Fatal(err)
	}
	dev, err := tpm.New(tr, tpm.DefaultConfig())
	if err != nil {
		tr.Close()
		t.Fatal(err)
	}
	return dev, func() { dev.Close(); tr.Close() }
}

// fleetPolicy is a release's signed PCR policy for the TPM's current
// values of pcrs, signed by key for ref, through the policy file format
// `wsc policy sign` writes and `wsc-agent sign --policy` reads.
func fleetPolicy(t *testing.T, dev *tpm.Device, key *ecdsa.PrivateKey, pcrs []int, ref []byte) *tpm.SignedPCRPolicy {
	t.Helper()
	vals, err := dev.PCRValues(pcrs)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tpm.SignPCRPolicy(func(d []byte) ([]byte, error) { return key.Sign(rand.Reader, d, crypto.SHA256) }, &key.PublicKey, vals, ref)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tpm.MarshalSignedPCRPolicy(p)
	if err != nil {
		t.Fatal(err)
	}
	back, err := tpm.ParseSignedPCRPolicy(b)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

// TestMeasuredBootSequence: one run of the station's sequence
// (Provisioner.Provision, swtpm over a real pty, the agent binary, real
// SQLite) under a work order with measured_boot. The chip's code-signing
// key, read by tpm2_readpublic, is the certified key and carries
// tpm.SigningKeyAuthPolicy without userWithAuth; its certificate's
// measured-boot extension parses to the configured values; the ledger
// holds the digest, fleet key Name, product line and PCR selection; the
// end-of-line module (signed through the owner branch before the anchors
// step set a new owner authorisation) verifies under codeSigning. Then, on
// the same chip: the release's signed PCR policy signs; after
// tpm2_pcrextend of a selected PCR it is refused; a newly signed policy
// for the new values signs again; a policy signed by another key for the
// same values is refused, and so is an owner-branch signature with the
// factory (empty) owner authorisation, now that the station replaced it.
func TestMeasuredBootSequence(t *testing.T) {
	testenvTools(t, "tpm2_readpublic", "tpm2_pcrextend", "tpm2_getcap")
	ctx := context.Background()
	l := newTestLine(t, 1, "")
	fleet := p256(t)
	ref := []byte("gw-line")
	pcrs := []int{0, 2, 4, 7}
	p, _ := trustProvisioner(t, l, func(c *Config) {
		c.Trust.MeasuredBoot = &MeasuredBoot{FleetKey: &fleet.PublicKey, PolicyRef: ref, PCRs: pcrs}
	})
	d := l.bench.Devices[0]
	res, err := p.Provision(ctx, Job{Slot: 1, Port: d.Port})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.SigningChain) == 0 {
		t.Fatal("no signing chain")
	}
	ld := res.SigningChain[0]
	want, err := tpm.SigningKeyAuthPolicy(&fleet.PublicKey, ref)
	if err != nil {
		t.Fatal(err)
	}
	fname, _ := tpm.FleetKeyName(&fleet.PublicKey)

	// The certificate's extension.
	var ext *MeasuredBootPolicy
	for _, e := range ld.Extensions {
		if e.Id.Equal(MeasuredBootOID(nil)) {
			ext = new(MeasuredBootPolicy)
			if rest, err := asn1.Unmarshal(e.Value, ext); err != nil || len(rest) != 0 || e.Critical {
				t.Fatalf("measured-boot extension: %v, critical %v", err, e.Critical)
			}
		}
	}
	if ext == nil || !bytes.Equal(ext.PolicyDigest, want) || !bytes.Equal(ext.FleetKeyName, fname) || !bytes.Equal(ext.PolicyRef, ref) || !slices.Equal(ext.PCRs, pcrs) {
		t.Fatalf("measured-boot extension %+v", ext)
	}
	// The identity certificate is never bound.
	for _, e := range res.Chain[0].Extensions {
		if e.Id.Equal(MeasuredBootOID(nil)) {
			t.Fatal("the IDevID certificate carries the measured-boot extension")
		}
	}

	// The ledger.
	entries, err := l.store.AuditEntries(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	for _, e := range entries {
		if e.Kind == "signing_key.policy" {
			var m map[string]any
			if err := json.Unmarshal(e.Detail, &m); err != nil {
				t.Fatal(err)
			}
			rows = append(rows, m)
		}
	}
	if len(rows) != 1 {
		t.Fatalf("%d signing_key.policy rows, want 1", len(rows))
	}
	row := rows[0]
	if row["policy_digest"] != hex.EncodeToString(want) || row["fleet_key_name"] != hex.EncodeToString(fname) || row["policy_ref"] != "gw-line" ||
		fmt.Sprint(row["pcrs"]) != "[0 2 4 7]" || row["certificate"] != SerialHex(ld) || row["device"] != d.Serial ||
		row["extension"] != MeasuredBootOID(nil).String() {
		t.Fatalf("signing_key.policy row %v", row)
	}

	// The end-of-line module, as QA verifies it.
	mod, err := os.ReadFile(filepath.Join(p.cfg.EOLModuleDir, d.Serial+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	vr, err := wasmsign.Verify(mod, &wasmsign.TrustPolicy{Roots: l.ca.Roots(), Intermediates: l.ca.Intermediates(), AllowMissingCRL: true})
	if err != nil || !bytes.Equal(vr.Chain[0].Raw, ld.Raw) {
		t.Fatalf("EOL module: %v", err)
	}

	// The chip, read by tpm2-tools: the key at the LDevID handle is the
	// certified one and carries the policy, without password use.
	tcti := swtpmTCTI(t, d)
	handle := fmt.Sprintf("%#x", tpm.DefaultLDevIDHandle)
	pemOut := filepath.Join(t.TempDir(), "ldevid.pem")
	out, err := tpm2Run(t, tcti, "tpm2_readpublic", "-c", handle, "-f", "pem", "-o", pemOut)
	if err != nil {
		t.Fatalf("tpm2_readpublic: %v\n%s", err, out)
	}
	if !strings.Contains(out, "authorization policy: "+hex.EncodeToString(want)) {
		t.Fatalf("tpm2_readpublic shows another policy (want %x):\n%s", want, out)
	}
	if attrs := attributesLine(out); attrs == "" || strings.Contains(attrs, "userwithauth") || !strings.Contains(attrs, "fixedtpm") {
		t.Fatalf("signing key attributes %q", attrs)
	}
	pb, _ := os.ReadFile(pemOut)
	blk, _ := pem.Decode(pb)
	if blk == nil || !bytes.Equal(blk.Bytes, ld.RawSubjectPublicKeyInfo) {
		t.Fatal("the key at the LDevID handle is not the certified key")
	}
	certKey := ld.PublicKey.(*ecdsa.PublicKey)

	// Signing under the release's PCR policy.
	dev, closeDev := openSimTPM(t, d)
	digest := sha256.Sum256([]byte("release 1.0"))
	pol1 := fleetPolicy(t, dev, fleet, pcrs, ref)
	sig, err := dev.SignDigestLDevIDWithPolicy(digest[:], pol1)
	if err != nil || !ecdsa.VerifyASN1(certKey, digest[:], sig) {
		t.Fatalf("sign under the release policy: %v", err)
	}
	closeDev()

	if out, err := tpm2Run(t, tcti, "tpm2_pcrextend", "7:sha256="+strings.Repeat("ab", 32)); err != nil {
		t.Fatalf("tpm2_pcrextend: %v\n%s", err, out)
	}

	dev, closeDev = openSimTPM(t, d)
	defer closeDev()
	if _, err := dev.SignDigestLDevIDWithPolicy(digest[:], pol1); !errors.Is(err, tpm.ErrPolicy) {
		t.Fatalf("the old PCR policy signed after PCR 7 changed: %v", err)
	}
	pol2 := fleetPolicy(t, dev, fleet, pcrs, ref)
	if bytes.Equal(pol2.PCRDigest, pol1.PCRDigest) {
		t.Fatal("PCR 7 did not change")
	}
	sig, err = dev.SignDigestLDevIDWithPolicy(digest[:], pol2)
	if err != nil || !ecdsa.VerifyASN1(certKey, digest[:], sig) {
		t.Fatalf("sign under the new release policy: %v", err)
	}
	other := p256(t)
	forged := fleetPolicy(t, dev, other, pcrs, ref)
	forged.FleetKey = &fleet.PublicKey // claims the fleet key; the TPM checks the signature
	if _, err := dev.SignDigestLDevIDWithPolicy(digest[:], forged); !errors.Is(err, tpm.ErrPolicy) {
		t.Fatalf("a policy signed by another key: %v", err)
	}
	if _, err := dev.SignDigestLDevIDWithPolicy(digest[:], fleetPolicy(t, dev, other, pcrs, ref)); !errors.Is(err, tpm.ErrPolicy) {
		t.Fatalf("a policy of another fleet key: %v", err)
	}
	if _, err := dev.SignDigestLDevIDOwnerPolicy(digest[:], &fleet.PublicKey, ref); !errors.Is(err, tpm.ErrPolicy) {
		t.Fatalf("the owner branch with the factory owner authorisation after the station sealed a new one: %v", err)
	}
}

// attributesLine is the "value:" line under "attributes:" in
// tpm2_readpublic's output.
func attributesLine(out string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) == "attributes:" && i+1 < len(lines) {
			return strings.TrimSpace(lines[i+1])
		}
	}
	return ""
}

// olderAgent is a TPM agent of a release before measured boot: it has a
// separate signing key but neither binds it nor signs through the owner
// branch (no signing-key-policy capability).
type olderAgent struct {
	agent.Backend
	agent.Attester
	agent.SigningKeyStore
}

// TestMeasuredBootRefusesAgentWithoutPolicy: under a work order with
// measured_boot, a TPM device whose agent lacks signing-key-policy is
// refused at Hello with an instruction, before it makes any key: the
// refusal is in the ledger (attest.fail), no certificate is recorded and
// tpm2_getcap shows none of the device keys in the chip. The same chip with a current agent then provisions.
func TestMeasuredBootRefusesAgentWithoutPolicy(t *testing.T) {
	testenvTools(t, "tpm2_getcap")
	ctx := context.Background()
	l := newTestLine(t, 1, "")
	d := l.bench.Devices[0]
	fleet := p256(t)
	cfg := l.prov.cfg
	cfg.Trust = TrustConfig{MeasuredBoot: &MeasuredBoot{FleetKey: &fleet.PublicKey, PolicyRef: []byte("gw-line"), PCRs: []int{7}}}
	p, err := NewProvisioner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.StopAgent(); err != nil {
		t.Fatal(err)
	}
	dev, closeDev := openSimTPM(t, d)
	be, err := agent.NewTPMBackend(dev, d.Serial)
	if err != nil {
		t.Fatal(err)
	}
	port := serveBoard(t, olderAgent{be, be, be})
	_, err = p.Provision(ctx, Job{Slot: 1, Port: port})
	var se *StepError
	if !errors.Is(err, ErrMeasuredBootUnsupported) || !errors.As(err, &se) || se.Step != StepHello || ReasonCode(err) != ReasonNoProof {
		t.Fatalf("older agent under measured_boot: %v (%s)", err, ReasonCode(err))
	}
	if !strings.Contains(se.Instruction, "signing-key-policy") || !strings.Contains(se.Instruction, "No key was made") {
		t.Fatalf("instruction %q", se.Instruction)
	}
	if c, err := l.store.LiveCertificate(ctx, d.Serial); err == nil {
		t.Fatalf("a certificate was recorded: %s", c.SerialHex)
	}
	if c, err := l.store.LiveSigningCertificate(ctx, d.Serial); err == nil {
		t.Fatalf("a signing certificate was recorded: %s", c.SerialHex)
	}
	entries, err := l.store.AuditEntries(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	refusals := 0
	for _, e := range entries {
		if e.Kind == "attest.fail" && strings.Contains(string(e.Detail), "signing-key-policy") && strings.Contains(string(e.Detail), d.Serial) {
			refusals++
		}
	}
	if refusals != 1 {
		t.Fatalf("%d attest.fail ledger rows for the refusal, want 1", refusals)
	}
	// That agent does not announce the capability and refuses the message.
	oc := dial(t, port)
	if h, err := oc.Hello(ctx); err != nil || slices.Contains(h.Capabilities, proto.CapSigningKeyPolicy) || !slices.Contains(h.Capabilities, "signing-key") {
		t.Fatalf("older agent's hello %+v, %v", h, err)
	}
	digest := sha256.Sum256([]byte("m"))
	if err := signWithOwnerPolicy(ctx, oc, digest[:], cfg.Trust.MeasuredBoot, &proto.SignDigestResponse{}); !errors.Is(err, proto.ErrUnsupported) {
		t.Fatalf("older agent answered SignWithOwnerPolicy: %v", err)
	}
	closeDev()
	tcti := swtpmTCTI(t, d)
	out, err := tpm2Run(t, tcti, "tpm2_getcap", "handles-persistent")
	if err != nil {
		t.Fatalf("tpm2_getcap: %v\n%s", err, out)
	}
	for _, h := range []uint32{tpm.DefaultIAKHandle, tpm.DefaultIDevIDHandle, tpm.DefaultLDevIDHandle} {
		if strings.Contains(out, fmt.Sprintf("%#x", h)) {
			t.Fatalf("the refused device holds key %#x:\n%s", h, out)
		}
	}

	// The current agent on the same chip: bound key, certificate issued.
	if err := d.StartAgent(); err != nil {
		t.Fatal(err)
	}
	res, err := p.Provision(ctx, Job{Slot: 1, Port: d.Port})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.SigningChain) == 0 {
		t.Fatal("no signing chain with the current agent")
	}
	if err := d.StopAgent(); err != nil {
		t.Fatal(err)
	}
	out, err = tpm2Run(t, tcti, "tpm2_getcap", "handles-persistent")
	if err != nil || !strings.Contains(out, fmt.Sprintf("%#x", tpm.DefaultLDevIDHandle)) {
		t.Fatalf("tpm2_getcap after provisioning: %v\n%s", err, out)
	}
}

// TestMeasuredBootOwnerBranchOverProtocol: MsgSignWithOwnerPolicy signs
// with a bound key (the signature verifies with the key's certificate),
// and is refused for another fleet key or product line, a P-384 fleet key
// and a short digest; the bound key refuses password use; the agent
// announces signing-key-policy.
func TestMeasuredBootOwnerBranchOverProtocol(t *testing.T) {
	ctx := context.Background()
	_, _, c := ldevidDevice(t)
	hello, err := c.Hello(ctx)
	if err != nil || !slices.Contains(hello.Capabilities, proto.CapSigningKeyPolicy) {
		t.Fatalf("hello %+v, %v", hello, err)
	}
	authority := testAuthority(t)
	nonce := sha256.Sum256([]byte("owner branch nonce"))
	var keys proto.CreateKeysResponse
	if err := c.Call(ctx, proto.MsgCreateKeys, proto.CreateKeysRequest{Nonce: nonce[:]}, &keys); err != nil {
		t.Fatal(err)
	}
	fleet := p256(t)
	mb := &MeasuredBoot{FleetKey: &fleet.PublicKey, PolicyRef: []byte("gw-line"), PCRs: []int{7}}
	res, err := ProvisionBoundSigningKey(ctx, c, authority, keys.IAKPublic, nonce[:], ca.IssueRequest{DeviceSerial: "DEV-LDEV"}, true, mb)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("module"))
	var resp proto.SignDigestResponse
	if err := signWithOwnerPolicy(ctx, c, digest[:], mb, &resp); err != nil || !ecdsa.VerifyASN1(res.Chain[0].PublicKey.(*ecdsa.PublicKey), digest[:], resp.Signature) {
		t.Fatalf("owner branch: %v", err)
	}
	other := p256(t)
	if err := signWithOwnerPolicy(ctx, c, digest[:], &MeasuredBoot{FleetKey: &other.PublicKey, PolicyRef: []byte("gw-line")}, &resp); err == nil {
		t.Fatal("owner branch with another fleet key signed")
	}
	if err := signWithOwnerPolicy(ctx, c, digest[:], &MeasuredBoot{FleetKey: &fleet.PublicKey, PolicyRef: []byte("other-line")}, &resp); err == nil {
		t.Fatal("owner branch with another product line signed")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	if err := c.Call(ctx, proto.MsgSignWithOwnerPolicy, proto.SignWithOwnerPolicyRequest{Digest: digest[:], FleetKey: der, PolicyRef: []byte("gw-line")}, &resp); !errors.Is(err, proto.ErrBadRequest) {
		t.Fatalf("P-384 fleet key: %v", err)
	}
	if err := c.Call(ctx, proto.MsgSignWithOwnerPolicy, proto.SignWithOwnerPolicyRequest{Digest: digest[:5], FleetKey: der}, &resp); !errors.Is(err, proto.ErrBadRequest) {
		t.Fatalf("short digest: %v", err)
	}
	if err := c.Call(ctx, proto.MsgSignWithSigningKey, proto.SignDigestRequest{Digest: digest[:]}, &resp); err == nil {
		t.Fatal("a bound key signed with its password")
	}
}

// TestMeasuredBootConfig: work_order.measured_boot is read into the
// provisioner's TrustConfig (PCRs sorted) and refused, by LoadConfig and
// by CheckConfig with the line of the key concerned, for a fleet key file
// that is not a PEM public key, a P-384 fleet key, a policy_ref of more
// than 32 bytes or none, a PCR out of range or listed twice, and with
// signing_key off.
func TestMeasuredBootConfig(t *testing.T) {
	dir := t.TempDir()
	writeKey := func(name string, c elliptic.Curve) {
		k, _ := ecdsa.GenerateKey(c, rand.Reader)
		der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeKey("fleet.pem", elliptic.P256())
	writeKey("fleet384.pem", elliptic.P384())
	if err := os.WriteFile(filepath.Join(dir, "not.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "station: s\ndatabase: d.db\nca: {dir: ca, passphrase: env:X}\naudit: {key_fingerprints: [abababababababababababababababababababababababababababababababab]}\ntpm_vendor_roots: [v.pem]\nslots: [{slot: 1, port: /dev/ttyUSB0}]\n"
	mk := func(signingKey, key, ref string, pcrs ...int) string {
		y := base + "work_order:\n  id: W\n  quantity: 1\n"
		if signingKey != "" {
			y += "  signing_key: " + signingKey + "\n"
		}
		y += "  measured_boot:\n    fleet_public_key: " + key + "\n    policy_ref: \"" + ref + "\"\n    pcrs:\n"
		for _, p := range pcrs {
			y += fmt.Sprintf("      - %d\n", p)
		}
		return y
	}
	long := strings.Repeat("x", 33)
	for _, tc := range []struct {
		name, yaml, wantErr, wantKey, lineOf string
	}{
		{"ok", mk("", "fleet.pem", "gw-line", 7, 0, 2, 4), "", "", ""},
		{"ok auto", mk("auto", "fleet.pem", strings.Repeat("y", 32), 23), "", "", ""},
		{"bad pem", mk("", "not.pem", "gw-line", 7), "not a PEM PUBLIC KEY", "work_order.measured_boot.fleet_public_key", "fleet_public_key:"},
		{"p384", mk("", "fleet384.pem", "gw-line", 7), "not an ECDSA P-256 key", "work_order.measured_boot.fleet_public_key", "fleet_public_key:"},
		{"missing key file", mk("", "absent.pem", "gw-line", 7), "no such file", "work_order.measured_boot.fleet_public_key", "fleet_public_key:"},
		{"long ref", mk("", "fleet.pem", long, 7), "33 bytes, at most 32", "work_order.measured_boot.policy_ref", "policy_ref:"},
		{"empty ref", mk("", "fleet.pem", "", 7), "policy_ref is empty", "work_order.measured_boot.policy_ref", "policy_ref:"},
		{"pcr 24", mk("", "fleet.pem", "gw-line", 0, 24), "PCR 24 is out of range", "work_order.measured_boot.pcrs[1]", "- 24"},
		{"pcr -1", mk("", "fleet.pem", "gw-line", -1), "PCR -1 is out of range", "work_order.measured_boot.pcrs[0]", "- -1"},
		{"pcr twice", mk("", "fleet.pem", "gw-line", 0, 2, 2), "PCR 2 is listed twice", "work_order.measured_boot.pcrs[2]", "- 2\n      - 2"},
		{"no pcrs", mk("", "fleet.pem", "gw-line"), "pcrs: list the PCRs", "work_order.measured_boot.pcrs", "pcrs:"},
		{"signing_key off", mk("off", "fleet.pem", "gw-line", 7), "signing_key is off", "work_order.measured_boot", "measured_boot:"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
		if err := os.WriteFile(p, []byte(tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(p)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			tr, err := cfg.TrustConfig()
			if err != nil || tr.MeasuredBoot == nil {
				t.Errorf("%s: TrustConfig: %v", tc.name, err)
				continue
			}
			if tc.name == "ok" && (!slices.Equal(tr.MeasuredBoot.PCRs, []int{0, 2, 4, 7}) || string(tr.MeasuredBoot.PolicyRef) != "gw-line" || tr.MeasuredBoot.FleetKey.Curve != elliptic.P256()) {
				t.Errorf("ok: %+v", tr.MeasuredBoot)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: LoadConfig err = %v, want %q", tc.name, err, tc.wantErr)
		}
		_, errs := CheckConfig(p)
		var got *ConfigError
		for _, e := range errs {
			if strings.Contains(e.Key, "measured_boot") {
				got = e
			}
		}
		// The line of lineOf's last list item (or of lineOf).
		wantLine := strings.Count(tc.yaml[:strings.Index(tc.yaml, tc.lineOf)+strings.LastIndex(tc.lineOf, "- ")+1], "\n") + 1
		if got == nil || got.Key != tc.wantKey || got.Line != wantLine || !strings.Contains(got.Error(), tc.wantErr) {
			t.Errorf("%s: CheckConfig %+v, want key %s line %d", tc.name, got, tc.wantKey, wantLine)
		}
	}
	if err := (TrustConfig{SigningKey: SigningKeyOff, MeasuredBoot: &MeasuredBoot{FleetKey: &p256(t).PublicKey, PolicyRef: []byte("l"), PCRs: []int{7}}}).Check(); err == nil {
		t.Error("TrustConfig.Check accepted measured_boot with signing_key off")
	}
}

// TestMeasuredBootRefusesSE: a secure element cannot bind a key to PCRs;
// under a work order with measured_boot it is refused at Hello, before
// its chip makes a key, and nothing is issued.
func TestMeasuredBootRefusesSE(t *testing.T) {
	ctx := context.Background()
	l := newTestLineOpts(t, sim.BenchConfig{N: 1, Mix: []string{"se"}})
	cfg := l.prov.cfg
	cfg.Trust = TrustConfig{MeasuredBoot: &MeasuredBoot{FleetKey: &p256(t).PublicKey, PolicyRef: []byte("gw-line"), PCRs: []int{7}}}
	p, err := NewProvisioner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := l.bench.Devices[0]
	_, err = p.Provision(ctx, Job{Slot: 1, Port: d.Port})
	var se *StepError
	if !errors.Is(err, ErrMeasuredBootUnsupported) || !errors.As(err, &se) || se.Step != StepHello || !strings.Contains(err.Error(), "only a TPM") {
		t.Fatalf("SE under measured_boot: %v", err)
	}
	if c, err := l.store.LiveCertificate(ctx, d.Serial); err == nil {
		t.Fatalf("a certificate was recorded: %s", c.SerialHex)
	}
}

// BenchmarkMeasuredBootSLB9670 is what measured_boot adds to one device's
// whole sequence on the SLB9670 latency profile over a 115200-baud pty
// (signing key on, no firmware trust): the CSR and the end-of-line
// signature go through a policy session (PolicySecret + PolicyOR) and the
// ledger gets signing_key.policy (off the device's path). One op = one
// device, fresh swtpm each (set up outside the timer).
func BenchmarkMeasuredBootSLB9670(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("measured_boot=%v", on), func(b *testing.B) {
			var total time.Duration
			n := 0
			for b.Loop() {
				b.StopTimer()
				l := newTestLineOpts(b, sim.BenchConfig{N: 1, LatencyProfile: "slb9670", Baud: 115200})
				cfg := l.prov.cfg
				if on {
					k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
					cfg.Trust = TrustConfig{MeasuredBoot: &MeasuredBoot{FleetKey: &k.PublicKey, PolicyRef: []byte("gw-line"), PCRs: []int{0, 2, 4, 7}}}
				}
				p, err := NewProvisioner(cfg)
				if err != nil {
					b.Fatal(err)
				}
				d := l.bench.Devices[0]
				b.StartTimer()
				t0 := time.Now()
				res, err := p.Provision(context.Background(), Job{Slot: 1, Port: d.Port})
				if err != nil {
					b.Fatal(err)
				}
				total += time.Since(t0)
				n++
				bound := false
				for _, e := range res.SigningChain[0].Extensions {
					bound = bound || e.Id.Equal(MeasuredBootOID(nil))
				}
				if bound != on {
					b.Fatalf("measured-boot extension present: %v", bound)
				}
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(n), "ms/device")
		})
	}
}
