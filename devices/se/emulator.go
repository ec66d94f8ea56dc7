package se

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// Emulator is a byte-level model of an ATECC608 on an I2C bus: it
// implements periph.io's i2c.Bus, so the driver (and anything else written
// against i2c.Bus) talks to it exactly as to a chip on /dev/i2c-N.
//
// What it models, from the datasheet:
//   - the wake token (SDA held low at least tWLO: a write to address 0x00 at
//     no more than ~133 kHz), the 04 11 33 43 wake status, sleep (volatile
//     state lost), idle (TempKey kept) and the watchdog that puts an awake
//     chip to sleep 1.3 s after the wake;
//   - command packets with count and CRC-16 checks, responses with CRC, the
//     I/O buffer read pointer (word address 0x00 rewinds it) and the address
//     NACK while asleep or executing;
//   - the config (128 B), OTP (64 B) and data (16 slots) zones; the config
//     zone lock, the data/OTP zone lock and per-slot locks with their summary
//     CRCs, all irreversible; Write rules before and after the data lock
//     (data writes need the config lock; before the data lock the data zone
//     can be written but not read; afterwards SlotConfig.WriteConfig and the
//     slot lock decide); private-key slots that no Read ever returns;
//   - a P-256 private key per slot, created by GenKey, real ECDSA in Sign and
//     Verify; the Random output before the config lock (FF FF 00 00 ...);
//   - key attestation: TempKey with its flags (SourceFlag, GenDigData,
//     GenKeyData, KeyID), GenKey in digest mode (0x08, 0x0C: the PubKey
//     digest of the key goes into TempKey) and Sign in internal mode (0x00,
//     0x40: SHA-256 of the 55-byte internal message, see
//     SignInternalMessage) by a key whose SlotConfig allows internal Sign;
//   - status codes: parse errors, execution errors (locks, permissions,
//     state), ECC faults (invalid keys), Verify miscompares, CRC errors and
//     the watchdog status;
//   - optionally, the commands' maximum execution times and the bus's byte
//     time (WithDatasheetTimings), for throughput estimates.
//
// What it does not model: encrypted reads and writes (EncryptRead,
// Encrypt WriteConfig, PrivWrite), MAC/CheckMac/GenDig/DeriveKey/ECDH/KDF/
// AES/SHA/SecureBoot/SelfTest/UpdateExtra commands (their opcodes
// get a parse error), GenKey's stored-public-key digest mode (0x10) and
// Sign's invalidate and message-digest-buffer modes (parse errors), the
// Nonce targets other than TempKey,
// the counters' attachment to key use limits, and volatile-key permissions.
// The two monotonic counters are modelled (Counter read and increment).
//
// An Emulator is safe for concurrent use.
type Emulator struct {
	mu sync.Mutex

	addr      uint16
	speed     physic.Frequency
	timings   bool
	watchdog  time.Duration
	statePath string
	now       func() time.Time

	// Non-volatile state (persisted).
	config [ConfigSize]byte
	otp    [OTPSize]byte
	data   [NumSlots][]byte
	// counters are the two monotonic counters (Counter command).
	counters [NumCounters]uint32

	// Volatile state.
	mode      emuMode
	wakeAt    time.Time
	readyAt   time.Time
	tempKey   [32]byte
	tempValid bool
	tempFlags TempKeyFlags
	out       []byte
	outPos    int

	stats EmulatorStats
}

type emuMode int

const (
	modeSleep emuMode = iota
	modeIdle
	modeAwake
)

// EmulatorStats counts what crossed the bus and what the chip executed.
// DatasheetTime is the sum of the executed commands' maximum execution
// times plus tWHI per wake, whether or not the emulator actually waited.
type EmulatorStats struct {
	Wakes         int
	Commands      map[Opcode]int
	BytesIn       int // bytes written to the chip
	BytesOut      int // bytes read from the chip
	DatasheetTime time.Duration
}

// EmulatorOption configures an Emulator.
type EmulatorOption func(*Emulator)

