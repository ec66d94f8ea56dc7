package se

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// newBlank returns a blank emulated chip and its driver.
func newBlank(t testing.TB, eopts []EmulatorOption, copts ...Option) (*Emulator, *Chip) {
	t.Helper()
	e := NewEmulator(eopts...)
	return e, New(e, DefaultAddress, copts...)
}

// newProvisioned returns an emulated chip in the provisioning configuration
// (config and data zones locked).
func newProvisioned(t testing.TB, eopts ...EmulatorOption) (*Emulator, *Chip) {
	t.Helper()
	e, c := newBlank(t, eopts)
	if _, err := c.Personalize(); err != nil {
		t.Fatal(err)
	}
	return e, c
}

func TestCRC16(t *testing.T) {
	// The wake status packet carries its own CRC: 04 11 -> 33 43.
	if got := CRC16([]byte{0x04, 0x11}); got != 0x4333 {
		t.Fatalf("CRC16(04 11) = %04x, want 4333", got)
	}
	if !checkCRC(WakeResponse[:]) {
		t.Fatal("wake response fails its CRC")
	}
	if got := statusPacket(StatusParse); len(got) != 4 || got[1] != 0x03 || !checkCRC(got) {
		t.Fatalf("status packet % x", got)
	}
	if checkCRC([]byte{0x04, 0x11, 0x33, 0x44}) {
		t.Fatal("corrupted CRC accepted")
	}
}

