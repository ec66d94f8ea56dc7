package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// Signing bound to measured boot (optional per profile).
//
// The code-signing key's authPolicy is
//
//	PolicyOR{ PolicyAuthorize(fleet policy key, policyRef), PolicySecret(owner) }
//
// and it has no userWithAuth, so the TPM signs with it only when a policy
// session satisfies one branch: either the current PCR values match a PCR
// policy the fleet key signed for this policyRef (a product line), or the
// holder of the owner authorization approves. Firmware releases ship a new
// signed PCR policy (SignedPCRPolicy) without re-provisioning the device.
// The IDevID is never bound to PCRs.

// ErrPolicy reports a PCR policy that is malformed, or a signing key whose
// policy does not allow what was asked.
var ErrPolicy = errors.New("signing policy")

// fleetKeyPublic is the fleet policy key as a TPMT_PUBLIC (loaded as an
// external public key to check its signature).
func fleetKeyPublic(pub *ecdsa.PublicKey) (tpm2.TPMTPublic, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return tpm2.TPMTPublic{}, fmt.Errorf("%w: fleet key must be ECDSA P-256", ErrPolicy)
	}
	t := eccSigningTemplate(false)
	t.ObjectAttributes = tpm2.TPMAObject{SignEncrypt: true, UserWithAuth: true}
	raw, err := pub.Bytes() // 0x04 || X || Y
	if err != nil || len(raw) != 65 {
		return tpm2.TPMTPublic{}, fmt.Errorf("%w: fleet key: %v", ErrPolicy, err)
	}
	x, y := raw[1:33], raw[33:]
	t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: x}, Y: tpm2.TPM2BECCParameter{Buffer: y}})
	return t, nil
}

// FleetKeyName is the TPM Name of the fleet policy key.
func FleetKeyName(pub *ecdsa.PublicKey) ([]byte, error) {
	t, err := fleetKeyPublic(pub)
	if err != nil {
		return nil, err
	}
	n, err := tpm2.ObjectName(&t)
	if err != nil {
		return nil, fmt.Errorf("%w: fleet key name: %v", ErrPolicy, err)
	}
	return n.Buffer, nil
}

// policyBranches returns the two PolicyOR branch digests.
func policyBranches(fleet *ecdsa.PublicKey, policyRef []byte) ([][]byte, error) {
	name, err := FleetKeyName(fleet)
	if err != nil {
		return nil, err
	}
	a, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if err := (tpm2.PolicyAuthorize{KeySign: tpm2.TPM2BName{Buffer: name}, PolicyRef: tpm2.TPM2BDigest{Buffer: policyRef}}).Update(a); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	b, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if err := (tpm2.PolicySecret{AuthHandle: tpm2.NamedHandle{Handle: tpm2.TPMRHOwner, Name: tpm2.HandleName(tpm2.TPMRHOwner)}}).Update(b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	return [][]byte{a.Hash().Digest, b.Hash().Digest}, nil
}

// SigningKeyAuthPolicy computes, offline, the authPolicy digest of a
// code-signing key bound to measured boot (the station records it and
// checks that the certified key carries it).
func SigningKeyAuthPolicy(fleet *ecdsa.PublicKey, policyRef []byte) ([]byte, error) {
	if len(policyRef) > 32 {
		return nil, fmt.Errorf("%w: policy reference of %d bytes, at most 32", ErrPolicy, len(policyRef))
	}
	br, err := policyBranches(fleet, policyRef)
	if err != nil {
		return nil, err
	}
	c, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if err := (tpm2.PolicyOr{PHashList: tpm2.TPMLDigest{Digests: []tpm2.TPM2BDigest{{Buffer: br[0]}, {Buffer: br[1]}}}}).Update(c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	return c.Hash().Digest, nil
}

// pcrSelection is the SHA-256 bank selection of pcrs (0..23).
func pcrSelection(pcrs []int) (tpm2.TPMLPCRSelection, error) {
	sel := make([]byte, 3)
	for _, p := range pcrs {
		if p < 0 || p > 23 {
			return tpm2.TPMLPCRSelection{}, fmt.Errorf("%w: PCR %d out of range 0..23", ErrPolicy, p)
		}
		sel[p/8] |= 1 << (p % 8)
	}
	if len(pcrs) == 0 {
		return tpm2.TPMLPCRSelection{}, fmt.Errorf("%w: no PCRs selected", ErrPolicy)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: sel}}}, nil
}