// WithSerialNumber sets the chip's 9-byte serial number (default: 01 23,
// six random bytes, EE like Microchip parts).
func WithSerialNumber(sn [9]byte) EmulatorOption {
	return func(e *Emulator) {
		copy(e.config[cfgSN03:], sn[:4])
		copy(e.config[cfgSN48:], sn[4:])
	}
}

// WithEmulatorAddress sets the 7-bit I2C address (default 0x60); it is also
// written into the config zone's I2C_Address byte.
func WithEmulatorAddress(addr uint16) EmulatorOption {
	return func(e *Emulator) {
		e.addr = addr
		e.config[cfgI2CAddress] = byte(addr << 1)
	}
}

// WithDatasheetTimings makes the emulator take as long as a real chip: each
// command keeps the chip busy (address NACKed) for its maximum execution
// time, a wake for tWHI, and every transfer for its bytes at the bus speed.
func WithDatasheetTimings(on bool) EmulatorOption {
	return func(e *Emulator) { e.timings = on }
}

// WithWatchdog sets the watchdog period (default 1.3 s). Zero disables it.
func WithWatchdog(d time.Duration) EmulatorOption {
	return func(e *Emulator) { e.watchdog = d }
}

// WithStateFile persists the non-volatile state (zones, keys, locks) to
// path after every change, atomically, so that a new emulator loaded from
// the same file is the same chip after a power cycle. The file holds
// private keys in clear: it is a test and demo device, not a secure store.
func WithStateFile(path string) EmulatorOption {
	return func(e *Emulator) { e.statePath = path }
}

// NewEmulator returns a blank chip as it leaves the wafer test: serial
// number and revision set (RevNum 00 00 60 02, an ATECC608A), I2C address
// 0x60, all SlotConfig and KeyConfig words zero, every zone unlocked, data
// slots filled with 0xFF and OTP with 0x00.
func NewEmulator(opts ...EmulatorOption) *Emulator {
	e := &Emulator{addr: DefaultAddress, speed: 100 * physic.KiloHertz, watchdog: Watchdog, now: time.Now}
	sn := make([]byte, 9)
	_, _ = rand.Read(sn)
	sn[0], sn[1], sn[8] = 0x01, 0x23, 0xEE
	copy(e.config[cfgSN03:], sn[:4])
	copy(e.config[cfgSN48:], sn[4:])
	copy(e.config[cfgRevNum:], []byte{0x00, 0x00, 0x60, 0x02})
	e.config[cfgI2CEnable] = 0x01
	e.config[cfgI2CAddress] = DefaultAddress << 1
	for i := cfgCounter0; i < cfgUseLock; i += 8 {
		copy(e.config[i:], []byte{0xFF, 0xFF, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00})
	}
	e.config[cfgLockValue] = unlockedValue
	e.config[cfgLockConfig] = unlockedValue
	e.config[cfgSlotLocked], e.config[cfgSlotLocked+1] = 0xFF, 0xFF
	for s := range e.data {
		e.data[s] = bytes.Repeat([]byte{0xFF}, SlotSize(s))
	}
	for _, o := range opts {
		o(e)
	}
	e.stats.Commands = map[Opcode]int{}
	return e
}

// emuState is the persisted form of the non-volatile state.
type emuState struct {
	Format string   `json:"format"`
	Config string   `json:"config"`
	OTP    string   `json:"otp"`
	Data   []string `json:"data"`
	// Counters are the monotonic counters; absent in states saved before
	// the emulator modelled them (then both are 0).
	Counters []uint32 `json:"counters,omitempty"`
}

const emuStateFormat = "wsc-atecc608-emulator/1"

// OpenEmulator loads the chip persisted at path, or creates a blank one
// (NewEmulator with opts) and persists it there when the file does not
// exist. The emulator keeps saving to path after every change.
func OpenEmulator(path string, opts ...EmulatorOption) (*Emulator, error) {
	e := NewEmulator(append(opts, WithStateFile(path))...)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := e.Save(path); err != nil {
			return nil, err
		}
		return e, nil
	case err != nil:
		return nil, fmt.Errorf("open emulator state: %w", err)
	}
	if err := e.unmarshal(b); err != nil {
		return nil, fmt.Errorf("open emulator state %s: %w", path, err)
	}
	return e, nil
}

