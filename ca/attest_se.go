package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// ErrAttestation is the umbrella of attestation failures: every
// secure-element attestation error below wraps it, so a caller can write
// errors.Is(err, ca.ErrAttestation) for "the device did not prove its key"
// and errors.Is(err, ca.ErrSENoChain) (etc.) for the reason.
var ErrAttestation = errors.New("ca: attestation failed")

// Secure-element (ATECC608) attestation errors, one per failed check.
var (
	// ErrSEEvidenceMalformed: a field has the wrong size or does not parse.
	ErrSEEvidenceMalformed = fmt.Errorf("%w: secure-element evidence malformed", ErrAttestation)
	// ErrSEMode: the chip ran GenKey or Sign in a mode that does not attest
	// a key (only GenKey 0x08/0x0C and Sign 0x40 do).
	ErrSEMode = fmt.Errorf("%w: secure-element attestation made with the wrong command modes", ErrAttestation)
	// ErrSENoChain: the evidence carries no manufacturer certificate chain.
	ErrSENoChain = fmt.Errorf("%w: secure element has no manufacturer certificate chain", ErrAttestation)
	// ErrSEChainUntrusted: the manufacturer chain does not verify to a
	// configured secure-element vendor root.
	ErrSEChainUntrusted = fmt.Errorf("%w: secure-element manufacturer chain not trusted", ErrAttestation)
	// ErrSESerialMismatch: the chip serial in the evidence, in the config
	// zone and in the manufacturer device certificate are not one serial.
	ErrSESerialMismatch = fmt.Errorf("%w: secure-element serial number mismatch", ErrAttestation)
	// ErrSEConfigUnlocked: the configuration or data zone is not locked, so
	// slot policies can still change.
	ErrSEConfigUnlocked = fmt.Errorf("%w: secure-element configuration not locked", ErrAttestation)
	// ErrSESignature: the key attestation is not signed by the attestation
	// key of the manufacturer certificate (or the message was altered:
	// another key, config, serial or nonce than the chip signed).
	ErrSESignature = fmt.Errorf("%w: secure-element key attestation signature invalid", ErrAttestation)
	// ErrSEKeyMismatch: the attested key is not the CSR's key.
	ErrSEKeyMismatch = fmt.Errorf("%w: attested key is not the CSR key", ErrAttestation)
	// ErrSEKeyPolicy: the attested key's slot configuration does not keep
	// the key private and chip-generated (not a P-256 private key, not
	// secret, readable encrypted, or writable by PrivWrite).
	ErrSEKeyPolicy = fmt.Errorf("%w: secure-element key slot does not keep the key inside the chip", ErrAttestation)
	// ErrSEAttestationKeyPolicy: the attestation key's slot lets the host
	// have digests of its choice signed, so its signatures prove nothing.
	ErrSEAttestationKeyPolicy = fmt.Errorf("%w: secure-element attestation key signs host messages", ErrAttestation)
)

// SEEvidence is an ATECC608-class secure element's key attestation as
// plain data (ca does not import devices; the station copies the fields of
// proto.SEAttestation and adds the nonce it sent).
type SEEvidence struct {
	// Serial is the chip's 9-byte serial number.
	Serial []byte
	// Config is the 128-byte configuration zone.
	Config []byte
	// KeySlot is the attested key's slot; AttestationSlot the signing
	// attestation key's slot (both 0-7, the private-key slots).
	KeySlot, AttestationSlot uint8
	// GenKeyMode is 0x0C (key created by this GenKey) or 0x08 (public key
	// of the key in the slot recomputed); SignMode must be 0x40.
	GenKeyMode, SignMode uint8
	// RandOut is the Nonce command's 32-byte output.
	RandOut []byte
	// PublicKey is the attested key, X || Y (64 bytes).
	PublicKey []byte
	// Signature is r || s (64 bytes) by the attestation key.
	Signature []byte
	// Chain is the manufacturer chain, DER, the attestation key's device
	// certificate first, then its signer(s).
	Chain [][]byte
	// Nonce is the nonce the station sent with CreateKeys (16-64 bytes).
	Nonce []byte
}

// ATECC608 command and config-zone constants the verifier needs.
const (
	seOpNonce               = 0x16
	seOpGenKey              = 0x40
	seOpSign                = 0x41
	seGenKeyDigest          = 0x08
	seGenKeyCreate          = 0x04
	seSignInternalIncludeSN = 0x40
	seCfgSlotConfig         = 20
	seCfgLockValue          = 86
	seCfgLockConfig         = 87
	seCfgSlotLocked         = 88
	seCfgKeyConfig          = 96
	seKeyTypeP256           = 4
)

