package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/smallstep/certificates/authority/provisioner"
)

// Issuance errors. Callers branch with errors.Is.
var (
	// ErrCSRInvalid: the CSR does not parse.
	ErrCSRInvalid = errors.New("ca: malformed certificate request")
	// ErrCSRSignature: the CSR's self-signature does not verify.
	ErrCSRSignature = errors.New("ca: certificate request signature invalid")
	// ErrCSRKeyType: the CSR key is not ECDSA P-256/P-384 or RSA >= 2048.
	ErrCSRKeyType = errors.New("ca: unsupported certificate request key")
	// ErrIssueRequest: the IssueRequest is incomplete or inconsistent.
	ErrIssueRequest = errors.New("ca: invalid issue request")
	// ErrNameNotPermitted: a DNS name is outside the intermediate's name constraints.
	ErrNameNotPermitted = errors.New("ca: name not permitted by the intermediate's name constraints")
)

// Backdate is subtracted from NotBefore to absorb small clock differences
// between the station and verifiers.
const Backdate = time.Minute

// MaxExactBackdate is how far in the past an exact IssueRequest.NotBefore
// may lie: compressed certificate forms store the issue date to the hour,
// so their notBefore is the start of the current hour.
const MaxExactBackdate = time.Hour + Backdate

var (
	oidExtSubjectAltName    = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidOnHardwareModuleName = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 4}
)

// IssueRequest is what the station asks the CA to certify. Every name in the
// certificate comes from here (station data: scanned labels, work order,
// device Hello), never from the CSR, which a compromised device controls.
type IssueRequest struct {
	// DeviceSerial goes into subject serialNumber (required) and, by default,
	// into the HardwareModuleName hwSerialNum.
	DeviceSerial string
	// CommonName overrides the profile's CN template.
	CommonName string
	// Names are DNS SANs; when nil the profile's dnsNames templates apply.
	Names []string
	// Validity overrides the profile validity when > 0.
	Validity time.Duration
	// Profile overrides the CA's default profile.
	Profile *Profile
	// Proof is the attestation proof the key rests on (ProofTPM,
	// ProofATECC608, ProofUnattested). It sets the certificate policy and
	// the hwType (OIDsFor); empty is treated as ProofUnattested.
	Proof string
	// HWModuleOID overrides the hwType of the HardwareModuleName SAN
	// (default: the proof's, see OIDsFor).
	HWModuleOID asn1.ObjectIdentifier
	// HWSerial overrides hwSerialNum (default: []byte(DeviceSerial)). For
	// TPMs the TCG IDevID specification suggests the EK certificate serial.
	HWSerial []byte
	// Model, Backend and WorkOrder feed profile name templates. With
	// WithStore, WorkOrder is also the quota the certificate counts against.
	Model, Backend, WorkOrder string
	// IntentID is an issue intent the caller already recorded in the store
	// (Store.BeginIssue); 0 lets the CA record it. Only used WithStore.
	IntentID int64
	// RunID ties the intent the CA records to a provisioning run.
	RunID int64

	// SerialNumber, when set, is the certificate's serial number, used as
	// given. It is for certificates that must be rebuilt byte for byte from
	// a compressed form (an ATECC608's Microchip compressed certificate
	// derives the serial from the public key and the encoded dates). It must
	// be positive and at most 20 octets (RFC 5280 4.1.2.2). A serial the
	// CA already issued fails when the certificate is recorded.
	SerialNumber *big.Int
	// NotBefore and NotAfter, when set (both or neither), are the exact
	// validity: no backdating, no rounding, and Validity must be zero. The
	// CA refuses (ErrIssueRequest) rather than change them: the period must
	// lie within the issuer's validity, and NotAfter must be in the future.
	NotBefore, NotAfter time.Time
	// ExtKeyUsages, when not empty, replaces the profile's EKUs for this
	// certificate: an 802.1AR device gets clientAuth on its IDevID and
	// codeSigning on its separate signing key (LDevID).
	ExtKeyUsages []x509.ExtKeyUsage
	// ExtraExtensions are added as given: data the station attests about
	// the key (e.g. a signing key's measured-boot policy). Extensions in the
	// X.509 arc 2.5.29 are the CA's own and are refused.
	ExtraExtensions []pkix.Extension
}