func TestWakeSleepIdle(t *testing.T) {
	e, c := newBlank(t, nil)
	// Asleep: the chip does not acknowledge its address.
	var r [4]byte
	if err := e.Tx(DefaultAddress, nil, r[:]); !errors.Is(err, ErrNACK) {
		t.Fatalf("read from sleeping chip: %v, want NACK", err)
	}
	// Wake token, then the after-wake status 0x11.
	_ = e.Tx(0, []byte{0}, nil)
	if err := e.Tx(DefaultAddress, nil, r[:]); err != nil || r != WakeResponse {
		t.Fatalf("wake response % x, %v", r, err)
	}
	if Status(r[1]) != StatusAfterWake {
		t.Fatalf("status %v", Status(r[1]))
	}
	// Word address 0x00 rewinds the output buffer: the same packet again.
	if err := e.Tx(DefaultAddress, []byte{wordReset}, r[:]); err != nil || r != WakeResponse {
		t.Fatalf("re-read % x, %v", r, err)
	}
	// Sleep: NACK again.
	if err := e.Tx(DefaultAddress, []byte{wordSleep}, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.Tx(DefaultAddress, nil, r[:]); !errors.Is(err, ErrNACK) {
		t.Fatalf("after sleep: %v", err)
	}
	// At 400 kHz the address byte is too short (20 us < tWLO) to wake it.
	if err := e.SetSpeed(400 * physic.KiloHertz); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Info(); !errors.Is(err, ErrWake) {
		t.Fatalf("wake at 400 kHz: %v, want ErrWake", err)
	}
	_ = e.SetSpeed(100 * physic.KiloHertz)
	rev, err := c.Info()
	if err != nil || rev != [4]byte{0, 0, 0x60, 0x02} {
		t.Fatalf("Info = % x, %v", rev, err)
	}
	// A chip left awake by an interrupted session: the driver idles and
	// wakes it again.
	_ = e.Tx(0, []byte{0}, nil)
	_ = e.Tx(DefaultAddress, nil, r[:])
	if _, err := c.Info(); err != nil {
		t.Fatalf("Info on a chip left awake: %v", err)
	}
	if c.Stats().WakeRetries == 0 {
		t.Fatal("expected a wake retry")
	}
	// Another address: NACK.
	if err := e.Tx(0x61, nil, r[:]); !errors.Is(err, ErrNACK) {
		t.Fatalf("wrong address: %v", err)
	}
}

func TestWatchdogPutsChipToSleep(t *testing.T) {
	e, _ := newBlank(t, []EmulatorOption{WithWatchdog(30 * time.Millisecond)})
	var r [4]byte
	_ = e.Tx(0, []byte{0}, nil)
	if err := e.Tx(DefaultAddress, nil, r[:]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(40 * time.Millisecond)
	if err := e.Tx(DefaultAddress, nil, r[:]); !errors.Is(err, ErrNACK) {
		t.Fatalf("after the watchdog: %v, want NACK", err)
	}
}

func TestRandomAndConfigLock(t *testing.T) {
	_, c := newBlank(t, nil)
	if _, err := c.Random(); !errors.Is(err, StatusExecution) {
		t.Fatalf("Random before config lock: %v, want the fixed-pattern error", err)
	}
	if _, err := c.Personalize(); err != nil {
		t.Fatal(err)
	}
	a, err := c.Random()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.Random()
	if a == b {
		t.Fatal("two equal random outputs")
	}
	var in [20]byte
	if _, err := c.NonceRandom(in); err != nil {
		t.Fatal(err)
	}
}

func TestPersonalizeAndConfigParse(t *testing.T) {
	sn := [9]byte{0x01, 0x23, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0xEE}
	_, c := newBlank(t, []EmulatorOption{WithSerialNumber(sn)})
	cfg, err := c.Personalize()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SerialNumber() != sn || cfg.SerialHex() != "0123AABBCCDDEEFFEE" {
		t.Fatalf("serial %s", cfg.SerialHex())
	}
	if !cfg.ConfigLocked() || !cfg.DataLocked() || cfg.I2CAddress() != DefaultAddress || cfg.Revision() != [4]byte{0, 0, 0x60, 2} {
		t.Fatalf("config: locked %v/%v addr %x rev % x", cfg.ConfigLocked(), cfg.DataLocked(), cfg.I2CAddress(), cfg.Revision())
	}
	if sc, kc := cfg.SlotConfig(0), cfg.KeyConfig(0); !kc.Private() || !sc.IsSecret() || !sc.ExternalSign() || !sc.GenKeyAfterLock() || kc.KeyType() != KeyTypeP256 {
		t.Fatalf("slot 0: %04x %04x", uint16(sc), uint16(kc))
	}
	if p := cfg.SlotPolicy(0); p != "P-256 private key (never readable), external sign, GenKey after data lock, secret, lockable" {
		t.Fatalf("slot 0 policy %q", p)
	}
	if p := cfg.SlotPolicy(10); p != "data, clear read, clear write, lockable" {
		t.Fatalf("slot 10 policy %q", p)
	}
	// Idempotent.
	if _, err := c.Personalize(); err != nil {
		t.Fatalf("second Personalize: %v", err)
	}
	// A locked chip with another configuration is refused.
	bad := ProvisioningConfig(cfg)
	bad.SetSlotConfig(0, 0x2003) // not secret
	if err := CheckProvisioningConfig(bad); !errors.Is(err, ErrConfigMismatch) {
		t.Fatalf("CheckProvisioningConfig: %v", err)
	}
	if _, err := ParseConfig(make([]byte, 10)); err == nil {
		t.Fatal("short config parsed")
	}
}

func TestGenKeySignVerify(t *testing.T) {
	_, c := newProvisioned(t)
	valid, err := c.KeyValid(SlotDeviceKey)
	if err != nil || valid {
		t.Fatalf("KeyValid before GenKey: %v %v", valid, err)
	}
	pub, err := c.GenKey(SlotDeviceKey)
	if err != nil {
		t.Fatal(err)
	}
	if valid, _ := c.KeyValid(SlotDeviceKey); !valid {
		t.Fatal("KeyValid false after GenKey")
	}
	again, err := c.PublicKey(SlotDeviceKey)
	if err != nil || !again.Equal(pub) {
		t.Fatalf("PublicKey: %v", err)
	}
	digest := sha256.Sum256([]byte("module"))
	rs, err := c.Sign(SlotDeviceKey, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(pub, digest[:], RawToASN1(rs)) {
		t.Fatal("chip signature does not verify in Go")
	}
	ok, err := c.Verify(pub, digest[:], rs)
	if err != nil || !ok {
		t.Fatalf("Verify: %v %v", ok, err)
	}
	other := sha256.Sum256([]byte("other"))
	if ok, err := c.Verify(pub, other[:], rs); err != nil || ok {
		t.Fatalf("Verify of another digest: %v %v", ok, err)
	}
	// Verify stored: the public key in slot 11.
	slot, _ := PublicKeySlot(pub)
	if err := c.WriteSlot(SlotSignerPubKey, 0, slot); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.VerifyStored(SlotSignerPubKey, digest[:], rs); err != nil || !ok {
		t.Fatalf("VerifyStored: %v %v", ok, err)
	}
	if ok, _ := c.VerifyStored(SlotSignerPubKey, other[:], rs); ok {
		t.Fatal("VerifyStored accepted another digest")
	}
	// The crypto.Signer.
	s, err := NewSigner(c, SlotDeviceKey)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := s.Sign(nil, digest[:], nil)
	if err != nil || !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatalf("Signer: %v", err)
	}
	// GenKey again (slot 0 allows it after the data lock): a new key.
	pub2, err := c.GenKey(SlotDeviceKey)
	if err != nil || pub2.Equal(pub) {
		t.Fatalf("second GenKey: %v", err)
	}
}

func TestStatusCodes(t *testing.T) {
	_, c := newProvisioned(t)
	if _, err := c.GenKey(SlotDeviceKey); err != nil {
		t.Fatal(err)
	}
	badPub := make([]byte, 128) // signature + a point not on the curve
	badPub[64] = 1
	tests := []struct {
		name    string
		op      Opcode
		p1      uint8
		p2      uint16
		data    []byte
		respLen int
		want    Status
	}{
		{"unknown opcode", 0x77, 0, 0, nil, 0, StatusParse},
		{"unknown Info mode", OpInfo, 0x09, 0, nil, 4, StatusParse},
		{"Read zone 3", OpRead, 0x03, 0, nil, 4, StatusParse},
		{"Read beyond slot 0", OpRead, uint8(ZoneData) | readWrite32, dataAddr(0, 2, 0), nil, 32, StatusParse},
		{"Read beyond config", OpRead, uint8(ZoneConfig) | readWrite32, zoneAddr(4, 0), nil, 32, StatusParse},
		{"Nonce short input", OpNonce, noncePassThru, 0, make([]byte, 31), 0, StatusParse},
		{"Nonce unknown mode", OpNonce, 0x02, 0, make([]byte, 32), 0, StatusParse},
		{"Write wrong length", OpWrite, uint8(ZoneData), dataAddr(10, 0, 0), make([]byte, 8), 0, StatusParse},
		{"Sign invalidate mode", OpSign, 0x01, 0, nil, 64, StatusParse},
		{"Sign message-digest-buffer mode", OpSign, 0xA0, 0, nil, 64, StatusParse},
		{"GenKey stored public key digest mode", OpGenKey, GenKeyModePubKeyDigest, 11, make([]byte, 3), 0, StatusParse},
		{"Sign internal without TempKey", OpSign, SignModeInternal | SignModeIncludeSN, 0, nil, 64, StatusExecution},
		{"GenKey digest without TempKey", OpGenKey, GenKeyModeDigest, 0, nil, 64, StatusExecution},
		{"Verify external bad key type", OpVerify, verifyExternal, 0x0003, badPub, 0, StatusParse},
		{"Lock mode 3", OpLock, 0x03, 0, nil, 0, StatusParse},
		{"Read private key", OpRead, uint8(ZoneData) | readWrite32, dataAddr(0, 0, 0), nil, 32, StatusExecution},
		{"Write config after lock", OpWrite, uint8(ZoneConfig), zoneAddr(0, 5), make([]byte, 4), 0, StatusExecution},
		{"Write private key slot", OpWrite, uint8(ZoneData) | readWrite32, dataAddr(0, 0, 0), make([]byte, 32), 0, StatusExecution},
		{"Write OTP after data lock", OpWrite, uint8(ZoneOTP), zoneAddr(0, 0), make([]byte, 4), 0, StatusExecution},
		{"Write encrypted", OpWrite, uint8(ZoneData) | writeEncrypted, dataAddr(10, 0, 0), make([]byte, 4), 0, StatusExecution},
		{"Sign without TempKey", OpSign, signExternal, 0, nil, 64, StatusExecution},
		{"Sign with a data slot", OpSign, signExternal, 10, nil, 64, StatusExecution},
		{"GenKey slot 1 after data lock", OpGenKey, genKeyCreate, 1, nil, 64, StatusExecution},
		{"GenKey on a data slot", OpGenKey, genKeyCreate, 10, nil, 64, StatusExecution},
		{"Lock config again", OpLock, lockConfig | lockNoCRC, 0, nil, 0, StatusExecution},
		{"Lock data again", OpLock, lockData | lockNoCRC, 0, nil, 0, StatusExecution},
		{"GenKey public of empty slot", OpGenKey, genKeyPublic, 1, nil, 64, StatusECCFault},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Sign consumes TempKey; make sure none is left over.
			if tt.op == OpSign {
				_, _ = c.Execute(OpSign, signExternal, 0, nil, 64)
			}
			_, err := c.Execute(tt.op, tt.p1, tt.p2, tt.data, tt.respLen)
			var ce *CommandError
			if !errors.As(err, &ce) || !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if ce.Op != tt.op || ce.Status != tt.want {
				t.Fatalf("CommandError %+v", ce)
			}
		})
	}
	t.Run("Verify invalid public key", func(t *testing.T) {
		digest := sha256.Sum256(nil)
		if err := c.NonceLoad(digest); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Execute(OpVerify, verifyExternal, keyTypeP256, badPub, 0); !errors.Is(err, StatusECCFault) {
			t.Fatalf("got %v, want ECC fault", err)
		}
	})
	t.Run("Verify miscompare", func(t *testing.T) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		digest := sha256.Sum256([]byte("x"))
		if err := c.NonceLoad(digest); err != nil {
			t.Fatal(err)
		}
		in := make([]byte, 64)
		in[31], in[63] = 1, 1
		xy, _ := PublicKeyBytes(&k.PublicKey)
		if _, err := c.Execute(OpVerify, verifyExternal, keyTypeP256, append(in, xy...), 0); !errors.Is(err, StatusMiscompare) {
			t.Fatalf("got %v, want miscompare", err)
		}
	})
	t.Run("status strings", func(t *testing.T) {
		for s, want := range map[Status]string{StatusCRC: "atecc status 0xff (CRC or communication error)", Status(0x42): "atecc status 0x42"} {
			if s.Error() != want {
				t.Fatalf("%q", s.Error())
			}
		}
	})
}

