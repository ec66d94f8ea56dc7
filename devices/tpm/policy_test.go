package tpm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func signPCRPolicy(t *testing.T, fleet *ecdsa.PrivateKey, pcrs map[int][]byte, ref []byte) *SignedPCRPolicy {
	t.Helper()
	dg, sel, err := PCRDigest(pcrs)
	if err != nil {
		t.Fatal(err)
	}
	approved, err := ApprovedPCRPolicy(sel, dg)
	if err != nil {
		t.Fatal(err)
	}
	r, s, err := ecdsa.Sign(rand.Reader, fleet, ApprovalDigest(approved, ref))
	if err != nil {
		t.Fatal(err)
	}
	return &SignedPCRPolicy{PCRs: sel, PCRDigest: dg, PolicyRef: ref, FleetKey: &fleet.PublicKey, R: r, S: s}
}

// TestSigningBoundToMeasuredBoot: a code-signing key whose authPolicy is
// PolicyOR{PolicyAuthorize(fleet, ref), PolicySecret(owner)} signs only
// with a fleet-signed PCR policy matching the current PCRs: after a PCR
// extend it refuses, a newly signed policy for the new value works again,
// a policy signed by another key or for another product line is refused,
// and a password (no policy) never works.
func TestSigningBoundToMeasuredBoot(t *testing.T) {
	d, _ := newDevice(t, DefaultConfig())
	fleet, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ref := []byte("product-line-gw")
	authPolicy, err := SigningKeyAuthPolicy(&fleet.PublicKey, ref)
	if err != nil {
		t.Fatal(err)
	}
	nonce := []byte("measured-boot-nonce")
	if _, err := d.CreateKeys(nonce); err != nil {
		t.Fatal(err)
	}
	ev, err := d.CreateSigningKeyWithPolicy(nonce, authPolicy)
	if err != nil {
		t.Fatal(err)
	}
	pub := mustPublic(t, ev.LDevIDPublic)
	if string(pub.AuthPolicy.Buffer) != string(authPolicy) || pub.ObjectAttributes.UserWithAuth {
		t.Fatal("certified key does not carry the computed policy")
	}
	if _, err := d.CreateSigningKeyWithPolicy(nonce, nil); !errors.Is(err, ErrHandleInUse) {
		t.Fatalf("reuse with another policy: %v", err)
	}
	lpub := mustECDSA(t, ev.LDevIDPublic)
	// The owner branch: with the owner authorization the station set, the
	// key signs its CSR without a PCR policy.
	if err := d.ChangeOwnerAuth([]byte("owner-auth-0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	csrDER, err := d.SigningCSRWithOwnerPolicy(pkix.Name{SerialNumber: "DEV"}, &fleet.PublicKey, ref)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil || csr.CheckSignature() != nil || !lpub.Equal(csr.PublicKey) {
		t.Fatalf("CSR through the owner branch: %v", err)
	}
	d.cfg.OwnerAuth = []byte("wrong")
	if _, err := d.SigningCSRWithOwnerPolicy(pkix.Name{SerialNumber: "DEV"}, &fleet.PublicKey, ref); !errors.Is(err, ErrPolicy) {
		t.Fatalf("owner branch with a wrong owner auth: %v", err)
	}
	dg := sha256.Sum256([]byte("firmware"))
	pcrs := []int{0, 2, 4, 7}
	vals, err := d.PCRValues(pcrs)
	if err != nil {
		t.Fatal(err)
	}
	good := signPCRPolicy(t, fleet, vals, ref)
	sig, err := d.SignDigestLDevIDWithPolicy(dg[:], good)
	if err != nil || !ecdsa.VerifyASN1(lpub, dg[:], sig) {
		t.Fatalf("sign with the approved PCR policy: %v", err)
	}
	if _, err := d.SignDigestLDevID(dg[:]); err == nil {
		t.Fatal("a policy-bound key signed with a password")
	}
	if _, err := d.SignDigestLDevIDWithPolicy(dg[:], signPCRPolicy(t, other, vals, ref)); !errors.Is(err, ErrPolicy) {
		t.Fatalf("policy signed by another key: %v", err)
	}
	forged := signPCRPolicy(t, other, vals, ref)
	forged.FleetKey = &fleet.PublicKey // claims the fleet key; the TPM's VerifySignature refuses
	if _, err := d.SignDigestLDevIDWithPolicy(dg[:], forged); !errors.Is(err, ErrPolicy) || !errors.Is(err, tpm2.TPMRCSignature) {
		t.Fatalf("forged fleet signature: %v", err)
	}
	if _, err := d.SignDigestLDevIDWithPolicy(dg[:], signPCRPolicy(t, fleet, vals, []byte("other-line"))); !errors.Is(err, ErrPolicy) {
		t.Fatalf("policy for another product line: %v", err)
	}
	// Measured boot changes: extend PCR 7.
	if _, err := (tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(7), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: make([]byte, 32)}}},
	}).Execute(d.tpm); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SignDigestLDevIDWithPolicy(dg[:], good); !errors.Is(err, ErrPolicy) {
		t.Fatalf("old PCR policy after an extend: %v", err)
	}
	vals2, err := d.PCRValues(pcrs)
	if err != nil {
		t.Fatal(err)
	}
	if string(vals2[7]) == string(vals[7]) {
		t.Fatal("PCR 7 did not change")
	}
	sig, err = d.SignDigestLDevIDWithPolicy(dg[:], signPCRPolicy(t, fleet, vals2, ref))
	if err != nil || !ecdsa.VerifyASN1(lpub, dg[:], sig) {
		t.Fatalf("sign with a newly approved PCR policy: %v", err)
	}
}
