package se

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Key attestation inside the chip (datasheet "GenKey", "Sign – Internal
// Message"; cryptoauthlib lib/host/atca_host.c atcah_nonce,
// atcah_gen_key_msg, atcah_config_to_sign_internal, atcah_sign_internal_msg;
// flow of test/api_atcab/atca_tests_sign.c):
//
//  1. Nonce in random mode with a 20-byte NumIn derived from the station's
//     nonce: TempKey = SHA-256(RandOut || NumIn || 16 00 00), SourceFlag 0.
//  2. GenKey in digest mode (0x0C creates the key, 0x08 recomputes the
//     public key of the key already in the slot): TempKey = SHA-256 of the
//     128-byte PubKey digest message (GenKeyDigestMessage); TempKeyFlags
//     KeyID = the slot, GenKeyData 1, GenDigData 0.
//  3. Sign in internal mode with the serial number included (0x40) by the
//     factory-provisioned attestation key: the chip signs SHA-256 of the
//     55-byte message of SignInternalMessage, which binds TempKey (thus the
//     new public key, the slot and the station's nonce), the slot's
//     SlotConfig and KeyConfig, the TempKey flags, the chip serial number
//     and the slot's lock bit.
//
// The attestation key's slot allows internal Sign only: the chip will not
// sign a digest the host computed with it, so a message of this shape can
// only come from the chip's own GenKey.

// GenKey and Sign modes used by the attestation.
const (
	// GenKeyModeCreate creates a private key (GenKey mode bit 2).
	GenKeyModeCreate uint8 = 0x04
	// GenKeyModeDigest puts the PubKey digest of the key into TempKey
	// (GenKey mode bit 3), with GenKeyModeCreate or alone (public key of
	// the key already in the slot).
	GenKeyModeDigest uint8 = 0x08
	// GenKeyModePubKeyDigest is the digest of a stored public key with
	// host-supplied OtherData (mode bit 4). Not emulated; never accepted as
	// attestation.
	GenKeyModePubKeyDigest uint8 = 0x10
	// SignModeInternal signs an internally generated message in TempKey.
	SignModeInternal uint8 = 0x00
	// SignModeIncludeSN includes the full serial number in the internal
	// message (Sign mode bit 6).
	SignModeIncludeSN uint8 = 0x40
	// SignModeExternal signs an external digest in TempKey (mode bit 7).
	SignModeExternal uint8 = 0x80
	// NonceModeRandom is the Nonce mode of the attestation (random, seed
	// update).
	NonceModeRandom uint8 = 0x00
)

// Slots of the factory provisioning (the simulated vendor's, see
// Manufacture). They do not collide with the wsc slots (0, 1, 10-12).
const (
	// SlotAttestationKey holds the factory attestation key: a P-256 private
	// key created by GenKey before the data lock (never again), never
	// readable, internal Sign only.
	SlotAttestationKey = 2
	// SlotMfgDeviceCert holds the manufacturer's certificate for the
	// attestation key in compressed form (72 B).
	SlotMfgDeviceCert = 13
	// SlotMfgSignerCert holds the manufacturer's signer certificate in
	// compressed form (72 B).
	SlotMfgSignerCert = 14
	// SlotMfgSignerPubKey holds the manufacturer signer's public key in the
	// 72-byte public-key slot layout.
	SlotMfgSignerPubKey = 15
)

// TempKeyFlags are the TempKey status bits the Sign internal message
// carries (b7 NoMacFlag, b6 GenKeyData, b5 GenDigData, b4 SourceFlag, b3:0
// KeyID).
type TempKeyFlags struct {
	KeyID      uint8
	SourceFlag bool // true: TempKey came from a pass-through (host) input
	GenDigData bool
	GenKeyData bool
	NoMacFlag  bool
}

// Byte encodes the flags as in the Sign internal message.
func (f TempKeyFlags) Byte() byte {
	b := f.KeyID & 0x0F
	if f.SourceFlag {
		b |= 0x10
	}
	if f.GenDigData {
		b |= 0x20
	}
	if f.GenKeyData {
		b |= 0x40
	}
	if f.NoMacFlag {
		b |= 0x80
	}
	return b
}

// NumInFromNonce derives the 20-byte Nonce NumIn from the station's
// attestation nonce: the first 20 bytes of SHA-256(nonce).
func NumInFromNonce(nonce []byte) [20]byte {
	h := sha256.Sum256(nonce)
	var n [20]byte
	copy(n[:], h[:20])
	return n
}

// NonceRandomTempKey is TempKey after Nonce in random mode (mode 0x00 or
// 0x01): SHA-256(RandOut || NumIn || 0x16 || mode || 0x00), 55 bytes.
func NonceRandomTempKey(randOut [32]byte, numIn [20]byte, mode uint8) [32]byte {
	msg := make([]byte, 0, 55)
	msg = append(msg, randOut[:]...)
	msg = append(msg, numIn[:]...)
	msg = append(msg, byte(OpNonce), mode, 0x00)
	return sha256.Sum256(msg)
}

// GenKeyDigestMessage is the 128-byte message whose SHA-256 GenKey in
// digest mode puts into TempKey (atcah_gen_key_msg):
//
//	 0-31   TempKey before GenKey
//	32      opcode 0x40
//	33      mode
//	34-35   KeyID, little-endian
//	36      SN[8]
//	37-38   SN[0:1]
//	39-63   zeros (25 bytes)
//	64-127  public key X || Y
func GenKeyDigestMessage(tempKey [32]byte, mode uint8, keyID uint16, sn [9]byte, pubXY []byte) ([128]byte, error) {
	var m [128]byte
	if len(pubXY) != 64 {
		return m, fmt.Errorf("genkey message: public key is %d bytes, want 64", len(pubXY))
	}
	copy(m[0:32], tempKey[:])
	m[32] = byte(OpGenKey)
	m[33] = mode
	binary.LittleEndian.PutUint16(m[34:36], keyID)
	m[36] = sn[8]
	m[37], m[38] = sn[0], sn[1]
	copy(m[64:], pubXY)
	return m, nil
}

// SignInternalMessage is the 55-byte message Sign in internal mode signs
// (atcah_sign_internal_msg for the ATECC608, fields from the config zone as
// atcah_config_to_sign_internal takes them):
//
//	 0-31   TempKey
//	32      opcode 0x41
//	33      mode
//	34-35   KeyID of the signing key, little-endian
//	36-37   SlotConfig[TempKeyFlags.KeyID], little-endian
//	38-39   KeyConfig[TempKeyFlags.KeyID], little-endian
//	40      TempKeyFlags
//	41-42   zeros (ATECC108A UseFlag/UpdateCount; 0 on the ATECC608)
//	43      SN[8]
//	44-47   SN[4:7] with SignModeIncludeSN, else zeros
//	48-49   SN[0:1]
//	50-51   SN[2:3] with SignModeIncludeSN, else zeros
//	52      SlotLocked bit of TempKeyFlags.KeyID (1 unlocked, 0 locked)
//	53      PubKey valid (0x01 only for a Verify validation flow; 0 here)
//	54      0x00
func SignInternalMessage(tempKey [32]byte, mode uint8, signKeyID uint16, cfg *Config, flags TempKeyFlags, sn [9]byte) [55]byte {
	var m [55]byte
	copy(m[0:32], tempKey[:])
	m[32] = byte(OpSign)
	m[33] = mode
	binary.LittleEndian.PutUint16(m[34:36], signKeyID)
	slot := int(flags.KeyID & 0x0F)
	binary.LittleEndian.PutUint16(m[36:38], uint16(cfg.SlotConfig(slot)))
	binary.LittleEndian.PutUint16(m[38:40], uint16(cfg.KeyConfig(slot)))
	m[40] = flags.Byte()
	m[43] = sn[8]
	m[48], m[49] = sn[0], sn[1]
	if mode&SignModeIncludeSN != 0 {
		copy(m[44:48], sn[4:8])
		m[50], m[51] = sn[2], sn[3]
	}
	if !cfg.SlotLocked(slot) {
		m[52] = 0x01
	}
	return m
}

// KeyAttestation is the result of Chip.AttestKey: what the chip returned
// and the parameters it ran with. The signature is over SHA-256 of
// SignInternalMessage; the verifier rebuilds it from these fields, the
// chip's config zone and the station's nonce.
type KeyAttestation struct {
	Slot            int   // the attested key's slot
	AttestationSlot int   // the signing (attestation) key's slot
	GenKeyMode      uint8 // GenKeyModeDigest, with GenKeyModeCreate when the key was created
	SignMode        uint8 // SignModeInternal | SignModeIncludeSN
	RandOut         [32]byte
	PublicKey       *ecdsa.PublicKey
	Signature       [64]byte // r || s
}

// AttestKey makes the chip attest the P-256 key in slot with the attestation
// key in attSlot, in one wake session (TempKey is lost in sleep): Nonce
// random with numIn, GenKey in digest mode (creating a new key when create
// is set), Sign internal including the serial number.
func (c *Chip) AttestKey(slot, attSlot int, create bool, numIn [20]byte) (*KeyAttestation, error) {
	if err := checkSlot(slot); err != nil {
		return nil, err
	}
	if err := checkSlot(attSlot); err != nil {
		return nil, err
	}
	a := &KeyAttestation{Slot: slot, AttestationSlot: attSlot, GenKeyMode: GenKeyModeDigest, SignMode: SignModeInternal | SignModeIncludeSN}
	if create {
		a.GenKeyMode |= GenKeyModeCreate
	}
	err := c.session(func() error {
		out, err := c.execute(OpNonce, NonceModeRandom, 0, numIn[:], 32)
		if err != nil {
			return err
		}
		copy(a.RandOut[:], out)
		if out, err = c.execute(OpGenKey, a.GenKeyMode, uint16(slot), nil, 64); err != nil {
			return err
		}
		if a.PublicKey, err = parsePublic(out); err != nil {
			return err
		}
		if out, err = c.execute(OpSign, a.SignMode, uint16(attSlot), nil, 64); err != nil {
			return err
		}
		copy(a.Signature[:], out)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("attest key in slot %d with slot %d: %w", slot, attSlot, err)
	}
	return a, nil
}

// Message rebuilds the 55-byte message the chip signed, from the
// attestation, the chip's config zone and the NumIn the host sent.
func (a *KeyAttestation) Message(cfg *Config, numIn [20]byte) ([55]byte, error) {
	xy, err := PublicKeyBytes(a.PublicKey)
	if err != nil {
		return [55]byte{}, err
	}
	sn := cfg.SerialNumber()
	tk := NonceRandomTempKey(a.RandOut, numIn, NonceModeRandom)
	gm, err := GenKeyDigestMessage(tk, a.GenKeyMode, uint16(a.Slot), sn, xy)
	if err != nil {
		return [55]byte{}, err
	}
	tk = sha256.Sum256(gm[:])
	flags := TempKeyFlags{KeyID: uint8(a.Slot), GenKeyData: true}
	return SignInternalMessage(tk, a.SignMode, uint16(a.AttestationSlot), cfg, flags, sn), nil
}

// ErrAttestationSignature: the attestation signature does not verify.
var ErrAttestationSignature = errors.New("atecc: key attestation signature does not verify")

// Verify checks the attestation's signature with the attestation key's
// public key. It is the device-side self-check; the station's verifier is
// ca.VerifySEAttestation, which rebuilds the message independently.
func (a *KeyAttestation) Verify(cfg *Config, numIn [20]byte, attPub *ecdsa.PublicKey) error {
	m, err := a.Message(cfg, numIn)
	if err != nil {
		return err
	}
	d := sha256.Sum256(m[:])
	if !ecdsa.VerifyASN1(attPub, d[:], rawToDER(a.Signature)) {
		return ErrAttestationSignature
	}
	return nil
}