// seChipIDLabel starts the encoding hashed into a secure element's chip id.
const seChipIDLabel = "wsc se chip id v1"

// VerifySEAttestation checks an ATECC608-class key attestation and returns
// the chip's identity. In order:
//
//  1. sizes and modes: GenKey 0x08 or 0x0C (digest of a private key's
//     public key; 0x10, the digest of a stored public key with host
//     OtherData, is refused), Sign 0x40 (internal message, serial included);
//  2. the manufacturer chain: present, the device certificate verifying to
//     roots (with intermediates and the chain's own signers), not a CA,
//     digitalSignature allowed when key usage is present, a P-256 key;
//  3. one serial: Serial equals config bytes 0-3 and 8-12, and the device
//     certificate's subject CommonName is "sn" followed by the serial in 18
//     upper-case hex digits (the form of Microchip's device certificates,
//     and of the simulated vendor's);
//  4. both zones locked (LockConfig and LockValue 0x00);
//  5. the signature: the 55-byte Sign internal message rebuilt from the
//     nonce (NumIn = SHA-256(Nonce)[:20]; TempKey = SHA-256(RandOut || NumIn
//     || 16 00 00)), the GenKey PubKey digest message (TempKey || 40 ||
//     mode || KeySlot LE16 || SN[8] || SN[0:1] || 25 zero bytes || X || Y),
//     the key slot's SlotConfig and KeyConfig, TempKey flags KeyID =
//     KeySlot with GenKeyData set, the serial and the key slot's lock bit
//     (cryptoauthlib atcah_nonce, atcah_gen_key_msg,
//     atcah_config_to_sign_internal, atcah_sign_internal_msg), verified
//     with the device certificate's key;
//  6. the attested key equals csrPublic;
//  7. the key slot keeps the key in the chip: P-256 private key, IsSecret,
//     no EncryptRead, no PrivWrite (a key written from outside);
//  8. the attestation key's slot signs internal messages only (ReadKey bit 0
//     clear): otherwise the host could have it sign any digest.
//
// The key slot's SlotConfig, KeyConfig and lock bit are inside the signed
// message. The rest of the config zone (lock bytes, the attestation slot's
// policy) is the device's word, checked for consistency: the vendor's
// certificate vouches that it shipped the chip locked with that policy,
// and a chip signs internally only once its zones are locked.
//
// chipID is SHA-256("wsc se chip id v1" || 0x00 || serial (9 bytes) ||
// uint32 big-endian length of the device certificate DER || that DER).
//
// Every error wraps ErrAttestation and the sentinel of the failed check.
func VerifySEAttestation(ev SEEvidence, csrPublic crypto.PublicKey, roots, intermediates *x509.CertPool) (chipID []byte, err error) {
	switch {
	case len(ev.Serial) != 9:
		return nil, fmt.Errorf("%w: serial number is %d bytes, want 9", ErrSEEvidenceMalformed, len(ev.Serial))
	case len(ev.Config) != 128:
		return nil, fmt.Errorf("%w: config zone is %d bytes, want 128", ErrSEEvidenceMalformed, len(ev.Config))
	case len(ev.RandOut) != 32:
		return nil, fmt.Errorf("%w: nonce output is %d bytes, want 32", ErrSEEvidenceMalformed, len(ev.RandOut))
	case len(ev.PublicKey) != 64:
		return nil, fmt.Errorf("%w: public key is %d bytes, want 64", ErrSEEvidenceMalformed, len(ev.PublicKey))
	case len(ev.Signature) != 64:
		return nil, fmt.Errorf("%w: signature is %d bytes, want 64", ErrSEEvidenceMalformed, len(ev.Signature))
	case len(ev.Nonce) < 16 || len(ev.Nonce) > 64:
		return nil, fmt.Errorf("%w: station nonce is %d bytes, want 16 to 64", ErrSEEvidenceMalformed, len(ev.Nonce))
	case ev.KeySlot > 7 || ev.AttestationSlot > 7 || ev.KeySlot == ev.AttestationSlot:
		return nil, fmt.Errorf("%w: key slot %d and attestation slot %d must be distinct private-key slots (0-7)", ErrSEEvidenceMalformed, ev.KeySlot, ev.AttestationSlot)
	}
	attested, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{0x04}, ev.PublicKey...))
	if err != nil {
		return nil, fmt.Errorf("%w: attested public key: %v", ErrSEEvidenceMalformed, err)
	}
	if ev.GenKeyMode != seGenKeyDigest && ev.GenKeyMode != seGenKeyDigest|seGenKeyCreate {
		return nil, fmt.Errorf("%w: GenKey mode 0x%02x (want 0x08 or 0x0C)", ErrSEMode, ev.GenKeyMode)
	}
	if ev.SignMode != seSignInternalIncludeSN {
		return nil, fmt.Errorf("%w: Sign mode 0x%02x (want 0x40, internal message with serial)", ErrSEMode, ev.SignMode)
	}

	// Manufacturer chain.
	if len(ev.Chain) == 0 {
		return nil, fmt.Errorf("%w: the chip's attestation key has no vendor certificate", ErrSENoChain)
	}
	if roots == nil {
		return nil, fmt.Errorf("%w: no secure-element vendor roots configured", ErrSEChainUntrusted)
	}
	certs := make([]*x509.Certificate, len(ev.Chain))
	for i, der := range ev.Chain {
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("%w: manufacturer certificate %d: %v", ErrSEEvidenceMalformed, i, err)
		}
	}
	dev := certs[0]
	pool := x509.NewCertPool()
	if intermediates != nil {
		pool = intermediates.Clone()
	}
	for _, c := range certs[1:] {
		pool.AddCert(c)
	}
	if _, err := dev.Verify(x509.VerifyOptions{Roots: roots, Intermediates: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSEChainUntrusted, err)
	}
	if dev.IsCA {
		return nil, fmt.Errorf("%w: the manufacturer device certificate is a CA certificate", ErrSEChainUntrusted)
	}
	if dev.KeyUsage != 0 && dev.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, fmt.Errorf("%w: the manufacturer device certificate does not allow digital signatures", ErrSEChainUntrusted)
	}
	attPub, ok := dev.PublicKey.(*ecdsa.PublicKey)
	if !ok || attPub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: the manufacturer device certificate's key is %T, not P-256", ErrSEChainUntrusted, dev.PublicKey)
	}

	// One serial number.
	cfg := ev.Config
	var sn [9]byte
	copy(sn[:4], cfg[0:4])
	copy(sn[4:], cfg[8:13])
	if !bytes.Equal(sn[:], ev.Serial) {
		return nil, fmt.Errorf("%w: the evidence names chip %X, its config zone %X", ErrSESerialMismatch, ev.Serial, sn)
	}
	if want := "sn" + strings.ToUpper(hex.EncodeToString(sn[:])); dev.Subject.CommonName != want {
		return nil, fmt.Errorf("%w: the manufacturer certificate is for %q, the chip is %q", ErrSESerialMismatch, dev.Subject.CommonName, want)
	}

	if cfg[seCfgLockConfig] != 0x00 || cfg[seCfgLockValue] != 0x00 {
		return nil, fmt.Errorf("%w: LockConfig 0x%02x, LockValue 0x%02x (0x00 is locked)", ErrSEConfigUnlocked, cfg[seCfgLockConfig], cfg[seCfgLockValue])
	}

	// The signed message.
	msg := seSignInternalMessage(ev, sn)
	digest := sha256.Sum256(msg[:])
	r, s := new(big.Int).SetBytes(ev.Signature[:32]), new(big.Int).SetBytes(ev.Signature[32:])
	if !ecdsa.Verify(attPub, digest[:], r, s) {
		return nil, fmt.Errorf("%w: not signed by the attestation key certified for chip %X", ErrSESignature, sn)
	}

	if pk, ok := csrPublic.(*ecdsa.PublicKey); !ok || !pk.Equal(attested) {
		return nil, fmt.Errorf("%w: the chip attested another key than the CSR's (slot %d)", ErrSEKeyMismatch, ev.KeySlot)
	}

	// Slot policies.
	if bad := seKeyPolicy(cfg, int(ev.KeySlot)); len(bad) > 0 {
		return nil, fmt.Errorf("%w: slot %d: %s", ErrSEKeyPolicy, ev.KeySlot, strings.Join(bad, "; "))
	}
	asc, akc := seSlotConfig(cfg, int(ev.AttestationSlot)), seKeyConfig(cfg, int(ev.AttestationSlot))
	if akc&1 == 0 || (akc>>2)&7 != seKeyTypeP256 {
		return nil, fmt.Errorf("%w: slot %d is not a P-256 private key", ErrSEAttestationKeyPolicy, ev.AttestationSlot)
	}
	if asc&1 != 0 {
		return nil, fmt.Errorf("%w: slot %d allows Sign of external digests (SlotConfig 0x%04x)", ErrSEAttestationKeyPolicy, ev.AttestationSlot, asc)
	}

	h := sha256.New()
	h.Write([]byte(seChipIDLabel))
	h.Write([]byte{0})
	h.Write(sn[:])
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(dev.Raw)))
	h.Write(n[:])
	h.Write(dev.Raw)
	return h.Sum(nil), nil
}

