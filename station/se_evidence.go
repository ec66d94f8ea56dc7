package station

import (
	"crypto/x509"
	"fmt"

	"github.com/wsc-project/wsc/devices/proto"
)

// verifySEEvidence checks a secure element's key attestation and returns
// the chip identity.
func verifySEEvidence(keys *proto.CreateKeysResponse, csr *x509.CertificateRequest, roots, intermediates *x509.CertPool) ([]byte, error) {
	_, _, _ = keys, csr, intermediates
	if roots == nil {
		return nil, fmt.Errorf("%w: no secure-element vendor roots configured", ErrAttestation)
	}
	return nil, fmt.Errorf("%w: the secure element sent no key attestation", ErrAttestation)
}
