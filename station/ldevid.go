package station

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/tpm"
)

// ErrSigningKey reports that the device's code-signing key (LDevID) could
// not be proven, certified or installed.
var ErrSigningKey = errors.New("code-signing key not provisioned")

// Default EKUs of IEEE 802.1AR device certificates: the IDevID
// authenticates the device, the separate signing key signs firmware.
var (
	// IDevIDExtKeyUsages is the EKU set of the identity certificate.
	IDevIDExtKeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	// LDevIDExtKeyUsages is the EKU set of the code-signing certificate.
	LDevIDExtKeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}
)

// SigningKeyResult is what ProvisionSigningKey did.
type SigningKeyResult struct {
	// Chain is the signing key's certificate chain, leaf first.
	Chain []*x509.Certificate
	// NVIndices are where the device stored it.
	NVIndices []uint32
	// Created is false when the device reused an existing signing key.
	Created bool
	// AuthPolicy is the key's measured-boot policy digest (nil: none).
	AuthPolicy []byte
}

// ProvisionSigningKey gives a TPM device its code-signing key: the device
// creates (or reuses) the LDevID and certifies it with its IAK over nonce;
// the station checks that evidence with the same rules as the IDevID's
// (ca.CheckCertify) and that the IAK is the one already proven for this
// device (iakPublic, the TPM2B_PUBLIC from CreateKeys, whose binding to the
// EK was shown by credential activation); the CA issues a certificate whose
// only EKU is codeSigning (req is the caller's request, as for the IDevID:
// serial, intent, run; its ExtKeyUsages are replaced); the device stores
// the chain and its SHA-256 is compared.
//
// Call it at the end of a TPM device's sequence, after the IDevID chain is
// installed, with a fresh nonce.
func ProvisionSigningKey(ctx context.Context, c *proto.Client, iss Issuer, iakPublic, nonce []byte, req ca.IssueRequest, lock bool) (*SigningKeyResult, error) {
	return ProvisionBoundSigningKey(ctx, c, iss, iakPublic, nonce, req, lock, nil)
}

// MeasuredBoot binds a signing key to measured boot (the profile's
// optional policy): the key signs only with a PCR policy the fleet key
// signed for PolicyRef (`wsc policy sign`), or with the owner's approval.
type MeasuredBoot struct {
	// FleetKey is the fleet policy key's public key (ECDSA P-256).
	FleetKey *ecdsa.PublicKey
	// PolicyRef is the product line (at most 32 bytes).
	PolicyRef []byte
	// PCRs is the profile's PCR selection (SHA-256 bank) that release
	// policies cover; recorded, the TPM enforces what each signed policy
	// names.
	PCRs []int
	// OIDArc is the profile's OID arc (nil: ca.DefaultOIDArc).
	OIDArc asn1.ObjectIdentifier
}

// Check refuses a binding the TPM or the certificate cannot carry: the
// fleet key must be ECDSA P-256, the policy reference 1 to 32 bytes
// (TPM2_PolicyAuthorize's policyRef names the product line; an empty one
// would accept the fleet key's approvals for any line), and the PCRs a
// non-empty selection of distinct PCRs 0..23 of the SHA-256 bank.
func (m *MeasuredBoot) Check() error {
	if m.FleetKey == nil || m.FleetKey.Curve != elliptic.P256() {
		return errors.New("fleet_public_key: the fleet policy key must be ECDSA P-256")
	}
	if len(m.PolicyRef) == 0 {
		return errors.New("policy_ref is empty: name the product line (1 to 32 bytes) the fleet key approves PCR policies for")
	}
	if len(m.PolicyRef) > 32 {
		return fmt.Errorf("policy_ref: %d bytes, at most 32 (the TPM's policy reference)", len(m.PolicyRef))
	}
	if len(m.PCRs) == 0 {
		return errors.New("pcrs: list the PCRs (0 to 23, SHA-256 bank) that release PCR policies cover")
	}
	seen := map[int]bool{}
	for _, p := range m.PCRs {
		if p < 0 || p > 23 {
			return fmt.Errorf("pcrs: PCR %d is out of range 0..23", p)
		}
		if seen[p] {
			return fmt.Errorf("pcrs: PCR %d is listed twice", p)
		}
		seen[p] = true
	}
	return nil
}