func seSlotConfig(cfg []byte, slot int) uint16 {
	return binary.LittleEndian.Uint16(cfg[seCfgSlotConfig+2*slot:])
}

func seKeyConfig(cfg []byte, slot int) uint16 {
	return binary.LittleEndian.Uint16(cfg[seCfgKeyConfig+2*slot:])
}

// seKeyPolicy lists why a slot's configuration does not keep its key inside
// the chip.
func seKeyPolicy(cfg []byte, slot int) []string {
	sc, kc := seSlotConfig(cfg, slot), seKeyConfig(cfg, slot)
	var bad []string
	if kc&1 == 0 {
		bad = append(bad, fmt.Sprintf("KeyConfig 0x%04x: not a private key", kc))
	}
	if (kc>>2)&7 != seKeyTypeP256 {
		bad = append(bad, fmt.Sprintf("KeyConfig 0x%04x: key type %d, not P-256", kc, (kc>>2)&7))
	}
	if sc&0x80 == 0 {
		bad = append(bad, fmt.Sprintf("SlotConfig 0x%04x: IsSecret clear (the slot's contents are not secret)", sc))
	}
	if sc&0x40 != 0 {
		bad = append(bad, fmt.Sprintf("SlotConfig 0x%04x: EncryptRead set (the slot can be read out)", sc))
	}
	if (sc>>12)&0x4 != 0 {
		bad = append(bad, fmt.Sprintf("SlotConfig 0x%04x: PrivWrite allowed (a key from outside the chip can be written)", sc))
	}
	return bad
}

