//go:build tpmsim

package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"
)

// openSimulator starts the go-tpm-tools in-process simulator (cgo; one
// instance per process).
func openSimulator() (transport.TPMCloser, error) {
	t, err := simulator.OpenSimulator()
	if err != nil {
		return nil, fmt.Errorf("open tpm simulator: %w", err)
	}
	return t, nil
}
