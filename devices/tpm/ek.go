package tpm

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// EK kinds, as reported by EKs and in proto.GetEKResponse.EKKind.
const (
	EKKindRSA2048 = "rsa2048"
	EKKindECCP256 = "ecc-p256"
	EKKindECCP384 = "ecc-p384"
)

// EK is one endorsement key of the TPM.
type EK struct {
	// Kind is EKKindRSA2048, EKKindECCP256 or EKKindECCP384.
	Kind string
	// Public is the marshalled TPM2B_PUBLIC of the EK.
	Public []byte
	// Cert is the EK certificate (DER, NV padding trimmed); nil if the TPM
	// holds none for this kind.
	Cert []byte
	// CertIndex is the NV index the certificate was read from.
	CertIndex uint32
	// Handle is the persistent handle of the EK, or 0 when the EK is
	// recreated from its TCG template whenever it is needed.
	Handle uint32
}

// ekSpec ties a kind to its TCG certificate index, customary persistent
// handle and template (TCG EK Credential Profile 2.x: L-1, L-2, H-3).
type ekSpec struct {
	kind     string
	certNV   uint32
	persist  uint32
	template tpm2.TPMTPublic
	rsa      bool
}

// ekSpecs is in order of preference: ECC first (the station-side
// attestation target is measured with an ECC EK), then RSA.
var ekSpecs = []ekSpec{
	{kind: EKKindECCP256, certNV: 0x01c0000a, persist: 0x81010002, template: tpm2.ECCEKTemplate},
	{kind: EKKindECCP384, certNV: 0x01c00016, persist: 0x81010016, template: eccP384EKTemplate},
	{kind: EKKindRSA2048, certNV: 0x01c00002, persist: 0x81010001, template: tpm2.RSAEKTemplate, rsa: true},
}

// policyBSHA384 is PolicyOR(PolicyA, PolicyC) over SHA-384 from the TCG EK
// Credential Profile (high-range templates).
var policyBSHA384 = []byte{
	0xB2, 0x6E, 0x7D, 0x28, 0xD1, 0x1A, 0x50, 0xBC, 0x53, 0xD8, 0x82, 0xBC,
	0xF5, 0xFD, 0x3A, 0x1A, 0x07, 0x41, 0x48, 0xBB, 0x35, 0xD3, 0xB4, 0xE4,
	0xCB, 0x1C, 0x0A, 0xD9, 0xBD, 0xE4, 0x19, 0xCA, 0xCB, 0x47, 0xBA, 0x09,
	0x69, 0x96, 0x46, 0x15, 0x0F, 0x9F, 0xC0, 0x00, 0xF3, 0xF8, 0x0E, 0x12,
}

// eccP384EKTemplate is TCG template H-3 (ECC NIST P-384, SHA-384,
// AES-256-CFB, userWithAuth with PolicyB, empty unique), the template swtpm
// uses for the EK certified at NV 0x01c00016.
var eccP384EKTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA384,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		AdminWithPolicy:     true,
		Restricted:          true,
		Decrypt:             true,
	},
	AuthPolicy: tpm2.TPM2BDigest{Buffer: policyBSHA384},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Symmetric: tpm2.TPMTSymDefObject{
			Algorithm: tpm2.TPMAlgAES,
			KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(256)),
			Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
		},
		Scheme:  tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
		CurveID: tpm2.TPMECCNistP384,
		KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// EKs returns every endorsement key the TPM has a certificate or a
// persistent handle for, ECC before RSA. An EK with a certificate but no
// persistent handle is recreated from its template (a key generation: slow
// on real chips for RSA) to read its public area; the result is cached.
func (d *Device) EKs() ([]EK, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, err
	}
	return d.loadEKs()
}

func (d *Device) loadEKs() ([]EK, error) {
	if d.eks != nil {
		return d.eks, nil
	}
	var out []EK
	for _, s := range ekSpecs {
		ek, ok, err := d.readEK(s)
		if err != nil {
			return nil, fmt.Errorf("read ek %s: %w", s.kind, err)
		}
		if ok {
			out = append(out, ek)
		}
	}
	d.eks = out
	return out, nil
}

// EK returns the preferred endorsement key: Config.EKKind if set, else the
// first of EKs that has a certificate (ECC preferred), else the first EK.
func (d *Device) EK() (ekPublic, ekCert []byte, kind string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, nil, "", err
	}
	ek, err := d.preferredEK(d.cfg.EKKind)
	if err != nil {
		return nil, nil, "", err
	}
	return ek.Public, ek.Cert, ek.Kind, nil
}

