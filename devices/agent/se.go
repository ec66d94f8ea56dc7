package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/se"
	"periph.io/x/conn/v3/driver/driverreg"
	"periph.io/x/conn/v3/i2c/i2creg"
	_ "periph.io/x/host/v3/sysfs" // registers Linux /dev/i2c-N buses with i2creg
)

// SEBackend is the Backend of a device with an ATECC608-class secure
// element: the device key is created by GenKey in slot 0 and never leaves
// the chip; the chain is stored in Microchip's layout, the device
// certificate compressed in slot 10, the signer's public key in slot 11 and
// the signer certificate compressed in slot 12; the certificate definitions
// (templates) that rebuild them are kept in a file (see WithCertDefPath).
// An SE has no endorsement key. A chip with a factory attestation key
// (se.SlotAttestationKey) proves the device key with a key attestation made
// inside the chip (GenKey digest mode + Sign internal, se.Chip.AttestKey)
// and the manufacturer chain of the attestation key (rebuilt from the
// chip's slots 13-15 and the vendor's certificate definitions, see
// WithMfgDefPath); see proto.SEAttestation.
type SEBackend struct {
	chip       *se.Chip
	cfg        *se.Config
	serial     string
	model      string
	defPath    string
	mfgDefPath string
	// attests: the chip holds a valid attestation key.
	attests bool
	// mfgChain caches the manufacturer chain (its slots are locked at the
	// factory; rebuilding it costs a GenKey).
	mfgChain [][]byte
	// devPub caches slot 0's public key: only this backend runs GenKey on
	// the chip, and recomputing the key costs a GenKey (up to 115 ms).
	devPub *ecdsa.PublicKey
}

// devicePublic returns slot 0's public key, from the cache or the chip.
func (b *SEBackend) devicePublic() (*ecdsa.PublicKey, error) {
	if b.devPub != nil {
		return b.devPub, nil
	}
	pub, err := b.chip.PublicKey(se.SlotDeviceKey)
	if err != nil {
		return nil, err
	}
	b.devPub = pub
	return pub, nil
}

type seOptions struct {
	defPath     string
	mfgDefPath  string
	personalize bool
}

// SEOption configures an SEBackend.
type SEOption func(*seOptions)

// WithCertDefPath sets the file that holds the certificate definitions of
// the device and signer certificates (JSON, written at InstallChain, read
// at ReadChain). It is product data, not secret: a changed definition
// rebuilds a certificate whose signature no longer verifies, which
// ReadChain detects.
func WithCertDefPath(path string) SEOption { return func(o *seOptions) { o.defPath = path } }

// WithMfgDefPath sets the file of the chip vendor's certificate
// definitions (se.MfgDefs), which rebuild the manufacturer chain of the
// attestation key from the chip's slots. Default: DefaultMfgDefPath of the
// certificate definitions path. Without the file the attestation carries
// no chain and the station refuses it.
func WithMfgDefPath(path string) SEOption { return func(o *seOptions) { o.mfgDefPath = path } }

// DefaultMfgDefPath is where the vendor's certificate definitions are
// looked for beside the certificate definitions file certDefPath: the same
// name with "certdef" replaced by "mfgdef" (state.json.certdef.json →
// state.json.mfgdef.json, atecc-certdef.json → atecc-mfgdef.json), else
// atecc-mfgdef.json in the same folder.
func DefaultMfgDefPath(certDefPath string) string {
	dir, base := filepath.Split(certDefPath)
	if i := strings.LastIndex(base, "certdef"); i >= 0 {
		return dir + base[:i] + "mfgdef" + base[i+len("certdef"):]
	}
	return filepath.Join(dir, "atecc-mfgdef.json")
}

// WithPersonalize says whether NewSEBackend brings a blank chip into the
// provisioning configuration (se.Chip.Personalize: writes and locks the
// config zone, clears and locks the data zone — irreversible). Default
// true; with false, a chip that is not already personalised is refused.
func WithPersonalize(on bool) SEOption { return func(o *seOptions) { o.personalize = on } }