// ekusFor is the request's EKU override or the profile's EKUs.
func ekusFor(req IssueRequest, prof *Profile) []x509.ExtKeyUsage {
	if len(req.ExtKeyUsages) > 0 {
		return req.ExtKeyUsages
	}
	return prof.ekus
}

// hardwareModuleName is RFC 4108 HardwareModuleName.
type hardwareModuleName struct {
	HWType      asn1.ObjectIdentifier
	HWSerialNum []byte
}

// HardwareModuleName is a decoded RFC 4108 HardwareModuleName SAN entry.
type HardwareModuleName struct {
	Type   asn1.ObjectIdentifier
	Serial []byte
}

// Issue signs a device certificate for csrDER through the embedded
// authority and returns the leaf followed by the issuer chain.
//
// The CSR only contributes its (checked) public key: subject, SANs and
// extensions are built from req and the profile. The certificate gets an
// explicit validity, KeyUsage digitalSignature, the profile's EKUs
// (default codeSigning + clientAuth), a SAN with the DNS names and an RFC
// 4108 HardwareModuleName otherName, AKI/SKI and optional CRL distribution
// points. The intermediate's name constraints are enforced.
func (c *CA) Issue(ctx context.Context, csrDER []byte, req IssueRequest) ([]*x509.Certificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("issue: %w", err)
	}
	if _, _, err := c.currentSigner(); err != nil {
		return nil, fmt.Errorf("issue: %w", err)
	}
	// The CSR signature is verified by smallstep's Sign (unconditionally, as
	// its first step); verifying it here too would cost a third ECDSA
	// verification per certificate. On a signing failure we classify below.
	csr, err := parseCSR(csrDER, false)
	if err != nil {
		return nil, fmt.Errorf("issue for %q: %w", req.DeviceSerial, err)
	}
	tmpl, err := c.template(csr, req)
	if err != nil {
		return nil, fmt.Errorf("issue for %q: %w", req.DeviceSerial, err)
	}
	// The modifier replaces everything smallstep copied from the CSR
	// (subject, SANs, requested extensions) with our template; only the
	// public key survives.
	//
	// With a Store it also takes the intent (Store.BeginIssue: quota,
	// key-to-device binding) before anything is signed; a refusal aborts
	// Sign, so the CA never signs beyond a work order's quantity or for a
	// key bound to another device. It runs after smallstep verified the
	// CSR's signature, so a forged CSR never reserves a key or a quota
	// unit. The authority then records the certificate through
	// StoreCertificateChain (Store.CompleteIssue) before Sign returns it.
	// (Running BeginIssue concurrently with the signature was measured:
	// no gain within noise, and it would sign certificates it then drops.)
	var (
		pending *pendingIssue
		done    func() bool
	)
	mod := provisioner.CertificateModifierFunc(func(leaf *x509.Certificate, _ provisioner.SignOptions) error {
		pub, alg := leaf.PublicKey, leaf.PublicKeyAlgorithm
		*leaf = *tmpl
		leaf.PublicKey, leaf.PublicKeyAlgorithm = pub, alg
		if c.adb == nil {
			return nil
		}
		pending, done = c.adb.expectIssue(ctx, csr.RawSubjectPublicKeyInfo, req.DeviceSerial)
		if req.IntentID != 0 {
			pending.resolve(req.IntentID, nil, nil)
			return nil
		}
		pending.resolve(c.store.BeginIssue(ctx, IssueIntent{
			DeviceSerial: req.DeviceSerial, KeyPublicDER: csr.RawSubjectPublicKeyInfo,
			WorkOrder: req.WorkOrder, RunID: req.RunID, Proof: req.Proof,
		}))
		switch {
		case pending.err != nil:
			return pending.err
		case pending.existing != nil:
			return errReDeliver
		}
		return nil
	})
	chain, err := c.auth.SignWithContext(ctx, csr, provisioner.SignOptions{}, mod)
	recorded := false
	if pending != nil {
		pending.wait()
		recorded = done()
	}
	switch {
	case pending != nil && pending.existing != nil:
		// This device's key already has a live certificate: re-deliver it.
		return pending.existing, nil
	case pending != nil && pending.err != nil:
		return nil, fmt.Errorf("issue for %q: %w", req.DeviceSerial, pending.err)
	case err != nil:
		if serr := csr.CheckSignature(); serr != nil {
			return nil, fmt.Errorf("issue for %q: %w: %w", req.DeviceSerial, ErrCSRSignature, serr)
		}
		return nil, fmt.Errorf("issue for %q: sign: %w", req.DeviceSerial, err)
	case c.adb != nil && !recorded:
		return nil, fmt.Errorf("issue for %q: certificate %x was not recorded in the station database", req.DeviceSerial, chain[0].SerialNumber)
	}
	return chain, nil
}

