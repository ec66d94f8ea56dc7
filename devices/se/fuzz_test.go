package se

import (
	"crypto/x509"
	"testing"
)

// FuzzEmulatorCommand feeds arbitrary command packets (with a valid count
// and CRC, so that parsing and execution are reached) to a personalised
// emulator: it must answer with a well-formed packet and never panic.
func FuzzEmulatorCommand(f *testing.F) {
	e, c := newProvisioned(f)
	if _, err := c.GenKey(SlotDeviceKey); err != nil {
		f.Fatal(err)
	}
	f.Add(byte(OpRead), byte(0x82), uint16(0x0050), []byte{})
	f.Add(byte(OpWrite), byte(0x02), uint16(0x0050), []byte{1, 2, 3, 4})
	f.Add(byte(OpGenKey), byte(0x04), uint16(0), []byte{})
	f.Add(byte(OpSign), byte(0x80), uint16(0), []byte{})
	f.Add(byte(OpVerify), byte(0x02), uint16(4), make([]byte, 128))
	f.Add(byte(OpLock), byte(0x82), uint16(0), []byte{})
	f.Add(byte(OpNonce), byte(0x03), uint16(0), make([]byte, 32))
	f.Add(byte(OpInfo), byte(0x01), uint16(15), []byte{})
	f.Fuzz(func(t *testing.T, op, p1 byte, p2 uint16, data []byte) {
		if len(data) > 150 {
			data = data[:150]
		}
		pkt := append([]byte{byte(7 + len(data)), op, p1, byte(p2), byte(p2 >> 8)}, data...)
		pkt = appendCRC(pkt)
		e.PowerCycle()
		_ = e.Tx(0, []byte{0}, nil)
		var wake [4]byte
		if err := e.Tx(DefaultAddress, nil, wake[:]); err != nil {
			t.Fatal(err)
		}
		if err := e.Tx(DefaultAddress, append([]byte{wordCommand}, pkt...), nil); err != nil {
			t.Fatal(err)
		}
		var n [1]byte
		if err := e.Tx(DefaultAddress, nil, n[:]); err != nil {
			t.Fatal(err)
		}
		if n[0] < 4 {
			t.Fatalf("response count %d", n[0])
		}
		resp := make([]byte, n[0])
		resp[0] = n[0]
		if err := e.Tx(DefaultAddress, nil, resp[1:]); err != nil || !checkCRC(resp) {
			t.Fatalf("malformed response % x (%v)", resp, err)
		}
	})
}

// FuzzDecompress rebuilds certificates from arbitrary compressed bytes
// under a real template: it must not panic, and whatever it returns must be
// a certificate that parses.
func FuzzDecompress(f *testing.F) {
	p := newTestPKI(f)
	k := p.interKey // any P-256 key
	leaf := p.issueDevice(f, &k.PublicKey, "F", leafOpts{})
	tmpl, err := NewTemplate(leaf, KindDevice, &p.interKey.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	comp, err := Compress(leaf, tmpl)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(comp[:])
	f.Add(make([]byte, 72))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Compressed
		copy(c[:], b)
		der, err := Decompress(&c, tmpl, &k.PublicKey, &p.interKey.PublicKey)
		if err != nil {
			return
		}
		if _, err := x509.ParseCertificate(der); err != nil {
			// Invalid dates (month 15) give an unparsable time; anything
			// else is a bug.
			y, m, d, h, _ := DecodeDates(c.EncodedDates())
			if m >= 1 && m <= 12 && d >= 1 && d <= 28 && h <= 23 && y+int(c[66]&0x1F) < 2050 {
				t.Fatalf("rebuilt certificate does not parse: %v", err)
			}
		}
	})
}
