package station

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTrustConfigKeys: station.yaml's owner_auth and the work order's
// signing_key and firmware_trust are checked when the file is read
// (missing owner_auth, both escrow key and policy none, an unreadable
// escrow key or root, an unknown signing_key are refused with the key's
// name) and become the provisioner's TrustConfig.
func TestTrustConfigKeys(t *testing.T) {
	dir := t.TempDir()
	pubPath, _, err := GenerateEscrowKey(filepath.Join(dir, "escrow"), []byte("escrow pass for the config test"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "release root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().AddDate(1, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	root := filepath.Join(dir, "release-root.pem")
	if err := os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	crlDER, _ := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(9), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)},
		mustParse(t, der), key)
	if err := os.WriteFile(filepath.Join(dir, "release.crl"), crlDER, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "not.pem"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "station: s\ndatabase: d.db\nca: {dir: ca, passphrase: env:X}\naudit: {key_fingerprints: [abababababababababababababababababababababababababababababababab]}\ntpm_vendor_roots: [v.pem]\nslots: [{slot: 1, port: /dev/ttyUSB0}]\n"
	ft := "firmware_trust: {roots: [release-root.pem], crls: [release.crl], policy_version: 3, device_class: gw-1}"
	for name, tc := range map[string]struct {
		yaml, wantErr string
	}{
		"default":            {"work_order: {id: W, quantity: 1}\n", ""},
		"sealed":             {"owner_auth: {escrow_public_key: " + pubPath + "}\nwork_order: {id: W, quantity: 1, " + ft + "}\n", ""},
		"policy none":        {"owner_auth: {policy: none}\nwork_order: {id: W, quantity: 1, signing_key: off, " + ft + "}\n", ""},
		"no owner_auth":      {"work_order: {id: W, quantity: 1, " + ft + "}\n", "work_order.firmware_trust needs owner_auth"},
		"both":               {"owner_auth: {policy: none, escrow_public_key: " + pubPath + "}\nwork_order: {id: W, quantity: 1}\n", "not both"},
		"policy other":       {"owner_auth: {policy: later}\nwork_order: {id: W, quantity: 1}\n", "owner_auth.policy"},
		"escrow not a key":   {"owner_auth: {escrow_public_key: not.pem}\nwork_order: {id: W, quantity: 1}\n", "escrow public key"},
		"root not a cert":    {"owner_auth: {policy: none}\nwork_order: {id: W, quantity: 1, firmware_trust: {roots: [not.pem], policy_version: 1, device_class: c}}\n", "no PEM certificate"},
		"no policy version":  {"owner_auth: {policy: none}\nwork_order: {id: W, quantity: 1, firmware_trust: {roots: [release-root.pem], device_class: c}}\n", "policy_version"},
		"signing_key maybe":  {"work_order: {id: W, quantity: 1, signing_key: maybe}\n", "signing_key"},
		"in work_orders too": {"work_order: {id: W, quantity: 1}\nwork_orders: [{id: W2, quantity: 1, " + ft + "}]\n", "work_orders[0].firmware_trust needs owner_auth"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		if err := os.WriteFile(p, []byte(base+tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(p)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		tr, err := cfg.TrustConfig()
		if err != nil {
			t.Errorf("%s: TrustConfig: %v", name, err)
			continue
		}
		switch name {
		case "default":
			if tr.Firmware != nil || tr.OwnerAuth.Escrow != nil || tr.OwnerAuth.None || tr.SigningKey != "" {
				t.Errorf("default: %+v", tr)
			}
		case "sealed":
			if tr.Firmware == nil || tr.OwnerAuth.Escrow == nil || len(tr.Firmware.Roots) != 1 || tr.Firmware.CRLs[0].Number.Int64() != 9 || tr.Firmware.PolicyVersion != 3 {
				t.Errorf("sealed: %+v", tr)
			}
		case "policy none":
			if !tr.OwnerAuth.None || tr.SigningKey != SigningKeyOff {
				t.Errorf("policy none: %+v", tr)
			}
		}
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
