package se

import (
	"errors"
	"fmt"
	"strings"
)

// Slot layout of the wsc provisioning configuration. It follows Microchip's
// own layout for certificates (device key in slot 0, compressed device
// certificate in slot 10, signer public key in 11, compressed signer
// certificate in 12), so a chip personalised by Microchip's tools with that
// layout is served as well.
const (
	// SlotDeviceKey holds the device's P-256 private key: created by GenKey
	// inside the chip, never readable, external-digest Sign allowed, GenKey
	// allowed after the data lock until the slot itself is locked.
	SlotDeviceKey = 0
	// SlotSpareKey is a second private-key slot whose key can only be
	// created before the data lock (WriteConfig 0): after the lock GenKey is
	// refused there. Not used by the agent.
	SlotSpareKey = 1
	// SlotDeviceCert holds the device certificate in compressed form (72 B).
	SlotDeviceCert = 10
	// SlotSignerPubKey holds the signer's (issuing CA's) public key in the
	// 72-byte public-key slot layout (4 zero bytes, X, 4 zero bytes, Y),
	// usable by Verify stored mode.
	SlotSignerPubKey = 11
	// SlotSignerCert holds the signer certificate in compressed form (72 B).
	SlotSignerCert = 12
)

// Slot and key configuration words of the provisioning configuration.
const (
	// Slot 0: ReadKey 0x3 (external and internal Sign), IsSecret,
	// WriteConfig 0x2 (GenKey after data lock; no PrivWrite, no Write).
	provSlotConfigDeviceKey SlotConfig = 0x2083
	// Private | PubInfo | KeyType P-256 | Lockable.
	provKeyConfigDeviceKey KeyConfig = 0x0033
	// Slot 1: as slot 0 but WriteConfig 0: GenKey only before the data lock.
	provSlotConfigSpareKey SlotConfig = 0x0083
	// Slot 2 (attestation key): ReadKey 0x2 (internal Sign only: the key
	// never signs a digest the host computed), IsSecret, WriteConfig 0
	// (GenKey only before the data lock, at the factory; no PrivWrite).
	provSlotConfigAttestKey SlotConfig = 0x0082
	// Clear read, clear write (WriteConfig 0 = Always) until slot-locked.
	provSlotConfigData SlotConfig = 0x0000
	// KeyType "not ECC" (data) | Lockable.
	provKeyConfigData KeyConfig = 0x003C
	// KeyType P-256, public, Lockable.
	provKeyConfigPublic KeyConfig = 0x0030
)

// ProvisioningConfig returns the config zone wsc writes into a blank chip:
// current's serial number, revision and I2C bytes (0-19) and all bytes
// outside the slot and key configuration are kept; SlotConfig and KeyConfig
// are set as the Slot* constants document (the factory's attestation key in
// SlotAttestationKey and its certificates in SlotMfg*); the lock bytes are left as they
// are (the zone is locked by LockConfig, not by a write).
func ProvisioningConfig(current *Config) *Config {
	c := &Config{Raw: current.Raw}
	for s := range NumSlots {
		switch s {
		case SlotDeviceKey:
			c.SetSlotConfig(s, provSlotConfigDeviceKey)
			c.SetKeyConfig(s, provKeyConfigDeviceKey)
		case SlotSpareKey:
			c.SetSlotConfig(s, provSlotConfigSpareKey)
			c.SetKeyConfig(s, provKeyConfigDeviceKey)
		case SlotAttestationKey:
			c.SetSlotConfig(s, provSlotConfigAttestKey)
			c.SetKeyConfig(s, provKeyConfigDeviceKey)
		case SlotSignerPubKey, SlotMfgSignerPubKey:
			c.SetSlotConfig(s, provSlotConfigData)
			c.SetKeyConfig(s, provKeyConfigPublic)
		default:
			c.SetSlotConfig(s, provSlotConfigData)
			c.SetKeyConfig(s, provKeyConfigData)
		}
	}
	return c
}