// errReDeliver aborts smallstep's Sign when the store already holds a live
// certificate for the key.
var errReDeliver = errors.New("ca: certificate exists, re-deliver")

// CheckCSR parses a DER CSR, verifies its signature and its key type
// (ECDSA P-256/P-384 or RSA >= 2048 bits).
func CheckCSR(csrDER []byte) (*x509.CertificateRequest, error) {
	return parseCSR(csrDER, true)
}

func parseCSR(csrDER []byte, verify bool) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCSRInvalid, err)
	}
	if verify {
		if err := csr.CheckSignature(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCSRSignature, err)
		}
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("%w: ECDSA curve %s (want P-256 or P-384)", ErrCSRKeyType, k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("%w: RSA %d bits (want >= 2048)", ErrCSRKeyType, k.N.BitLen())
		}
	default:
		return nil, fmt.Errorf("%w: %T", ErrCSRKeyType, csr.PublicKey)
	}
	return csr, nil
}

func (c *CA) template(csr *x509.CertificateRequest, req IssueRequest) (*x509.Certificate, error) {
	if strings.TrimSpace(req.DeviceSerial) == "" {
		return nil, fmt.Errorf("%w: device serial is empty", ErrIssueRequest)
	}
	for _, e := range req.ExtraExtensions {
		if len(e.Id) >= 3 && e.Id[0] == 2 && e.Id[1] == 5 && e.Id[2] == 29 {
			return nil, fmt.Errorf("%w: extension %v is the CA's to set", ErrIssueRequest, e.Id)
		}
	}
	c.mu.RLock()
	issuer := c.issuerChain[0]
	prof := c.profile
	c.mu.RUnlock()
	if req.Profile != nil {
		prof = req.Profile
	}
	if err := prof.ready(); err != nil {
		return nil, err
	}
	cn, dns, err := prof.Names(NameData{Serial: req.DeviceSerial, Model: req.Model, Backend: req.Backend, WorkOrder: req.WorkOrder})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIssueRequest, err)
	}
	if req.CommonName != "" {
		cn = req.CommonName
	}
	if req.Names != nil {
		dns = req.Names
	}
	for _, n := range dns {
		if err := checkDNSName(n); err != nil {
			return nil, err
		}
		// smallstep's constraint engine also checks this, but it is built
		// from the chain at Open; after a hot swap the current issuer rules.
		if !permitted(n, issuer) {
			return nil, fmt.Errorf("%w: %q", ErrNameNotPermitted, n)
		}
	}
	notBefore, notAfter, err := c.validity(req, prof, issuer)
	if err != nil {
		return nil, err
	}
	serial, err := checkSerial(req.SerialNumber)
	if err != nil {
		return nil, err
	}
	oids, err := OIDsFor(req.Proof, prof.oidArc, prof.hwOID)
	if err != nil {
		return nil, err
	}
	policy, err := x509.OIDFromASN1OID(oids.Policy)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate policy %s: %w", ErrProfile, oids.Policy, err)
	}
	hwType := oids.HWType
	if len(req.HWModuleOID) > 0 {
		hwType = req.HWModuleOID
	}
	hwSerial := req.HWSerial
	if len(hwSerial) == 0 {
		hwSerial = []byte(req.DeviceSerial)
	}
	san, err := marshalSAN(dns, &hardwareModuleName{HWType: hwType, HWSerialNum: hwSerial})
	if err != nil {
		return nil, err
	}
	subj := pkix.Name{CommonName: cn, SerialNumber: req.DeviceSerial}
	if prof.Organization != "" {
		subj.Organization = []string{prof.Organization}
	}
	return &x509.Certificate{
		// nil: smallstep draws a random serial.
		SerialNumber:          serial,
		Subject:               subj,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           append([]x509.ExtKeyUsage(nil), ekusFor(req, prof)...),
		BasicConstraintsValid: true,
		IsCA:                  false,
		// DNSNames is kept for smallstep's name-constraint engine; the
		// encoded SAN comes from ExtraExtensions (Go then skips its own).
		DNSNames:              dns,
		ExtraExtensions:       append([]pkix.Extension{san}, req.ExtraExtensions...),
		CRLDistributionPoints: append([]string(nil), prof.CRLDistributionPoints...),
		// Both spellings: crypto/x509 encodes Policies by default
		// (x509usepolicies) and PolicyIdentifiers when that is turned off.
		PolicyIdentifiers:  []asn1.ObjectIdentifier{oids.Policy},
		Policies:           []x509.OID{policy},
		PublicKey:          csr.PublicKey,
		PublicKeyAlgorithm: csr.PublicKeyAlgorithm,
	}, nil
}