func TestDataZoneRulesBeforeLock(t *testing.T) {
	_, c := newBlank(t, nil)
	// Data writes need the config lock.
	if err := c.WriteSlot(10, 0, make([]byte, 32)); !errors.Is(err, StatusExecution) {
		t.Fatalf("data write before config lock: %v", err)
	}
	// Config: bytes 0-15 and 84-87 are not writable.
	if err := c.WriteConfigBytes(4, make([]byte, 4)); !errors.Is(err, StatusExecution) {
		t.Fatalf("write RevNum: %v", err)
	}
	if err := c.WriteConfigBytes(84, make([]byte, 4)); !errors.Is(err, StatusExecution) {
		t.Fatalf("write LockValue word: %v", err)
	}
	cfg, _ := c.ReadConfig()
	want := ProvisioningConfig(cfg)
	if err := c.WriteConfigBytes(20, want.Raw[20:84]); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteConfigBytes(88, want.Raw[88:]); err != nil {
		t.Fatal(err)
	}
	// The data lock needs the config lock.
	if err := c.LockData(nil); !errors.Is(err, StatusExecution) {
		t.Fatalf("data lock before config lock: %v", err)
	}
	// A config lock whose summary CRC does not match is refused.
	wrong := want.Raw
	wrong[30] ^= 1
	if err := c.LockConfig(wrong[:]); !errors.Is(err, StatusExecution) {
		t.Fatalf("config lock with wrong CRC: %v", err)
	}
	if err := c.LockConfig(want.Raw[:]); err != nil {
		t.Fatal(err)
	}
	// Before the data lock: slots (even private-key ones) can be written but
	// no slot can be read.
	if err := c.WriteSlot(10, 0, bytes.Repeat([]byte{0xAB}, 72)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteSlot(1, 0, make([]byte, 36)); err != nil {
		t.Fatalf("write private slot before data lock: %v", err)
	}
	if _, err := c.ReadSlot(10); !errors.Is(err, StatusExecution) {
		t.Fatalf("read before data lock: %v", err)
	}
	// GenKey works before the data lock on every private-key slot (1 too).
	if _, err := c.GenKey(SlotSpareKey); err != nil {
		t.Fatalf("GenKey slot 1 before data lock: %v", err)
	}
	// Sign needs the data lock.
	digest := sha256.Sum256(nil)
	if _, err := c.Sign(SlotSpareKey, digest[:]); !errors.Is(err, StatusExecution) {
		t.Fatalf("Sign before data lock: %v", err)
	}
	// A data lock with the wrong summary is refused and changes nothing.
	if err := c.LockData(make([]byte, DataZoneSize+OTPSize)); !errors.Is(err, StatusExecution) {
		t.Fatalf("data lock with wrong CRC: %v", err)
	}
	if cfg, _ := c.ReadConfig(); cfg.DataLocked() {
		t.Fatal("data zone locked by a refused Lock")
	}
	if err := c.LockData(nil); err != nil {
		t.Fatal(err)
	}
	got, err := c.ReadSlot(10)
	if err != nil || !bytes.Equal(got, bytes.Repeat([]byte{0xAB}, 72)) {
		t.Fatalf("read after data lock: %x %v", got, err)
	}
	// The key made before the lock in slot 1 signs now; slot 1 takes no
	// new key.
	if _, err := c.Sign(SlotSpareKey, digest[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenKey(SlotSpareKey); !errors.Is(err, StatusExecution) {
		t.Fatalf("GenKey slot 1 after data lock: %v", err)
	}
}

func TestPrivateSlotNeverReadable(t *testing.T) {
	_, c := newProvisioned(t)
	if _, err := c.GenKey(SlotDeviceKey); err != nil {
		t.Fatal(err)
	}
	for _, rd := range []struct {
		n    int
		addr uint16
	}{{32, dataAddr(0, 0, 0)}, {4, dataAddr(0, 0, 0)}, {4, dataAddr(0, 0, 7)}, {4, dataAddr(0, 1, 0)}} {
		if _, err := c.Read(ZoneData, rd.addr, rd.n); !errors.Is(err, StatusExecution) {
			t.Fatalf("read %d bytes at %04x of the private key slot: %v", rd.n, rd.addr, err)
		}
	}
	if _, err := c.ReadSlot(SlotDeviceKey); !errors.Is(err, StatusExecution) {
		t.Fatal("ReadSlot(0) returned data")
	}
}

func TestSlotLockIrreversible(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chip.json")
	e, err := OpenEmulator(path)
	if err != nil {
		t.Fatal(err)
	}
	c := New(e, DefaultAddress)
	if _, err := c.Personalize(); err != nil {
		t.Fatal(err)
	}
	pub, err := c.GenKey(SlotDeviceKey)
	if err != nil {
		t.Fatal(err)
	}
	content := bytes.Repeat([]byte{0x5A}, 72)
	if err := c.WriteSlot(SlotDeviceCert, 0, content); err != nil {
		t.Fatal(err)
	}
	// The chip refuses a slot lock whose CRC does not match the contents.
	if err := c.LockSlot(SlotDeviceCert, make([]byte, 72)); !errors.Is(err, StatusExecution) {
		t.Fatalf("slot lock with wrong CRC: %v", err)
	}
	if err := c.LockSlot(SlotDeviceCert, content); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteSlot(SlotDeviceCert, 0, make([]byte, 72)); !errors.Is(err, StatusExecution) {
		t.Fatalf("write to a locked slot: %v", err)
	}
	if err := c.LockSlot(SlotDeviceCert, nil); !errors.Is(err, StatusExecution) {
		t.Fatalf("second slot lock: %v", err)
	}
	// GenKey after the lock, per config: slot 0 allows it until locked.
	if err := c.LockSlot(SlotDeviceKey, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenKey(SlotDeviceKey); !errors.Is(err, StatusExecution) {
		t.Fatalf("GenKey on a locked slot: %v", err)
	}
	// Power cycle: a new emulator from the state file is the same chip:
	// same serial, same key, locks still there; TempKey gone.
	digest := sha256.Sum256([]byte("d"))
	if err := c.NonceLoad(digest); err != nil {
		t.Fatal(err)
	}
	e2, err := OpenEmulator(path)
	if err != nil {
		t.Fatal(err)
	}
	c2 := New(e2, DefaultAddress)
	if _, err := c2.Execute(OpSign, signExternal, SlotDeviceKey, nil, 64); !errors.Is(err, StatusExecution) {
		t.Fatalf("TempKey survived a power cycle: %v", err)
	}
	pub2, err := c2.PublicKey(SlotDeviceKey)
	if err != nil || !pub2.Equal(pub) {
		t.Fatalf("key after power cycle: %v", err)
	}
	cfg, err := c2.ReadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.SlotLocked(SlotDeviceCert) || !cfg.SlotLocked(SlotDeviceKey) || cfg.SlotLocked(SlotSignerCert) || !cfg.DataLocked() || !cfg.ConfigLocked() {
		t.Fatal("locks lost in the power cycle")
	}
	if err := c2.WriteSlot(SlotDeviceCert, 0, make([]byte, 72)); !errors.Is(err, StatusExecution) {
		t.Fatalf("write to a locked slot after power cycle: %v", err)
	}
	// No command writes the lock bytes back: config writes (bytes 84-91
	// hold LockValue, LockConfig and SlotLocked) are refused once locked.
	for _, off := range []int{84, 88} {
		if err := c2.WriteConfigBytes(off, []byte{0x55, 0x55, 0xFF, 0xFF}); !errors.Is(err, StatusExecution) {
			t.Fatalf("config write at %d after lock: %v", off, err)
		}
	}
	if _, err := c2.Execute(OpLock, lockSlot|SlotDeviceCert<<2|lockNoCRC, 0, nil, 0); !errors.Is(err, StatusExecution) {
		t.Fatalf("re-lock: %v", err)
	}
	got, err := c2.ReadSlot(SlotDeviceCert)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("slot after power cycle: %v", err)
	}
	if err := e2.Close(); err != nil {
		t.Fatal(err)
	}
}

// faultyBus wraps a bus and corrupts bytes: in writes (the chip sees a bad
// CRC) or in reads (the host sees one), the first n times.
type faultyBus struct {
	i2c.Bus
	mu                 sync.Mutex
	corruptW, corruptR int
}

func (f *faultyBus) Tx(addr uint16, w, r []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(w) > 4 && w[0] == wordCommand && f.corruptW > 0 {
		f.corruptW--
		bad := append([]byte(nil), w...)
		bad[len(bad)-3] ^= 0x10
		w = bad
	}
	err := f.Bus.Tx(addr, w, r)
	if err == nil && len(r) > 4 && f.corruptR > 0 {
		f.corruptR--
		r[len(r)/2] ^= 0x01
	}
	return err
}

func TestCRCCorruptionOnTheBus(t *testing.T) {
	e, c0 := newProvisioned(t)
	if _, err := c0.GenKey(SlotDeviceKey); err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("bus"))

	t.Run("command corrupted, chip answers 0xFF, driver resends", func(t *testing.T) {
		fb := &faultyBus{Bus: e, corruptW: 2}
		c := New(fb, DefaultAddress)
		rs, err := c.Sign(SlotDeviceKey, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := c.PublicKey(SlotDeviceKey)
		if !ecdsa.VerifyASN1(pub, digest[:], RawToASN1(rs)) {
			t.Fatal("signature after resends does not verify")
		}
		if c.Stats().Resends != 2 {
			t.Fatalf("resends %d, want 2", c.Stats().Resends)
		}
	})
	t.Run("command corrupted, no retries: StatusCRC", func(t *testing.T) {
		fb := &faultyBus{Bus: e, corruptW: 1}
		c := New(fb, DefaultAddress, WithRetries(0))
		if _, err := c.Info(); !errors.Is(err, StatusCRC) {
			t.Fatalf("got %v, want StatusCRC", err)
		}
	})
	t.Run("response corrupted, driver re-reads", func(t *testing.T) {
		fb := &faultyBus{Bus: e}
		c := New(fb, DefaultAddress)
		fb.mu.Lock()
		fb.corruptR = 1
		fb.mu.Unlock()
		pub, err := c.PublicKey(SlotDeviceKey)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := c0.PublicKey(SlotDeviceKey)
		if !pub.Equal(want) {
			t.Fatal("public key differs after a re-read")
		}
		if s := c.Stats(); s.ReReads != 1 {
			t.Fatalf("no recovery recorded: %+v", s)
		}
	})
	t.Run("response always corrupted: ErrResponseCRC", func(t *testing.T) {
		fb := &longReadCorrupter{Bus: e}
		c := New(fb, DefaultAddress, WithRetries(2))
		if _, err := c.PublicKey(SlotDeviceKey); !errors.Is(err, ErrResponseCRC) {
			t.Fatalf("got %v, want ErrResponseCRC", err)
		}
	})
}

// longReadCorrupter flips a bit in every read longer than 4 bytes.
type longReadCorrupter struct{ i2c.Bus }

func (l *longReadCorrupter) Tx(addr uint16, w, r []byte) error {
	err := l.Bus.Tx(addr, w, r)
	if err == nil && len(r) > 4 {
		r[5] ^= 0x80
	}
	return err
}

func TestWatchdogStatus(t *testing.T) {
	// With datasheet timings and a watchdog shorter than GenKey's 115 ms,
	// the chip refuses to start GenKey: status 0xEE.
	dir := t.TempDir()
	_, _ = newProvisioned(t, WithStateFile(filepath.Join(dir, "s.json")))
	e2 := NewEmulator(WithDatasheetTimings(true), WithWatchdog(100*time.Millisecond))
	if err := e2.Load(filepath.Join(dir, "s.json")); err != nil {
		t.Fatal(err)
	}
	c2 := New(e2, DefaultAddress, WithRetries(1))
	if _, err := c2.GenKey(SlotDeviceKey); !errors.Is(err, StatusWatchdog) {
		t.Fatalf("got %v, want the watchdog status", err)
	}
}

func TestDatasheetTimings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.json")
	_, _ = newProvisioned(t, WithStateFile(path))
	e, err := OpenEmulator(path, WithDatasheetTimings(true))
	if err != nil {
		t.Fatal(err)
	}
	c := New(e, DefaultAddress)
	start := time.Now()
	if _, err := c.GenKey(SlotDeviceKey); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < MaxExecTime[OpGenKey] {
		t.Fatalf("GenKey took %v with datasheet timings, less than %v", d, MaxExecTime[OpGenKey])
	}
	if c.Stats().PollsNotReady == 0 {
		t.Fatal("driver never polled a busy chip")
	}
	st := e.Stats()
	if st.Commands[OpGenKey] != 1 || st.DatasheetTime < MaxExecTime[OpGenKey]+WakeHigh {
		t.Fatalf("stats %+v", st)
	}
}

func TestTimeoutOnSilentChip(t *testing.T) {
	e, _ := newBlank(t, nil)
	c := New(e, 0x35, WithExecMargin(time.Millisecond)) // nobody at 0x35
	if _, err := c.Info(); !errors.Is(err, ErrWake) {
		t.Fatalf("got %v", err)
	}
}

// mute NACKs every read that follows a command: a chip that accepted the
// command and never finished it.
type mute struct {
	i2c.Bus
	afterCommand bool
}

func (m *mute) Tx(addr uint16, w, r []byte) error {
	if len(w) > 0 && w[0] == wordCommand {
		m.afterCommand = true
		return m.Bus.Tx(addr, w, nil)
	}
	if m.afterCommand && len(r) > 0 {
		return ErrNACK
	}
	return m.Bus.Tx(addr, w, r)
}

func TestTimeoutOnBusyChip(t *testing.T) {
	e, _ := newBlank(t, nil)
	c := New(&mute{Bus: e}, DefaultAddress, WithExecMargin(2*time.Millisecond))
	start := time.Now()
	if _, err := c.Info(); !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < MaxExecTime[OpInfo] {
		t.Fatalf("gave up after %v, before Info's maximum execution time", d)
	}
}

func TestRawReadWriteAndHelpers(t *testing.T) {
	sn := [9]byte{0x01, 0x23, 1, 2, 3, 4, 5, 6, 0xEE}
	e := NewEmulator(WithSerialNumber(sn), WithEmulatorAddress(0x35))
	c := New(e, 0x35, WithPollInterval(500*time.Microsecond), WithWakeDelay(WakeHigh))
	if _, err := c.Personalize(); err != nil {
		t.Fatal(err)
	}
	got, err := c.SerialNumber()
	if err != nil || got != sn {
		t.Fatalf("serial % x %v", got, err)
	}
	cfg, _ := c.ReadConfig()
	if cfg.I2CAddress() != 0x35 {
		t.Fatalf("address %x", cfg.I2CAddress())
	}
	// 4-byte write and read of slot 9, word 3.
	if err := c.Write(ZoneData, dataAddr(9, 0, 3), []byte{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	w, err := c.Read(ZoneData, dataAddr(9, 0, 3), 4)
	if err != nil || !bytes.Equal(w, []byte{1, 2, 3, 4}) {
		t.Fatalf("read % x %v", w, err)
	}
	if _, err := c.Read(ZoneData, 0, 7); err == nil {
		t.Fatal("7-byte read accepted")
	}
	otp, err := c.Read(ZoneOTP, zoneAddr(1, 0), 32)
	if err != nil || len(otp) != 32 {
		t.Fatalf("OTP read: %v", err)
	}
	if err := c.WriteSlot(SlotDeviceCert, 2, []byte{1, 2, 3, 4}); err == nil {
		t.Fatal("unaligned write accepted")
	}
	if _, err := c.ReadSlot(16); err == nil {
		t.Fatal("slot 16 accepted")
	}
	// Public key slot layout and signature conversions.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	slot, _ := PublicKeySlot(&k.PublicKey)
	back, err := ParsePublicKeySlot(slot)
	if err != nil || !back.Equal(&k.PublicKey) {
		t.Fatalf("public key slot: %v", err)
	}
	d := sha256.Sum256(nil)
	der, _ := ecdsa.SignASN1(rand.Reader, k, d[:])
	rs, err := ASN1ToRaw(der)
	if err != nil || !bytes.Equal(RawToASN1(rs), der) {
		t.Fatalf("signature conversion: %v", err)
	}
	if _, err := ASN1ToRaw([]byte{0x30, 0x00}); err == nil {
		t.Fatal("empty signature accepted")
	}
	// A corrupt state file is refused.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"format":"wsc-atecc608-emulator/1","config":"00"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenEmulator(bad); err == nil {
		t.Fatal("corrupt state loaded")
	}
	if err := e.Load(bad); err == nil {
		t.Fatal("corrupt state loaded")
	}
	// Names.
	if OpSign.String() != "Sign" || Opcode(0x77).String() != "Opcode(0x77)" || ZoneOTP.String() != "OTP" {
		t.Fatal("names")
	}
	ce := &CommandError{Op: OpLock, Status: StatusExecution}
	if ce.Error() != "Lock: atecc status 0x0f (execution error)" || !errors.Is(errors.Unwrap(ce), StatusExecution) {
		t.Fatal(ce.Error())
	}
}
