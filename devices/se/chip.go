package se

import (
	"bytes"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/i2c"
)

// Chip is an ATECC608 on an I2C bus. Every method is one bus session: wake,
// the command(s), idle. Methods are safe for concurrent use (they are
// serialised), but the chip has a single TempKey, so only one Chip per
// physical chip.
type Chip struct {
	mu   sync.Mutex
	bus  i2c.Bus
	addr uint16
	o    options
	st   ChipStats
}

// ChipStats counts the driver's recoveries.
type ChipStats struct {
	Sessions      int
	Commands      int
	Resends       int // commands sent again after a CRC (0xFF) or watchdog (0xEE) status
	ReReads       int // responses read again after a response CRC mismatch
	WakeRetries   int
	PollsNotReady int
}

type options struct {
	retries   int
	poll      time.Duration
	wakeDelay time.Duration
	margin    time.Duration
}

// Option configures a Chip.
type Option func(*options)

// WithRetries sets how many times a command is sent again after the chip
// reported a communication error, or a response is re-read after a CRC
// mismatch (default 3).
func WithRetries(n int) Option { return func(o *options) { o.retries = n } }

// WithPollInterval sets how often the driver polls a busy chip for its
// response (default 1 ms).
func WithPollInterval(d time.Duration) Option { return func(o *options) { o.poll = d } }

// WithWakeDelay sets the wait after the wake token (default tWHI, 1.5 ms).
func WithWakeDelay(d time.Duration) Option { return func(o *options) { o.wakeDelay = d } }

// WithExecMargin sets the time added to a command's maximum execution time
// before the driver gives up polling (default 50 ms).
func WithExecMargin(d time.Duration) Option { return func(o *options) { o.margin = d } }

// New returns the chip at 7-bit address addr (usually DefaultAddress) on bus.
func New(bus i2c.Bus, addr uint16, opts ...Option) *Chip {
	o := options{retries: 3, poll: time.Millisecond, wakeDelay: WakeHigh, margin: 50 * time.Millisecond}
	for _, f := range opts {
		f(&o)
	}
	return &Chip{bus: bus, addr: addr, o: o}
}

// String names the chip by bus and address.
func (c *Chip) String() string { return fmt.Sprintf("atecc608 %s@0x%02x", c.bus, c.addr) }

// Stats returns the driver's counters.
func (c *Chip) Stats() ChipStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

// session runs fn between a wake and an idle.
func (c *Chip) session(fn func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.Sessions++
	if err := c.wake(); err != nil {
		return err
	}
	err := fn()
	// Idle keeps TempKey and stops the watchdog; a failed idle only means
	// the chip will fall asleep on its own.
	_ = c.bus.Tx(c.addr, []byte{wordIdle}, nil)
	return err
}

// wake sends the wake token and checks the wake status. A chip that was
// already awake (a previous session was interrupted) does not answer the
// token with 04 11 33 43: it is sent to idle and woken again.
func (c *Chip) wake() error {
	for attempt := 0; ; attempt++ {
		// Address 0x00 write: nobody ACKs, the bus reports an error; what
		// matters is SDA held low for tWLO.
		_ = c.bus.Tx(0x00, []byte{0x00}, nil)
		time.Sleep(c.o.wakeDelay)
		var r [4]byte
		var err error
		deadline := time.Now().Add(c.o.wakeDelay + 10*time.Millisecond)
		for {
			if err = c.bus.Tx(c.addr, nil, r[:]); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(c.o.poll)
		}
		if err == nil && r == WakeResponse {
			return nil
		}
		if attempt >= 1 {
			if err != nil {
				return fmt.Errorf("%w from %s: %w", ErrWake, c, err)
			}
			return fmt.Errorf("%w from %s: got % x", ErrWake, c, r)
		}
		c.st.WakeRetries++
		_ = c.bus.Tx(c.addr, []byte{wordIdle}, nil)
	}
}

