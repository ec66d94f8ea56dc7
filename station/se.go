package station

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/se"
)

// Secure-element (ATECC608-class) devices follow the same sequence as TPMs
// with the chip's own proof (ARCHITECTURE.md §4, last paragraph): there is
// no endorsement key, so the station relies on
//   - the chip's serial from its config zone (Hello),
//   - the GenKey public key of the device-key slot (CreateKeys'
//     IDevIDPublic, PKIX DER), which must be the CSR's key, and
//   - the CSR's signature, made inside the chip.
//
// The chip stores its certificates in Microchip's compressed form (72
// bytes per certificate) and rebuilds the X.509 DER from a template: the
// issued certificate must rebuild byte for byte. Its serial number is
// therefore derived from the public key and the encoded dates
// (se.DeviceCertParams), its validity runs from the start of the hour for
// whole years, and the station checks compressibility (se.CheckDeviceChain)
// before anything is written to the chip.
//
// hwType of the HardwareModuleName: there is no standard OID for an
// ATECC608 (TCG assigns 2.23.133.1.2 to TPM 2.0 only, and we found no
// published Microchip arc), so the work order's profile decides
// (hwModuleOID); the station does not invent one.

// backendSE is the Hello backend of secure-element devices.
const backendSE = "se"

// backendTPM is the Hello backend of TPM devices.
const backendTPM = "tpm"

// yearDuration is the "y" of certificate profiles (ca.ParseDuration).
const yearDuration = 365 * 24 * time.Hour

// ProfileError is a certificate profile the station cannot use for a
// device (e.g. a validity that is not whole years for a secure element);
// nothing was written to the device.
type ProfileError struct {
	Profile string
	Reason  string
}

func (e *ProfileError) Error() string {
	return fmt.Sprintf("certificate profile %q cannot be used for secure-element devices: %s", e.Profile, e.Reason)
}

// seYears is the validity, in whole years, of secure-element device
// certificates under the provisioner's configuration: Config.Validity,
// else the work order's profile, else the CA's default profile. A year is
// the profiles' "y" (365 days): "10y" is 10 years; the certificate then
// ends on the same date and hour 10 calendar years later, as the chip's
// compressed form encodes it.
func (p *Provisioner) seYears() (int, error) {
	v, name := p.cfg.Validity, "station validity"
	if v <= 0 {
		prof := p.cfg.Profile
		if prof == nil {
			if d, ok := p.cfg.Issuer.(interface{ Profile() *ca.Profile }); ok {
				prof = d.Profile()
			}
		}
		if prof == nil {
			return 0, &ProfileError{Profile: "(unknown)", Reason: "the station cannot tell the certificate validity; configure a profile or a validity"}
		}
		v, name = time.Duration(prof.Validity), prof.Name
		switch {
		case prof.Validity == ca.ValidityUntilIssuerExpiry:
			// Until the intermediate expires: compressibleRequest takes
			// the most whole years that fit before it.
			return 31, nil
		case prof.NotAfter != "":
			return 0, &ProfileError{Profile: name, Reason: "its notAfter " + prof.NotAfter + " cannot be encoded in a compressed certificate (use a validity in whole years)"}
		}
	}
	if v <= 0 || v%yearDuration != 0 {
		return 0, &ProfileError{Profile: name, Reason: fmt.Sprintf("its validity %s is not a whole number of years (write it as e.g. \"10y\")", fmtDays(v))}
	}
	years := int(v / yearDuration)
	if years > 31 {
		return 0, &ProfileError{Profile: name, Reason: fmt.Sprintf("its validity of %d years exceeds the 31 years a compressed certificate can encode", years)}
	}
	return years, nil
}

func fmtDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// profileStepError is how a ProfileError reaches the operator.
func profileStepError(err error) *StepError {
	return &StepError{Step: StepHello, Err: err,
		Instruction: "This work order's certificate profile cannot be used for secure-element devices: call the shift lead. The device was not changed; it is safe to retry after the profile is fixed."}
}

// ATECC608Proof is the secure-element proof: the chip's manufacturer
// certificate chain verifies to a configured vendor root, and the chip
// attests the new key itself (GenKey in digest mode, then Sign in internal
// mode by the factory-provisioned attestation key over the key's digest,
// its slot configuration and the chip serial); the CSR's key must be the
// attested key. The chip identity is derived from the chip serial and the
// manufacturer device certificate (ca.VerifySEAttestation).
type ATECC608Proof struct {
	Roots, Intermediates *x509.CertPool
}

// Name implements Proof.
func (*ATECC608Proof) Name() string { return ca.ProofATECC608 }

// Accepts implements Proof: a device that says it is a secure element.
func (*ATECC608Proof) Accepts(h *proto.HelloResponse) bool { return h.Backend == backendSE }

// Prove implements Proof.
func (sp *ATECC608Proof) Prove(ctx context.Context, pr *ProofRun) (*Proven, error) {
	keys, csr, err := createKeys(ctx, pr)
	if err != nil {
		return nil, err
	}
	var chipID []byte
	err = pr.Step(StepAttest, func() error {
		var err error
		if chipID, err = verifySEEvidence(keys, csr, pr.Nonce, pr.Serial, sp.Roots, sp.Intermediates); err != nil {
			return err
		}
		return pr.Identify(chipID)
	})
	if err != nil {
		return nil, err
	}
	return &Proven{CSR: csr, CSRDER: keys.CSR, ChipID: chipID, Keys: keys}, nil
}

// compressibleRequest sets the serial number and exact validity a device
// certificate needs to be stored compressed in a secure element.
//
// A certificate must not outlive its issuer. For TPM devices the CA cuts
// notAfter at the intermediate's notAfter; a compressed certificate cannot
// end at an arbitrary time, so here the validity is the profile's years
// or, when the intermediate ends sooner, the most whole years that fit
// (the same cut, rounded down to a year). issuer nil: no cut.
func compressibleRequest(req *ca.IssueRequest, csr *x509.CertificateRequest, years int, now time.Time, issuer *x509.Certificate) error {
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return errors.New("device key is not ECDSA")
	}
	for y := years; y >= 1; y-- {
		sn, nb, na, err := se.DeviceCertParams(pub, now, y)
		if err != nil {
			return fmt.Errorf("secure element certificate parameters: %w", err)
		}
		if issuer != nil && na.After(issuer.NotAfter) {
			continue
		}
		req.SerialNumber, req.NotBefore, req.NotAfter, req.Validity = sn, nb, na, 0
		return nil
	}
	return fmt.Errorf("the station intermediate expires %s, less than a whole year from now: a secure-element certificate needs whole years (rotate the intermediate)",
		issuer.NotAfter.UTC().Format(time.DateOnly))
}

// currentIssuer is the CA's issuing certificate, when the issuer tells it.
func currentIssuer(iss Issuer) *x509.Certificate {
	if c, ok := iss.(interface{ Issuer() *x509.Certificate }); ok {
		return c.Issuer()
	}
	if t, ok := iss.(CATrust); ok {
		if in := t.Intermediates(); len(in) > 0 {
			return in[0]
		}
	}
	return nil
}

// checkSEChain refuses a chain the secure element could not store: a
// device certificate and its signer, both compressible and rebuildable
// byte for byte.
func checkSEChain(chain []*x509.Certificate) error {
	if len(chain) < 2 {
		return fmt.Errorf("a secure element stores a device and a signer certificate; the CA returned %d certificates", len(chain))
	}
	if err := se.CheckDeviceChain(chain[0], chain[1]); err != nil {
		return fmt.Errorf("the certificate cannot be stored in the secure element (nothing was written): %w", err)
	}
	return nil
}
