package se

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSignInternalMessageLayout checks the 55-byte message against the
// datasheet's table ("Sign – Internal Message", serial number included),
// written out byte by byte here rather than with the builder's code.
func TestSignInternalMessageLayout(t *testing.T) {
	var tk [32]byte
	for i := range tk {
		tk[i] = byte(0xA0 + i)
	}
	sn := [9]byte{0x01, 0x23, 0xB1, 0xB2, 0xC4, 0xC5, 0xC6, 0xC7, 0xEE}
	cfg := &Config{}
	cfg.SetSlotConfig(3, 0x2083)
	cfg.SetKeyConfig(3, 0x0033)
	cfg.Raw[cfgSlotLocked], cfg.Raw[cfgSlotLocked+1] = 0xFF, 0xFF
	flags := TempKeyFlags{KeyID: 3, GenKeyData: true}
	got := SignInternalMessage(tk, 0x40, 2, cfg, flags, sn)
	want := hex.EncodeToString(tk[:]) +
		"41" + "40" + "0200" + // opcode, mode, KeyID LE
		"8320" + "3300" + // SlotConfig[3], KeyConfig[3] LE
		"43" + // TempKeyFlags: KeyID 3, GenKeyData
		"0000" + // zeros
		"ee" + "c4c5c6c7" + "0123" + "b1b2" + // SN[8], SN[4:7], SN[0:1], SN[2:3]
		"01" + "00" + "00" // slot 3 unlocked, pubkey valid, zero
	if hex.EncodeToString(got[:]) != want {
		t.Fatalf("sign internal message\n got %x\nwant %s", got, want)
	}
	// Without SignModeIncludeSN the middle serial bytes are zeros; a locked
	// slot gives 00.
	cfg.Raw[cfgSlotLocked] = 0xF7
	got = SignInternalMessage(tk, 0x00, 2, cfg, flags, sn)
	if !bytes.Equal(got[43:55], []byte{0xEE, 0, 0, 0, 0, 0x01, 0x23, 0, 0, 0x00, 0, 0}) || got[33] != 0 {
		t.Fatalf("without serial: % x", got[33:])
	}
	if (TempKeyFlags{KeyID: 0x1F, SourceFlag: true, GenDigData: true, GenKeyData: true, NoMacFlag: true}).Byte() != 0xFF {
		t.Fatal("TempKeyFlags bits")
	}
}

// TestGenKeyDigestMessageLayout: the 128-byte PubKey digest message.
func TestGenKeyDigestMessageLayout(t *testing.T) {
	var tk [32]byte
	xy := bytes.Repeat([]byte{0x5A}, 64)
	sn := [9]byte{0x01, 0x23, 2, 3, 4, 5, 6, 7, 0xEE}
	m, err := GenKeyDigestMessage(tk, 0x0C, 0x0102, sn, xy)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat("00", 32) + "40" + "0c" + "0201" + "ee" + "0123" + strings.Repeat("00", 25) + strings.Repeat("5a", 64)
	if hex.EncodeToString(m[:]) != want {
		t.Fatalf("genkey message\n got %x\nwant %s", m, want)
	}
	if _, err := GenKeyDigestMessage(tk, 0x0C, 0, sn, xy[:63]); err == nil {
		t.Fatal("short public key accepted")
	}
	// Nonce: SHA-256 over 55 bytes.
	var ro [32]byte
	var ni [20]byte
	got := NonceRandomTempKey(ro, ni, 0)
	if want := sha256.Sum256(append(make([]byte, 52), 0x16, 0, 0)); got != want {
		t.Fatal("nonce TempKey")
	}
}

// testMfgIssuer is a vendor CA for the package's tests: the test PKI's
// intermediate signs attestation certificates shaped like Microchip's.
func testMfgIssuer(t testing.TB, p *testPKI) MfgIssuer {
	return func(pub *ecdsa.PublicKey, sn [9]byte) (*x509.Certificate, *x509.Certificate, error) {
		serial, nb, na, err := DeviceCertParams(pub, time.Now(), 0)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "sn" + ChipSerialText(sn), Organization: []string{"test vendor"}},
			NotBefore: nb, NotAfter: na, KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, p.inter, pub, p.interKey)
		if err != nil {
			return nil, nil, err
		}
		c, err := x509.ParseCertificate(der)
		return c, p.inter, err
	}
}