// Slots where InstallChain stores the chain, reported as its locations.
var seChainSlots = []uint32{se.SlotDeviceCert, se.SlotSignerPubKey, se.SlotSignerCert}

// NewSEBackend opens an SE backend over chip. The device serial is the
// chip's serial number from its config zone, in hex.
func NewSEBackend(chip *se.Chip, opts ...SEOption) (*SEBackend, error) {
	o := seOptions{personalize: true}
	for _, f := range opts {
		f(&o)
	}
	var cfg *se.Config
	var err error
	if o.personalize {
		cfg, err = chip.Personalize()
	} else {
		cfg, err = chip.ReadConfig()
		if err == nil && (!cfg.ConfigLocked() || !cfg.DataLocked()) {
			err = errors.New("chip is not personalised (config or data zone unlocked)")
		}
		if err == nil {
			err = se.CheckProvisioningConfig(cfg)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("secure element %s: %w", chip, err)
	}
	model := "atecc608"
	switch rev := cfg.Revision(); {
	case rev[2] == 0x60 && rev[3] == 0x02:
		model = "atecc608a"
	case rev[2] == 0x60 && rev[3] >= 0x03:
		model = "atecc608b"
	}
	attests, err := chip.KeyValid(se.SlotAttestationKey)
	if err != nil {
		return nil, fmt.Errorf("secure element %s: %w", chip, err)
	}
	if o.mfgDefPath == "" && o.defPath != "" {
		o.mfgDefPath = DefaultMfgDefPath(o.defPath)
	}
	return &SEBackend{chip: chip, cfg: cfg, serial: cfg.SerialHex(), model: model, defPath: o.defPath,
		mfgDefPath: o.mfgDefPath, attests: attests}, nil
}

// CapKeyAttestation is the Hello capability of a secure element that makes
// in-chip key attestations (CreateKeys carries proto.SEAttestation).
const CapKeyAttestation = "se-key-attestation"

// Identity implements Backend.
func (b *SEBackend) Identity() Identity {
	caps := []string{"se-slots", "compressed-certs", "sign-digest"}
	if b.attests {
		caps = append(caps, CapKeyAttestation)
	}
	return Identity{Backend: "se", Serial: b.serial, Model: b.model, Firmware: Version, Capabilities: caps}
}

// CreateKeys implements Backend: the device key in slot 0 is reused when
// the chip reports a valid key there (Created false), else created by
// GenKey. The slot's configuration forbids Write and PrivWrite, so a valid
// key in it was made by GenKey inside the chip. The CSR is signed in the
// chip and carries only the serial; the CA takes names from the station.
// There is no TPM attestation key: IAKPublic, CertifyInfo and
// CertifySignature are empty, IDevIDPublic is the device key as PKIX DER.
//
// A chip with a factory attestation key also attests the device key: in one
// wake session Nonce (random, NumIn from the station's nonce), GenKey in
// digest mode (creating the key when there is none, mode 0x0C, else 0x08)
// and Sign internal by the attestation key; the result, with the config
// zone and the manufacturer chain, is KeyEvidence.SEAttestation.
func (b *SEBackend) CreateKeys(_ context.Context, nonce []byte, _ string) (*KeyEvidence, error) {
	valid, err := b.chip.KeyValid(se.SlotDeviceKey)
	if err != nil {
		return nil, err
	}
	created := !valid
	var att *proto.SEAttestation
	switch {
	case b.attests:
		if created {
			b.devPub = nil
		}
		ka, err := b.chip.AttestKey(se.SlotDeviceKey, se.SlotAttestationKey, created, se.NumInFromNonce(nonce))
		if err != nil {
			return nil, err
		}
		if b.devPub != nil && !b.devPub.Equal(ka.PublicKey) {
			return nil, errors.New("the attested device key differs from the key this agent knew: the chip's key changed underneath it")
		}
		b.devPub = ka.PublicKey
		if att, err = b.attestation(ka); err != nil {
			return nil, err
		}
	case created:
		b.devPub = nil
		pub, err := b.chip.GenKey(se.SlotDeviceKey)
		if err != nil {
			return nil, err
		}
		b.devPub = pub
	}
	pub, err := b.devicePublic()
	if err != nil {
		return nil, err
	}
	signer := se.SignerWithPublic(b.chip, se.SlotDeviceKey, pub)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{SerialNumber: b.serial}}, signer)
	if err != nil {
		return nil, fmt.Errorf("sign CSR in the secure element: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("device public key: %w", err)
	}
	return &KeyEvidence{IDevIDPublic: der, CSR: csr, Created: created, SEAttestation: att}, nil
}

