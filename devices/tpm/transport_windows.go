//go:build windows

package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/windowstpm"
)

// openTBS opens the system TPM through Windows TPM Base Services.
func openTBS() (transport.TPMCloser, error) {
	t, err := windowstpm.Open()
	if err != nil {
		return nil, fmt.Errorf("open tpm via tbs: %w", err)
	}
	return t, nil
}