// validity returns the certificate's period. Without exact dates in req it
// is now-Backdate .. the end the request or profile asks for: now+validity,
// the issuer's notAfter (until-issuer-expiry) or 99991231235959Z (802.1AR
// notAfter). An end after the issuer's is refused, never shortened (the
// 802.1AR value excepted: it means "no well-defined expiration", and the
// device's trust then ends with its issuer's). Exact dates are used as given
// or refused, never adjusted: a certificate rebuilt from a compressed form
// must carry exactly the dates its compressed form encodes.
func (c *CA) validity(req IssueRequest, prof *Profile, issuer *x509.Certificate) (notBefore, notAfter time.Time, err error) {
	now := c.now().UTC().Truncate(time.Second)
	if req.NotBefore.IsZero() != req.NotAfter.IsZero() {
		return notBefore, notAfter, fmt.Errorf("%w: give both NotBefore and NotAfter, or neither", ErrIssueRequest)
	}
	if !req.NotBefore.IsZero() {
		notBefore, notAfter = req.NotBefore.UTC(), req.NotAfter.UTC()
		switch {
		case req.Validity != 0:
			return notBefore, notAfter, fmt.Errorf("%w: exact NotBefore/NotAfter and a Validity were both given", ErrIssueRequest)
		case !notAfter.After(notBefore):
			return notBefore, notAfter, fmt.Errorf("%w: NotAfter %s is not after NotBefore %s", ErrIssueRequest, notAfter.Format(time.RFC3339), notBefore.Format(time.RFC3339))
		case notBefore.Before(now.Add(-MaxExactBackdate)):
			// Backdating is how a signer makes a certificate look older than
			// it is; only the hour truncation of compressed forms is allowed.
			// (A notBefore before the issuer's own is not refused: path
			// validation checks each certificate at verification time, and
			// within a new intermediate's first hour it is unavoidable.)
			return notBefore, notAfter, fmt.Errorf("%w: NotBefore %s lies more than %s in the past", ErrIssueRequest, notBefore.Format(time.RFC3339), MaxExactBackdate)
		case notAfter.After(issuer.NotAfter):
			return notBefore, notAfter, fmt.Errorf("%w: NotAfter %s is after the issuer's notAfter %s (a certificate must not outlive its issuer; the dates are not shortened because they are given exactly)",
				ErrIssueRequest, notAfter.Format(time.RFC3339), issuer.NotAfter.UTC().Format(time.RFC3339))
		case !notAfter.After(now):
			return notBefore, notAfter, fmt.Errorf("%w: NotAfter %s is in the past", ErrIssueRequest, notAfter.Format(time.RFC3339))
		}
		return notBefore, notAfter, nil
	}
	notBefore = now.Add(-Backdate)
	switch {
	case req.Validity > 0:
		notAfter = now.Add(req.Validity)
	case prof.NotAfter == NoWellDefinedExpiry:
		notAfter = noExpiryTime
	case prof.Validity == ValidityUntilIssuerExpiry:
		notAfter = issuer.NotAfter
	case prof.Validity > 0:
		notAfter = now.Add(time.Duration(prof.Validity))
	default:
		return notBefore, notAfter, fmt.Errorf("%w: validity must be > 0", ErrIssueRequest)
	}
	if notAfter.After(issuer.NotAfter) && notAfter != noExpiryTime {
		return notBefore, notAfter, fmt.Errorf("%w: the certificate would end %s, after the intermediate %q (%s): rotate the intermediate or change the profile's validity: %w",
			ErrIssueRequest, notAfter.Format(time.DateOnly), issuer.Subject.CommonName, issuer.NotAfter.Format(time.DateOnly), ErrValidity)
	}
	if !notAfter.After(notBefore) {
		return notBefore, notAfter, fmt.Errorf("%w: issuer expired or validity too short", ErrIssueRequest)
	}
	return notBefore, notAfter, nil
}