// Load replaces the non-volatile state with the one saved at path, as if
// the chip had been swapped; volatile state is reset (the chip is asleep).
func (e *Emulator) Load(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("load emulator state: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.unmarshal(b); err != nil {
		return fmt.Errorf("load emulator state %s: %w", path, err)
	}
	return nil
}

func (e *Emulator) unmarshal(b []byte) error {
	var st emuState
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	if st.Format != emuStateFormat {
		return fmt.Errorf("unknown state format %q", st.Format)
	}
	cfg, err := hex.DecodeString(st.Config)
	if err != nil || len(cfg) != ConfigSize {
		return errors.New("bad config zone")
	}
	otp, err := hex.DecodeString(st.OTP)
	if err != nil || len(otp) != OTPSize {
		return errors.New("bad OTP zone")
	}
	if len(st.Data) != NumSlots {
		return errors.New("bad data zone")
	}
	var data [NumSlots][]byte
	for s := range data {
		d, err := hex.DecodeString(st.Data[s])
		if err != nil || len(d) != SlotSize(s) {
			return fmt.Errorf("bad data slot %d", s)
		}
		data[s] = d
	}
	if len(st.Counters) != 0 && len(st.Counters) != NumCounters {
		return errors.New("bad counters")
	}
	var counters [NumCounters]uint32
	for i, v := range st.Counters {
		if v > MaxCounter {
			return errors.New("bad counters")
		}
		counters[i] = v
	}
	copy(e.config[:], cfg)
	copy(e.otp[:], otp)
	e.data = data
	e.counters = counters
	e.addr = uint16(e.config[cfgI2CAddress] >> 1)
	e.sleep()
	return nil
}

// Save writes the non-volatile state to path atomically (temporary file,
// fsync, rename), with mode 0600.
func (e *Emulator) Save(path string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.saveLocked(path)
}

func (e *Emulator) saveLocked(path string) error {
	st := emuState{Format: emuStateFormat, Config: hex.EncodeToString(e.config[:]), OTP: hex.EncodeToString(e.otp[:])}
	for s := range e.data {
		st.Data = append(st.Data, hex.EncodeToString(e.data[s]))
	}
	if e.counters != [NumCounters]uint32{} {
		st.Counters = e.counters[:]
	}
	b, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return fmt.Errorf("save emulator state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".atecc-*")
	if err != nil {
		return fmt.Errorf("save emulator state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save emulator state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save emulator state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save emulator state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save emulator state: %w", err)
	}
	return nil
}

// persist saves after a non-volatile change when a state file is set. A
// failed save is an execution error: the chip could not commit its EEPROM.
func (e *Emulator) persist() error {
	if e.statePath == "" {
		return nil
	}
	return e.saveLocked(e.statePath)
}

// PowerCycle drops the volatile state (TempKey, I/O buffer) and puts the
// chip to sleep, as removing power would.
func (e *Emulator) PowerCycle() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sleep()
}

// Stats returns a copy of the counters.
func (e *Emulator) Stats() EmulatorStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.Commands = make(map[Opcode]int, len(e.stats.Commands))
	for k, v := range e.stats.Commands {
		s.Commands[k] = v
	}
	return s
}

// ResetStats zeroes the counters.
func (e *Emulator) ResetStats() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stats = EmulatorStats{Commands: map[Opcode]int{}}
}

// String implements i2c.Bus.
func (e *Emulator) String() string { return fmt.Sprintf("atecc608-emulator@0x%02x", e.addr) }

// SetSpeed implements i2c.Bus. The speed decides whether a write to address
// 0x00 holds SDA low long enough to wake the chip, and, with datasheet
// timings, how long transfers take.
func (e *Emulator) SetSpeed(f physic.Frequency) error {
	if f <= 0 {
		return fmt.Errorf("set speed %s: must be positive", f)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.speed = f
	return nil
}

// Close implements i2c.BusCloser; it saves the state when a state file is set.
func (e *Emulator) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.persist()
}

