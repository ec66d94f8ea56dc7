package tpm

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// Info describes the TPM and what this package keeps in it.
type Info struct {
	// Manufacturer is the 4-character TPM_PT_MANUFACTURER (e.g. "IFX", "IBM").
	Manufacturer string
	// VendorString is TPM_PT_VENDOR_STRING_1..4 (the chip model).
	VendorString string
	// FirmwareVersion is TPM_PT_FIRMWARE_VERSION_1/2 as a.b.c.d.
	FirmwareVersion string
	// SRKHandle, IAKHandle, IDevIDHandle are the configured persistent handles.
	SRKHandle, IAKHandle, IDevIDHandle uint32
	// IAKPublicDER, IDevIDPublicDER are PKIX public keys (nil if absent).
	IAKPublicDER, IDevIDPublicDER []byte
	// IAKPublicPEM, IDevIDPublicPEM are the same keys in PEM ("" if absent).
	IAKPublicPEM, IDevIDPublicPEM string
	// ChainIndices are the NV indices of the stored chain (nil if none).
	ChainIndices []uint32
	// ChainError is why no chain is listed (ErrNoChain, ErrCorruptChain…), or nil.
	ChainError error
	// NVBufferMax and NVIndexMax are TPM_PT_NV_BUFFER_MAX and TPM_PT_NV_INDEX_MAX.
	NVBufferMax, NVIndexMax int
}

// Info reports the TPM identity, the persistent keys and the chain indices.
func (d *Device) Info() (*Info, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, err
	}
	props, err := d.properties(tpm2.TPMPTManufacturer, tpm2.TPMPTVendorString1, tpm2.TPMPTVendorString2,
		tpm2.TPMPTVendorString3, tpm2.TPMPTVendorString4, tpm2.TPMPTFirmwareVersion1, tpm2.TPMPTFirmwareVersion2)
	if err != nil {
		return nil, fmt.Errorf("tpm info: %w", err)
	}
	in := &Info{
		Manufacturer: ascii(props[tpm2.TPMPTManufacturer]),
		VendorString: ascii(props[tpm2.TPMPTVendorString1]) + ascii(props[tpm2.TPMPTVendorString2]) +
			ascii(props[tpm2.TPMPTVendorString3]) + ascii(props[tpm2.TPMPTVendorString4]),
		FirmwareVersion: fmt.Sprintf("%d.%d.%d.%d",
			props[tpm2.TPMPTFirmwareVersion1]>>16, props[tpm2.TPMPTFirmwareVersion1]&0xffff,
			props[tpm2.TPMPTFirmwareVersion2]>>16, props[tpm2.TPMPTFirmwareVersion2]&0xffff),
		SRKHandle:    d.cfg.SRKHandle,
		IAKHandle:    d.cfg.IAKHandle,
		IDevIDHandle: d.cfg.IDevIDHandle,
		NVBufferMax:  d.nvBufferMax,
		NVIndexMax:   d.nvIndexMax,
	}
	for _, k := range []struct {
		h          uint32
		restricted bool
		der        *[]byte
		pem        *string
	}{{d.cfg.IAKHandle, true, &in.IAKPublicDER, &in.IAKPublicPEM}, {d.cfg.IDevIDHandle, false, &in.IDevIDPublicDER, &in.IDevIDPublicPEM}} {
		kk, ok, err := d.persistedKey(k.h, k.restricted)
		if err != nil {
			return nil, fmt.Errorf("tpm info: %w", err)
		}
		if !ok {
			continue
		}
		pub, err := ecdsaPublic(kk.public)
		if err != nil {
			return nil, fmt.Errorf("tpm info: %#x: %w", k.h, err)
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("tpm info: %#x: %w", k.h, err)
		}
		*k.der = der
		*k.pem = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	_, idx, err := d.readChain()
	switch {
	case err == nil:
		in.ChainIndices = idx
	case errors.Is(err, ErrNoChain) || errors.Is(err, ErrCorruptChain):
		in.ChainError = err
	default:
		return nil, fmt.Errorf("tpm info: %w", err)
	}
	return in, nil
}

func ascii(v uint32) string {
	b := []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
	return strings.TrimRight(strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, string(b)), " ")
}
