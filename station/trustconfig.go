package station

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// FirmwareTrustConfig is a work order's firmware_trust (station.yaml,
// docs/station-config.md): what its devices accept as firmware, written
// into the chip at end of line.
//
//	firmware_trust:
//	  roots: [release-root.pem]   # firmware-signing roots; their fingerprints go into the chip
//	  crls: [release-ca.crl]      # current CRLs (DER or PEM); their numbers become the chip's minimum CRL numbers
//	  policy_version: 3
//	  device_class: gw-1
type FirmwareTrustConfig struct {
	Roots         []string `yaml:"roots"`
	CRLs          []string `yaml:"crls"`
	PolicyVersion uint32   `yaml:"policy_version"`
	DeviceClass   string   `yaml:"device_class"`
}

// MeasuredBootConfig is a work order's measured_boot (station.yaml,
// docs/station-config.md): the TPM code-signing key (LDevID) is bound to
// measured boot — it signs only under a PCR policy the fleet policy key
// signed for PolicyRef (`wsc policy sign`), or through the owner's
// authorisation (used once, at end of line).
//
//	measured_boot:
//	  fleet_public_key: fleet-policy.pub.pem  # PEM PUBLIC KEY, ECDSA P-256
//	  policy_ref: gw-line                     # the product line, 1 to 32 bytes
//	  pcrs: [0, 2, 4, 7]                      # SHA-256 bank, 0..23, each once
type MeasuredBootConfig struct {
	FleetPublicKey string `yaml:"fleet_public_key"`
	PolicyRef      string `yaml:"policy_ref"`
	PCRs           []int  `yaml:"pcrs"`
}

// load reads the fleet key and checks the binding.
func (m *MeasuredBootConfig) load() (*MeasuredBoot, error) {
	if m.FleetPublicKey == "" {
		return nil, errors.New("fleet_public_key is required (the PEM public key of the fleet policy key that signs PCR policies)")
	}
	k, err := LoadFleetPublicKey(m.FleetPublicKey)
	if err != nil {
		return nil, err
	}
	mb := &MeasuredBoot{FleetKey: k, PolicyRef: []byte(m.PolicyRef), PCRs: slices.Clone(m.PCRs)}
	slices.Sort(mb.PCRs)
	if err := mb.Check(); err != nil {
		return nil, err
	}
	return mb, nil
}

// LoadFleetPublicKey reads a fleet policy public key: a PEM PUBLIC KEY
// (PKIX) holding an ECDSA P-256 key.
func LoadFleetPublicKey(path string) (*ecdsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("fleet_public_key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("fleet_public_key: %s is not a PEM PUBLIC KEY; export the fleet policy key's public half (openssl pkey -pubout)", path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("fleet_public_key: %s: %w", path, err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("fleet_public_key: %s is not an ECDSA P-256 key (the TPM checks the fleet key's signatures with P-256)", path)
	}
	return pub, nil
}

// OwnerAuthConfig is station.yaml's owner_auth: where the TPM owner
// authorisation the station sets is sealed to, or the explicit policy
// none (the owner hierarchy is left as it is; recorded in the ledger).
//
//	owner_auth: {escrow_public_key: owner-auth-escrow.pub.pem}
//	owner_auth: {policy: none}
type OwnerAuthConfig struct {
	EscrowPublicKey string `yaml:"escrow_public_key,omitempty"`
	Policy          string `yaml:"policy,omitempty"`
}

// makeTrustAbsolute resolves the issue-15 paths (abs is makeAbsolute's).
func makeTrustAbsolute(c *FileConfig, abs func(*string)) {
	abs(&c.OwnerAuth.EscrowPublicKey)
	for _, w := range append([]*WorkOrder{&c.WorkOrder}, workOrderPtrs(c.WorkOrders)...) {
		if w.MeasuredBoot != nil {
			abs(&w.MeasuredBoot.FleetPublicKey)
		}
		if w.FirmwareTrust == nil {
			continue
		}
		for i := range w.FirmwareTrust.Roots {
			abs(&w.FirmwareTrust.Roots[i])
		}
		for i := range w.FirmwareTrust.CRLs {
			abs(&w.FirmwareTrust.CRLs[i])
		}
	}
}

func workOrderPtrs(ws []WorkOrder) []*WorkOrder {
	out := make([]*WorkOrder, len(ws))
	for i := range ws {
		out[i] = &ws[i]
	}
	return out
}

