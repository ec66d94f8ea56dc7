package se

import (
	"crypto"
	"crypto/ecdsa"
	"fmt"
	"io"
)

// Signer is a crypto.Signer over a private key in a chip slot: SHA-256
// digests are signed inside the chip (Nonce pass-through + Sign external).
type Signer struct {
	chip *Chip
	slot int
	pub  *ecdsa.PublicKey
}

// NewSigner returns a signer over the key in slot, reading its public key
// from the chip (GenKey public mode).
func NewSigner(chip *Chip, slot int) (*Signer, error) {
	pub, err := chip.PublicKey(slot)
	if err != nil {
		return nil, err
	}
	return &Signer{chip: chip, slot: slot, pub: pub}, nil
}

// Public implements crypto.Signer.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// Sign implements crypto.Signer: digest must be a SHA-256 digest; the
// result is an ASN.1 DER ECDSA signature. rand is not used: the chip has
// its own RNG.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != crypto.SHA256 {
		return nil, fmt.Errorf("sign with slot %d: hash %v not supported, the chip signs 32-byte (SHA-256) digests", s.slot, opts.HashFunc())
	}
	rs, err := s.chip.Sign(s.slot, digest)
	if err != nil {
		return nil, err
	}
	return rawToDER(rs), nil
}

// SignerWithPublic returns a signer over the key in slot whose public key
// the caller already has (from GenKey), saving a GenKey public-mode
// command (up to 115 ms on the chip).
func SignerWithPublic(chip *Chip, slot int, pub *ecdsa.PublicKey) *Signer {
	return &Signer{chip: chip, slot: slot, pub: pub}
}
