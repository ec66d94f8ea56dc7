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
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"net"
	"path/filepath"
	"slices"
	"testing"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/devices/agent"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/sim"
	"github.com/wsc-project/wsc/devices/tpm"
	"github.com/wsc-project/wsc/wasmsign"
)

// TestProvisionSigningKey: a TPM device gets an LDevID certified by its
// IAK; the CA issues it codeSigning only while the IDevID gets clientAuth
// only; a module signed with the LDevID verifies, one signed with the
// IDevID does not (no codeSigning); a wrong IAK is refused.
func TestProvisionSigningKey(t *testing.T) {
	ctx := context.Background()
	dev, be, c := ldevidDevice(t)
	dir := t.TempDir()
	pass := []byte("ldevid test passphrase")
	if err := ca.Init(filepath.Join(dir, "ca"), pass, ca.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	authority, err := ca.Open(filepath.Join(dir, "ca"), pass)
	if err != nil {
		t.Fatal(err)
	}
	nonce := sha256.Sum256([]byte("idevid nonce"))
	var keys proto.CreateKeysResponse
	if err := c.Call(ctx, proto.MsgCreateKeys, proto.CreateKeysRequest{Nonce: nonce[:]}, &keys); err != nil {
		t.Fatal(err)
	}
	idChain, err := authority.Issue(ctx, keys.CSR, ca.IssueRequest{DeviceSerial: "DEV-LDEV", ExtKeyUsages: IDevIDExtKeyUsages})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(idChain[0].ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Fatalf("IDevID EKUs %v", idChain[0].ExtKeyUsage)
	}
	if _, err := dev.WriteChain(ders(idChain)); err != nil {
		t.Fatal(err)
	}

	n2 := sha256.Sum256([]byte("ldevid nonce"))
	if _, err := ProvisionSigningKey(ctx, c, authority, keys.IDevIDPublic, n2[:], ca.IssueRequest{DeviceSerial: "DEV-LDEV"}, true); !errors.Is(err, ErrSigningKey) {
		t.Fatalf("another IAK accepted: %v", err)
	}
	res, err := ProvisionSigningKey(ctx, c, authority, keys.IAKPublic, n2[:], ca.IssueRequest{DeviceSerial: "DEV-LDEV"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Chain[0].ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}) || res.Chain[0].Subject.SerialNumber != "DEV-LDEV" {
		t.Fatalf("LDevID certificate: EKU %v subject %v", res.Chain[0].ExtKeyUsage, res.Chain[0].Subject)
	}
	if res.Chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(idChain[0].PublicKey) {
		t.Fatal("LDevID certificate holds the IDevID key")
	}
	stored, err := be.ReadSigningChain(ctx)
	if err != nil || len(stored) != len(res.Chain) {
		t.Fatalf("stored signing chain: %v", err)
	}

	pol := &wasmsign.TrustPolicy{Roots: authority.Roots(), Intermediates: authority.Intermediates(), AllowMissingCRL: true}
	module := eolModule(n2[:])
	// Over the protocol, as the end-of-line check signs with the signing key.
	signed, err := wasmsign.SignDigestFunc(module, func(d []byte) ([]byte, error) {
		var r proto.SignDigestResponse
		err := c.Call(ctx, proto.MsgSignWithSigningKey, proto.SignDigestRequest{Digest: d}, &r)
		return r.Signature, err
	}, res.Chain, nil)
	if err != nil {
		t.Fatal(err)
	}
	if vr, err := wasmsign.Verify(signed, pol); err != nil || vr.DeviceSerial != "DEV-LDEV" {
		t.Fatalf("module signed by the LDevID: %v", err)
	}
	signedID, err := wasmsign.SignDigestFunc(module, func(d []byte) ([]byte, error) { return be.SignDigest(ctx, d) }, idChain, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wasmsign.Verify(signedID, pol); !errors.Is(err, wasmsign.ErrKeyUsage) {
		t.Fatalf("module signed by the clientAuth-only IDevID: %v", err)
	}
}

func ders(chain []*x509.Certificate) [][]byte {
	out := make([][]byte, len(chain))
	for i, c := range chain {
		out[i] = c.Raw
	}
	return out
}

// ldevidDevice starts swtpm with an agent on the real protocol.
func ldevidDevice(t testing.TB) (*tpm.Device, *agent.TPMBackend, *proto.Client) {
	return ldevidDeviceProfile(t, "")
}

// ldevidDeviceProfile is ldevidDevice with a chip latency profile.
func ldevidDeviceProfile(t testing.TB, profile string) (*tpm.Device, *agent.TPMBackend, *proto.Client) {
	t.Helper()
	testenv.NeedTools(t, "swtpm", "swtpm_setup", "swtpm_localca")
	ctx := context.Background()
	sw, err := sim.StartSWTPM(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	tr, err := tpm.OpenTransport(sw.URI())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	cfg := tpm.DefaultConfig()
	tr, err = tpm.WithLatencyProfile(tr, profile)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := tpm.New(tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	be, err := agent.NewTPMBackend(dev, "DEV-LDEV")
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	srv := proto.NewServer(a, agent.NewHandler(be, nil))
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	t.Cleanup(func() { cancel(); a.Close(); b.Close(); <-done })
	c := proto.NewClient(b)

	return dev, be, c
}

// TestProvisionBoundSigningKey: with the profile's measured-boot binding
// the device's signing key carries PolicyOR{PolicyAuthorize(fleet, line),
// PolicySecret(owner)} (checked in the certified public area), gets a
// codeSigning certificate, and signs firmware only with a fleet-signed PCR
// policy; asking for another binding later is refused.
func TestProvisionBoundSigningKey(t *testing.T) {
	ctx := context.Background()
	dev, be, c := ldevidDevice(t)
	authority := testAuthority(t)
	nonce := sha256.Sum256([]byte("bound idevid nonce"))
	var keys proto.CreateKeysResponse
	if err := c.Call(ctx, proto.MsgCreateKeys, proto.CreateKeysRequest{Nonce: nonce[:]}, &keys); err != nil {
		t.Fatal(err)
	}
	auth, _ := NewOwnerAuth()
	if err := c.Call(ctx, proto.MsgSetOwnerAuth, proto.SetOwnerAuthRequest{NewAuth: auth}, &proto.SetOwnerAuthResponse{}); err != nil {
		t.Fatal(err)
	}
	fleet, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mb := &MeasuredBoot{FleetKey: &fleet.PublicKey, PolicyRef: []byte("gw-line"), PCRs: []int{0, 2, 4, 7}}
	n2 := sha256.Sum256([]byte("bound ldevid nonce"))
	res, err := ProvisionBoundSigningKey(ctx, c, authority, keys.IAKPublic, n2[:], ca.IssueRequest{DeviceSerial: "DEV-LDEV"}, true, mb)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := tpm.SigningKeyAuthPolicy(&fleet.PublicKey, []byte("gw-line"))
	if !bytes.Equal(res.AuthPolicy, want) || !slices.Equal(res.Chain[0].ExtKeyUsage, LDevIDExtKeyUsages) {
		t.Fatalf("bound key: policy %x, EKU %v", res.AuthPolicy, res.Chain[0].ExtKeyUsage)
	}
	var ext *MeasuredBootPolicy
	for _, e := range res.Chain[0].Extensions {
		if e.Id.Equal(MeasuredBootOID(nil)) {
			ext = new(MeasuredBootPolicy)
			if rest, err := asn1.Unmarshal(e.Value, ext); err != nil || len(rest) != 0 || e.Critical {
				t.Fatalf("measured-boot extension: %v", err)
			}
		}
	}
	fname, _ := tpm.FleetKeyName(&fleet.PublicKey)
	if ext == nil || !bytes.Equal(ext.PolicyDigest, want) || !bytes.Equal(ext.FleetKeyName, fname) || string(ext.PolicyRef) != "gw-line" || !slices.Equal(ext.PCRs, []int{0, 2, 4, 7}) {
		t.Fatalf("measured-boot extension %+v", ext)
	}
	if _, err := authority.Issue(ctx, keys.CSR, ca.IssueRequest{DeviceSerial: "DEV-LDEV", ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Value: []byte{0x30, 0}}}}); !errors.Is(err, ca.ErrIssueRequest) {
		t.Fatalf("a basicConstraints extension from the station: %v", err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := ProvisionBoundSigningKey(ctx, c, authority, keys.IAKPublic, n2[:], ca.IssueRequest{DeviceSerial: "DEV-LDEV"}, true,
		&MeasuredBoot{FleetKey: &other.PublicKey, PolicyRef: []byte("gw-line")}); !errors.Is(err, ErrSigningKey) {
		t.Fatalf("another binding on a bound key: %v", err)
	}
	vals, err := dev.PCRValues([]int{0, 2, 4, 7})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := tpm.SignPCRPolicy(func(d []byte) ([]byte, error) { return fleet.Sign(rand.Reader, d, crypto.SHA256) }, &fleet.PublicKey, vals, []byte("gw-line"))
	if err != nil {
		t.Fatal(err)
	}
	module := eolModule(n2[:])
	signed, err := wasmsign.SignDigestFunc(module, func(d []byte) ([]byte, error) { return be.SignDigestWithPolicy(ctx, d, pol) }, res.Chain, nil)
	if err != nil {
		t.Fatal(err)
	}
	pl := &wasmsign.TrustPolicy{Roots: authority.Roots(), Intermediates: authority.Intermediates(), AllowMissingCRL: true}
	if _, err := wasmsign.Verify(signed, pl); err != nil {
		t.Fatalf("module signed under the PCR policy: %v", err)
	}
	if _, err := be.SignDigestWithSigningKey(ctx, make([]byte, 32)); err == nil {
		t.Fatal("a bound signing key signed without a policy")
	}
}

func testAuthority(t testing.TB) *ca.CA {
	t.Helper()
	dir := t.TempDir()
	pass := []byte("ldevid test passphrase")
	if err := ca.Init(filepath.Join(dir, "ca"), pass, ca.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	authority, err := ca.Open(filepath.Join(dir, "ca"), pass)
	if err != nil {
		t.Fatal(err)
	}
	return authority
}

// BenchmarkEOLTrustAndSigningKeySLB9670 is the end-of-line work issue 15
// adds per TPM device, on the SLB9670 latency profile: owner auth, counter,
// anchors written + locked + read back, and the signing key (keygen,
// Certify, CSR, issuance, chain install). One op = one device.
func BenchmarkEOLTrustAndSigningKeySLB9670(b *testing.B) {
	ctx := context.Background()
	authority := testAuthority(b)
	trust := &FirmwareTrust{PolicyVersion: 1, DeviceClass: "gw-1", Roots: authority.Roots()}
	for b.Loop() {
		b.StopTimer()
		_, be, c := ldevidDeviceProfile(b, "slb9670")
		nonce := sha256.Sum256([]byte("bench"))
		if _, err := be.CreateKeys(ctx, nonce[:], ""); err != nil {
			b.Fatal(err)
		}
		var keys proto.CreateKeysResponse
		if err := c.Call(ctx, proto.MsgCreateKeys, proto.CreateKeysRequest{Nonce: nonce[:]}, &keys); err != nil {
			b.Fatal(err)
		}
		auth, _ := NewOwnerAuth()
		b.StartTimer()
		if _, err := InstallFirmwareTrust(ctx, c, trust, auth); err != nil {
			b.Fatal(err)
		}
		if _, err := ProvisionSigningKey(ctx, c, authority, keys.IAKPublic, nonce[:], ca.IssueRequest{DeviceSerial: "DEV-LDEV"}, true); err != nil {
			b.Fatal(err)
		}
	}
}