// checkTrust checks owner_auth, and each work order's signing_key and
// firmware_trust (loading their files: a file that does not parse is
// refused when the config is read, not at the first device).
func (c *FileConfig) checkTrust() []error {
	var errs []error
	oa := c.OwnerAuth
	switch {
	case oa.Policy != "" && oa.Policy != "none":
		errs = append(errs, keyed("owner_auth.policy", fmt.Errorf("owner_auth.policy: %q is not none (give escrow_public_key to seal the owner authorisation)", oa.Policy)))
	case oa.Policy == "none" && oa.EscrowPublicKey != "":
		errs = append(errs, keyed("owner_auth", errors.New("owner_auth: give either escrow_public_key or policy: none, not both")))
	case oa.EscrowPublicKey != "":
		if _, err := LoadEscrowPublicKey(oa.EscrowPublicKey); err != nil {
			errs = append(errs, keyed("owner_auth.escrow_public_key", err))
		}
	}
	for i, w := range append([]WorkOrder{c.WorkOrder}, c.WorkOrders...) {
		prefix := "work_order"
		if i > 0 {
			prefix = fmt.Sprintf("work_orders[%d]", i-1)
		}
		switch w.SigningKey {
		case "", SigningKeyAuto, SigningKeyOff:
		default:
			errs = append(errs, keyed(prefix+".signing_key", fmt.Errorf("%s.signing_key: %q is neither auto nor off", prefix, w.SigningKey)))
		}
		if mb := w.MeasuredBoot; mb != nil {
			if w.SigningKey == SigningKeyOff {
				errs = append(errs, keyed(prefix+".measured_boot", fmt.Errorf("%s.measured_boot binds the code-signing key, but signing_key is off: remove measured_boot or set signing_key: auto", prefix)))
			}
			if _, err := mb.load(); err != nil {
				errs = append(errs, keyed(measuredBootKey(prefix, mb, err), fmt.Errorf("%s.measured_boot: %w", prefix, err)))
			}
		}
		if w.FirmwareTrust == nil {
			continue
		}
		if oa.EscrowPublicKey == "" && oa.Policy != "none" {
			errs = append(errs, keyed(prefix+".firmware_trust", fmt.Errorf("%s.firmware_trust needs owner_auth: an escrow_public_key (the TPM owner authorisation is sealed to it; wsc owner-auth keygen) or an explicit policy: none", prefix)))
		}
		if _, err := w.FirmwareTrust.load(); err != nil {
			errs = append(errs, keyed(prefix+".firmware_trust", fmt.Errorf("%s.firmware_trust: %w", prefix, err)))
		}
	}
	return errs
}

// measuredBootKey is the key a measured_boot error is about (for its
// line in --check-config).
func measuredBootKey(prefix string, m *MeasuredBootConfig, err error) string {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "fleet_public_key"):
		return prefix + ".measured_boot.fleet_public_key"
	case strings.Contains(msg, "policy reference"), strings.Contains(msg, "policy_ref"):
		return prefix + ".measured_boot.policy_ref"
	case strings.Contains(msg, "pcrs"):
		for i, p := range m.PCRs {
			if p < 0 || p > 23 || slices.Index(m.PCRs, p) < i {
				return fmt.Sprintf("%s.measured_boot.pcrs[%d]", prefix, i)
			}
		}
		return prefix + ".measured_boot.pcrs"
	}
	return prefix + ".measured_boot"
}

// load reads the roots and CRLs and checks the result.
func (f *FirmwareTrustConfig) load() (*FirmwareTrust, error) {
	ft := &FirmwareTrust{PolicyVersion: f.PolicyVersion, DeviceClass: f.DeviceClass}
	if f.PolicyVersion == 0 {
		return nil, errors.New("policy_version must be at least 1")
	}
	for _, p := range f.Roots {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("roots: %w", err)
		}
		n := 0
		for {
			var blk *pem.Block
			if blk, b = pem.Decode(b); blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("roots: %s: %w", p, err)
			}
			ft.Roots = append(ft.Roots, c)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("roots: %s holds no PEM certificate", p)
		}
	}
	for _, p := range f.CRLs {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("crls: %w", err)
		}
		if blk, _ := pem.Decode(b); blk != nil {
			b = blk.Bytes
		}
		crl, err := x509.ParseRevocationList(b)
		if err != nil {
			return nil, fmt.Errorf("crls: %s: %w", p, err)
		}
		ft.CRLs = append(ft.CRLs, crl)
	}
	if err := (TrustConfig{Firmware: ft, OwnerAuth: OwnerAuthPolicy{None: true}}).Check(); err != nil {
		return nil, err
	}
	return ft, nil
}

// TrustConfig builds the sequence's TrustConfig for the config's work
// order: its signing_key and firmware_trust, and the station's owner_auth.
func (c *FileConfig) TrustConfig() (TrustConfig, error) {
	t := TrustConfig{SigningKey: c.WorkOrder.SigningKey}
	switch {
	case c.OwnerAuth.Policy == "none":
		t.OwnerAuth.None = true
	case c.OwnerAuth.EscrowPublicKey != "":
		k, err := LoadEscrowPublicKey(c.OwnerAuth.EscrowPublicKey)
		if err != nil {
			return TrustConfig{}, fmt.Errorf("owner_auth.escrow_public_key: %w", err)
		}
		t.OwnerAuth.Escrow = k
	}
	if f := c.WorkOrder.FirmwareTrust; f != nil {
		ft, err := f.load()
		if err != nil {
			return TrustConfig{}, fmt.Errorf("work order %s: firmware_trust: %w", c.WorkOrder.ID, err)
		}
		t.Firmware = ft
	}
	if m := c.WorkOrder.MeasuredBoot; m != nil {
		mb, err := m.load()
		if err != nil {
			return TrustConfig{}, fmt.Errorf("work order %s: measured_boot: %w", c.WorkOrder.ID, err)
		}
		t.MeasuredBoot = mb
	}
	if err := t.Check(); err != nil {
		return TrustConfig{}, fmt.Errorf("work order %s: %w", c.WorkOrder.ID, err)
	}
	return t, nil
}
