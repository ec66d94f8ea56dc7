package anchors

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"
)

func testPolicy() *Policy {
	return &Policy{Version: 3, CounterBase: 41, DeviceClass: "gw-1",
		Roots:     []Fingerprint{sha256.Sum256([]byte("root-b")), sha256.Sum256([]byte("root-a"))},
		CRLFloors: []CRLFloor{{Issuer: IssuerID([]byte("inter")), MinNumber: 9}, {Issuer: IssuerID([]byte("root")), MinNumber: 2}}}
}

func TestRoundTrip(t *testing.T) {
	b, err := testPolicy().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 3 || p.CounterBase != 41 || p.DeviceClass != "gw-1" || len(p.Roots) != 2 ||
		!p.HasRoot(sha256.Sum256([]byte("root-a"))) || p.HasRoot(sha256.Sum256([]byte("root-c"))) ||
		p.MinCRLNumber(IssuerID([]byte("inter"))) != 9 || p.MinCRLNumber(IssuerID([]byte("x"))) != 0 {
		t.Fatalf("parsed %+v", p)
	}
	// Input order does not matter: the encoding is canonical.
	q := testPolicy()
	q.Roots[0], q.Roots[1] = q.Roots[1], q.Roots[0]
	b2, _ := q.Marshal()
	if !bytes.Equal(b, b2) {
		t.Fatal("encoding depends on input order")
	}
	if len(b) != 4+2+4+8+1+4+1+64+1+80+32 {
		t.Fatalf("encoding is %d bytes", len(b))
	}
}

func TestRejects(t *testing.T) {
	good, _ := testPolicy().Marshal()
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x01
		if _, err := Parse(bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	if _, err := Parse(append(bytes.Clone(good), 0)); !errors.Is(err, ErrInvalid) {
		t.Fatal("trailing byte accepted")
	}
	if _, err := Parse(good[:len(good)-1]); !errors.Is(err, ErrInvalid) {
		t.Fatal("truncated accepted")
	}
	for name, p := range map[string]*Policy{
		"no roots":  {DeviceClass: "c"},
		"no class":  {Roots: []Fingerprint{{1}}},
		"dup root":  {DeviceClass: "c", Roots: []Fingerprint{{1}, {1}}},
		"ctl class": {DeviceClass: "c\n", Roots: []Fingerprint{{1}}},
		"dup floor": {DeviceClass: "c", Roots: []Fingerprint{{1}}, CRLFloors: []CRLFloor{{Issuer: Fingerprint{2}}, {Issuer: Fingerprint{2}, MinNumber: 1}}},
	} {
		if _, err := p.Marshal(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