// seSignInternalMessage rebuilds the 55-byte message of Sign in internal
// mode (ATECC608) after Nonce random and GenKey in digest mode.
func seSignInternalMessage(ev SEEvidence, sn [9]byte) [55]byte {
	// Nonce, random mode 0x00: TempKey = SHA-256(RandOut || NumIn || 16 00 00).
	numIn := sha256.Sum256(ev.Nonce)
	nm := make([]byte, 0, 55)
	nm = append(nm, ev.RandOut...)
	nm = append(nm, numIn[:20]...)
	nm = append(nm, seOpNonce, 0x00, 0x00)
	tempKey := sha256.Sum256(nm)

	// GenKey digest: 128 bytes.
	var gm [128]byte
	copy(gm[0:32], tempKey[:])
	gm[32] = seOpGenKey
	gm[33] = ev.GenKeyMode
	binary.LittleEndian.PutUint16(gm[34:36], uint16(ev.KeySlot))
	gm[36] = sn[8]
	gm[37], gm[38] = sn[0], sn[1]
	copy(gm[64:], ev.PublicKey)
	tempKey = sha256.Sum256(gm[:])

	// Sign internal: 55 bytes.
	var m [55]byte
	slot := int(ev.KeySlot)
	copy(m[0:32], tempKey[:])
	m[32] = seOpSign
	m[33] = ev.SignMode
	binary.LittleEndian.PutUint16(m[34:36], uint16(ev.AttestationSlot))
	binary.LittleEndian.PutUint16(m[36:38], seSlotConfig(ev.Config, slot))
	binary.LittleEndian.PutUint16(m[38:40], seKeyConfig(ev.Config, slot))
	m[40] = ev.KeySlot&0x0F | 0x40 // TempKeyFlags: KeyID, GenKeyData
	m[43] = sn[8]
	copy(m[44:48], sn[4:8])
	m[48], m[49] = sn[0], sn[1]
	m[50], m[51] = sn[2], sn[3]
	if binary.LittleEndian.Uint16(ev.Config[seCfgSlotLocked:])&(1<<slot) != 0 {
		m[52] = 0x01 // slot not locked
	}
	return m
}
