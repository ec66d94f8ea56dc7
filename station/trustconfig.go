package station

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
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
	if err := t.Check(); err != nil {
		return TrustConfig{}, fmt.Errorf("work order %s: %w", c.WorkOrder.ID, err)
	}
	return t, nil
}
