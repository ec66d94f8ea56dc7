package se

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// Config-zone byte offsets (ATECC608 datasheet, "Configuration Zone").
const (
	cfgSN03         = 0  // SN[0:3]
	cfgRevNum       = 4  // RevNum, 4 bytes
	cfgSN48         = 8  // SN[4:8]
	cfgAESEnable    = 13 // AES_Enable
	cfgI2CEnable    = 14 // I2C_Enable
	cfgI2CAddress   = 16 // I2C_Address (8-bit form: 7-bit address << 1)
	cfgCountMatch   = 18
	cfgChipMode     = 19
	cfgSlotConfig   = 20 // SlotConfig[16], 2 bytes little-endian each
	cfgCounter0     = 52
	cfgCounter1     = 60
	cfgUseLock      = 68
	cfgVolatileKey  = 69
	cfgSecureBoot   = 70
	cfgUserExtra    = 84
	cfgUserExtraAdd = 85
	cfgLockValue    = 86 // data/OTP lock: 0x55 unlocked, 0x00 locked
	cfgLockConfig   = 87 // config lock: 0x55 unlocked, 0x00 locked
	cfgSlotLocked   = 88 // 16 bits little-endian, bit n clear = slot n locked
	cfgChipOptions  = 90
	cfgX509Format   = 92
	cfgKeyConfig    = 96 // KeyConfig[16], 2 bytes little-endian each
	// cfgFirstWritable is the first config byte a Write may change; bytes
	// 0-15 (serial number, revision) are read-only.
	cfgFirstWritable = 16
	lockedValue      = 0x00
	unlockedValue    = 0x55
)

// Config is a parsed 128-byte configuration zone.
type Config struct {
	Raw [ConfigSize]byte
}

// ParseConfig parses a configuration zone as read from the chip.
func ParseConfig(b []byte) (*Config, error) {
	if len(b) != ConfigSize {
		return nil, fmt.Errorf("parse config zone: %d bytes, want %d", len(b), ConfigSize)
	}
	c := &Config{}
	copy(c.Raw[:], b)
	return c, nil
}

// SerialNumber returns the chip's 9-byte serial number: config bytes 0-3
// and 8-12. Microchip serials start with 01 23 and end with EE.
func (c *Config) SerialNumber() [9]byte {
	var sn [9]byte
	copy(sn[:4], c.Raw[cfgSN03:cfgSN03+4])
	copy(sn[4:], c.Raw[cfgSN48:cfgSN48+5])
	return sn
}

// SerialHex is the serial number as upper-case hex, the device serial an SE
// device reports.
func (c *Config) SerialHex() string {
	sn := c.SerialNumber()
	return strings.ToUpper(hex.EncodeToString(sn[:]))
}

// Revision returns RevNum (bytes 4-7), what Info(Revision) also returns.
func (c *Config) Revision() [4]byte {
	var r [4]byte
	copy(r[:], c.Raw[cfgRevNum:cfgRevNum+4])
	return r
}

// I2CAddress returns the chip's 7-bit I2C address.
func (c *Config) I2CAddress() uint16 { return uint16(c.Raw[cfgI2CAddress] >> 1) }

// ConfigLocked reports whether the configuration zone is locked.
func (c *Config) ConfigLocked() bool { return c.Raw[cfgLockConfig] != unlockedValue }

// DataLocked reports whether the data and OTP zones are locked.
func (c *Config) DataLocked() bool { return c.Raw[cfgLockValue] != unlockedValue }

// SlotLocked reports whether a slot has been locked individually.
func (c *Config) SlotLocked(slot int) bool {
	bits := binary.LittleEndian.Uint16(c.Raw[cfgSlotLocked:])
	return bits&(1<<slot) == 0
}

// SlotConfig returns the SlotConfig word of a slot.
func (c *Config) SlotConfig(slot int) SlotConfig {
	return SlotConfig(binary.LittleEndian.Uint16(c.Raw[cfgSlotConfig+2*slot:]))
}

// KeyConfig returns the KeyConfig word of a slot.
func (c *Config) KeyConfig(slot int) KeyConfig {
	return KeyConfig(binary.LittleEndian.Uint16(c.Raw[cfgKeyConfig+2*slot:]))
}

// SetSlotConfig sets the SlotConfig word of a slot in Raw.
func (c *Config) SetSlotConfig(slot int, v SlotConfig) {
	binary.LittleEndian.PutUint16(c.Raw[cfgSlotConfig+2*slot:], uint16(v))
}

// SetKeyConfig sets the KeyConfig word of a slot in Raw.
func (c *Config) SetKeyConfig(slot int, v KeyConfig) {
	binary.LittleEndian.PutUint16(c.Raw[cfgKeyConfig+2*slot:], uint16(v))
}

