package station

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/devices/proto"
)

// Proof is one kind of evidence that a device's key was made inside its
// chip (ARCHITECTURE.md §10). The work order's policy lists the proofs it
// accepts; the station picks the first one that accepts the device's Hello
// and demands that evidence. What the device claims only narrows the
// choice to proofs the policy already accepts: a device cannot talk the
// station into a weaker proof than the policy allows.
type Proof interface {
	// Name is the proof's policy name (ca.ProofTPM, ca.ProofATECC608,
	// ca.ProofUnattested); the certificate and the ledger record it.
	Name() string
	// Accepts reports whether this proof can be demanded of a device that
	// says hello (its backend and capabilities).
	Accepts(hello *proto.HelloResponse) bool
	// Prove demands the evidence from the device, checks it, and returns the
	// proven key with the chip's identity. Nothing is issued unless it
	// returns without error.
	Prove(ctx context.Context, pr *ProofRun) (*Proven, error)
}

// ProofRun is what a Proof sees of a provisioning run.
type ProofRun struct {
	Client *proto.Client
	Hello  *proto.HelloResponse
	// Serial is the device serial (validated; equal to the scanned label
	// when there is one).
	Serial string
	// Nonce is the run's fresh 32-byte nonce.
	Nonce []byte
	// Step runs f as step s of the run: timed, reported and, on failure,
	// wrapped in a StepError with the operator's instruction.
	Step func(s Step, f func() error) error
	// Identify checks a chip identity as soon as the proof learns it
	// (before the chip makes a key, when the proof can tell it that early):
	// a chip in the red bin, or a chip other than the one the serial is
	// bound to, is refused here. The identity is only claimed at that
	// point; the proof still has to prove it.
	Identify func(chipID []byte) error
	// Prepare, when set, adds to the keys request what the rest of the
	// sequence asks ahead (the code-signing key made in the background).
	Prepare func(*proto.CreateKeysRequest)
}

// Proven is what a passed proof vouches for.
type Proven struct {
	// CSR is the device's certificate request (signature checked), whose
	// key the proof showed to live in the chip.
	CSR    *x509.CertificateRequest
	CSRDER []byte
	// ChipID is the chip's identity: SHA-256 of the TPM's endorsement
	// public key, the secure element's chip identity, or for an
	// unattested device the SHA-256 of its public key.
	ChipID []byte
	// Keys is the device's CreateKeys answer.
	Keys *proto.CreateKeysResponse
}

// ErrNoProof: the work order accepts no proof this device can give.
var ErrNoProof = errors.New("no accepted proof for this device")

// ErrKeyPolicy: the device key is not one the station certifies (ECDSA P-256).
var ErrKeyPolicy = errors.New("device key refused")

// NewProofs returns the proofs the names list, in that order. TPM proofs
// need tpmRoots (the TPM vendors' roots); atecc608 proofs need seRoots.
// Unknown names, duplicates and an empty list are refused: the policy is
// data checked when it is loaded.
func NewProofs(names []string, tpmRoots, tpmIntermediates, seRoots, seIntermediates *x509.CertPool) ([]Proof, error) {
	if len(names) == 0 {
		return nil, errors.New("proofs: the work order accepts no proof (list at least one of tpm, atecc608, unattested)")
	}
	seen := map[string]bool{}
	var out []Proof
	for _, n := range names {
		if seen[n] {
			return nil, fmt.Errorf("proofs: %q is listed twice", n)
		}
		seen[n] = true
		switch n {
		case ca.ProofTPM:
			if tpmRoots == nil {
				return nil, errors.New("proofs: tpm needs the TPM vendor roots (tpm_vendor_roots)")
			}
			out = append(out, &TPMProof{Roots: tpmRoots, Intermediates: tpmIntermediates})
		case ca.ProofATECC608:
			if seRoots == nil {
				return nil, errors.New("proofs: atecc608 needs the secure-element vendor roots (se_vendor_roots)")
			}
			out = append(out, &ATECC608Proof{Roots: seRoots, Intermediates: seIntermediates})
		case ca.ProofUnattested:
			out = append(out, UnattestedProof{})
		default:
			return nil, fmt.Errorf("proofs: unknown proof %q (want tpm, atecc608 or unattested)", n)
		}
	}
	return out, nil
}