// attestation assembles the wire evidence of a key attestation: the config
// zone as the chip has it now (slot locks included) and the manufacturer
// chain. A chip without manufacturer certificates (or without the vendor's
// definitions) gives evidence without a chain, which the station refuses.
func (b *SEBackend) attestation(ka *se.KeyAttestation) (*proto.SEAttestation, error) {
	cfg, err := b.chip.ReadConfig()
	if err != nil {
		return nil, err
	}
	sn := cfg.SerialNumber()
	if b.mfgChain == nil {
		defs, err := se.ReadMfgDefs(b.mfgDefPath)
		if err == nil {
			b.mfgChain, err = b.chip.ReadMfgChain(defs, sn)
		}
		if err != nil && !errors.Is(err, se.ErrNoMfgChain) {
			return nil, fmt.Errorf("manufacturer chain: %w", err)
		}
	}
	xy, err := se.PublicKeyBytes(ka.PublicKey)
	if err != nil {
		return nil, err
	}
	return &proto.SEAttestation{
		Serial: sn[:], Config: cfg.Raw[:], KeySlot: uint8(ka.Slot), AttestationSlot: uint8(ka.AttestationSlot),
		GenKeyMode: ka.GenKeyMode, SignMode: ka.SignMode, RandOut: ka.RandOut[:], PublicKey: xy,
		Signature: ka.Signature[:], Chain: b.mfgChain,
	}, nil
}

// certDefs is the file format of the certificate definitions.
type certDefs struct {
	Format string       `json:"format"`
	Serial string       `json:"serial"`
	Device *se.Template `json:"device"`
	Signer *se.Template `json:"signer"`
}

const certDefsFormat = "wsc-atecc-certdef/1"

