package se

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// MfgIssuer is the chip manufacturer's CA at the factory: it certifies the
// attestation key attPub of the chip with serial number sn and returns that
// device certificate (its subject carries the serial as ChipSerialText, its
// serial number and validity as DeviceCertParams makes them, so it
// compresses) and the signer certificate that issued it.
type MfgIssuer func(attPub *ecdsa.PublicKey, sn [9]byte) (device, signer *x509.Certificate, err error)

// MfgDefs are the manufacturer's certificate definitions: the templates
// that rebuild the compressed certificates of SlotMfgDeviceCert and
// SlotMfgSignerCert. A chip vendor ships them with its host library (as
// Microchip ships the atcacert definitions of its Trust parts); they are
// the same for every chip of one signer and hold nothing secret: an altered
// definition rebuilds a certificate whose signature does not verify.
type MfgDefs struct {
	Format string    `json:"format"`
	Device *Template `json:"device"`
	Signer *Template `json:"signer"`
}

// MfgDefsFormat is the Format of a manufacturer definitions file.
const MfgDefsFormat = "wsc-atecc-mfgdef/1"

// ErrNoMfgChain: the chip holds no manufacturer certificates (or their
// definitions are missing), so its attestation key cannot be chained to a
// vendor root.
var ErrNoMfgChain = errors.New("atecc: no manufacturer certificate chain")

type manufactureOptions struct {
	config  func(*Config)
	noCerts bool
}

// ManufactureOption configures Manufacture.
type ManufactureOption func(*manufactureOptions)

// WithFactoryConfig lets f change the configuration zone before it is
// locked (tests use it to make chips whose slots a verifier must refuse).
func WithFactoryConfig(f func(*Config)) ManufactureOption {
	return func(o *manufactureOptions) { o.config = f }
}

// WithoutMfgCertificates makes a chip with an attestation key but no
// manufacturer certificates, as a vendor that does not provision them
// would ship it.
func WithoutMfgCertificates() ManufactureOption {
	return func(o *manufactureOptions) { o.noCerts = true }
}

// Manufacture is the chip vendor's factory step on a blank chip: it writes
// and locks the configuration zone (ProvisioningConfig), creates the
// attestation key in SlotAttestationKey by GenKey (possible only before the
// data lock: the slot's WriteConfig forbids GenKey afterwards), has issue
// certify it, stores the device and signer certificates compressed in
// SlotMfgDeviceCert and SlotMfgSignerCert and the signer's public key in
// SlotMfgSignerPubKey, clears every other slot and the OTP zone, locks the
// data zone, then locks the attestation key's and the certificates' slots.
// It returns the definitions that rebuild the certificates (nil without
// certificates). All locks are irreversible.
func (c *Chip) Manufacture(issue MfgIssuer, opts ...ManufactureOption) (*MfgDefs, error) {
	var o manufactureOptions
	for _, f := range opts {
		f(&o)
	}
	cfg, err := c.ReadConfig()
	if err != nil {
		return nil, fmt.Errorf("manufacture: %w", err)
	}
	if cfg.ConfigLocked() || cfg.DataLocked() {
		return nil, fmt.Errorf("manufacture %s: the chip is not blank (zones locked)", c)
	}
	want := ProvisioningConfig(cfg)
	if o.config != nil {
		o.config(want)
	}
	if err := c.WriteConfigBytes(cfgFirstWritable, want.Raw[cfgFirstWritable:cfgUserExtra]); err != nil {
		return nil, fmt.Errorf("manufacture: %w", err)
	}
	if err := c.WriteConfigBytes(cfgSlotLocked, want.Raw[cfgSlotLocked:]); err != nil {
		return nil, fmt.Errorf("manufacture: %w", err)
	}
	if err := c.LockConfig(want.Raw[:]); err != nil {
		return nil, fmt.Errorf("manufacture: %w", err)
	}
	sn := cfg.SerialNumber()
	attPub, err := c.GenKey(SlotAttestationKey)
	if err != nil {
		return nil, fmt.Errorf("manufacture: attestation key: %w", err)
	}
	contents := map[int][]byte{}
	var defs *MfgDefs
	if !o.noCerts {
		if issue == nil {
			return nil, errors.New("manufacture: no manufacturer CA")
		}
		dev, signer, err := issue(attPub, sn)
		if err != nil {
			return nil, fmt.Errorf("manufacture: certify attestation key: %w", err)
		}
		if dp, ok := dev.PublicKey.(*ecdsa.PublicKey); !ok || !dp.Equal(attPub) {
			return nil, errors.New("manufacture: the device certificate does not carry the attestation key")
		}
		signerPub, ok := signer.PublicKey.(*ecdsa.PublicKey)
		if !ok {
			return nil, errors.New("manufacture: the signer key is not ECDSA")
		}
		defs = &MfgDefs{Format: MfgDefsFormat}
		if defs.Device, err = NewChipTemplate(dev, signerPub, sn); err != nil {
			return nil, fmt.Errorf("manufacture: %w", err)
		}
		if defs.Signer, err = NewTemplate(signer, KindSigner, nil); err != nil {
			return nil, fmt.Errorf("manufacture: %w", err)
		}
		dc, err := Compress(dev, defs.Device)
		if err != nil {
			return nil, fmt.Errorf("manufacture: %w", err)
		}
		scomp, err := Compress(signer, defs.Signer)
		if err != nil {
			return nil, fmt.Errorf("manufacture: %w", err)
		}
		pubSlot, err := PublicKeySlot(signerPub)
		if err != nil {
			return nil, fmt.Errorf("manufacture: %w", err)
		}
		contents[SlotMfgDeviceCert], contents[SlotMfgSignerCert], contents[SlotMfgSignerPubKey] = dc[:], scomp[:], pubSlot
	}
	for s := range NumSlots {
		if s == SlotAttestationKey {
			continue
		}
		data, ok := contents[s]
		if !ok {
			data = make([]byte, SlotSize(s))
		}
		if err := c.WriteSlot(s, 0, data); err != nil {
			return nil, fmt.Errorf("manufacture: %w", err)
		}
	}
	if err := c.WriteOTP(0, make([]byte, OTPSize)); err != nil {
		return nil, fmt.Errorf("manufacture: %w", err)
	}
	// No summary CRC: it would cover the attestation key's private bytes,
	// which never leave the chip.
	if err := c.LockData(nil); err != nil {
		return nil, fmt.Errorf("manufacture: %w", err)
	}
	if want.KeyConfig(SlotAttestationKey).Lockable() {
		if err := c.LockSlot(SlotAttestationKey, nil); err != nil {
			return nil, fmt.Errorf("manufacture: %w", err)
		}
	}
	for _, s := range []int{SlotMfgDeviceCert, SlotMfgSignerCert, SlotMfgSignerPubKey} {
		if data, ok := contents[s]; ok && want.KeyConfig(s).Lockable() {
			if err := c.LockSlot(s, data); err != nil {
				return nil, fmt.Errorf("manufacture: %w", err)
			}
		}
	}
	return defs, nil
}

