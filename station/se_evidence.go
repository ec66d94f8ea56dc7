package station

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/devices/proto"
)

// verifySEEvidence checks a secure element's key attestation
// (ca.VerifySEAttestation: the manufacturer chain to a vendor root, the
// chip's signature over the new key, its slot configuration, the chip
// serial and this run's nonce) and that the serial the device reported is
// the attested chip's. It returns the chip identity.
func verifySEEvidence(keys *proto.CreateKeysResponse, csr *x509.CertificateRequest, nonce []byte, serial string, roots, intermediates *x509.CertPool) ([]byte, error) {
	if roots == nil {
		return nil, fmt.Errorf("%w: no secure-element vendor roots configured", ErrAttestation)
	}
	a := keys.SEAttestation
	if a == nil {
		return nil, fmt.Errorf("%w: the secure element sent no key attestation (a chip without a factory attestation key cannot be proven)", ErrAttestation)
	}
	ev := ca.SEEvidence{Serial: a.Serial, Config: a.Config, KeySlot: a.KeySlot, AttestationSlot: a.AttestationSlot,
		GenKeyMode: a.GenKeyMode, SignMode: a.SignMode, RandOut: a.RandOut, PublicKey: a.PublicKey, Signature: a.Signature,
		Chain: a.Chain, Nonce: nonce}
	chipID, err := ca.VerifySEAttestation(ev, csr.PublicKey, roots, intermediates)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAttestation, err)
	}
	// The serial is the device's word; the attested chip serial is the
	// chip's. A secure element reports its chip serial as its device serial.
	if !strings.EqualFold(hex.EncodeToString(a.Serial), serial) {
		return nil, fmt.Errorf("%w: the device reports serial %s, the attested chip is %X", ErrAttestation, serial, a.Serial)
	}
	return chipID, nil
}