var _ i2c.BusCloser = (*Emulator)(nil)

// Tx implements i2c.Bus: the write w (if any) then the read r (if any) at
// 7-bit address addr. It returns ErrNACK when the chip does not acknowledge
// its address: asleep, idle, busy executing, or another address.
func (e *Emulator) Tx(addr uint16, w, r []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	if e.timings && e.speed > 0 {
		// Start, address byte, payload bytes, 9 bit times each.
		bits := 9 * (1 + len(w) + len(r))
		if len(w) > 0 && len(r) > 0 {
			bits += 9 // repeated start and address
		}
		time.Sleep(time.Duration(int64(bits) * int64(time.Second) / int64(e.speed/physic.Hertz)))
		now = e.now()
	}
	e.checkWatchdog(now)

	if addr == 0x00 {
		// General-call address: nobody acknowledges, but SDA is held low for
		// the 8 address bits. At most ~133 kHz that exceeds tWLO and wakes
		// a sleeping or idle chip.
		lowFor := time.Duration(8 * int64(time.Second) / int64(e.speed/physic.Hertz))
		if lowFor >= WakeLow && e.mode != modeAwake {
			e.mode = modeAwake
			e.wakeAt = now
			e.readyAt = now
			if e.timings {
				e.readyAt = now.Add(WakeHigh)
			}
			e.out = WakeResponse[:]
			e.outPos = 0
			e.stats.Wakes++
			e.stats.DatasheetTime += WakeHigh
		}
		return ErrNACK
	}
	if addr != e.addr || e.mode != modeAwake || now.Before(e.readyAt) {
		return ErrNACK
	}
	e.stats.BytesIn += len(w)
	if len(w) > 0 {
		switch w[0] {
		case wordReset:
			e.outPos = 0
		case wordSleep:
			e.sleep()
			return nil
		case wordIdle:
			e.mode = modeIdle
			e.out, e.outPos = nil, 0
			return nil
		case wordCommand:
			e.command(now, w[1:])
			if len(r) > 0 && now.Before(e.readyAt) {
				return ErrNACK
			}
		default:
			// The chip NACKs a word address it does not know.
			return ErrNACK
		}
	}
	if len(r) > 0 {
		e.stats.BytesOut += len(r)
		for i := range r {
			if e.outPos < len(e.out) {
				r[i] = e.out[e.outPos]
				e.outPos++
			} else {
				r[i] = 0xFF
			}
		}
	}
	return nil
}

func (e *Emulator) checkWatchdog(now time.Time) {
	if e.mode == modeAwake && e.watchdog > 0 && now.Sub(e.wakeAt) > e.watchdog {
		e.sleep()
	}
}

// sleep drops volatile state.
func (e *Emulator) sleep() {
	e.mode = modeSleep
	e.tempValid = false
	e.tempKey = [32]byte{}
	e.tempFlags = TempKeyFlags{}
	e.out, e.outPos = nil, 0
}

// command parses and executes one command packet (count .. CRC) and leaves
// the response in the I/O buffer.
func (e *Emulator) command(now time.Time, pkt []byte) {
	e.outPos = 0
	if len(pkt) == 0 || int(pkt[0]) != len(pkt) || !checkCRC(pkt) {
		// Short or long packet, or bad CRC: communication error.
		e.out = statusPacket(StatusCRC)
		return
	}
	if len(pkt) < 7 {
		e.out = statusPacket(StatusParse)
		return
	}
	op := Opcode(pkt[1])
	p1 := pkt[2]
	p2 := binary.LittleEndian.Uint16(pkt[3:5])
	in := pkt[5 : len(pkt)-2]
	exec, known := MaxExecTime[op]
	if !known {
		e.out = statusPacket(StatusParse)
		return
	}
	if e.watchdog > 0 && e.timings && now.Add(exec).After(e.wakeAt.Add(e.watchdog)) {
		e.out = statusPacket(StatusWatchdog)
		return
	}
	e.stats.Commands[op]++
	e.stats.DatasheetTime += exec
	if e.timings {
		e.readyAt = now.Add(exec)
	}
	resp, st := e.execute(op, p1, p2, in)
	if st != StatusOK || resp == nil {
		e.out = statusPacket(st)
		return
	}
	e.out = responsePacket(resp)
}

