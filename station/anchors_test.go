package station

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"github.com/wsc-project/wsc/devices/sim/testenv"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/wsc-project/wsc/devices/agent"
	"github.com/wsc-project/wsc/devices/anchors"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/sim"
	"github.com/wsc-project/wsc/devices/tpm"
)

// TestInstallFirmwareTrust: the station's end-of-line step over the real
// protocol to an agent on swtpm: the anchors read back equal and locked, the
// owner authorization is set (the lock protects), a second station run with
// other anchors is refused as locked, and the result never prints the
// owner authorization.
func TestInstallFirmwareTrust(t *testing.T) {
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
	dev, err := tpm.New(tr, tpm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	be, err := agent.NewTPMBackend(dev, "DEV-ANCH")
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

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "release root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().AddDate(1, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	root, _ := x509.ParseCertificate(der)
	crlDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(17), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, root, key)
	if err != nil {
		t.Fatal(err)
	}
	crl, _ := x509.ParseRevocationList(crlDER)
	trust := &FirmwareTrust{PolicyVersion: 4, DeviceClass: "gw-1", Roots: []*x509.Certificate{root}, CRLs: []*x509.RevocationList{crl}}

	auth, err := NewOwnerAuth()
	if err != nil {
		t.Fatal(err)
	}
	res, err := InstallFirmwareTrust(ctx, c, trust, auth)
	if err != nil {
		t.Fatal(err)
	}
	p, err := anchors.Parse(res.Anchors)
	if err != nil || p.Version != 4 || !p.HasRoot(anchors.RootFingerprint(root)) || p.MinCRLNumber(anchors.IssuerID(root.RawSubject)) != 17 || p.CounterBase != res.CounterBase {
		t.Fatalf("anchors %+v, %v", p, err)
	}
	if s := fmt.Sprintf("%v %+v %#v %s", res, res, res, res); strings.Contains(s, string(auth)) || bytes.Contains([]byte(s), auth[:8]) {
		t.Fatal("owner authorization printed")
	}
	var rd proto.ReadAnchorsResponse
	if err := c.Call(ctx, proto.MsgReadAnchors, proto.ReadAnchorsRequest{}, &rd); err != nil || !rd.Locked || !bytes.Equal(rd.Anchors, res.Anchors) {
		t.Fatalf("read anchors: locked %v, %v", rd.Locked, err)
	}
	// Same station data again (a resumed run): accepted, nothing changes.
	if _, err := InstallFirmwareTrust(ctx, c, trust, auth); err != nil {
		t.Fatalf("resumed run: %v", err)
	}
	// Other anchors on a locked device: refused as locked.
	trust.PolicyVersion = 5
	if _, err := InstallFirmwareTrust(ctx, c, trust, auth); !errors.Is(err, ErrAnchors) || !errors.Is(err, proto.ErrLocked) {
		t.Fatalf("other anchors on a locked device: %v", err)
	}
	// A CRL without a number cannot set a floor: refused before the device is touched.
	noNum := *crl
	noNum.Number = nil
	trust.CRLs = []*x509.RevocationList{&noNum}
	if _, err := trust.Policy(0); !errors.Is(err, ErrAnchors) {
		t.Fatalf("CRL without number: %v", err)
	}
}