// PCRDigest is the digest PolicyPCR compares: SHA-256 over the selected
// PCR values (SHA-256 bank) in ascending PCR order.
func PCRDigest(values map[int][]byte) ([]byte, []int, error) {
	pcrs := make([]int, 0, len(values))
	for p := range values {
		pcrs = append(pcrs, p)
	}
	slices.Sort(pcrs)
	h := sha256.New()
	for _, p := range pcrs {
		if len(values[p]) != 32 {
			return nil, nil, fmt.Errorf("%w: PCR %d value is %d bytes, want 32 (SHA-256 bank)", ErrPolicy, p, len(values[p]))
		}
		h.Write(values[p])
	}
	return h.Sum(nil), pcrs, nil
}

// ApprovedPCRPolicy is the policy digest a fleet key approves: PolicyPCR
// over pcrs with pcrDigest, from an empty session.
func ApprovedPCRPolicy(pcrs []int, pcrDigest []byte) ([]byte, error) {
	sel, err := pcrSelection(pcrs)
	if err != nil {
		return nil, err
	}
	c, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if err := (tpm2.PolicyPCR{Pcrs: sel, PcrDigest: tpm2.TPM2BDigest{Buffer: pcrDigest}}).Update(c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	return c.Hash().Digest, nil
}

// ApprovalDigest is what the fleet key signs (TPM2_PolicyAuthorize's
// aHash): SHA-256(approvedPolicy || policyRef).
func ApprovalDigest(approvedPolicy, policyRef []byte) []byte {
	h := sha256.New()
	h.Write(approvedPolicy)
	h.Write(policyRef)
	return h.Sum(nil)
}

// SignedPCRPolicy is a PCR policy approved by the fleet key.
type SignedPCRPolicy struct {
	// PCRs and PCRDigest are the PolicyPCR parameters.
	PCRs      []int
	PCRDigest []byte
	// PolicyRef is the product line the approval is for.
	PolicyRef []byte
	// FleetKey is the approving key; R and S its ECDSA signature over
	// ApprovalDigest.
	FleetKey *ecdsa.PublicKey
	R, S     *big.Int
}

// PCRValues reads SHA-256 PCR values.
func (d *Device) PCRValues(pcrs []int) (map[int][]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, err
	}
	out := make(map[int][]byte, len(pcrs))
	for _, p := range pcrs {
		sel, err := pcrSelection([]int{p})
		if err != nil {
			return nil, err
		}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: sel}.Execute(d.tpm)
		if err != nil {
			return nil, fmt.Errorf("pcr read %d: %w", p, err)
		}
		if len(rsp.PCRValues.Digests) != 1 {
			return nil, fmt.Errorf("pcr read %d: SHA-256 bank not active", p)
		}
		out[p] = rsp.PCRValues.Digests[0].Buffer
	}
	return out, nil
}