func statusPacket(s Status) []byte { return appendCRC([]byte{4, byte(s)}) }

func responsePacket(data []byte) []byte {
	p := append([]byte{byte(len(data) + 3)}, data...)
	return appendCRC(p)
}

func (e *Emulator) cfg() *Config {
	c := &Config{}
	c.Raw = e.config
	return c
}

// execute runs a parsed command. A nil response with StatusOK is a
// single-byte success status.
func (e *Emulator) execute(op Opcode, p1 uint8, p2 uint16, in []byte) ([]byte, Status) {
	switch op {
	case OpInfo:
		return e.info(p1, p2, in)
	case OpRandom:
		return e.random(p1, p2, in)
	case OpNonce:
		return e.nonce(p1, p2, in)
	case OpGenKey:
		return e.genKey(p1, p2, in)
	case OpSign:
		return e.sign(p1, p2, in)
	case OpVerify:
		return e.verify(p1, p2, in)
	case OpRead:
		return e.read(p1, p2, in)
	case OpWrite:
		return e.write(p1, p2, in)
	case OpLock:
		return e.lock(p1, p2, in)
	case OpCounter:
		return e.counterCmd(p1, p2, in)
	}
	return nil, StatusParse
}

func (e *Emulator) info(mode uint8, p2 uint16, in []byte) ([]byte, Status) {
	if len(in) != 0 {
		return nil, StatusParse
	}
	switch mode {
	case infoRevision:
		return append([]byte(nil), e.config[cfgRevNum:cfgRevNum+4]...), StatusOK
	case infoKeyValid:
		if p2 >= NumSlots {
			return nil, StatusParse
		}
		v := byte(0)
		if e.validKey(int(p2)) != nil {
			v = 1
		}
		return []byte{v, 0, 0, 0}, StatusOK
	}
	return nil, StatusParse
}

// rng returns n random bytes; before the config lock the RNG outputs the
// fixed FF FF 00 00 pattern, as the datasheet warns.
func (e *Emulator) rng(n int) []byte {
	b := make([]byte, n)
	if !e.cfg().ConfigLocked() {
		for i := range b {
			if i%4 < 2 {
				b[i] = 0xFF
			}
		}
		return b
	}
	_, _ = rand.Read(b)
	return b
}

func (e *Emulator) random(mode uint8, p2 uint16, in []byte) ([]byte, Status) {
	if mode > 1 || p2 != 0 || len(in) != 0 {
		return nil, StatusParse
	}
	return e.rng(32), StatusOK
}

func (e *Emulator) nonce(mode uint8, p2 uint16, in []byte) ([]byte, Status) {
	switch mode {
	case nonceRandom, nonceRandomNoSd:
		if len(in) != 20 || p2 != 0 {
			return nil, StatusParse
		}
		randOut := e.rng(32)
		h := sha256.New()
		h.Write(randOut)
		h.Write(in)
		h.Write([]byte{byte(OpNonce), mode, 0x00})
		copy(e.tempKey[:], h.Sum(nil))
		e.tempValid = true
		e.tempFlags = TempKeyFlags{}
		return randOut, StatusOK
	case noncePassThru:
		if len(in) != 32 {
			return nil, StatusParse
		}
		copy(e.tempKey[:], in)
		e.tempValid = true
		e.tempFlags = TempKeyFlags{SourceFlag: true}
		return nil, StatusOK
	}
	return nil, StatusParse
}

var p256N = elliptic.P256().Params().N

