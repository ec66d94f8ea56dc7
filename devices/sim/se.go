package sim

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/wsc-project/wsc/devices/se"
)

// SEStateFile is the name of a secure-element device's emulator state in
// its folder.
const SEStateFile = "se.state"

// ManufactureSE makes sure a chip exists at statePath — a blank ATECC608
// emulator with a random serial, as it leaves the wafer test, when the file
// does not exist yet — and returns the chip's serial number in hex, the
// serial its agent reports (read from the chip's config zone over the
// emulated I2C bus, as the agent reads it).
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