// SignDigestLDevIDWithPolicy signs with a code-signing key bound to
// measured boot: the TPM checks the fleet key's signature over the PCR
// policy (TPM2_VerifySignature), then PolicyPCR (fails unless the PCRs
// hold the approved values), PolicyAuthorize and PolicyOR, and only then
// signs. Any mismatch is an error from the TPM; nothing is signed.
func (d *Device) SignDigestLDevIDWithPolicy(digest []byte, p *SignedPCRPolicy) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, err
	}
	if p == nil || p.R == nil || p.S == nil {
		return nil, fmt.Errorf("%w: no signed PCR policy", ErrPolicy)
	}
	sel, err := pcrSelection(p.PCRs)
	if err != nil {
		return nil, err
	}
	approved, err := ApprovedPCRPolicy(p.PCRs, p.PCRDigest)
	if err != nil {
		return nil, err
	}
	branches, err := policyBranches(p.FleetKey, p.PolicyRef)
	if err != nil {
		return nil, err
	}
	fpub, err := fleetKeyPublic(p.FleetKey)
	if err != nil {
		return nil, err
	}
	le, err := tpm2.LoadExternal{InPublic: tpm2.New2B(fpub), Hierarchy: tpm2.TPMRHOwner}.Execute(d.tpm)
	if err != nil {
		return nil, fmt.Errorf("sign with policy: load fleet key: %w", err)
	}
	defer d.flush(le.ObjectHandle)
	vs, err := tpm2.VerifySignature{
		KeyHandle: tpm2.NamedHandle{Handle: le.ObjectHandle, Name: le.Name},
		Digest:    tpm2.TPM2BDigest{Buffer: ApprovalDigest(approved, p.PolicyRef)},
		Signature: tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       tpm2.TPMAlgSHA256,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: p.R.FillBytes(make([]byte, 32))},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: p.S.FillBytes(make([]byte, 32))},
		})},
	}.Execute(d.tpm)
	if err != nil {
		return nil, fmt.Errorf("sign with policy: %w: the PCR policy is not signed by the fleet key: %w", ErrPolicy, err)
	}
	ld, ok, err := d.persistedKey(d.cfg.LDevIDHandle, false)
	if err != nil {
		return nil, fmt.Errorf("sign with policy: ldevid: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("sign with policy: %w", ErrNoKeys)
	}
	// The TPM would refuse too (TPM_RC_POLICY_FAIL at TPM2_Sign); saying
	// why here tells the operator which file is wrong.
	want, err := SigningKeyAuthPolicy(p.FleetKey, p.PolicyRef)
	if err != nil {
		return nil, err
	}
	if lp, err := ld.public.Contents(); err != nil || !bytes.Equal(lp.AuthPolicy.Buffer, want) {
		return nil, fmt.Errorf("sign with policy: %w: the PCR policy is approved by a fleet key or for a product line this signing key is not bound to", ErrPolicy)
	}
	sess, closeSess, err := tpm2.PolicySession(d.tpm, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return nil, fmt.Errorf("sign with policy: session: %w", err)
	}
	defer func() { _ = closeSess() }()
	if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: sel, PcrDigest: tpm2.TPM2BDigest{Buffer: p.PCRDigest}}).Execute(d.tpm); err != nil {
		return nil, fmt.Errorf("sign with policy: %w: the PCRs do not hold the approved values (measured boot changed): %w", ErrPolicy, err)
	}
	if _, err := (tpm2.PolicyAuthorize{PolicySession: sess.Handle(), ApprovedPolicy: tpm2.TPM2BDigest{Buffer: approved},
		PolicyRef: tpm2.TPM2BDigest{Buffer: p.PolicyRef}, KeySign: le.Name, CheckTicket: vs.Validation}).Execute(d.tpm); err != nil {
		return nil, fmt.Errorf("sign with policy: %w: %w", ErrPolicy, err)
	}
	if _, err := (tpm2.PolicyOr{PolicySession: sess.Handle(), PHashList: tpm2.TPMLDigest{Digests: []tpm2.TPM2BDigest{{Buffer: branches[0]}, {Buffer: branches[1]}}}}).Execute(d.tpm); err != nil {
		return nil, fmt.Errorf("sign with policy: %w: the signing key is bound to another fleet key or product line: %w", ErrPolicy, err)
	}
	rsp, err := tpm2.Sign{
		KeyHandle:  tpm2.AuthHandle{Handle: ld.handle, Name: ld.name, Auth: sess},
		Digest:     tpm2.TPM2BDigest{Buffer: digest},
		InScheme:   ecdsaSHA256,
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(d.tpm)
	if errors.Is(err, tpm2.TPMRCPolicyFail) {
		return nil, fmt.Errorf("sign with policy: %w: %w", ErrPolicy, err)
	}
	if err != nil {
		return nil, fmt.Errorf("sign with policy: %w", err)
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("sign with policy: %w", err)
	}
	return asn1ECDSA(sig.SignatureR.Buffer, sig.SignatureS.Buffer)
}

// SignDigestLDevIDOwnerPolicy signs digest (SHA-256) with a code-signing
// key bound to measured boot through its PolicySecret(owner) branch, with
// the owner authorization this Device holds (Config.OwnerAuth, or the value
// ChangeOwnerAuth last set). The station uses it once, at end of line,
// before it seals and sets a new owner authorization; in the field the key
// signs with a fleet-signed PCR policy (SignDigestLDevIDWithPolicy). A key
// not bound to fleet and policyRef is refused with ErrPolicy before the
// TPM is asked; a wrong owner authorization is the TPM's refusal.
func (d *Device) SignDigestLDevIDOwnerPolicy(digest []byte, fleet *ecdsa.PublicKey, policyRef []byte) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, err
	}
	if len(digest) != sha256.Size {
		return nil, fmt.Errorf("sign with the owner policy: digest of %d bytes, want %d", len(digest), sha256.Size)
	}
	want, err := SigningKeyAuthPolicy(fleet, policyRef)
	if err != nil {
		return nil, err
	}
	ld, ok, err := d.persistedKey(d.cfg.LDevIDHandle, false)
	if err != nil {
		return nil, fmt.Errorf("sign with the owner policy: ldevid: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("sign with the owner policy: %w", ErrNoKeys)
	}
	if lp, err := ld.public.Contents(); err != nil || !bytes.Equal(lp.AuthPolicy.Buffer, want) {
		return nil, fmt.Errorf("sign with the owner policy: %w: the signing key is not bound to this fleet key and product line", ErrPolicy)
	}
	return d.signDigestOwnerPolicy(digest, fleet, policyRef)
}