// validKey returns the slot's private key, or nil when the slot is not a
// P-256 private-key slot or holds no valid scalar (0 or >= n). Private keys
// are stored as 4 zero bytes followed by the 32-byte scalar, the PrivWrite
// layout.
func (e *Emulator) validKey(slot int) *ecdsa.PrivateKey {
	kc := e.cfg().KeyConfig(slot)
	if slot >= 8 || !kc.Private() || kc.KeyType() != KeyTypeP256 {
		return nil
	}
	d := new(big.Int).SetBytes(e.data[slot][4:36])
	if d.Sign() == 0 || d.Cmp(p256N) >= 0 {
		return nil
	}
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), e.data[slot][4:36])
	if err != nil {
		return nil
	}
	return k
}

func pubBytes(pub *ecdsa.PublicKey) []byte {
	b, _ := pub.Bytes() // 04 || X || Y
	return b[1:]
}

func (e *Emulator) genKey(mode uint8, p2 uint16, in []byte) ([]byte, Status) {
	// Modes: 0x00 public key, 0x04 create, each optionally with 0x08 (PubKey
	// digest into TempKey). 0x10 (digest of a stored public key) is not
	// emulated.
	if mode&^(genKeyCreate|GenKeyModeDigest) != 0 || p2 >= NumSlots || len(in) != 0 {
		return nil, StatusParse
	}
	create, digest := mode&genKeyCreate != 0, mode&GenKeyModeDigest != 0
	c := e.cfg()
	slot := int(p2)
	if !c.ConfigLocked() {
		return nil, StatusExecution
	}
	kc := c.KeyConfig(slot)
	if slot >= 8 || !kc.Private() || kc.KeyType() != KeyTypeP256 {
		return nil, StatusExecution
	}
	// The PubKey digest hashes the TempKey that a Nonce left.
	if digest && !e.tempValid {
		return nil, StatusExecution
	}
	var pub *ecdsa.PublicKey
	if !create {
		if !kc.PubInfo() {
			return nil, StatusExecution
		}
		k := e.validKey(slot)
		if k == nil {
			return nil, StatusECCFault
		}
		pub = &k.PublicKey
	} else {
		if c.DataLocked() && (!c.SlotConfig(slot).GenKeyAfterLock() || c.SlotLocked(slot)) {
			return nil, StatusExecution
		}
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, StatusECCFault
		}
		d, err := k.Bytes()
		if err != nil {
			return nil, StatusECCFault
		}
		old := append([]byte(nil), e.data[slot]...)
		for i := range 4 {
			e.data[slot][i] = 0
		}
		copy(e.data[slot][4:36], d)
		if err := e.persist(); err != nil {
			e.data[slot] = old
			return nil, StatusExecution
		}
		pub = &k.PublicKey
	}
	xy := pubBytes(pub)
	if digest {
		m, err := GenKeyDigestMessage(e.tempKey, mode, p2, c.SerialNumber(), xy)
		if err != nil {
			return nil, StatusECCFault
		}
		e.tempKey = sha256.Sum256(m[:])
		e.tempFlags.KeyID = uint8(slot)
		e.tempFlags.GenKeyData = true
		e.tempFlags.GenDigData = false
	}
	return xy, StatusOK
}

func (e *Emulator) sign(mode uint8, p2 uint16, in []byte) ([]byte, Status) {
	internal := mode == SignModeInternal || mode == SignModeInternal|SignModeIncludeSN
	if (mode != signExternal && !internal) || p2 >= NumSlots || len(in) != 0 {
		return nil, StatusParse
	}
	c := e.cfg()
	slot := int(p2)
	if !c.ConfigLocked() || !c.DataLocked() {
		return nil, StatusExecution
	}
	kc := c.KeyConfig(slot)
	if slot >= 8 || !kc.Private() || kc.KeyType() != KeyTypeP256 {
		return nil, StatusExecution
	}
	sc := c.SlotConfig(slot)
	if (internal && !sc.InternalSign()) || (!internal && !sc.ExternalSign()) {
		return nil, StatusExecution
	}
	if !e.tempValid {
		return nil, StatusExecution
	}
	// An internal message must come from GenKey or GenDig, never from the
	// host (pass-through Nonce).
	if internal && !e.tempFlags.GenKeyData && !e.tempFlags.GenDigData {
		e.tempValid = false
		return nil, StatusExecution
	}
	k := e.validKey(slot)
	if k == nil {
		return nil, StatusECCFault
	}
	digest := e.tempKey
	if internal {
		m := SignInternalMessage(e.tempKey, mode, p2, c, e.tempFlags, c.SerialNumber())
		digest = sha256.Sum256(m[:])
	}
	e.tempValid = false
	der, err := ecdsa.SignASN1(rand.Reader, k, digest[:])
	if err != nil {
		return nil, StatusECCFault
	}
	rs, err := derToRaw(der)
	if err != nil {
		return nil, StatusECCFault
	}
	return rs[:], StatusOK
}

