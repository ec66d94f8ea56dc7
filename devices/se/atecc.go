package se

import (
	"fmt"
	"time"
)

// Opcode is an ATECC608 command opcode.
type Opcode uint8

// Opcodes of the commands this package speaks (datasheet "Command Opcodes").
const (
	OpRead   Opcode = 0x02
	OpWrite  Opcode = 0x12
	OpNonce  Opcode = 0x16
	OpLock   Opcode = 0x17
	OpRandom Opcode = 0x1B
	OpInfo   Opcode = 0x30
	OpGenKey Opcode = 0x40
	OpSign   Opcode = 0x41
	OpVerify Opcode = 0x45
)

// String implements fmt.Stringer.
func (o Opcode) String() string {
	switch o {
	case OpRead:
		return "Read"
	case OpWrite:
		return "Write"
	case OpNonce:
		return "Nonce"
	case OpLock:
		return "Lock"
	case OpRandom:
		return "Random"
	case OpInfo:
		return "Info"
	case OpGenKey:
		return "GenKey"
	case OpSign:
		return "Sign"
	case OpVerify:
		return "Verify"
	case OpCounter:
		return "Counter"
	}
	return fmt.Sprintf("Opcode(0x%02x)", uint8(o))
}

// MaxExecTime is the maximum execution time of each command at the default
// clock divider, as cryptoauthlib's ATECC608 table (atca_execution.c,
// device_execution_time_608_m0) gives it. The driver polls for a response
// until this time (plus a margin) has passed; the emulator, when asked to
// keep datasheet timings, takes this long.
var MaxExecTime = map[Opcode]time.Duration{
	OpGenKey:  115 * time.Millisecond,
	OpSign:    115 * time.Millisecond,
	OpVerify:  105 * time.Millisecond,
	OpNonce:   20 * time.Millisecond,
	OpRandom:  23 * time.Millisecond,
	OpRead:    5 * time.Millisecond,
	OpWrite:   45 * time.Millisecond,
	OpLock:    35 * time.Millisecond,
	OpInfo:    5 * time.Millisecond,
	OpCounter: 20 * time.Millisecond,
}

// Timing constants of the I2C interface (datasheet "AC Parameters").
const (
	// WakeHigh is tWHI: after the wake token the host waits this long before
	// talking to the chip.
	WakeHigh = 1500 * time.Microsecond
	// WakeLow is tWLO: how long SDA must be held low to wake the chip.
	WakeLow = 60 * time.Microsecond
	// Watchdog is the typical watchdog period: the chip goes to sleep this
	// long after a wake unless it is sent to idle or sleep first (the
	// datasheet gives 0.7 to 1.7 s, 1.3 s typical).
	Watchdog = 1300 * time.Millisecond
)

// DefaultAddress is the chip's factory 7-bit I2C address.
const DefaultAddress = 0x60

// Word addresses: the first byte of every write to the chip.
const (
	wordReset   = 0x00 // reset the I/O buffer's read pointer
	wordSleep   = 0x01 // enter sleep: volatile state is lost
	wordIdle    = 0x02 // enter idle: TempKey survives, watchdog stops
	wordCommand = 0x03 // a command packet follows
)

// WakeResponse is the status packet a chip answers right after waking.
var WakeResponse = [4]byte{0x04, 0x11, 0x33, 0x43}

// Zone is a memory zone selector (param1 bits 1:0 of Read, Write, Lock).
type Zone uint8

// Zones.
const (
	ZoneConfig Zone = 0x00
	ZoneOTP    Zone = 0x01
	ZoneData   Zone = 0x02
)

// String implements fmt.Stringer.
func (z Zone) String() string {
	switch z {
	case ZoneConfig:
		return "config"
	case ZoneOTP:
		return "OTP"
	case ZoneData:
		return "data"
	}
	return fmt.Sprintf("Zone(%d)", uint8(z))
}

// Zone sizes in bytes.
const (
	ConfigSize = 128
	OTPSize    = 64
	NumSlots   = 16
)

// SlotSize returns the size of a data slot: 36 bytes for slots 0-7, 416 for
// slot 8, 72 for slots 9-15.
func SlotSize(slot int) int {
	switch {
	case slot < 8:
		return 36
	case slot == 8:
		return 416
	default:
		return 72
	}
}

// DataZoneSize is the sum of all slot sizes.
const DataZoneSize = 8*36 + 416 + 7*72

// Command parameters.
const (
	readWrite32     = 0x80 // Read/Write param1 bit 7: 32 bytes instead of 4
	writeEncrypted  = 0x40 // Write param1 bit 6: encrypted input
	genKeyPublic    = 0x00 // GenKey mode: compute the public key of a slot
	genKeyCreate    = 0x04 // GenKey mode: create a private key in a slot
	signExternal    = 0x80 // Sign mode: sign an external digest loaded in TempKey
	verifyStored    = 0x00 // Verify mode: public key in a slot
	verifyExternal  = 0x02 // Verify mode: public key in the command
	nonceRandom     = 0x00 // Nonce mode: 20-byte input, random output, TempKey = SHA-256
	nonceRandomNoSd = 0x01 // Nonce mode: as 0x00 without seed update
	noncePassThru   = 0x03 // Nonce mode: load 32 bytes into TempKey
	lockConfig      = 0x00 // Lock mode: config zone
	lockData        = 0x01 // Lock mode: data and OTP zones
	lockSlot        = 0x02 // Lock mode: one slot, slot number in bits 5:2
	lockNoCRC       = 0x80 // Lock mode bit 7: skip the summary CRC check
	infoRevision    = 0x00 // Info mode: revision number
	infoKeyValid    = 0x01 // Info mode: is the key in slot param2 valid
	keyTypeP256     = 0x0004
)

// dataAddr returns the Read/Write address of a 4-byte word in a data slot.
func dataAddr(slot, block, word int) uint16 {
	return uint16(block)<<8 | uint16(slot)<<3 | uint16(word)
}

// zoneAddr returns the Read/Write address of a word in the config or OTP zone.
func zoneAddr(block, word int) uint16 {
	return uint16(block)<<3 | uint16(word)
}