// InstallChain implements Backend. chain must be the device certificate
// and its signer (the station intermediate). Before anything is written,
// both are checked: the leaf carries the chip's key and verifies under the
// signer, and both compress and rebuild byte for byte (se.NewTemplate,
// se.Compress). Then the definitions are saved, slots 11, 12 and 10
// written, the chain read back and compared, and, when lock is set, the
// three slots locked with the CRC of exactly what was verified.
func (b *SEBackend) InstallChain(ctx context.Context, chain [][]byte, lock bool) ([]uint32, error) {
	if b.defPath == "" {
		return nil, errors.New("no certificate definition file configured (--se-cert-def)")
	}
	if len(chain) != 2 {
		return nil, &proto.Error{Code: proto.ErrBadRequest, Message: fmt.Sprintf("a secure element stores a device and a signer certificate, got %d certificates", len(chain))}
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("parse device certificate: %w", err)
	}
	signer, err := x509.ParseCertificate(chain[1])
	if err != nil {
		return nil, fmt.Errorf("parse signer certificate: %w", err)
	}
	devPub, err := b.devicePublic()
	if err != nil {
		return nil, err
	}
	if lp, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !lp.Equal(devPub) {
		return nil, &proto.Error{Code: proto.ErrBadRequest, Message: "the device certificate does not carry this chip's device key"}
	}
	if err := leaf.CheckSignatureFrom(signer); err != nil {
		return nil, &proto.Error{Code: proto.ErrBadRequest, Message: "the device certificate is not signed by the signer certificate: " + err.Error()}
	}
	signerPub, ok := signer.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, &proto.Error{Code: proto.ErrBadRequest, Message: "signer key is not ECDSA: " + se.ErrNotCompressible.Error()}
	}
	defs := &certDefs{Format: certDefsFormat, Serial: b.serial}
	if defs.Device, err = se.NewTemplate(leaf, se.KindDevice, signerPub); err != nil {
		return nil, &proto.Error{Code: proto.ErrBadRequest, Message: err.Error()}
	}
	if defs.Signer, err = se.NewTemplate(signer, se.KindSigner, nil); err != nil {
		return nil, &proto.Error{Code: proto.ErrBadRequest, Message: err.Error()}
	}
	devComp, err := se.Compress(leaf, defs.Device)
	if err != nil {
		return nil, &proto.Error{Code: proto.ErrBadRequest, Message: err.Error()}
	}
	sigComp, err := se.Compress(signer, defs.Signer)
	if err != nil {
		return nil, &proto.Error{Code: proto.ErrBadRequest, Message: err.Error()}
	}
	pubSlot, err := se.PublicKeySlot(signerPub)
	if err != nil {
		return nil, err
	}
	contents := map[int][]byte{se.SlotSignerPubKey: pubSlot, se.SlotSignerCert: sigComp[:], se.SlotDeviceCert: devComp[:]}

	// Re-delivery of the chain already stored (e.g. after a lost reply):
	// nothing to write.
	if cur, err := b.ReadChain(ctx); err == nil && len(cur) == 2 && bytes.Equal(cur[0], chain[0]) && bytes.Equal(cur[1], chain[1]) {
		if lock {
			return seChainSlots, b.lockSlots(contents, se.SlotSignerPubKey, se.SlotSignerCert, se.SlotDeviceCert)
		}
		return seChainSlots, nil
	}
	cfg, err := b.chip.ReadConfig()
	if err != nil {
		return nil, err
	}
	for _, s := range seChainSlots {
		if cfg.SlotLocked(int(s)) {
			return nil, &proto.Error{Code: proto.ErrLocked, Message: fmt.Sprintf("certificate slot %d is locked and holds another chain", s)}
		}
	}
	if err := writeFileAtomic(b.defPath, defs); err != nil {
		return nil, err
	}
	// The device certificate last: until it is written, ReadChain finds no
	// consistent chain rather than a device certificate with a stale signer.
	for _, s := range []int{se.SlotSignerPubKey, se.SlotSignerCert, se.SlotDeviceCert} {
		if err := b.chip.WriteSlot(s, 0, contents[s]); err != nil {
			return nil, err
		}
	}
	got, err := b.ReadChain(ctx)
	if err != nil {
		return nil, fmt.Errorf("read back: %w", err)
	}
	if len(got) != 2 || !bytes.Equal(got[0], chain[0]) || !bytes.Equal(got[1], chain[1]) {
		return nil, errors.New("read back: the rebuilt chain differs from the one sent")
	}
	if lock {
		if err := b.lockSlots(contents, se.SlotSignerPubKey, se.SlotSignerCert, se.SlotDeviceCert); err != nil {
			return seChainSlots, err
		}
	}
	return seChainSlots, nil
}

// lockSlots locks the slots not yet locked, each with the CRC of its
// expected contents (nil: no CRC check).
func (b *SEBackend) lockSlots(contents map[int][]byte, slots ...int) error {
	cfg, err := b.chip.ReadConfig()
	if err != nil {
		return err
	}
	for _, s := range slots {
		if cfg.SlotLocked(s) {
			continue
		}
		if err := b.chip.LockSlot(s, contents[s]); err != nil {
			return err
		}
	}
	return nil
}

// ReadChain implements Backend: it rebuilds the device and signer
// certificates from slots 10-12, the definitions file and the chip's device
// public key, and checks that the device certificate verifies under the
// signer. The result is byte-identical to what InstallChain was given.
func (b *SEBackend) ReadChain(context.Context) ([][]byte, error) {
	chain, _, err := b.readChain()
	return chain, err
}