func (e *Emulator) verify(mode uint8, p2 uint16, in []byte) ([]byte, Status) {
	c := e.cfg()
	var pubRaw []byte
	switch mode {
	case verifyExternal:
		if p2 != keyTypeP256 || len(in) != 128 {
			return nil, StatusParse
		}
		pubRaw = in[64:]
	case verifyStored:
		if p2 >= NumSlots || len(in) != 64 {
			return nil, StatusParse
		}
		slot := int(p2)
		kc := c.KeyConfig(slot)
		if kc.Private() || kc.KeyType() != KeyTypeP256 || slot < 8 || !c.DataLocked() {
			return nil, StatusExecution
		}
		d := e.data[slot]
		pubRaw = append(append([]byte(nil), d[4:36]...), d[40:72]...)
	default:
		return nil, StatusParse
	}
	if !c.ConfigLocked() || !e.tempValid {
		return nil, StatusExecution
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{0x04}, pubRaw...))
	if err != nil {
		return nil, StatusECCFault
	}
	digest := e.tempKey
	e.tempValid = false
	var rs [64]byte
	copy(rs[:], in[:64])
	if !ecdsa.VerifyASN1(pub, digest[:], rawToDER(rs)) {
		return nil, StatusMiscompare
	}
	return nil, StatusOK
}

// zoneRange decodes a Read/Write address into a byte range of a zone.
func (e *Emulator) zoneRange(zone Zone, addr uint16, n int) (buf []byte, slot, off int, ok bool) {
	word := int(addr & 0x7)
	switch zone {
	case ZoneConfig, ZoneOTP:
		block := int(addr>>3) & 0x1F
		off = block*32 + word*4
		if n == 32 {
			off = block * 32
		}
		size := ConfigSize
		buf = e.config[:]
		if zone == ZoneOTP {
			size, buf = OTPSize, e.otp[:]
		}
		if addr>>8 != 0 || off+n > size {
			return nil, 0, 0, false
		}
		return buf, -1, off, true
	case ZoneData:
		slot = int(addr>>3) & 0xF
		block := int(addr >> 8)
		off = block*32 + word*4
		if n == 32 {
			off = block * 32
		}
		if off+n > SlotSize(slot) {
			return nil, 0, 0, false
		}
		return e.data[slot], slot, off, true
	}
	return nil, 0, 0, false
}

func ioSize(p1 uint8) int {
	if p1&readWrite32 != 0 {
		return 32
	}
	return 4
}

func (e *Emulator) read(p1 uint8, p2 uint16, in []byte) ([]byte, Status) {
	zone := Zone(p1 & 0x3)
	if p1&^(readWrite32|0x3) != 0 || zone > ZoneData || len(in) != 0 {
		return nil, StatusParse
	}
	n := ioSize(p1)
	buf, slot, off, ok := e.zoneRange(zone, p2, n)
	if !ok {
		return nil, StatusParse
	}
	c := e.cfg()
	switch zone {
	case ZoneOTP:
		if !c.DataLocked() {
			return nil, StatusExecution
		}
	case ZoneData:
		if !c.DataLocked() {
			return nil, StatusExecution
		}
		sc, kc := c.SlotConfig(slot), c.KeyConfig(slot)
		// Private keys are never readable; secrets only encrypted (not
		// emulated).
		if kc.Private() || sc.IsSecret() || sc.EncryptRead() {
			return nil, StatusExecution
		}
	}
	return append([]byte(nil), buf[off:off+n]...), StatusOK
}