// execute sends one command and returns its response data (nil for a
// success status). respLen is the expected data length (0: a status).
func (c *Chip) execute(op Opcode, p1 uint8, p2 uint16, data []byte, respLen int) ([]byte, error) {
	pkt := make([]byte, 0, 8+len(data))
	pkt = append(pkt, wordCommand, byte(7+len(data)), byte(op), p1, byte(p2), byte(p2>>8))
	pkt = append(pkt, data...)
	pkt = append(pkt[:1], appendCRC(pkt[1:])...)
	c.st.Commands++
	for attempt := 0; ; attempt++ {
		resp, err := c.transact(op, pkt)
		if err != nil {
			return nil, fmt.Errorf("%s on %s: %w", op, c, err)
		}
		if len(resp) == 1 {
			st := Status(resp[0])
			if (st == StatusCRC || st == StatusWatchdog) && attempt < c.o.retries {
				c.st.Resends++
				if st == StatusWatchdog {
					// Let the watchdog expire cleanly, then start over.
					_ = c.bus.Tx(c.addr, []byte{wordSleep}, nil)
					if err := c.wake(); err != nil {
						return nil, fmt.Errorf("%s on %s: %w", op, c, err)
					}
				}
				continue
			}
			if st == StatusOK && respLen == 0 {
				return nil, nil
			}
			if st != StatusOK {
				return nil, &CommandError{Op: op, Status: st}
			}
		}
		if len(resp) != respLen {
			return nil, fmt.Errorf("%s on %s: %w: %d data bytes, want %d", op, c, ErrBadResponse, len(resp), respLen)
		}
		return resp, nil
	}
}

// transact writes the packet, polls for the response and returns its data
// (the bytes between count and CRC). A response with a bad CRC is read
// again from the start of the I/O buffer.
func (c *Chip) transact(op Opcode, pkt []byte) ([]byte, error) {
	if err := c.bus.Tx(c.addr, pkt, nil); err != nil {
		// The chip fell asleep (watchdog) or was not awake: wake it once.
		if werr := c.wake(); werr != nil {
			return nil, fmt.Errorf("send command: %w", err)
		}
		if err := c.bus.Tx(c.addr, pkt, nil); err != nil {
			return nil, fmt.Errorf("send command: %w", err)
		}
	}
	deadline := time.Now().Add(MaxExecTime[op] + c.o.margin)
	var count [1]byte
	for {
		if err := c.bus.Tx(c.addr, nil, count[:]); err == nil {
			break
		}
		c.st.PollsNotReady++
		if time.Now().After(deadline) {
			return nil, ErrTimeout
		}
		time.Sleep(c.o.poll)
	}
	for reread := 0; ; reread++ {
		n := int(count[0])
		if n >= 4 && n <= 3+416 {
			resp := make([]byte, n)
			resp[0] = count[0]
			if err := c.bus.Tx(c.addr, nil, resp[1:]); err != nil {
				return nil, fmt.Errorf("read response: %w", err)
			}
			if checkCRC(resp) {
				return resp[1 : n-2], nil
			}
		}
		if reread >= c.o.retries {
			return nil, ErrResponseCRC
		}
		c.st.ReReads++
		// Word address 0x00 rewinds the I/O buffer's read pointer.
		if err := c.bus.Tx(c.addr, []byte{wordReset}, count[:]); err != nil {
			return nil, fmt.Errorf("re-read response: %w", err)
		}
	}
}

// Execute sends a raw command in its own session: what the typed methods
// use, exported for diagnostics and for tests that must provoke every
// status. respLen is the expected number of data bytes (0 for a
// single-byte status).
func (c *Chip) Execute(op Opcode, p1 uint8, p2 uint16, data []byte, respLen int) ([]byte, error) {
	var out []byte
	err := c.session(func() (err error) {
		out, err = c.execute(op, p1, p2, data, respLen)
		return err
	})
	return out, err
}

// Info returns the chip's revision (Info mode 0), 00 00 60 02 or 00 00 60 03
// for an ATECC608A/B.
func (c *Chip) Info() ([4]byte, error) {
	var rev [4]byte
	out, err := c.Execute(OpInfo, infoRevision, 0, nil, 4)
	if err != nil {
		return rev, err
	}
	copy(rev[:], out)
	return rev, nil
}

// KeyValid reports whether the chip considers the key in slot valid (Info
// mode 1).
func (c *Chip) KeyValid(slot int) (bool, error) {
	if err := checkSlot(slot); err != nil {
		return false, err
	}
	out, err := c.Execute(OpInfo, infoKeyValid, uint16(slot), nil, 4)
	if err != nil {
		return false, err
	}
	return out[0] == 1, nil
}