// checkSerial validates a caller-given serial number (nil: none given).
func checkSerial(sn *big.Int) (*big.Int, error) {
	if sn == nil {
		return nil, nil
	}
	if sn.Sign() <= 0 {
		return nil, fmt.Errorf("%w: serial number must be positive", ErrIssueRequest)
	}
	// RFC 5280: at most 20 octets in DER, whose INTEGER adds a leading zero
	// octet when the top bit is set.
	if n := (sn.BitLen() + 8) / 8; n > 20 {
		return nil, fmt.Errorf("%w: serial number of %d octets (at most 20)", ErrIssueRequest, n)
	}
	return new(big.Int).Set(sn), nil
}

// permitted applies RFC 5280 dNSName constraints: n equals a permitted
// domain or is below it ("host.devices.example" under "devices.example").
func permitted(n string, issuer *x509.Certificate) bool {
	n = strings.ToLower(n)
	for _, ex := range issuer.ExcludedDNSDomains {
		if matchDomain(n, strings.ToLower(ex)) {
			return false
		}
	}
	if len(issuer.PermittedDNSDomains) == 0 {
		return true
	}
	for _, d := range issuer.PermittedDNSDomains {
		if matchDomain(n, strings.ToLower(d)) {
			return true
		}
	}
	return false
}

func matchDomain(n, d string) bool {
	d = strings.TrimPrefix(d, ".")
	return n == d || strings.HasSuffix(n, "."+d)
}

func checkDNSName(n string) error {
	if n == "" || len(n) > 253 {
		return fmt.Errorf("%w: bad DNS name %q", ErrIssueRequest, n)
	}
	for _, r := range n {
		if !(r == '-' || r == '.' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return fmt.Errorf("%w: bad DNS name %q", ErrIssueRequest, n)
		}
	}
	return nil
}

// marshalSAN encodes GeneralNames with dNSName entries and one otherName
// HardwareModuleName (RFC 4108), which crypto/x509 cannot emit itself.
func marshalSAN(dns []string, hw *hardwareModuleName) (pkix.Extension, error) {
	var names []asn1.RawValue
	for _, n := range dns {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(n)})
	}
	if hw != nil {
		inner, err := asn1.Marshal(*hw)
		if err != nil {
			return pkix.Extension{}, fmt.Errorf("encode HardwareModuleName: %w", err)
		}
		typeID, err := asn1.Marshal(oidOnHardwareModuleName)
		if err != nil {
			return pkix.Extension{}, fmt.Errorf("encode HardwareModuleName: %w", err)
		}
		value, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner})
		if err != nil {
			return pkix.Extension{}, fmt.Errorf("encode HardwareModuleName: %w", err)
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(typeID, value...)})
	}
	b, err := asn1.Marshal(names)
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("encode subjectAltName: %w", err)
	}
	return pkix.Extension{Id: oidExtSubjectAltName, Value: b}, nil
}

// HardwareModuleNames extracts the RFC 4108 HardwareModuleName entries from
// a certificate's SAN extension.
func HardwareModuleNames(cert *x509.Certificate) ([]HardwareModuleName, error) {
	var out []HardwareModuleName
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidExtSubjectAltName) {
			continue
		}
		var names []asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &names); err != nil || len(rest) > 0 {
			return nil, fmt.Errorf("parse subjectAltName: malformed")
		}
		for _, n := range names {
			if n.Class != asn1.ClassContextSpecific || n.Tag != 0 {
				continue
			}
			var typeID asn1.ObjectIdentifier
			rest, err := asn1.Unmarshal(n.Bytes, &typeID)
			if err != nil || !typeID.Equal(oidOnHardwareModuleName) {
				continue
			}
			var val asn1.RawValue
			if _, err := asn1.Unmarshal(rest, &val); err != nil {
				return nil, fmt.Errorf("parse HardwareModuleName: %w", err)
			}
			var hw hardwareModuleName
			if _, err := asn1.Unmarshal(val.Bytes, &hw); err != nil {
				return nil, fmt.Errorf("parse HardwareModuleName: %w", err)
			}
			out = append(out, HardwareModuleName{Type: hw.HWType, Serial: hw.HWSerialNum})
		}
	}
	return out, nil
}

// Profile returns the CA's default device certificate profile (the one an
// IssueRequest without a Profile gets).
func (c *CA) Profile() *Profile {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.profile
}