func (e *Emulator) write(p1 uint8, p2 uint16, in []byte) ([]byte, Status) {
	zone := Zone(p1 & 0x3)
	if p1&^(readWrite32|writeEncrypted|0x3) != 0 || zone > ZoneData {
		return nil, StatusParse
	}
	n := ioSize(p1)
	if len(in) != n {
		return nil, StatusParse
	}
	buf, slot, off, ok := e.zoneRange(zone, p2, n)
	if !ok {
		return nil, StatusParse
	}
	if p1&writeEncrypted != 0 {
		// Encrypted writes (with a MAC) are not emulated.
		return nil, StatusExecution
	}
	c := e.cfg()
	switch zone {
	case ZoneConfig:
		if c.ConfigLocked() {
			return nil, StatusExecution
		}
		// Serial number and revision (0-15) are read-only; UserExtra,
		// UserExtraAdd, LockValue and LockConfig (84-87) change only through
		// UpdateExtra and Lock.
		if off < cfgFirstWritable || (off < cfgLockConfig+1 && off+n > cfgUserExtra) {
			return nil, StatusExecution
		}
	case ZoneOTP:
		if !c.ConfigLocked() || c.DataLocked() {
			return nil, StatusExecution
		}
	case ZoneData:
		if !c.ConfigLocked() {
			return nil, StatusExecution
		}
		if c.DataLocked() {
			sc, kc := c.SlotConfig(slot), c.KeyConfig(slot)
			if kc.Private() || c.SlotLocked(slot) || !sc.WriteAlways() {
				return nil, StatusExecution
			}
		}
	}
	old := append([]byte(nil), buf[off:off+n]...)
	copy(buf[off:], in)
	if err := e.persist(); err != nil {
		copy(buf[off:], old)
		return nil, StatusExecution
	}
	return nil, StatusOK
}

// dataSummary is the content the data-zone lock's summary CRC covers: all
// slots in order, then the OTP zone.
func (e *Emulator) dataSummary() []byte {
	var b []byte
	for s := range e.data {
		b = append(b, e.data[s]...)
	}
	return append(b, e.otp[:]...)
}

func (e *Emulator) lock(mode uint8, p2 uint16, in []byte) ([]byte, Status) {
	if len(in) != 0 || mode&0x40 != 0 || mode&0x3 == 0x3 {
		return nil, StatusParse
	}
	checkCRC := mode&lockNoCRC == 0
	c := e.cfg()
	switch mode & 0x3 {
	case lockConfig:
		if mode&0x3C != 0 {
			return nil, StatusParse
		}
		if c.ConfigLocked() {
			return nil, StatusExecution
		}
		if checkCRC && CRC16(e.config[:]) != p2 {
			return nil, StatusExecution
		}
		e.config[cfgLockConfig] = lockedValue
	case lockData:
		if mode&0x3C != 0 {
			return nil, StatusParse
		}
		if !c.ConfigLocked() || c.DataLocked() {
			return nil, StatusExecution
		}
		if checkCRC && CRC16(e.dataSummary()) != p2 {
			return nil, StatusExecution
		}
		e.config[cfgLockValue] = lockedValue
	case lockSlot:
		slot := int(mode>>2) & 0xF
		if !c.DataLocked() || !c.KeyConfig(slot).Lockable() || c.SlotLocked(slot) {
			return nil, StatusExecution
		}
		if checkCRC && CRC16(e.data[slot]) != p2 {
			return nil, StatusExecution
		}
		bits := binary.LittleEndian.Uint16(e.config[cfgSlotLocked:]) &^ (1 << slot)
		binary.LittleEndian.PutUint16(e.config[cfgSlotLocked:], bits)
	}
	// A lock is committed even if the state file cannot be written: the
	// chip has burnt it. The save error surfaces on Close.
	_ = e.persist()
	return nil, StatusOK
}