// MeasuredBootOID is the extension a bound signing key's certificate
// carries: arc.3.1 under the profile's OID arc (docs/platforms.md). Its
// value is
//
//	MeasuredBootPolicy ::= SEQUENCE {
//	    policyDigest  OCTET STRING,       -- the key's authPolicy (SHA-256)
//	    fleetKeyName  OCTET STRING,       -- TPM Name of the fleet policy key
//	    policyRef     OCTET STRING,       -- the product line
//	    pcrs          SEQUENCE OF INTEGER -- the profile's PCR selection
//	}
func MeasuredBootOID(arc asn1.ObjectIdentifier) asn1.ObjectIdentifier {
	if len(arc) == 0 {
		arc = ca.DefaultOIDArc
	}
	return append(append(asn1.ObjectIdentifier{}, arc...), 3, 1)
}

// MeasuredBootPolicy is the value of the MeasuredBootOID extension.
type MeasuredBootPolicy struct {
	PolicyDigest []byte
	FleetKeyName []byte
	PolicyRef    []byte
	PCRs         []int
}

// ProvisionBoundSigningKey is ProvisionSigningKey with an optional
// measured-boot binding (nil: none). The station computes the key's
// authPolicy offline (tpm.SigningKeyAuthPolicy) and refuses a certified
// key whose public area carries another one or allows password use; the
// result's AuthPolicy is the digest to record in the ledger.
func ProvisionBoundSigningKey(ctx context.Context, c *proto.Client, iss Issuer, iakPublic, nonce []byte, req ca.IssueRequest, lock bool, mb *MeasuredBoot) (*SigningKeyResult, error) {
	return provisionSigningKey(ctx, c, iakPublic, nonce, req, lock, mb, func(csrDER []byte, _ *x509.CertificateRequest, req ca.IssueRequest) ([]*x509.Certificate, error) {
		return iss.Issue(ctx, csrDER, req)
	})
}

// signingIssueFunc issues (or re-delivers) the signing key's certificate
// for a CSR whose key the IAK certified.
type signingIssueFunc func(csrDER []byte, csr *x509.CertificateRequest, req ca.IssueRequest) ([]*x509.Certificate, error)

// provisionSigningKey is ProvisionBoundSigningKey with the issuance left
// to issue (the station's sequence records an intent first).
func provisionSigningKey(ctx context.Context, c *proto.Client, iakPublic, nonce []byte, req ca.IssueRequest, lock bool, mb *MeasuredBoot, issue signingIssueFunc) (*SigningKeyResult, error) {
	ev, err := createSigningKey(ctx, c, iakPublic, nonce, req, mb)
	if err != nil {
		return nil, err
	}
	chain, err := ev.issue(issue)
	if err != nil {
		return nil, err
	}
	return ev.install(ctx, c, chain, lock)
}

// signingEvidence is a signing key the device created and the IAK
// certified, checked by the station, not yet certified by the CA.
type signingEvidence struct {
	resp       proto.CreateSigningKeyResponse
	csr        *x509.CertificateRequest
	req        ca.IssueRequest
	wantPolicy []byte
}

// createSigningKey has the device create (or reuse) its signing key and
// certify it with the IAK over nonce, and checks that evidence.
func createSigningKey(ctx context.Context, c *proto.Client, iakPublic, nonce []byte, req ca.IssueRequest, mb *MeasuredBoot) (*signingEvidence, error) {
	sr, err := requestSigningKey(ctx, c, nonce, req, mb)
	if err != nil {
		return nil, err
	}
	return sr.check(iakPublic, nil)
}

// signingRequest is the device's answer to CreateSigningKey, not checked
// yet.
type signingRequest struct {
	resp       proto.CreateSigningKeyResponse
	nonce      []byte
	req        ca.IssueRequest
	wantPolicy []byte
}

// requestSigningKey has the device create (or reuse) its signing key and
// certify it with the IAK over nonce; nothing it answered is trusted until
// check.
func requestSigningKey(ctx context.Context, c *proto.Client, nonce []byte, req ca.IssueRequest, mb *MeasuredBoot) (*signingRequest, error) {
	creq := proto.CreateSigningKeyRequest{Nonce: nonce}
	var wantPolicy []byte
	if mb != nil {
		der, err := x509.MarshalPKIXPublicKey(mb.FleetKey)
		if err != nil {
			return nil, fmt.Errorf("%w: fleet key: %w", ErrSigningKey, err)
		}
		if wantPolicy, err = tpm.SigningKeyAuthPolicy(mb.FleetKey, mb.PolicyRef); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSigningKey, err)
		}
		creq.FleetKey, creq.PolicyRef = der, mb.PolicyRef
		name, err := tpm.FleetKeyName(mb.FleetKey)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSigningKey, err)
		}
		val, err := asn1.Marshal(MeasuredBootPolicy{PolicyDigest: wantPolicy, FleetKeyName: name, PolicyRef: mb.PolicyRef, PCRs: mb.PCRs})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSigningKey, err)
		}
		req.ExtraExtensions = append(req.ExtraExtensions, pkix.Extension{Id: MeasuredBootOID(mb.OIDArc), Value: val})
	}
	var resp proto.CreateSigningKeyResponse
	if err := c.Call(ctx, proto.MsgCreateSigningKey, creq, &resp); err != nil {
		return nil, fmt.Errorf("%w: create: %w", ErrSigningKey, err)
	}
	return &signingRequest{resp: resp, nonce: nonce, req: req, wantPolicy: wantPolicy}, nil
}