// SlotConfig is a slot's 16-bit access policy word.
//
//	bits 3:0   ReadKey  (ECC private keys: bit 0 external Sign allowed,
//	                     bit 1 internal Sign allowed, bit 2 ECDH allowed)
//	bit  4     NoMac
//	bit  5     LimitedUse
//	bit  6     EncryptRead
//	bit  7     IsSecret (never readable in clear)
//	bits 11:8  WriteKey
//	bits 15:12 WriteConfig (Write: 0 Always, 1 PubInvalid, 01xx Encrypt,
//	                        others Never; GenKey: bit 1 allows GenKey once
//	                        the data zone is locked; bit 2 allows PrivWrite)
type SlotConfig uint16

// ReadKey returns bits 3:0.
func (s SlotConfig) ReadKey() uint8 { return uint8(s & 0xF) }

// IsSecret reports bit 7.
func (s SlotConfig) IsSecret() bool { return s&0x80 != 0 }

// EncryptRead reports bit 6.
func (s SlotConfig) EncryptRead() bool { return s&0x40 != 0 }

// WriteKey returns bits 11:8.
func (s SlotConfig) WriteKey() uint8 { return uint8(s>>8) & 0xF }

// WriteConfig returns bits 15:12.
func (s SlotConfig) WriteConfig() uint8 { return uint8(s>>12) & 0xF }

// ExternalSign reports whether Sign of external messages is allowed (ReadKey
// bit 0, for private-key slots).
func (s SlotConfig) ExternalSign() bool { return s&0x1 != 0 }

// InternalSign reports whether Sign of internally generated messages
// (GenKey/GenDig output in TempKey) is allowed (ReadKey bit 1, for
// private-key slots).
func (s SlotConfig) InternalSign() bool { return s&0x2 != 0 }

// NoMac reports bit 4.
func (s SlotConfig) NoMac() bool { return s&0x10 != 0 }

// PrivWrite reports whether PrivWrite may write a private key into the slot
// (WriteConfig bit 2, for private-key slots): a key that came from outside
// the chip.
func (s SlotConfig) PrivWrite() bool { return s.WriteConfig()&0x4 != 0 }

// GenKeyAfterLock reports whether GenKey may create a key in the slot once
// the data zone is locked (WriteConfig bit 1).
func (s SlotConfig) GenKeyAfterLock() bool { return s.WriteConfig()&0x2 != 0 }

// WriteAlways reports whether clear writes are allowed after the data zone
// lock (WriteConfig 0000).
func (s SlotConfig) WriteAlways() bool { return s.WriteConfig() == 0 }

// KeyConfig is a slot's 16-bit key description word.
//
//	bit  0     Private (an ECC private key: never readable)
//	bit  1     PubInfo (GenKey may recompute its public key)
//	bits 4:2   KeyType (4 = P-256 ECC, 6 = AES, 7 = not an ECC key)
//	bit  5     Lockable (the slot may be locked by Lock mode 2)
//	bit  6     ReqRandom
//	bit  7     ReqAuth
//	bits 11:8  AuthKey
//	bit  12    PersistentDisable
//	bits 15:14 X509id
type KeyConfig uint16

// Private reports bit 0.
func (k KeyConfig) Private() bool { return k&0x1 != 0 }

// PubInfo reports bit 1.
func (k KeyConfig) PubInfo() bool { return k&0x2 != 0 }

// KeyType returns bits 4:2.
func (k KeyConfig) KeyType() uint8 { return uint8(k>>2) & 0x7 }

// Lockable reports bit 5.
func (k KeyConfig) Lockable() bool { return k&0x20 != 0 }

// ReqAuth reports bit 7.
func (k KeyConfig) ReqAuth() bool { return k&0x80 != 0 }

// Key types of KeyConfig bits 4:2.
const (
	KeyTypeP256 = 4
	KeyTypeAES  = 6
	KeyTypeData = 7
)

// SlotPolicy describes a slot in words, for `wsc-agent info` and tests.
func (c *Config) SlotPolicy(slot int) string {
	sc, kc := c.SlotConfig(slot), c.KeyConfig(slot)
	var parts []string
	switch {
	case kc.Private() && kc.KeyType() == KeyTypeP256:
		parts = append(parts, "P-256 private key (never readable)")
		if sc.ExternalSign() {
			parts = append(parts, "external sign")
		}
		if sc.GenKeyAfterLock() {
			parts = append(parts, "GenKey after data lock")
		}
	case kc.KeyType() == KeyTypeP256:
		parts = append(parts, "P-256 public key")
	default:
		parts = append(parts, "data")
	}
	if sc.IsSecret() {
		parts = append(parts, "secret")
	} else if !kc.Private() {
		parts = append(parts, "clear read")
	}
	if sc.WriteAlways() && !kc.Private() {
		parts = append(parts, "clear write")
	}
	if kc.Lockable() {
		parts = append(parts, "lockable")
	}
	if c.SlotLocked(slot) {
		parts = append(parts, "LOCKED")
	}
	return strings.Join(parts, ", ")
}