// chooseProof returns the first proof of the policy that accepts hello.
func chooseProof(policy []Proof, hello *proto.HelloResponse) (Proof, error) {
	for _, p := range policy {
		if p.Accepts(hello) {
			return p, nil
		}
	}
	names := make([]string, len(policy))
	for i, p := range policy {
		names[i] = p.Name()
	}
	return nil, fmt.Errorf("%w: the device says backend %q; the work order accepts %v", ErrNoProof, hello.Backend, names)
}

// createKeys asks the device for its keys and checks the CSR's signature.
func createKeys(ctx context.Context, pr *ProofRun) (*proto.CreateKeysResponse, *x509.CertificateRequest, error) {
	var keys *proto.CreateKeysResponse
	err := pr.Step(StepKeys, func() error {
		var err error
		req := proto.CreateKeysRequest{Nonce: pr.Nonce, Subject: pr.Serial}
		if pr.Prepare != nil {
			pr.Prepare(&req)
		}
		keys, err = pr.Client.CreateKeys(ctx, req)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	var csr *x509.CertificateRequest
	err = pr.Step(StepAttest, func() error {
		var err error
		if csr, err = parseDeviceCSR(keys.CSR); err != nil {
			return err
		}
		return nil
	})
	return keys, csr, err
}

// parseDeviceCSR parses a device's CSR, checks its signature and that its
// key is ECDSA P-256: the only key the station certifies (every supported
// chip makes one, and a secure element's compressed certificate holds no
// other). It runs before anything is signed.
func parseDeviceCSR(der []byte) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: parse CSR: %v", ErrAttestation, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: CSR signature: %v", ErrAttestation, err)
	}
	k, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: the device key is %s, the station certifies ECDSA P-256 only", ErrKeyPolicy, csr.PublicKeyAlgorithm)
	}
	if k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: the device key is on curve %s, the station certifies P-256 only", ErrKeyPolicy, k.Curve.Params().Name)
	}
	return csr, nil
}

// TPMProof is the TPM 2.0 proof (ARCHITECTURE.md §4): the EK certificate
// chains to a configured TPM vendor root, the IAK certifies the device key
// (TPM2_Certify over the station's nonce), and credential activation shows
// that the IAK lives in the TPM that owns that EK.
type TPMProof struct {
	Roots, Intermediates *x509.CertPool
}

// Name implements Proof.
func (*TPMProof) Name() string { return ca.ProofTPM }

// Accepts implements Proof: a device that says it is a TPM and offers
// attestation.
func (*TPMProof) Accepts(h *proto.HelloResponse) bool {
	return h.Backend == backendTPM && hasCap(h.Capabilities, "attest")
}