// CheckProvisioningConfig reports whether a chip's configuration can serve
// as a wsc device: the device-key slot holds a P-256 private key that is
// never readable, whose public key can be recomputed and which signs
// external digests; the certificate slots are readable and, unless locked,
// writable in clear. It returns an error wrapping ErrConfigMismatch that
// lists every difference.
func CheckProvisioningConfig(c *Config) error {
	var bad []string
	sc, kc := c.SlotConfig(SlotDeviceKey), c.KeyConfig(SlotDeviceKey)
	if !kc.Private() || kc.KeyType() != KeyTypeP256 {
		bad = append(bad, "slot 0 is not a P-256 private key")
	}
	if !sc.IsSecret() {
		bad = append(bad, "slot 0 is not secret")
	}
	if !kc.PubInfo() {
		bad = append(bad, "slot 0 public key cannot be recomputed (PubInfo clear)")
	}
	if !sc.ExternalSign() {
		bad = append(bad, "slot 0 does not sign external digests")
	}
	for _, s := range []int{SlotDeviceCert, SlotSignerPubKey, SlotSignerCert} {
		sc, kc := c.SlotConfig(s), c.KeyConfig(s)
		if kc.Private() || sc.IsSecret() || sc.EncryptRead() {
			bad = append(bad, fmt.Sprintf("slot %d is not readable in clear", s))
		}
		if !c.SlotLocked(s) && !sc.WriteAlways() {
			bad = append(bad, fmt.Sprintf("slot %d is not writable in clear", s))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrConfigMismatch, strings.Join(bad, "; "))
	}
	return nil
}

// Personalize brings a chip into the provisioning configuration and returns
// its config zone. It is idempotent:
//   - config zone unlocked: writes ProvisioningConfig, reads it back and
//     locks the zone with the summary CRC of exactly that content;
//   - data zone unlocked: writes zeros to every slot and to OTP — so no key
//     or data put there earlier survives — and locks the data zone with the
//     summary CRC of those zeros (the chip refuses the lock if anything
//     else is there);
//   - both locked: checks CheckProvisioningConfig.
//
// Both locks are irreversible. The data lock is needed before Sign works,
// and after it slot 0's key can only come from GenKey inside the chip: its
// WriteConfig forbids Write and PrivWrite.
func (c *Chip) Personalize() (*Config, error) {
	cfg, err := c.ReadConfig()
	if err != nil {
		return nil, fmt.Errorf("personalize: %w", err)
	}
	if !cfg.ConfigLocked() {
		want := ProvisioningConfig(cfg)
		if err := c.WriteConfigBytes(cfgFirstWritable, want.Raw[cfgFirstWritable:cfgUserExtra]); err != nil {
			return nil, fmt.Errorf("personalize: %w", err)
		}
		if err := c.WriteConfigBytes(cfgSlotLocked, want.Raw[cfgSlotLocked:]); err != nil {
			return nil, fmt.Errorf("personalize: %w", err)
		}
		got, err := c.ReadConfig()
		if err != nil {
			return nil, fmt.Errorf("personalize: %w", err)
		}
		if got.Raw != want.Raw {
			return nil, fmt.Errorf("personalize: config zone reads back different from what was written")
		}
		if err := c.LockConfig(want.Raw[:]); err != nil {
			return nil, fmt.Errorf("personalize: %w", err)
		}
		cfg = want
		cfg.Raw[cfgLockConfig] = lockedValue
	}
	if err := CheckProvisioningConfig(cfg); err != nil {
		return nil, fmt.Errorf("personalize %s: %w", c, err)
	}
	if !cfg.DataLocked() {
		var summary []byte
		for s := range NumSlots {
			zero := make([]byte, SlotSize(s))
			if err := c.WriteSlot(s, 0, zero); err != nil {
				return nil, fmt.Errorf("personalize: %w", err)
			}
			summary = append(summary, zero...)
		}
		otp := make([]byte, OTPSize)
		if err := c.WriteOTP(0, otp); err != nil {
			return nil, fmt.Errorf("personalize: %w", err)
		}
		summary = append(summary, otp...)
		if err := c.LockData(summary); err != nil {
			return nil, fmt.Errorf("personalize: %w", err)
		}
		if cfg, err = c.ReadConfig(); err != nil {
			return nil, fmt.Errorf("personalize: %w", err)
		}
		if !cfg.DataLocked() {
			return nil, errors.New("personalize: data zone still unlocked after Lock")
		}
	}
	return cfg, nil
}