// check verifies the device's evidence for its signing key: certified by
// the IAK proven for this device (iakPublic) over the nonce, neither the
// IAK itself nor the identity key (idevid, when known: the keys request
// may have used the same nonce, and the IAK certifies whatever the agent
// asks it to), carrying the profile's authorization policy.
func (sr *signingRequest) check(iakPublic []byte, idevid crypto.PublicKey) (*signingEvidence, error) {
	resp, nonce, req, wantPolicy := sr.resp, sr.nonce, sr.req, sr.wantPolicy
	if !bytes.Equal(resp.IAKPublic, iakPublic) {
		return nil, fmt.Errorf("%w: the signing key is certified by another attestation key than the one proven for this device; quarantine the device", ErrSigningKey)
	}
	cert, err := ca.CheckCertify(ca.Evidence{IAKPublic: resp.IAKPublic, IDevIDPublic: resp.LDevIDPublic, CertifyInfo: resp.CertifyInfo,
		CertifySignature: resp.CertifySignature, CSR: resp.CSR, Nonce: nonce})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSigningKey, err)
	}
	if bytes.Equal(resp.LDevIDPublic, iakPublic) {
		return nil, fmt.Errorf("%w: the signing key is the attestation key", ErrSigningKey)
	}
	// The policy is part of the certified public area (its Name), so this
	// check rests on the IAK's signature, not on the device's word.
	lp := cert.IDevID.Public
	if !bytes.Equal(lp.AuthPolicy.Buffer, wantPolicy) || bool(lp.ObjectAttributes.UserWithAuth) != (wantPolicy == nil) {
		return nil, fmt.Errorf("%w: the certified signing key does not carry the profile's authorization policy; reset the device's signing key (rework)", ErrSigningKey)
	}
	if k, ok := cert.CSR.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); idevid != nil && (!ok || k.Equal(idevid)) {
		return nil, fmt.Errorf("%w: the signing key is the identity key; an 802.1AR device signs firmware with a key of its own: quarantine the device", ErrSigningKey)
	}
	req.ExtKeyUsages = LDevIDExtKeyUsages
	return &signingEvidence{resp: resp, csr: cert.CSR, req: req, wantPolicy: wantPolicy}, nil
}

// issue has the CA certify the checked key (codeSigning only) and checks
// that the certificate holds it.
func (ev *signingEvidence) issue(issue signingIssueFunc) ([]*x509.Certificate, error) {
	chain, err := issue(ev.resp.CSR, ev.csr, ev.req)
	if err != nil {
		return nil, fmt.Errorf("%w: issue: %w", ErrSigningKey, err)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: the CA returned no certificate", ErrSigningKey)
	}
	if k, ok := chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(ev.csr.PublicKey) {
		return nil, fmt.Errorf("%w: the issued certificate does not hold the signing key", ErrSigningKey)
	}
	return chain, nil
}

// install writes the chain into the device and compares its SHA-256.
func (ev *signingEvidence) install(ctx context.Context, c *proto.Client, chain []*x509.Certificate, lock bool) (*SigningKeyResult, error) {
	der := make([][]byte, len(chain))
	h := sha256.New()
	for i, x := range chain {
		der[i] = x.Raw
		h.Write(x.Raw)
	}
	var inst proto.InstallChainResponse
	if err := c.Call(ctx, proto.MsgInstallSigningChain, proto.InstallChainRequest{Chain: der, Lock: lock}, &inst); err != nil {
		return nil, fmt.Errorf("%w: install chain: %w", ErrSigningKey, err)
	}
	if !bytes.Equal(inst.SHA256, h.Sum(nil)) {
		return nil, fmt.Errorf("%w: the device stored another chain than the station sent", ErrSigningKey)
	}
	return &SigningKeyResult{Chain: chain, NVIndices: inst.NVIndices, Created: ev.resp.Created, AuthPolicy: ev.wantPolicy}, nil
}
