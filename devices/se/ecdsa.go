package se

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// derToRaw converts an ASN.1 ECDSA-Sig-Value to the chip's 64-byte r || s.
func derToRaw(der []byte) ([64]byte, error) {
	var out [64]byte
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() {
		return out, errors.New("malformed ECDSA signature")
	}
	var ri, si big.Int
	if !seq.ReadASN1Integer(&ri) || !seq.ReadASN1Integer(&si) || !seq.Empty() {
		return out, errors.New("malformed ECDSA signature")
	}
	if ri.Sign() <= 0 || si.Sign() <= 0 || ri.BitLen() > 256 || si.BitLen() > 256 {
		return out, errors.New("ECDSA signature values out of range for P-256")
	}
	r, s := ri.Bytes(), si.Bytes()
	copy(out[32-len(r):32], r)
	copy(out[64-len(s):], s)
	return out, nil
}

// rawToDER converts the chip's 64-byte r || s to a DER ECDSA-Sig-Value.
func rawToDER(rs [64]byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(new(big.Int).SetBytes(rs[:32]))
		b.AddASN1BigInt(new(big.Int).SetBytes(rs[32:]))
	})
	return b.BytesOrPanic()
}

// RawToASN1 converts a 64-byte r || s signature, as Sign returns it, to the
// ASN.1 DER form that crypto/ecdsa and X.509 use.
func RawToASN1(rs [64]byte) []byte { return rawToDER(rs) }

// ASN1ToRaw converts an ASN.1 DER P-256 ECDSA signature to r || s.
func ASN1ToRaw(der []byte) ([64]byte, error) { return derToRaw(der) }

// parsePublic converts the chip's 64-byte X || Y to a P-256 public key.
func parsePublic(xy []byte) (*ecdsa.PublicKey, error) {
	if len(xy) != 64 {
		return nil, fmt.Errorf("public key: %d bytes, want 64", len(xy))
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{0x04}, xy...))
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return pub, nil
}

// PublicKeyBytes returns the 64-byte X || Y form of a P-256 public key, the
// form the chip uses.
func PublicKeyBytes(pub *ecdsa.PublicKey) ([]byte, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return nil, errors.New("not a P-256 public key")
	}
	b, err := pub.Bytes()
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return b[1:], nil
}