func TestAttestKeyOnEmulator(t *testing.T) {
	p := newTestPKI(t)
	state := filepath.Join(t.TempDir(), "chip.json")
	e, err := OpenEmulator(state, WithDatasheetTimings(false))
	if err != nil {
		t.Fatal(err)
	}
	c := New(e, DefaultAddress)
	defs, err := c.Manufacture(testMfgIssuer(t, p))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Manufacture(testMfgIssuer(t, p)); err == nil {
		t.Fatal("a locked chip was manufactured again")
	}
	cfg, err := c.Personalize() // both zones locked at the factory: only checked
	if err != nil {
		t.Fatal(err)
	}
	sn := cfg.SerialNumber()
	for _, s := range []int{SlotAttestationKey, SlotMfgDeviceCert, SlotMfgSignerCert, SlotMfgSignerPubKey} {
		if !cfg.SlotLocked(s) {
			t.Fatalf("slot %d not locked at the factory", s)
		}
	}
	chain, err := c.ReadMfgChain(defs, sn)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	if dev.Subject.CommonName != "sn"+cfg.SerialHex() || !bytes.Equal(chain[1], p.inter.Raw) {
		t.Fatalf("manufacturer chain: CN %q", dev.Subject.CommonName)
	}
	if d, _ := c.ReadSlot(SlotMfgDeviceCert); len(d) != CompressedSize {
		t.Fatal("device certificate not stored compressed")
	}
	// Another chip's serial rebuilds a certificate whose signature fails.
	other := sn
	other[3] ^= 1
	if _, err := c.ReadMfgChain(defs, other); err == nil {
		t.Fatal("chain rebuilt for a foreign serial")
	}
	attPub := dev.PublicKey.(*ecdsa.PublicKey)

	// The attestation key: never replaced, never signs host digests.
	if _, err := c.GenKey(SlotAttestationKey); !errors.Is(err, StatusExecution) {
		t.Fatalf("GenKey on the attestation slot after manufacture: %v", err)
	}
	digest := sha256.Sum256([]byte("host message"))
	if _, err := c.Sign(SlotAttestationKey, digest[:]); !errors.Is(err, StatusExecution) {
		t.Fatalf("external Sign with the attestation key: %v", err)
	}
	// Sign internal of a host-loaded TempKey is refused.
	err = c.session(func() error {
		if _, err := c.execute(OpNonce, noncePassThru, 0, digest[:], 0); err != nil {
			return err
		}
		_, err := c.execute(OpSign, SignModeInternal|SignModeIncludeSN, SlotAttestationKey, nil, 64)
		return err
	})
	if !errors.Is(err, StatusExecution) {
		t.Fatalf("Sign internal of a pass-through TempKey: %v", err)
	}

	// Attest a new key, then the same key again.
	e.ResetStats()
	numIn := NumInFromNonce([]byte("station nonce 0001"))
	a, err := c.AttestKey(SlotDeviceKey, SlotAttestationKey, true, numIn)
	if err != nil {
		t.Fatal(err)
	}
	st := e.Stats()
	if st.Commands[OpNonce] != 1 || st.Commands[OpGenKey] != 1 || st.Commands[OpSign] != 1 || st.Wakes != 1 ||
		st.DatasheetTime != WakeHigh+MaxExecTime[OpNonce]+MaxExecTime[OpGenKey]+MaxExecTime[OpSign] {
		t.Fatalf("attestation commands %v, wakes %d, datasheet time %s", st.Commands, st.Wakes, st.DatasheetTime)
	}
	if e.tempValid || e.tempFlags != (TempKeyFlags{KeyID: SlotDeviceKey, GenKeyData: true}) {
		t.Fatalf("TempKey after Sign: valid %v flags %+v", e.tempValid, e.tempFlags)
	}
	if a.GenKeyMode != 0x0C || a.SignMode != 0x40 {
		t.Fatalf("modes 0x%02x 0x%02x", a.GenKeyMode, a.SignMode)
	}
	if err := a.Verify(cfg, numIn, attPub); err != nil {
		t.Fatal(err)
	}
	if err := a.Verify(cfg, NumInFromNonce([]byte("another nonce")), attPub); !errors.Is(err, ErrAttestationSignature) {
		t.Fatalf("other nonce: %v", err)
	}
	devPub, err := c.PublicKey(SlotDeviceKey)
	if err != nil || !devPub.Equal(a.PublicKey) {
		t.Fatalf("attested key is not slot 0's key: %v", err)
	}
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	swapped := *a
	swapped.PublicKey = &k2.PublicKey
	if err := swapped.Verify(cfg, numIn, attPub); !errors.Is(err, ErrAttestationSignature) {
		t.Fatalf("swapped key: %v", err)
	}

	// Power cycle: the attestation key and its chain survive; an existing
	// key is attested with GenKey 0x08.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2, err := OpenEmulator(state)
	if err != nil {
		t.Fatal(err)
	}
	c2 := New(e2, DefaultAddress)
	b, err := c2.AttestKey(SlotDeviceKey, SlotAttestationKey, false, numIn)
	if err != nil {
		t.Fatal(err)
	}
	if b.GenKeyMode != GenKeyModeDigest || !b.PublicKey.Equal(a.PublicKey) || b.RandOut == a.RandOut {
		t.Fatalf("second attestation: mode 0x%02x, same key %v, fresh RandOut %v", b.GenKeyMode, b.PublicKey.Equal(a.PublicKey), b.RandOut != a.RandOut)
	}
	if err := b.Verify(cfg, numIn, attPub); err != nil {
		t.Fatal(err)
	}
	// After the device-key slot is locked the lock bit in the message
	// changes: the old config no longer verifies the new attestation.
	if err := c2.LockSlot(SlotDeviceKey, nil); err != nil {
		t.Fatal(err)
	}
	locked, _ := c2.ReadConfig()
	l, err := c2.AttestKey(SlotDeviceKey, SlotAttestationKey, false, numIn)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(locked, numIn, attPub); err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(cfg, numIn, attPub); !errors.Is(err, ErrAttestationSignature) {
		t.Fatalf("lock bit not in the message: %v", err)
	}
	if _, err := c2.AttestKey(SlotDeviceKey, SlotAttestationKey, true, numIn); !errors.Is(err, StatusExecution) {
		t.Fatalf("GenKey create on a locked slot: %v", err)
	}
}

