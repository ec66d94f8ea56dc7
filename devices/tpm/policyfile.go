package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
)

// PCRPolicyFormat names the signed PCR policy file format.
const PCRPolicyFormat = "wsc-pcr-policy/1"

// pcrPolicyFile is the JSON form of a SignedPCRPolicy (`wsc policy sign`
// writes it, `wsc-agent sign --policy` reads it).
type pcrPolicyFile struct {
	Format    string `json:"format"`
	PCRs      []int  `json:"pcrs"`
	PCRDigest string `json:"pcr_digest"` // hex, SHA-256 over the PCR values
	PolicyRef string `json:"policy_ref"` // the product line, as text
	FleetKey  []byte `json:"fleet_key"`  // PKIX DER (base64 in JSON)
	Signature []byte `json:"signature"`  // ASN.1 ECDSA over ApprovalDigest (base64)
}

// MarshalSignedPCRPolicy encodes p as JSON.
func MarshalSignedPCRPolicy(p *SignedPCRPolicy) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(p.FleetKey)
	if err != nil {
		return nil, fmt.Errorf("%w: fleet key: %v", ErrPolicy, err)
	}
	sig, err := asn1.Marshal(struct{ R, S *big.Int }{p.R, p.S})
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrPolicy, err)
	}
	return json.MarshalIndent(pcrPolicyFile{Format: PCRPolicyFormat, PCRs: p.PCRs, PCRDigest: hex.EncodeToString(p.PCRDigest),
		PolicyRef: string(p.PolicyRef), FleetKey: der, Signature: sig}, "", "  ")
}

// ParseSignedPCRPolicy decodes a policy file strictly. The signature is
// not checked here: the TPM checks it (TPM2_VerifySignature) before it
// honours the policy.
func ParseSignedPCRPolicy(b []byte) (*SignedPCRPolicy, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f pcrPolicyFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: policy file: %v", ErrPolicy, err)
	}
	if f.Format != PCRPolicyFormat {
		return nil, fmt.Errorf("%w: policy file format %q, want %q", ErrPolicy, f.Format, PCRPolicyFormat)
	}
	if _, err := pcrSelection(f.PCRs); err != nil || !slices.IsSorted(f.PCRs) || len(slices.Compact(slices.Clone(f.PCRs))) != len(f.PCRs) {
		return nil, fmt.Errorf("%w: policy file: PCRs must be distinct, ascending, 0..23", ErrPolicy)
	}
	dg, err := hex.DecodeString(f.PCRDigest)
	if err != nil || len(dg) != 32 {
		return nil, fmt.Errorf("%w: policy file: pcr_digest must be 32 bytes of hex", ErrPolicy)
	}
	if len(f.PolicyRef) > 32 {
		return nil, fmt.Errorf("%w: policy file: policy_ref longer than 32 bytes", ErrPolicy)
	}
	k, err := x509.ParsePKIXPublicKey(f.FleetKey)
	if err != nil {
		return nil, fmt.Errorf("%w: policy file: fleet key: %v", ErrPolicy, err)
	}
	fk, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: policy file: fleet key is not ECDSA", ErrPolicy)
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(f.Signature, &rs); err != nil || len(rest) != 0 || rs.R == nil || rs.S == nil || rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.BitLen() > 256 || rs.S.BitLen() > 256 {
		return nil, fmt.Errorf("%w: policy file: signature is not an ECDSA P-256 signature", ErrPolicy)
	}
	return &SignedPCRPolicy{PCRs: f.PCRs, PCRDigest: dg, PolicyRef: []byte(f.PolicyRef), FleetKey: fk, R: rs.R, S: rs.S}, nil
}

// SignPCRPolicy builds and signs a PCR policy with the fleet key: values
// are the expected SHA-256 PCR values, policyRef the product line.
func SignPCRPolicy(sign func(digest []byte) ([]byte, error), fleet *ecdsa.PublicKey, values map[int][]byte, policyRef []byte) (*SignedPCRPolicy, error) {
	dg, pcrs, err := PCRDigest(values)
	if err != nil {
		return nil, err
	}
	approved, err := ApprovedPCRPolicy(pcrs, dg)
	if err != nil {
		return nil, err
	}
	ah := ApprovalDigest(approved, policyRef)
	der, err := sign(ah)
	if err != nil {
		return nil, fmt.Errorf("sign PCR policy: %w", err)
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &rs); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: the fleet key returned a signature that is not ASN.1 ECDSA", ErrPolicy)
	}
	if !ecdsa.Verify(fleet, ah, rs.R, rs.S) {
		return nil, fmt.Errorf("%w: the fleet key's signature does not verify", ErrPolicy)
	}
	return &SignedPCRPolicy{PCRs: pcrs, PCRDigest: dg, PolicyRef: policyRef, FleetKey: fleet, R: rs.R, S: rs.S}, nil
}
