//go:build !tpmsim

package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
)

// openSimulator needs the tpmsim build tag (and cgo).
func openSimulator() (transport.TPMCloser, error) {
	return nil, fmt.Errorf("open tpm simulator: build with -tags tpmsim: %w", ErrUnsupportedTransport)
}