// TestManufactureWithoutCertificates: a chip with an attestation key but no
// manufacturer chain reports ErrNoMfgChain.
func TestManufactureWithoutCertificates(t *testing.T) {
	_, c := newBlank(t, nil)
	defs, err := c.Manufacture(nil, WithoutMfgCertificates())
	if err != nil || defs != nil {
		t.Fatalf("manufacture: %v %v", defs, err)
	}
	cfg, _ := c.ReadConfig()
	if ok, err := c.KeyValid(SlotAttestationKey); err != nil || !ok {
		t.Fatalf("attestation key: %v %v", ok, err)
	}
	p := newTestPKI(t)
	_, other := newBlank(t, nil)
	realDefs, err := other.Manufacture(testMfgIssuer(t, p))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadMfgChain(realDefs, cfg.SerialNumber()); !errors.Is(err, ErrNoMfgChain) {
		t.Fatalf("chip without certificates: %v", err)
	}
	if _, err := c.ReadMfgChain(nil, cfg.SerialNumber()); !errors.Is(err, ErrNoMfgChain) {
		t.Fatalf("no definitions: %v", err)
	}
	if _, err := ReadMfgDefs(filepath.Join(t.TempDir(), "none.json")); !errors.Is(err, ErrNoMfgChain) {
		t.Fatalf("missing definitions file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "defs.json")
	if err := WriteMfgDefs(path, realDefs); err != nil {
		t.Fatal(err)
	}
	back, err := ReadMfgDefs(path)
	if err != nil || back.Device.ChipSerial != realDefs.Device.ChipSerial || !bytes.Equal(back.Device.TBS, realDefs.Device.TBS) {
		t.Fatalf("definitions round trip: %v", err)
	}
}

// TestChipTemplate: the chip serial is cut out of the template and put
// back by DecompressChip; Decompress refuses such a template.
func TestChipTemplate(t *testing.T) {
	p := newTestPKI(t)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sn := [9]byte{0x01, 0x23, 0xAB, 0xCD, 0xEF, 0x01, 0x02, 0x03, 0xEE}
	dev, signer, err := testMfgIssuer(t, p)(&k.PublicKey, sn)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := NewChipTemplate(dev, signer.PublicKey.(*ecdsa.PublicKey), sn)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(tmpl.TBS, []byte(ChipSerialText(sn))) {
		t.Fatal("template still holds the chip serial")
	}
	comp, err := Compress(dev, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	der, err := DecompressChip(&comp, tmpl, &k.PublicKey, signer.PublicKey.(*ecdsa.PublicKey), sn)
	if err != nil || !bytes.Equal(der, dev.Raw) {
		t.Fatalf("rebuild: %v", err)
	}
	if _, err := Decompress(&comp, tmpl, &k.PublicKey, signer.PublicKey.(*ecdsa.PublicKey)); err == nil {
		t.Fatal("Decompress ignored the chip serial field")
	}
	if _, err := NewChipTemplate(dev, nil, [9]byte{9}); !errors.Is(err, ErrNotCompressible) {
		t.Fatalf("serial absent from the certificate: %v", err)
	}
}
