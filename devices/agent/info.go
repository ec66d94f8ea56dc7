package agent

import (
	"fmt"

	"github.com/wsc-project/wsc/devices/tpm"
)

// KeyInfo is one persistent key of a device.
type KeyInfo struct {
	Role         string `json:"role"`
	Handle       uint32 `json:"handle"`
	PublicKeyPEM string `json:"public_key_pem"`
}

// DeviceInfo is what `wsc-agent info` reports.
type DeviceInfo struct {
	Serial          string    `json:"serial"`
	Backend         string    `json:"backend"`
	Manufacturer    string    `json:"manufacturer,omitempty"`
	Firmware        string    `json:"firmware,omitempty"`
	Keys            []KeyInfo `json:"keys"`
	ChainNVIndices  []uint32  `json:"chain_nv_indices"`
	ChainError      string    `json:"chain_error,omitempty"`
	NVBufferMax     int       `json:"nv_buffer_max"`
	NVIndexMax      int       `json:"nv_index_max"`
	ProtocolVersion string    `json:"agent_version"`
}

// Describe reports a TPM device's serial (serial, or derived from its
// endorsement key when empty), its persistent keys with their public keys
// and the NV indices holding the chain.
func Describe(dev *tpm.Device, serial string) (*DeviceInfo, error) {
	in, err := dev.Info()
	if err != nil {
		return nil, err
	}
	if serial == "" {
		pub, _, _, err := dev.EK()
		if err != nil {
			return nil, fmt.Errorf("derive device serial: %w", err)
		}
		serial = tpm.DeriveSerial(pub)
	}
	out := &DeviceInfo{Serial: serial, Backend: "tpm", Manufacturer: in.Manufacturer, Firmware: in.FirmwareVersion,
		Keys: []KeyInfo{}, ChainNVIndices: in.ChainIndices, NVBufferMax: in.NVBufferMax, NVIndexMax: in.NVIndexMax, ProtocolVersion: Version}
	if out.ChainNVIndices == nil {
		out.ChainNVIndices = []uint32{}
	}
	if in.ChainError != nil {
		out.ChainError = in.ChainError.Error()
	}
	if in.IAKPublicPEM != "" {
		out.Keys = append(out.Keys, KeyInfo{Role: "iak", Handle: in.IAKHandle, PublicKeyPEM: in.IAKPublicPEM})
	}
	if in.IDevIDPublicPEM != "" {
		out.Keys = append(out.Keys, KeyInfo{Role: "idevid", Handle: in.IDevIDHandle, PublicKeyPEM: in.IDevIDPublicPEM})
	}
	return out, nil
}