// Random returns 32 bytes from the chip's RNG. Before the config zone is
// locked the chip returns a fixed FF FF 00 00 pattern; Random reports that
// as an error rather than pass it off as random.
func (c *Chip) Random() ([32]byte, error) {
	var r [32]byte
	out, err := c.Execute(OpRandom, 0, 0, nil, 32)
	if err != nil {
		return r, err
	}
	copy(r[:], out)
	if bytes.Equal(out, unlockedRandom) {
		return r, fmt.Errorf("random on %s: config zone unlocked, the RNG returns a fixed pattern: %w", c, StatusExecution)
	}
	return r, nil
}

var unlockedRandom = bytes.Repeat([]byte{0xFF, 0xFF, 0x00, 0x00}, 8)

// NonceRandom runs Nonce in random mode with a 20-byte host input: TempKey
// becomes SHA-256(RandOut || numIn || 16 00 00); RandOut is returned.
func (c *Chip) NonceRandom(numIn [20]byte) ([32]byte, error) {
	var r [32]byte
	out, err := c.Execute(OpNonce, nonceRandom, 0, numIn[:], 32)
	if err != nil {
		return r, err
	}
	copy(r[:], out)
	return r, nil
}

// NonceLoad loads 32 bytes into TempKey (Nonce pass-through mode). TempKey
// survives idle, not sleep: a following command in another session sees it
// unless the chip slept in between.
func (c *Chip) NonceLoad(v [32]byte) error {
	_, err := c.Execute(OpNonce, noncePassThru, 0, v[:], 0)
	return err
}

// GenKey creates a new P-256 private key in slot (GenKey mode 0x04) and
// returns its public key. The private key never leaves the chip.
func (c *Chip) GenKey(slot int) (*ecdsa.PublicKey, error) {
	if err := checkSlot(slot); err != nil {
		return nil, err
	}
	out, err := c.Execute(OpGenKey, genKeyCreate, uint16(slot), nil, 64)
	if err != nil {
		return nil, fmt.Errorf("create key in slot %d: %w", slot, err)
	}
	return parsePublic(out)
}

// PublicKey recomputes the public key of the private key in slot (GenKey
// mode 0x00; needs KeyConfig.PubInfo).
func (c *Chip) PublicKey(slot int) (*ecdsa.PublicKey, error) {
	if err := checkSlot(slot); err != nil {
		return nil, err
	}
	out, err := c.Execute(OpGenKey, genKeyPublic, uint16(slot), nil, 64)
	if err != nil {
		return nil, fmt.Errorf("public key of slot %d: %w", slot, err)
	}
	return parsePublic(out)
}

// Sign signs a 32-byte digest computed outside the chip with the private
// key in slot: Nonce pass-through loads the digest into TempKey, then Sign
// in external mode. It returns r || s.
func (c *Chip) Sign(slot int, digest []byte) ([64]byte, error) {
	var rs [64]byte
	if err := checkSlot(slot); err != nil {
		return rs, err
	}
	if len(digest) != 32 {
		return rs, fmt.Errorf("sign with slot %d: digest is %d bytes, want 32", slot, len(digest))
	}
	err := c.session(func() error {
		if _, err := c.execute(OpNonce, noncePassThru, 0, digest, 0); err != nil {
			return err
		}
		out, err := c.execute(OpSign, signExternal, uint16(slot), nil, 64)
		if err != nil {
			return err
		}
		copy(rs[:], out)
		return nil
	})
	if err != nil {
		return rs, fmt.Errorf("sign with slot %d: %w", slot, err)
	}
	return rs, nil
}

// Verify checks r || s over a 32-byte digest with an external public key in
// the chip (Verify external mode). It returns false, nil on a miscompare.
func (c *Chip) Verify(pub *ecdsa.PublicKey, digest []byte, rs [64]byte) (bool, error) {
	xy, err := PublicKeyBytes(pub)
	if err != nil {
		return false, fmt.Errorf("verify: %w", err)
	}
	return c.verify(verifyExternal, keyTypeP256, digest, append(rs[:], xy...))
}

// VerifyStored checks r || s over a 32-byte digest with the public key
// stored in slot (Verify stored mode).
func (c *Chip) VerifyStored(slot int, digest []byte, rs [64]byte) (bool, error) {
	if err := checkSlot(slot); err != nil {
		return false, err
	}
	return c.verify(verifyStored, uint16(slot), digest, rs[:])
}