// readChain is ReadChain that also returns the raw slot contents.
func (b *SEBackend) readChain() ([][]byte, map[int][]byte, error) {
	if b.defPath == "" {
		return nil, nil, errors.New("no certificate definition file configured (--se-cert-def)")
	}
	raw, err := os.ReadFile(b.defPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, &proto.Error{Code: proto.ErrNotProvisioned, Message: "no certificate stored in the secure element"}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read certificate definitions: %w", err)
	}
	var defs certDefs
	if err := json.Unmarshal(raw, &defs); err != nil || defs.Format != certDefsFormat || defs.Device == nil || defs.Signer == nil {
		return nil, nil, fmt.Errorf("certificate definitions %s: unreadable or unknown format", b.defPath)
	}
	if defs.Serial != b.serial {
		return nil, nil, fmt.Errorf("certificate definitions %s belong to chip %s, not %s", b.defPath, defs.Serial, b.serial)
	}
	slots := map[int][]byte{}
	for _, s := range seChainSlots {
		d, err := b.chip.ReadSlot(int(s))
		if err != nil {
			return nil, nil, err
		}
		slots[int(s)] = d
	}
	if isZeroes(slots[se.SlotDeviceCert]) {
		return nil, nil, &proto.Error{Code: proto.ErrNotProvisioned, Message: se.ErrNoCertificate.Error()}
	}
	signerPub, err := se.ParsePublicKeySlot(slots[se.SlotSignerPubKey])
	if err != nil {
		return nil, nil, fmt.Errorf("slot %d: %w", se.SlotSignerPubKey, err)
	}
	devPub, err := b.devicePublic()
	if err != nil {
		return nil, nil, err
	}
	var sigComp, devComp se.Compressed
	copy(sigComp[:], slots[se.SlotSignerCert])
	copy(devComp[:], slots[se.SlotDeviceCert])
	signerDER, err := se.Decompress(&sigComp, defs.Signer, signerPub, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("signer certificate: %w", err)
	}
	devDER, err := se.Decompress(&devComp, defs.Device, devPub, signerPub)
	if err != nil {
		return nil, nil, fmt.Errorf("device certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(devDER)
	if err != nil {
		return nil, nil, fmt.Errorf("rebuilt device certificate: %w", err)
	}
	signer, err := x509.ParseCertificate(signerDER)
	if err != nil {
		return nil, nil, fmt.Errorf("rebuilt signer certificate: %w", err)
	}
	if err := leaf.CheckSignatureFrom(signer); err != nil {
		return nil, nil, fmt.Errorf("rebuilt device certificate does not verify under the rebuilt signer (definitions or slots altered): %w", err)
	}
	if devComp.SignerID() != sigComp.SignerID() {
		return nil, nil, errors.New("device and signer certificates carry different signer ids")
	}
	return [][]byte{devDER, signerDER}, slots, nil
}

func isZeroes(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// SignDigest implements Backend.
func (b *SEBackend) SignDigest(_ context.Context, digest []byte) ([]byte, error) {
	rs, err := b.chip.Sign(se.SlotDeviceKey, digest)
	if err != nil {
		return nil, err
	}
	return se.RawToASN1(rs), nil
}

// Lock implements Backend: locks the certificate slots (10, 11, 12) with
// the CRC of their verified contents, then the device-key slot, after which
// GenKey can never replace the key. Irreversible; slots already locked are
// skipped.
func (b *SEBackend) Lock(context.Context) error {
	_, contents, err := b.readChain()
	if err != nil {
		return fmt.Errorf("lock: no verified chain to lock: %w", err)
	}
	return b.lockSlots(contents, se.SlotSignerPubKey, se.SlotSignerCert, se.SlotDeviceCert, se.SlotDeviceKey)
}

// Describe reports the chip's serial, its device key (if any) and the slot
// policy, for `wsc-agent info`.
func (b *SEBackend) Describe() (*DeviceInfo, error) {
	out := &DeviceInfo{Serial: b.serial, Backend: "se", Manufacturer: "Microchip " + b.model, Firmware: Version,
		Keys: []KeyInfo{}, ChainNVIndices: []uint32{}, ProtocolVersion: Version}
	if valid, err := b.chip.KeyValid(se.SlotDeviceKey); err != nil {
		return nil, err
	} else if valid {
		pub, err := b.devicePublic()
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, err
		}
		out.Keys = append(out.Keys, KeyInfo{Role: "device", Handle: se.SlotDeviceKey, PublicKeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))})
	}
	if _, err := b.ReadChain(context.Background()); err == nil {
		out.ChainNVIndices = seChainSlots
	} else {
		out.ChainError = err.Error()
	}
	return out, nil
}

func writeFileAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return fmt.Errorf("save certificate definitions: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".certdef-*")
	if err != nil {
		return fmt.Errorf("save certificate definitions: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save certificate definitions: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save certificate definitions: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save certificate definitions: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save certificate definitions: %w", err)
	}
	return nil
}

// OpenSE opens the secure element named by uri:
//
//	i2c:/dev/i2c-1@0x60              a chip on a Linux I2C bus (periph.io sysfs driver)
//	emulator:/path/state.json        the byte-level emulator, state persisted in the file
//	emulator:/path/state.json?timings=datasheet
//	                                 the same, taking the datasheet's execution times
//
// The closer releases the bus (for the emulator: saves its state).
func OpenSE(uri string) (*se.Chip, io.Closer, error) {
	kind, rest, ok := strings.Cut(uri, ":")
	if !ok {
		return nil, nil, fmt.Errorf("secure element %q: want i2c:/dev/i2c-N@0xAA or emulator:STATEFILE", uri)
	}
	switch kind {
	case "emulator":
		path, query, _ := strings.Cut(rest, "?")
		var opts []se.EmulatorOption
		switch query {
		case "":
		case "timings=datasheet":
			opts = append(opts, se.WithDatasheetTimings(true))
		default:
			return nil, nil, fmt.Errorf("secure element %q: unknown option %q", uri, query)
		}
		if path == "" {
			return nil, nil, fmt.Errorf("secure element %q: no state file", uri)
		}
		e, err := se.OpenEmulator(path, opts...)
		if err != nil {
			return nil, nil, err
		}
		return se.New(e, se.DefaultAddress), e, nil
	case "i2c":
		dev, addrText, ok := strings.Cut(rest, "@")
		addr := uint64(se.DefaultAddress)
		if ok {
			var err error
			if addr, err = strconv.ParseUint(addrText, 0, 7); err != nil {
				return nil, nil, fmt.Errorf("secure element %q: address %q: want a 7-bit address like 0x60", uri, addrText)
			}
		}
		if _, err := driverreg.Init(); err != nil {
			return nil, nil, fmt.Errorf("secure element %q: init I2C drivers: %w", uri, err)
		}
		bus, err := i2creg.Open(dev)
		if err != nil {
			return nil, nil, fmt.Errorf("secure element %q: open bus: %w", uri, err)
		}
		return se.New(bus, uint16(addr)), bus, nil
	}
	return nil, nil, fmt.Errorf("secure element %q: unknown kind %q (i2c or emulator)", uri, kind)
}

// DefaultCertDefPath is where the certificate definitions of the secure
// element at uri are kept unless --se-cert-def says otherwise: next to the
// emulator's state file, or /var/lib/wsc-agent/atecc-certdef.json.
func DefaultCertDefPath(uri string) string {
	if rest, ok := strings.CutPrefix(uri, "emulator:"); ok {
		path, _, _ := strings.Cut(rest, "?")
		return path + ".certdef.json"
	}
	return "/var/lib/wsc-agent/atecc-certdef.json"
}
