//go:build cgo && pkcs11

package pkcs11

import (
	"testing"

	"github.com/wsc-project/wsc/devices/sim/simtest"
)

const softHSMModule = simtest.SoftHSMModule

// newSoftHSM initialises a fresh SoftHSM2 token labelled "wsc" in a
// temporary token directory (SOFTHSM2_CONF points at it for this test) and
// returns its URI with the user PIN in a pin-source file.
func newSoftHSM(t testing.TB) string {
	t.Helper()
	pin := simtest.SoftHSMToken(t, "wsc", "1234")
	return "pkcs11:module-path=" + softHSMModule + ";token=wsc?pin-source=file:" + pin
}
