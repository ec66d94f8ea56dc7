//go:build !windows

package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
)

// openTBS is only available on Windows.
func openTBS() (transport.TPMCloser, error) {
	return nil, fmt.Errorf("open tpm via tbs: windows only: %w", ErrUnsupportedTransport)
}
