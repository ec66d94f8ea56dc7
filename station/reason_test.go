package station

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/se"
)

// TestReasonCode: each sentinel a run can fail with, wrapped as the station
// wraps it, maps to its documented code; the most specific one wins.
func TestReasonCode(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("slot 2: step certify: %w", err) }
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{wrap(ErrSerialInvalid), ReasonSerialInvalid},
		{wrap(ErrNoProof), ReasonNoProof},
		{wrap(ErrRedBin), ReasonRedBin},
		{wrap(ErrChipMismatch), ReasonChipMismatch},
		{wrap(db.ErrDeviceMismatch), ReasonChipMismatch},
		{wrap(ErrKeyPolicy), ReasonKeyPolicy},
		{wrap(fmt.Errorf("%w: %w", ErrAttestation, ca.ErrEKUntrusted)), ReasonEKUntrusted},
		{wrap(fmt.Errorf("%w: %w", ErrAttestation, ca.ErrCertifyNonce)), ReasonCertifyInvalid},
		{wrap(fmt.Errorf("%w: %w", ErrAttestation, ca.ErrActivation)), ReasonActivation},
		{wrap(fmt.Errorf("%w: %w", ErrAttestation, ca.ErrKeyAttributes)), ReasonKeyAttributes},
		{wrap(ca.ErrCSRKeyMismatch), ReasonCSRKeyMismatch},
		{wrap(ca.ErrSEChainUntrusted), ReasonSEChainUntrusted},
		{wrap(ca.ErrSESignature), ReasonAttestation},
		{wrap(ErrAttestation), ReasonAttestation},
		{wrap(ErrLabelMismatch), ReasonLabelMismatch},
		{wrap(db.ErrKeyRevoked), ReasonKeyRevoked},
		{wrap(ca.ErrKeyConflict), ReasonKeyConflict},
		{wrap(db.ErrQuotaExceeded), ReasonQuotaExceeded},
		{wrap(ca.ErrQuotaExceeded), ReasonQuotaExceeded},
		{wrap(ca.ErrNameNotPermitted), ReasonNameNotPermitted},
		{wrap(se.ErrNotCompressible), ReasonProfileNotStorable},
		{wrap(ErrReadBack), ReasonReadBack},
		{wrap(ErrEndOfLine), ReasonEndOfLine},
		{wrap(ErrDelivery), ReasonDelivery},
		{wrap(proto.Errorf(proto.ErrorCode(7), "nv index locked")), ReasonDeviceError},
		{wrap(proto.ErrTimeout), ReasonDeviceTimeout},
		{wrap(proto.ErrCRC), ReasonProtocol},
		{wrap(proto.ErrClosed), ReasonConnectionLost},
		{wrap(db.ErrDiskFull), ReasonDiskFull},
		{wrap(db.ErrBusy), ReasonStorage},
		{wrap(context.Canceled), ReasonCancelled},
		{wrap(errors.New("something nobody classified")), ReasonInternal},
	}
	for _, tt := range tests {
		if got := ReasonCode(tt.err); got != tt.want {
			t.Errorf("ReasonCode(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestReasonCodesDocumented: the codes are distinct, lower-case-hyphen
// words, and docs/reason-codes.md lists exactly these provisioning codes.
func TestReasonCodesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/reason-codes.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	start := strings.Index(text, "## Provisioning a device")
	if start < 0 {
		t.Fatal("docs/reason-codes.md lacks its provisioning section")
	}
	section := text[start:]
	if end := strings.Index(section[1:], "\n## "); end >= 0 { // up to the next section
		section = section[:end+1]
	}
	seen := map[string]bool{}
	for _, c := range ReasonCodes() {
		if seen[c] {
			t.Errorf("code %q twice", c)
		}
		seen[c] = true
		if strings.Trim(c, "abcdefghijklmnopqrstuvwxyz-") != "" {
			t.Errorf("code %q is not lower-case words joined by hyphens", c)
		}
		if !strings.Contains(section, "| `"+c+"` |") {
			t.Errorf("code %q is not in docs/reason-codes.md", c)
		}
	}
	if rows := strings.Count(section, "\n| `"); rows != len(seen) {
		t.Errorf("docs list %d provisioning codes, ReasonCodes has %d", rows, len(seen))
	}
}