// signDigestOwnerPolicy signs with the policy-bound signing key through
// the PolicySecret(owner) branch (the owner authorization this Device was
// configured or updated with).
func (d *Device) signDigestOwnerPolicy(digest []byte, fleet *ecdsa.PublicKey, policyRef []byte) ([]byte, error) {
	branches, err := policyBranches(fleet, policyRef)
	if err != nil {
		return nil, err
	}
	ld, ok, err := d.persistedKey(d.cfg.LDevIDHandle, false)
	if err != nil {
		return nil, fmt.Errorf("ldevid: %w", err)
	}
	if !ok {
		return nil, ErrNoKeys
	}
	sess, closeSess, err := tpm2.PolicySession(d.tpm, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return nil, fmt.Errorf("owner policy session: %w", err)
	}
	defer func() { _ = closeSess() }()
	if _, err := (tpm2.PolicySecret{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Name: tpm2.HandleName(tpm2.TPMRHOwner), Auth: tpm2.PasswordAuth(d.cfg.OwnerAuth)},
		PolicySession: sess.Handle(), NonceTPM: sess.NonceTPM()}).Execute(d.tpm); err != nil {
		return nil, fmt.Errorf("%w: owner authorization: %w", ErrPolicy, err)
	}
	if _, err := (tpm2.PolicyOr{PolicySession: sess.Handle(), PHashList: tpm2.TPMLDigest{Digests: []tpm2.TPM2BDigest{{Buffer: branches[0]}, {Buffer: branches[1]}}}}).Execute(d.tpm); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	rsp, err := tpm2.Sign{
		KeyHandle:  tpm2.AuthHandle{Handle: ld.handle, Name: ld.name, Auth: sess},
		Digest:     tpm2.TPM2BDigest{Buffer: digest},
		InScheme:   ecdsaSHA256,
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(d.tpm)
	if err != nil {
		return nil, fmt.Errorf("sign with the owner policy: %w", err)
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, err
	}
	return asn1ECDSA(sig.SignatureR.Buffer, sig.SignatureS.Buffer)
}

// ownerPolicySigner is the policy-bound signing key as a crypto.Signer
// through the owner branch (used once, for its CSR at end of line).
type ownerPolicySigner struct {
	d     *Device
	pub   crypto.PublicKey
	fleet *ecdsa.PublicKey
	ref   []byte
}

func (s *ownerPolicySigner) Public() crypto.PublicKey { return s.pub }

func (s *ownerPolicySigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != crypto.SHA256 {
		return nil, fmt.Errorf("tpm signer: hash %v not supported, use SHA-256", opts.HashFunc())
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	return s.d.signDigestOwnerPolicy(digest, s.fleet, s.ref)
}

// SigningCSRWithOwnerPolicy returns a CSR signed by a signing key bound to
// measured boot, through its PolicySecret(owner) branch: at end of line the
// PCRs are not yet those of a released firmware, the owner authorization
// (set by the station) is what approves this one signature.
func (d *Device) SigningCSRWithOwnerPolicy(subject pkix.Name, fleet *ecdsa.PublicKey, policyRef []byte) ([]byte, error) {
	d.mu.Lock()
	ld, ok, err := d.persistedKey(d.cfg.LDevIDHandle, false)
	d.mu.Unlock()
	if err != nil || !ok {
		return nil, fmt.Errorf("signing csr: ldevid: %w", cmpErr(err, ErrNoKeys))
	}
	pub, err := ecdsaPublic(ld.public)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject, SignatureAlgorithm: x509.ECDSAWithSHA256},
		&ownerPolicySigner{d: d, pub: pub, fleet: fleet, ref: policyRef})
	if err != nil {
		return nil, fmt.Errorf("signing csr: %w", err)
	}
	return der, nil
}

func cmpErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}