// Prove implements Proof.
func (tp *TPMProof) Prove(ctx context.Context, pr *ProofRun) (*Proven, error) {
	c := pr.Client
	var ek *proto.GetEKResponse
	var ekCheck, credPrep *async
	var cred *ca.PreparedCredential
	var chipID []byte
	err := pr.Step(StepEK, func() error {
		var err error
		if ek, err = c.GetEK(ctx); err != nil {
			return err
		}
		if len(ek.EKPublic) == 0 {
			return fmt.Errorf("%w: the device sent no endorsement key", ErrAttestation)
		}
		sum := sha256.Sum256(ek.EKPublic)
		chipID = sum[:]
		// The red bin and the binding (database reads) and the EK chain are
		// checked while the device creates its keys; nothing is issued
		// before both have passed.
		// The costly half of the credential (the encapsulation to the EK)
		// is made now too: only the IAK's Name is missing.
		credPrep = goAsync(func() error {
			var err error
			cred, err = ca.PrepareCredential(ek.EKPublic)
			return err
		})
		ekCheck = goAsync(func() error {
			if err := pr.Identify(chipID); err != nil {
				return err
			}
			if err := ca.VerifyEK(ek.EKCert, ek.EKPublic, tp.Roots, tp.Intermediates); err != nil {
				return fmt.Errorf("%w: %w", ErrAttestation, err)
			}
			return nil
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	keys, csr, err := createKeys(ctx, pr)
	if err != nil {
		_ = ekCheck.wait()
		_ = credPrep.wait()
		return nil, err
	}
	// The EK chain and the Certify evidence are checked while the device
	// activates the credential; both must pass before anything is issued.
	ev := ca.Evidence{EKPublic: ek.EKPublic, EKCert: ek.EKCert, IAKPublic: keys.IAKPublic, IDevIDPublic: keys.IDevIDPublic,
		CertifyInfo: keys.CertifyInfo, CertifySignature: keys.CertifySignature, CSR: keys.CSR, Nonce: pr.Nonce}
	evidenceCheck := goAsync(func() error {
		if err := ekCheck.wait(); err != nil {
			return err
		}
		if err := ca.VerifyCertify(ev); err != nil {
			return fmt.Errorf("%w: %w", ErrAttestation, err)
		}
		return nil
	})
	err = pr.Step(StepActivate, func() error {
		secret, err := ca.NewSecret(32)
		if err != nil {
			return err
		}
		name, err := ca.ObjectName(keys.IAKPublic)
		if err != nil {
			_ = evidenceCheck.wait()
			return fmt.Errorf("%w: %v", ErrAttestation, err)
		}
		if err := credPrep.wait(); err != nil {
			_ = evidenceCheck.wait()
			return fmt.Errorf("%w: make credential: %v", ErrAttestation, err)
		}
		blob, enc, err := cred.Make(name, secret)
		if err != nil {
			_ = evidenceCheck.wait()
			return fmt.Errorf("%w: make credential: %v", ErrAttestation, err)
		}
		got, err := c.ActivateCredential(ctx, proto.ActivateCredentialRequest{CredentialBlob: blob, EncryptedSecret: enc})
		if err != nil {
			_ = evidenceCheck.wait()
			return err
		}
		if err := evidenceCheck.wait(); err != nil {
			return err
		}
		if err := ca.CheckActivation(secret, got.Secret); err != nil {
			return fmt.Errorf("%w: the attestation key is not in the TPM that owns this EK: %v", ErrAttestation, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Proven{CSR: csr, CSRDER: keys.CSR, ChipID: chipID, Keys: keys}, nil
}

// UnattestedProof accepts any device without hardware evidence: the CSR's
// signature shows possession of the key, nothing shows where the key
// lives. Only a work order that lists "unattested" uses it, and its
// certificates say so (ca.OIDsFor). The chip identity is the SHA-256 of
// the device's public key: a new key is a new identity, so re-work of an
// unattested device is a supervisor's rebind.
type UnattestedProof struct{}

// Name implements Proof.
func (UnattestedProof) Name() string { return ca.ProofUnattested }

// Accepts implements Proof: any device.
func (UnattestedProof) Accepts(*proto.HelloResponse) bool { return true }

// Prove implements Proof.
func (UnattestedProof) Prove(ctx context.Context, pr *ProofRun) (*Proven, error) {
	keys, csr, err := createKeys(ctx, pr)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	if err := pr.Step(StepAttest, func() error { return pr.Identify(sum[:]) }); err != nil {
		return nil, err
	}
	return &Proven{CSR: csr, CSRDER: keys.CSR, ChipID: sum[:], Keys: keys}, nil
}

// newNonce returns a fresh 32-byte nonce.
func newNonce() ([]byte, error) {
	n := make([]byte, 32)
	if _, err := rand.Read(n); err != nil {
		return nil, err
	}
	return n, nil
}
