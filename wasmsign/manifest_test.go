package wasmsign

import (
	"bytes"
	"errors"
	"testing"

	"crypto/ecdsa"
	"crypto/x509"

	"github.com/fxamacker/cbor/v2"
)

func testManifest() *Manifest {
	return &Manifest{Format: ManifestFormat, Component: "sensor-fw", Version: 7, MinVersion: 5,
		DeviceClass: "gw-1", Serials: []string{"TPM-01", "TPM-02"}, Expires: 1893456000}
}

func TestManifestSignedAndVerified(t *testing.T) {
	p := newPKI(t, "mf")
	key, leaf := p.leaf(t, leafOpts{device: "TPM-01"})
	withM, err := AddManifest(addModule, testManifest())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AddManifest(withM, testManifest()); !errors.Is(err, ErrManifest) {
		t.Fatalf("second manifest: %v", err)
	}
	signed := signECDSA(t, withM, key, leaf, p.inter)
	if _, err := AddManifest(signed, testManifest()); !errors.Is(err, ErrManifest) {
		t.Fatalf("manifest into a signed module: %v", err)
	}
	res, err := Verify(signed, p.policy())
	wantValid(t, res, err)
	if res.Manifest == nil || res.Manifest.Version != 7 || res.Manifest.DeviceClass != "gw-1" || !res.Manifest.AllowsSerial("TPM-02") || res.Manifest.AllowsSerial("TPM-03") {
		t.Fatalf("manifest in result: %+v", res.Manifest)
	}
	res, err = VerifyReader(bytes.NewReader(signed), p.policy())
	wantValid(t, res, err)
	if res.Manifest == nil || res.Manifest.MinVersion != 5 {
		t.Fatalf("streamed manifest: %+v", res.Manifest)
	}
	compileAndCall(t, signed)
	m, err := ReadManifest(bytes.NewReader(signed))
	if err != nil || m.Component != "sensor-fw" {
		t.Fatalf("ReadManifest: %+v %v", m, err)
	}

	// The signature covers the manifest: change the version byte in place.
	enc, _ := MarshalManifest(testManifest())
	i := bytes.Index(signed, enc)
	if i < 0 {
		t.Fatal("manifest bytes not found in the signed module")
	}
	other := *testManifest()
	other.Version = 8
	enc8, _ := MarshalManifest(&other)
	if len(enc8) != len(enc) {
		t.Fatal("test needs same-length encodings")
	}
	tampered := bytes.Clone(signed)
	copy(tampered[i:], enc8)
	res, err = Verify(tampered, p.policy())
	wantErr(t, res, err, ErrHashMismatch)
}

func TestManifestStrictDecoding(t *testing.T) {
	good, err := MarshalManifest(testManifest())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseManifest(good); err != nil {
		t.Fatal(err)
	}
	lenient, _ := cbor.EncOptions{Sort: cbor.SortNone}.EncMode()
	unknown, _ := cbor.Marshal(map[int]any{0: 1, 1: "c", 2: 1, 3: 1, 4: "k", 99: 1})
	dup := append([]byte{0xa6}, good[1:]...) // claims 6 pairs, has 7 → trailing/duplicate
	unsorted, _ := lenient.Marshal(map[int]any{4: "k", 0: 1, 1: "c", 2: 1, 3: 1})
	bad := []struct {
		name string
		m    *Manifest
		raw  []byte
	}{
		{name: "min above version", m: &Manifest{Format: 1, Component: "c", Version: 1, MinVersion: 2, DeviceClass: "k"}},
		{name: "no class", m: &Manifest{Format: 1, Component: "c", Version: 1}},
		{name: "control char", m: &Manifest{Format: 1, Component: "c\x1b[2J", Version: 1, DeviceClass: "k"}},
		{name: "dup serial", m: &Manifest{Format: 1, Component: "c", Version: 1, DeviceClass: "k", Serials: []string{"a", "a"}}},
		{name: "format", m: &Manifest{Format: 2, Component: "c", Version: 1, DeviceClass: "k"}},
		{name: "unknown key", raw: unknown},
		{name: "count mismatch", raw: dup},
		{name: "not canonical", raw: unsorted},
		{name: "empty", raw: []byte{}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if tc.m != nil {
				if _, err := MarshalManifest(tc.m); !errors.Is(err, ErrManifest) {
					t.Fatalf("marshal: %v", err)
				}
				return
			}
			if _, err := ParseManifest(tc.raw); !errors.Is(err, ErrManifest) {
				t.Fatalf("parse: %v", err)
			}
		})
	}
}

func TestManifestSectionUndecodableFailsVerification(t *testing.T) {
	p := newPKI(t, "mf2")
	key, leaf := p.leaf(t, leafOpts{device: "TPM-01"})
	mod := cat(addModule[:8], customSection(ManifestSectionName, []byte{0xff}), addModule[8:])
	signed := signECDSA(t, mod, key, leaf, p.inter)
	res, err := Verify(signed, p.policy())
	wantErr(t, res, err, ErrManifest)
	two := cat(addModule[:8], customSection(ManifestSectionName, nil), customSection(ManifestSectionName, nil), addModule[8:])
	res, err = Verify(signECDSAMaybe(two, key, leaf, p.inter), p.policy())
	wantErr(t, res, err, ErrMalformed)
}

// signECDSAMaybe returns the module unsigned when signing refuses it (a
// malformed module), so that verification reports the defect.
func signECDSAMaybe(mod []byte, key *ecdsaKey, chain ...*x509Cert) []byte {
	out, err := Sign(mod, key, chain, nil)
	if err != nil {
		return mod
	}
	return out
}

type (
	ecdsaKey = ecdsa.PrivateKey
	x509Cert = x509.Certificate
)