func (c *Chip) verify(mode uint8, p2 uint16, digest, in []byte) (bool, error) {
	if len(digest) != 32 {
		return false, fmt.Errorf("verify: digest is %d bytes, want 32", len(digest))
	}
	err := c.session(func() error {
		if _, err := c.execute(OpNonce, noncePassThru, 0, digest, 0); err != nil {
			return err
		}
		_, err := c.execute(OpVerify, mode, p2, in, 0)
		return err
	})
	if errors.Is(err, StatusMiscompare) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("verify: %w", err)
	}
	return true, nil
}

// Read reads 4 or 32 bytes (n) at a zone address (Read command).
func (c *Chip) Read(zone Zone, addr uint16, n int) ([]byte, error) {
	p1, err := sizeFlag(uint8(zone), n)
	if err != nil {
		return nil, err
	}
	return c.Execute(OpRead, p1, addr, nil, n)
}

// Write writes 4 or 32 bytes at a zone address (Write command, clear text).
func (c *Chip) Write(zone Zone, addr uint16, data []byte) error {
	p1, err := sizeFlag(uint8(zone), len(data))
	if err != nil {
		return err
	}
	_, err = c.Execute(OpWrite, p1, addr, data, 0)
	return err
}

func sizeFlag(zone uint8, n int) (uint8, error) {
	switch n {
	case 4:
		return zone, nil
	case 32:
		return zone | readWrite32, nil
	}
	return 0, fmt.Errorf("read/write size %d: must be 4 or 32", n)
}

