package sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/wsc-project/wsc/devices/se"
)

// SEStateFile is the name of a secure-element device's emulator state in
// its folder.
const SEStateFile = "se.state"

// SEMfgDefSuffix is appended to a chip's state file to name the file of
// its manufacturer's certificate definitions (se.MfgDefs): the templates a
// vendor ships with its host library. The agent finds it beside its own
// certificate definitions (agent.DefaultMfgDefPath of
// agent.DefaultCertDefPath).
const SEMfgDefSuffix = ".mfgdef.json"

// ManufactureSE makes sure a chip exists at statePath — a blank ATECC608
// emulator with a random serial, as it leaves the wafer test, when the file
// does not exist yet — and returns the chip's serial number in hex, the
// serial its agent reports (read from the chip's config zone over the
// emulated I2C bus, as the agent reads it). A blank chip has no
// attestation key and no manufacturer certificates: use
// SEVendor.Manufacture for a chip as a vendor ships it.
func ManufactureSE(statePath string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(statePath), 0o700); err != nil {
		return "", fmt.Errorf("secure element folder: %w", err)
	}
	emu, err := se.OpenEmulator(statePath)
	if err != nil {
		return "", fmt.Errorf("secure element %s: %w", statePath, err)
	}
	defer emu.Close()
	cfg, err := se.New(emu, se.DefaultAddress).ReadConfig()
	if err != nil {
		return "", fmt.Errorf("secure element %s: read serial: %w", statePath, err)
	}
	return cfg.SerialHex(), nil
}

// SEURI is the agent's --se argument for this device's chip.
func (d *Device) SEURI() string {
	uri := "emulator:" + d.SEState
	if d.cfg.SEDatasheetTimings {
		uri += "?timings=datasheet"
	}
	return uri
}

// SEVendor is the simulated secure-element manufacturer, shaped like
// Microchip's Trust provisioning: a vendor root CA and a signer CA under
// it. At manufacture each chip gets an attestation key (se.Manufacture,
// slot se.SlotAttestationKey) and a device certificate for it, subject
// CN "sn" + the chip serial in upper-case hex, O SEVendorOrg, serial number
// and validity as se.DeviceCertParams makes them (no expiry), signed by the
// signer; both certificates are stored compressed in the chip. The CA keys
// exist only in memory and are forgotten by Close: like the TPM vendor's,
// they never reach the factory floor.
type SEVendor struct {
	mu                 sync.Mutex
	root, signer       *x509.Certificate
	rootKey, signerKey *ecdsa.PrivateKey
	now                func() time.Time
}

// SEVendorOrg is the organisation name of the simulated SE vendor.
const SEVendorOrg = "wsc simulated secure-element vendor"

// NewSEVendor creates the simulated SE vendor's root and signer CAs.
func NewSEVendor() (*SEVendor, error) {
	v := &SEVendor{now: time.Now}
	var err error
	if v.rootKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, fmt.Errorf("se vendor root key: %w", err)
	}
	if v.signerKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, fmt.Errorf("se vendor signer key: %w", err)
	}
	now := v.now().UTC()
	rootTmpl := &x509.Certificate{
		SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "wsc Simulated SE Vendor Root CA", Organization: []string{SEVendorOrg}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(40, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &v.rootKey.PublicKey, v.rootKey)
	if err != nil {
		return nil, fmt.Errorf("se vendor root: %w", err)
	}
	if v.root, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	signerTmpl := &x509.Certificate{
		SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "wsc Simulated SE Vendor Signer 1001", Organization: []string{SEVendorOrg}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(30, 0, 0), IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if der, err = x509.CreateCertificate(rand.Reader, signerTmpl, v.root, &v.signerKey.PublicKey, v.rootKey); err != nil {
		return nil, fmt.Errorf("se vendor signer: %w", err)
	}
	if v.signer, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	return v, nil
}

func randomSerial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[0] = b[0]&0x7F | 0x40
	return new(big.Int).SetBytes(b)
}

// Root returns the vendor's root CA certificate.
func (v *SEVendor) Root() *x509.Certificate { return v.root }

// Signer returns the vendor's signer CA certificate, which issues the
// chips' attestation certificates.
func (v *SEVendor) Signer() *x509.Certificate { return v.signer }

// Issue certifies a chip's attestation key: it is the se.MfgIssuer of this
// vendor. It fails after Close.
func (v *SEVendor) Issue(attPub *ecdsa.PublicKey, sn [9]byte) (device, signer *x509.Certificate, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.signerKey == nil {
		return nil, nil, errors.New("se vendor: CA keys already destroyed")
	}
	serial, nb, na, err := se.DeviceCertParams(attPub, v.now(), 0)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "sn" + se.ChipSerialText(sn), Organization: []string{SEVendorOrg}},
		NotBefore: nb, NotAfter: na, KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, v.signer, attPub, v.signerKey)
	if err != nil {
		return nil, nil, fmt.Errorf("se vendor: certify attestation key: %w", err)
	}
	dev, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return dev, v.signer, nil
}

// Manufacture makes the chip at statePath as the vendor ships it (see
// se.Chip.Manufacture: attestation key, compressed certificates, all zones
// locked) and writes the vendor's certificate definitions beside it
// (statePath + SEMfgDefSuffix). It returns the chip serial in hex. A chip
// that already exists is left as it is.
func (v *SEVendor) Manufacture(statePath string, opts ...se.ManufactureOption) (string, error) {
	if _, err := os.Stat(statePath); err == nil {
		return ManufactureSE(statePath)
	}
	if err := os.MkdirAll(filepath.Dir(statePath), 0o700); err != nil {
		return "", fmt.Errorf("secure element folder: %w", err)
	}
	emu, err := se.OpenEmulator(statePath)
	if err != nil {
		return "", fmt.Errorf("secure element %s: %w", statePath, err)
	}
	chip := se.New(emu, se.DefaultAddress)
	defs, err := chip.Manufacture(v.Issue, opts...)
	if err != nil {
		emu.Close()
		return "", fmt.Errorf("secure element %s: %w", statePath, err)
	}
	cfg, err := chip.ReadConfig()
	if err != nil {
		emu.Close()
		return "", fmt.Errorf("secure element %s: %w", statePath, err)
	}
	if err := emu.Close(); err != nil {
		return "", fmt.Errorf("secure element %s: %w", statePath, err)
	}
	if defs != nil {
		if err := se.WriteMfgDefs(statePath+SEMfgDefSuffix, defs); err != nil {
			return "", err
		}
	}
	return cfg.SerialHex(), nil
}

// Publish writes the vendor's root and signer certificates (never its keys)
// as PEM into dir and returns their paths: what a station configures as
// secure-element vendor roots and intermediates.
func (v *SEVendor) Publish(dir string) (root, signer string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	root, signer = filepath.Join(dir, "se-vendor-root.pem"), filepath.Join(dir, "se-vendor-signer.pem")
	for path, c := range map[string]*x509.Certificate{root: v.root, signer: v.signer} {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644); err != nil {
			return "", "", fmt.Errorf("se vendor certificate: %w", err)
		}
	}
	return root, signer, nil
}

// Close forgets the vendor's CA private keys; Issue fails afterwards.
func (v *SEVendor) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rootKey, v.signerKey = nil, nil
	return nil
}