// ReadMfgChain rebuilds the manufacturer chain of the chip's attestation
// key: the device certificate (from SlotMfgDeviceCert, the attestation
// key's public key and the chip serial) and the signer certificate (from
// SlotMfgSignerCert and SlotMfgSignerPubKey), DER, device first. It checks
// that the device certificate verifies under the signer. A chip with empty
// certificate slots, or nil defs, gives an error wrapping ErrNoMfgChain.
func (c *Chip) ReadMfgChain(defs *MfgDefs, sn [9]byte) ([][]byte, error) {
	if defs == nil || defs.Device == nil || defs.Signer == nil {
		return nil, fmt.Errorf("%w: no manufacturer certificate definitions", ErrNoMfgChain)
	}
	slots := map[int][]byte{}
	for _, s := range []int{SlotMfgDeviceCert, SlotMfgSignerCert, SlotMfgSignerPubKey} {
		d, err := c.ReadSlot(s)
		if err != nil {
			return nil, fmt.Errorf("manufacturer chain: %w", err)
		}
		if isZero(d) {
			return nil, fmt.Errorf("%w: slot %d is empty", ErrNoMfgChain, s)
		}
		slots[s] = d
	}
	signerPub, err := ParsePublicKeySlot(slots[SlotMfgSignerPubKey])
	if err != nil {
		return nil, fmt.Errorf("manufacturer chain: slot %d: %w", SlotMfgSignerPubKey, err)
	}
	attPub, err := c.PublicKey(SlotAttestationKey)
	if err != nil {
		return nil, fmt.Errorf("manufacturer chain: %w", err)
	}
	var dc, scomp Compressed
	copy(dc[:], slots[SlotMfgDeviceCert])
	copy(scomp[:], slots[SlotMfgSignerCert])
	signerDER, err := Decompress(&scomp, defs.Signer, signerPub, nil)
	if err != nil {
		return nil, fmt.Errorf("manufacturer signer certificate: %w", err)
	}
	devDER, err := DecompressChip(&dc, defs.Device, attPub, signerPub, sn)
	if err != nil {
		return nil, fmt.Errorf("manufacturer device certificate: %w", err)
	}
	dev, err := x509.ParseCertificate(devDER)
	if err != nil {
		return nil, fmt.Errorf("rebuilt manufacturer device certificate: %w", err)
	}
	signer, err := x509.ParseCertificate(signerDER)
	if err != nil {
		return nil, fmt.Errorf("rebuilt manufacturer signer certificate: %w", err)
	}
	if err := dev.CheckSignatureFrom(signer); err != nil {
		return nil, fmt.Errorf("rebuilt manufacturer device certificate does not verify under its signer (definitions or slots altered): %w", err)
	}
	return [][]byte{devDER, signerDER}, nil
}

func isZero(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }

// ReadMfgDefs reads a manufacturer definitions file. A missing file gives
// an error wrapping both ErrNoMfgChain and os.ErrNotExist.
func ReadMfgDefs(path string) (*MfgDefs, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", ErrNoMfgChain, err)
	}
	if err != nil {
		return nil, fmt.Errorf("manufacturer definitions: %w", err)
	}
	var d MfgDefs
	if err := json.Unmarshal(raw, &d); err != nil || d.Format != MfgDefsFormat || d.Device == nil || d.Signer == nil {
		return nil, fmt.Errorf("manufacturer definitions %s: unreadable or unknown format", path)
	}
	return &d, nil
}

// WriteMfgDefs writes a manufacturer definitions file atomically (mode
// 0644: public data).
func WriteMfgDefs(path string, d *MfgDefs) error {
	b, err := json.MarshalIndent(d, "", " ")
	if err != nil {
		return fmt.Errorf("manufacturer definitions: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".mfgdef-*")
	if err != nil {
		return fmt.Errorf("manufacturer definitions: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("manufacturer definitions: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("manufacturer definitions: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("manufacturer definitions: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("manufacturer definitions: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("manufacturer definitions: %w", err)
	}
	return nil
}