// ReadConfig reads and parses the 128-byte config zone (always readable).
func (c *Chip) ReadConfig() (*Config, error) {
	var raw []byte
	err := c.session(func() error {
		for block := range 4 {
			out, err := c.execute(OpRead, uint8(ZoneConfig)|readWrite32, zoneAddr(block, 0), nil, 32)
			if err != nil {
				return err
			}
			raw = append(raw, out...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read config zone: %w", err)
	}
	return ParseConfig(raw)
}

// SerialNumber reads the chip's 9-byte serial number from the config zone.
func (c *Chip) SerialNumber() ([9]byte, error) {
	cfg, err := c.ReadConfig()
	if err != nil {
		return [9]byte{}, err
	}
	return cfg.SerialNumber(), nil
}

// ReadSlot reads a whole data slot (after the data zone lock, and only a
// slot that is readable in clear).
func (c *Chip) ReadSlot(slot int) ([]byte, error) {
	if err := checkSlot(slot); err != nil {
		return nil, err
	}
	size := SlotSize(slot)
	out := make([]byte, 0, size)
	err := c.session(func() error {
		for off := 0; off < size; {
			n := 32
			if size-off < 32 {
				n = 4
			}
			p1, _ := sizeFlag(uint8(ZoneData), n)
			b, err := c.execute(OpRead, p1, dataAddr(slot, off/32, (off%32)/4), nil, n)
			if err != nil {
				return err
			}
			out = append(out, b...)
			off += n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read slot %d: %w", slot, err)
	}
	return out, nil
}

// WriteSlot writes data at byte offset off of a slot, in 32-byte blocks
// where aligned and 4-byte words elsewhere; off and len(data) must be
// multiples of 4.
func (c *Chip) WriteSlot(slot, off int, data []byte) error {
	if err := checkSlot(slot); err != nil {
		return err
	}
	if off%4 != 0 || len(data)%4 != 0 || off+len(data) > SlotSize(slot) {
		return fmt.Errorf("write slot %d: %d bytes at %d: not word-aligned or beyond the slot's %d bytes", slot, len(data), off, SlotSize(slot))
	}
	err := c.session(func() error {
		for i := 0; i < len(data); {
			p := off + i
			n := 4
			if p%32 == 0 && len(data)-i >= 32 {
				n = 32
			}
			p1, _ := sizeFlag(uint8(ZoneData), n)
			if _, err := c.execute(OpWrite, p1, dataAddr(slot, p/32, (p%32)/4), data[i:i+n], 0); err != nil {
				return err
			}
			i += n
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write slot %d: %w", slot, err)
	}
	return nil
}

// WriteConfigBytes writes bytes of the config zone at a 4-byte aligned
// offset, word by word (bytes 0-15 and 84-87 are not writable).
func (c *Chip) WriteConfigBytes(off int, data []byte) error {
	if off%4 != 0 || len(data)%4 != 0 || off+len(data) > ConfigSize {
		return fmt.Errorf("write config: %d bytes at %d: not word-aligned or beyond the zone", len(data), off)
	}
	err := c.session(func() error {
		for i := 0; i < len(data); i += 4 {
			p := off + i
			if _, err := c.execute(OpWrite, uint8(ZoneConfig), zoneAddr(p/32, (p%32)/4), data[i:i+4], 0); err != nil {
				return fmt.Errorf("config bytes %d-%d: %w", p, p+3, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write config zone: %w", err)
	}
	return nil
}

// WriteOTP writes the OTP zone (only before the data zone lock).
func (c *Chip) WriteOTP(off int, data []byte) error {
	if off%4 != 0 || len(data)%4 != 0 || off+len(data) > OTPSize {
		return fmt.Errorf("write OTP: %d bytes at %d: not word-aligned or beyond the zone", len(data), off)
	}
	err := c.session(func() error {
		for i := 0; i < len(data); {
			p := off + i
			n := 4
			if p%32 == 0 && len(data)-i >= 32 {
				n = 32
			}
			p1, _ := sizeFlag(uint8(ZoneOTP), n)
			if _, err := c.execute(OpWrite, p1, zoneAddr(p/32, (p%32)/4), data[i:i+n], 0); err != nil {
				return err
			}
			i += n
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write OTP zone: %w", err)
	}
	return nil
}

// LockConfig locks the config zone, irreversibly. When expected is not nil
// the chip checks that its config zone is exactly expected (summary CRC)
// and refuses the lock otherwise.
func (c *Chip) LockConfig(expected []byte) error {
	return c.lockZone(lockConfig, expected, "config zone")
}

// LockData locks the data and OTP zones, irreversibly. When expected is not
// nil it must be the contents of all slots in order followed by the OTP
// zone, and the chip refuses the lock if its contents differ.
func (c *Chip) LockData(expected []byte) error {
	return c.lockZone(lockData, expected, "data zone")
}

// lockZone sends Lock for a whole zone, with the summary CRC of expected or,
// when expected is nil, without the chip's content check.
func (c *Chip) lockZone(zone uint8, expected []byte, what string) error {
	mode, crc := zone, uint16(0)
	if expected == nil {
		mode |= lockNoCRC
	} else {
		crc = CRC16(expected)
	}
	if _, err := c.Execute(OpLock, mode, crc, nil, 0); err != nil {
		return fmt.Errorf("lock %s: %w", what, err)
	}
	return nil
}

// LockSlot locks one slot, irreversibly (KeyConfig.Lockable must be set and
// the data zone locked). When expected is not nil it must be the slot's
// whole contents and the chip refuses the lock if they differ.
func (c *Chip) LockSlot(slot int, expected []byte) error {
	if err := checkSlot(slot); err != nil {
		return err
	}
	mode, crc := uint8(lockSlot)|uint8(slot)<<2, uint16(0)
	if expected == nil {
		mode |= lockNoCRC
	} else {
		crc = CRC16(expected)
	}
	if _, err := c.Execute(OpLock, mode, crc, nil, 0); err != nil {
		return fmt.Errorf("lock slot %d: %w", slot, err)
	}
	return nil
}

func checkSlot(slot int) error {
	if slot < 0 || slot >= NumSlots {
		return fmt.Errorf("slot %d: must be 0 to %d", slot, NumSlots-1)
	}
	return nil
}

// PublicKeySlot returns the 72-byte layout of a public key stored in a slot
// for Verify stored mode: 4 zero bytes, X, 4 zero bytes, Y.
func PublicKeySlot(pub *ecdsa.PublicKey) ([]byte, error) {
	xy, err := PublicKeyBytes(pub)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 72)
	copy(out[4:36], xy[:32])
	copy(out[40:72], xy[32:])
	return out, nil
}

// ParsePublicKeySlot parses the 72-byte public key slot layout.
func ParsePublicKeySlot(b []byte) (*ecdsa.PublicKey, error) {
	if len(b) < 72 {
		return nil, fmt.Errorf("public key slot: %d bytes", len(b))
	}
	return parsePublic(append(append([]byte(nil), b[4:36]...), b[40:72]...))
}
