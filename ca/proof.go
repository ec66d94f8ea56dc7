package ca

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
)

// Attestation proofs a device certificate can rest on. The station decides
// which proof to demand from the work order's policy, never from what the
// device claims, and tells the CA in IssueRequest.Proof; the certificate then
// says which proof it rests on (a certificate policy OID and the hwType of
// its HardwareModuleName), so a relying party can tell a TPM-attested key
// from a key nobody attested.
const (
	// ProofTPM: EK certificate chain to a TPM vendor root, TPM2_Certify of
	// the device key by the attestation key, credential activation.
	ProofTPM = "tpm"
	// ProofATECC608: the secure element's manufacturer certificate chain to
	// a vendor root and a key attestation made inside the chip.
	ProofATECC608 = "atecc608"
	// ProofUnattested: no hardware evidence (e.g. a PKCS#11 token without
	// vendor attestation); only when a work order lists it explicitly.
	ProofUnattested = "unattested"
)

// Proofs lists the proof names in the order they are documented.
func Proofs() []string { return []string{ProofTPM, ProofATECC608, ProofUnattested} }

// DefaultOIDArc is the arc under which wsc's own OIDs sit when a profile
// sets no oidArc: 1.3.6.1.4.1.32473.1, under the enterprise number IANA
// reserves for documentation (RFC 5612). It keeps the product working out
// of the box, but a manufacturer sets oidArc to an arc of its own enterprise
// number before issuing certificates that leave the plant
// (docs/certificate-profile.md).
var DefaultOIDArc = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1}

// ProofOIDs are the OIDs a certificate carries for its proof.
type ProofOIDs struct {
	// Policy is the certificate policy (certificatePolicies extension):
	// arc.1.1 TPM-attested, arc.1.2 secure-element-attested, arc.1.3 key
	// not hardware-attested.
	Policy asn1.ObjectIdentifier
	// HWType is the hwType of the RFC 4108 HardwareModuleName: TCG's
	// 2.23.133.1.2 for TPM 2.0; arc.2.2 for an ATECC608-class secure element
	// (unless the profile's hwModuleOID names another); arc.2.3 for a key
	// that is not hardware-attested.
	HWType asn1.ObjectIdentifier
}

// OIDsFor returns the OIDs of a proof under arc (DefaultOIDArc when nil);
// seHWType, when set, is the hwType of secure-element certificates.
func OIDsFor(proof string, arc, seHWType asn1.ObjectIdentifier) (ProofOIDs, error) {
	if len(arc) == 0 {
		arc = DefaultOIDArc
	}
	sub := func(a ...int) asn1.ObjectIdentifier {
		return append(append(asn1.ObjectIdentifier{}, arc...), a...)
	}
	switch proof {
	case ProofTPM:
		return ProofOIDs{Policy: sub(1, 1), HWType: OIDTPM20HWType}, nil
	case ProofATECC608:
		hw := sub(2, 2)
		if len(seHWType) > 0 {
			hw = seHWType
		}
		return ProofOIDs{Policy: sub(1, 2), HWType: hw}, nil
	case ProofUnattested, "":
		// A request that names no proof is labelled as resting on none:
		// forgetting to say is never read as "hardware-attested".
		return ProofOIDs{Policy: sub(1, 3), HWType: sub(2, 3)}, nil
	}
	return ProofOIDs{}, fmt.Errorf("%w: unknown proof %q (want one of %v)", ErrIssueRequest, proof, Proofs())
}

// CertificateProof returns the proof a certificate's policies say it rests
// on under arc (DefaultOIDArc when nil), or "" when it carries none of them.
func CertificateProof(cert *x509.Certificate, arc asn1.ObjectIdentifier) string {
	for _, p := range Proofs() {
		o, err := OIDsFor(p, arc, nil)
		if err != nil {
			continue
		}
		for _, id := range cert.PolicyIdentifiers {
			if id.Equal(o.Policy) {
				return p
			}
		}
		for _, id := range cert.Policies {
			if id.EqualASN1OID(o.Policy) {
				return p
			}
		}
	}
	return ""
}
