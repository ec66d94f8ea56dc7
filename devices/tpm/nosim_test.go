//go:build !tpmsim

package tpm

import (
	"errors"
	"testing"
)

func TestSimulatorNeedsTag(t *testing.T) {
	if _, err := OpenTransport("sim"); !errors.Is(err, ErrUnsupportedTransport) {
		t.Errorf("sim without the tpmsim tag: %v, want ErrUnsupportedTransport", err)
	}
}
