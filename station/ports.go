package station

import (
	"fmt"
	"strings"

	"go.bug.st/serial/enumerator"
)

// FindUSBPort returns the port of the USB serial adapter matching
// "VID:PID" or "VID:PID:SERIAL" (hex, case-insensitive).
func FindUSBPort(match string) (string, error) {
	parts := strings.Split(match, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return "", fmt.Errorf("usb match %q: want VID:PID or VID:PID:SERIAL", match)
	}
	ports, err := enumerator.GetDetailedPortsList()
	if err != nil {
		return "", fmt.Errorf("list serial ports: %w", err)
	}
	for _, p := range ports {
		if !p.IsUSB || !strings.EqualFold(p.VID, parts[0]) || !strings.EqualFold(p.PID, parts[1]) {
			continue
		}
		if len(parts) == 3 && !strings.EqualFold(p.SerialNumber, parts[2]) {
			continue
		}
		return p.Name, nil
	}
	return "", fmt.Errorf("no USB serial port matches %s", match)
}