func (d *Device) preferredEK(kind string) (*EK, error) {
	eks, err := d.loadEKs()
	if err != nil {
		return nil, err
	}
	if kind != "" {
		for i := range eks {
			if eks[i].Kind == kind {
				return &eks[i], nil
			}
		}
		return nil, fmt.Errorf("ek %s: %w", kind, ErrNoEK)
	}
	for i := range eks {
		if eks[i].Cert != nil {
			return &eks[i], nil
		}
	}
	if len(eks) > 0 {
		return &eks[0], nil
	}
	return nil, ErrNoEK
}

func (d *Device) readEK(s ekSpec) (EK, bool, error) {
	cert, err := d.readNVWhole(s.certNV)
	if err != nil && !errors.Is(err, errNVAbsent) {
		return EK{}, false, fmt.Errorf("read ek certificate %#x: %w", s.certNV, err)
	}
	var certKey crypto.PublicKey
	if cert != nil {
		cert, err = trimDER(cert)
		if err != nil {
			return EK{}, false, fmt.Errorf("ek certificate %#x: %w", s.certNV, err)
		}
		c, err := x509.ParseCertificate(cert)
		if err != nil {
			return EK{}, false, fmt.Errorf("parse ek certificate %#x: %w", s.certNV, err)
		}
		certKey = c.PublicKey
	}
	// A persistent EK is used if it is of the right kind and matches the
	// certificate.
	if rp, found, err := d.readPublic(tpm2.TPMHandle(s.persist)); err != nil {
		return EK{}, false, err
	} else if found {
		pub, err := rp.OutPublic.Contents()
		if err == nil && sameKind(pub, &s.template) && (certKey == nil || keyMatches(pub, certKey)) {
			return EK{Kind: s.kind, Public: tpm2.Marshal(rp.OutPublic), Cert: cert, CertIndex: certIndex(cert, s.certNV), Handle: s.persist}, true, nil
		}
	}
	if cert == nil {
		return EK{}, false, nil
	}
	h, pub2b, err := d.createEK(s)
	if err != nil {
		return EK{}, false, err
	}
	d.flush(h)
	pub, err := pub2b.Contents()
	if err != nil {
		return EK{}, false, fmt.Errorf("ek public: %w", err)
	}
	if !keyMatches(pub, certKey) {
		return EK{}, false, fmt.Errorf("ek from template %s does not match its certificate", s.kind)
	}
	return EK{Kind: s.kind, Public: tpm2.Marshal(pub2b), Cert: cert, CertIndex: s.certNV}, true, nil
}

func certIndex(cert []byte, idx uint32) uint32 {
	if cert == nil {
		return 0
	}
	return idx
}

// createEK recreates an EK from its template (transient; caller flushes).
func (d *Device) createEK(s ekSpec) (tpm2.TPMHandle, tpm2.TPM2BPublic, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: d.endorsementAuth(),
		InPublic:      tpm2.New2B(s.template),
	}.Execute(d.tpm)
	if err != nil {
		return 0, tpm2.TPM2BPublic{}, fmt.Errorf("create ek %s from template: %w", s.kind, err)
	}
	return rsp.ObjectHandle, rsp.OutPublic, nil
}

func sameKind(pub, tmpl *tpm2.TPMTPublic) bool {
	if pub.Type != tmpl.Type || pub.NameAlg != tmpl.NameAlg || !pub.ObjectAttributes.Restricted || !pub.ObjectAttributes.Decrypt {
		return false
	}
	if pub.Type == tpm2.TPMAlgECC {
		a, err1 := pub.Parameters.ECCDetail()
		b, err2 := tmpl.Parameters.ECCDetail()
		return err1 == nil && err2 == nil && a.CurveID == b.CurveID
	}
	a, err1 := pub.Parameters.RSADetail()
	b, err2 := tmpl.Parameters.RSADetail()
	return err1 == nil && err2 == nil && a.KeyBits == b.KeyBits
}

func keyMatches(pub *tpm2.TPMTPublic, key crypto.PublicKey) bool {
	k, err := tpm2.Pub(*pub)
	if err != nil {
		return false
	}
	e, ok := k.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(key)
}

// trimDER cuts NV padding after the certificate's outer SEQUENCE.
func trimDER(b []byte) ([]byte, error) {
	s := cryptobyte.String(b)
	var elem cryptobyte.String
	if !s.ReadASN1Element(&elem, cbasn1.SEQUENCE) {
		return nil, errors.New("not a DER certificate")
	}
	return []byte(elem), nil
}
