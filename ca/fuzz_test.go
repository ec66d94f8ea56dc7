package ca

import (
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// FuzzEvidence feeds device-controlled bytes to the attestation parsers:
// they must fail with an error, never panic (a device must not be able to
// crash the station).
func FuzzEvidence(f *testing.F) {
	pub := tpm2.New2B(eccSignTemplate(deviceKeyAttrs, true))
	f.Add(tpm2.Marshal(pub), []byte{0xff, 'T', 'C', 'G', 0x80, 0x17}, []byte{0, 0x18, 0, 0x0b})
	f.Add(tpm2.Marshal(tpm2.New2B(tpm2.RSAEKTemplate)), []byte{}, []byte{0, 0x18})
	f.Fuzz(func(t *testing.T, pubBytes, attest, sig []byte) {
		ParseTPMPublic(pubBytes)
		ObjectName(pubBytes)
		MakeCredential(pubBytes, make([]byte, 34), []byte("secret"))
		VerifyCertify(Evidence{IAKPublic: pubBytes, IDevIDPublic: pubBytes, CertifyInfo: attest, CertifySignature: sig, Nonce: []byte{1}})
		ParseEKCert(attest)
	})
}
