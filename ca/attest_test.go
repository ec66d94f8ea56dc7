package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"
	"sort"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

const (
	ekRSAHandle  = 0x81010001
	ekECCHandle  = 0x81010016
	ekRSACertNV  = 0x01c00002
	ekECCCertNV  = 0x01c00016
	testNonceLen = 32
)

type tpmKey struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	pub    []byte // TPM2B_PUBLIC
}

type tpmFixture struct {
	tpm           transport.TPM
	vendor        *vendorCA
	roots, inters *x509.CertPool
	ekECC, ekRSA  tpmKey
	ekECCCert     []byte
	ekRSACert     []byte
}

func newTPMFixture(t testing.TB) *tpmFixture {
	t.Helper()
	v := newVendorCA(t)
	tpm := startSwtpm(t, v)
	f := &tpmFixture{tpm: tpm, vendor: v, roots: x509.NewCertPool(), inters: x509.NewCertPool()}
	if !f.roots.AppendCertsFromPEM(v.roots(t)) || !f.inters.AppendCertsFromPEM(v.intermediate(t)) {
		t.Fatal("vendor CA PEM")
	}
	f.ekECC = f.readPublic(t, ekECCHandle)
	f.ekRSA = f.readPublic(t, ekRSAHandle)
	f.ekECCCert = nvReadAll(t, tpm, ekECCCertNV)
	f.ekRSACert = nvReadAll(t, tpm, ekRSACertNV)
	return f
}

func (f *tpmFixture) readPublic(t testing.TB, h tpm2.TPMHandle) tpmKey {
	t.Helper()
	rp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(f.tpm)
	if err != nil {
		t.Fatalf("ReadPublic %#x: %v", h, err)
	}
	return tpmKey{handle: h, name: rp.Name, pub: tpm2.Marshal(rp.OutPublic)}
}

func eccSignTemplate(attrs tpm2.TPMAObject, restricted bool) tpm2.TPMTPublic {
	attrs.Restricted = restricted
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

var deviceKeyAttrs = tpm2.TPMAObject{
	FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true, SignEncrypt: true,
}

// createPrimary creates a transient primary key in the owner hierarchy;
// label makes templates (and so keys) distinct.
func (f *tpmFixture) createPrimary(t testing.TB, tmpl tpm2.TPMTPublic, label string) tpmKey {
	t.Helper()
	ecc, _ := tmpl.Unique.ECC()
	if ecc != nil {
		ecc.X.Buffer = []byte(label)
	}
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tmpl)}.Execute(f.tpm)
	if err != nil {
		t.Fatalf("CreatePrimary %s: %v", label, err)
	}
	k := tpmKey{handle: rsp.ObjectHandle, name: rsp.Name, pub: tpm2.Marshal(rsp.OutPublic)}
	t.Cleanup(func() { f.flush(k) })
	return k
}

func (f *tpmFixture) flush(k tpmKey) {
	tpm2.FlushContext{FlushHandle: k.handle}.Execute(f.tpm)
}

func (f *tpmFixture) certify(t testing.TB, obj, iak tpmKey, nonce []byte) (info, sig []byte) {
	t.Helper()
	rsp, err := tpm2.Certify{
		ObjectHandle:   tpm2.AuthHandle{Handle: obj.handle, Name: obj.name, Auth: tpm2.PasswordAuth(nil)},
		SignHandle:     tpm2.AuthHandle{Handle: iak.handle, Name: iak.name, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
	}.Execute(f.tpm)
	if err != nil {
		t.Fatalf("Certify: %v", err)
	}
	return tpm2.Marshal(rsp.CertifyInfo), tpm2.Marshal(rsp.Signature)
}

// tpmSigner signs digests with an unrestricted TPM key (NULL ticket).
type tpmSigner struct {
	f   *tpmFixture
	key tpmKey
	pub crypto.PublicKey
}

func (s *tpmSigner) Public() crypto.PublicKey { return s.pub }

func (s *tpmSigner) Sign(_ io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	rsp, err := tpm2.Sign{
		KeyHandle:  tpm2.AuthHandle{Handle: s.key.handle, Name: s.key.name, Auth: tpm2.PasswordAuth(nil)},
		Digest:     tpm2.TPM2BDigest{Buffer: digest},
		InScheme:   tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256})},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(s.f.tpm)
	if err != nil {
		return nil, err
	}
	es, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(es.SignatureR.Buffer), new(big.Int).SetBytes(es.SignatureS.Buffer)})
}

func (f *tpmFixture) csr(t testing.TB, k tpmKey) []byte {
	t.Helper()
	p, err := ParseTPMPublic(k.pub)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}, &tpmSigner{f: f, key: k, pub: p.Key})
	if err != nil {
		t.Fatalf("CSR: %v", err)
	}
	return der
}

// activate runs TPM2_ActivateCredential with ek (policy: PolicySecret(endorsement)).
func (f *tpmFixture) activate(t testing.TB, ek, iak tpmKey, blob, enc []byte) ([]byte, error) {
	t.Helper()
	ekPub, err := ParseTPMPublic(ek.pub)
	if err != nil {
		t.Fatal(err)
	}
	policy := func(tp transport.TPM, handle tpm2.TPMISHPolicy, nonceTPM tpm2.TPM2BNonce) error {
		_, err := tpm2.PolicySecret{AuthHandle: tpm2.TPMRHEndorsement, PolicySession: handle, NonceTPM: nonceTPM}.Execute(tp)
		return err
	}
	// Low-range EK templates (RSA here) need PolicySecret(endorsement);
	// swtpm's P-384 EK uses a high-range template with userWithAuth SET.
	ekAuth := tpm2.Policy(ekPub.Public.NameAlg, 16, policy)
	if ekPub.Public.ObjectAttributes.UserWithAuth {
		ekAuth = tpm2.PasswordAuth(nil)
	}
	rsp, err := tpm2.ActivateCredential{
		ActivateHandle: tpm2.AuthHandle{Handle: iak.handle, Name: iak.name, Auth: tpm2.PasswordAuth(nil)},
		KeyHandle:      tpm2.AuthHandle{Handle: ek.handle, Name: ek.name, Auth: ekAuth},
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: blob},
		Secret:         tpm2.TPM2BEncryptedSecret{Buffer: enc},
	}.Execute(f.tpm)
	if err != nil {
		return nil, err
	}
	return rsp.CertInfo.Buffer, nil
}

type deviceKeys struct {
	iak, idevid tpmKey
}

func (f *tpmFixture) deviceKeys(t testing.TB) deviceKeys {
	return deviceKeys{
		iak:    f.createPrimary(t, eccSignTemplate(deviceKeyAttrs, true), "IAK"),
		idevid: f.createPrimary(t, eccSignTemplate(deviceKeyAttrs, false), "IDevID"),
	}
}

func (f *tpmFixture) evidence(t testing.TB, d deviceKeys, nonce []byte) Evidence {
	info, sig := f.certify(t, d.idevid, d.iak, nonce)
	return Evidence{
		EKPublic: f.ekECC.pub, EKCert: f.ekECCCert,
		IAKPublic: d.iak.pub, IDevIDPublic: d.idevid.pub,
		CertifyInfo: info, CertifySignature: sig,
		CSR:   f.csr(t, d.idevid),
		Nonce: nonce,
	}
}

func nonce(t testing.TB) []byte {
	n, err := NewSecret(testNonceLen)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// rogueEKCert issues an EK-style certificate for pub from a CA the station does not trust.
func rogueEKCert(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rogue TPM vendor"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	rootDER, _ := x509.CreateCertificate(rand.Reader, root, root, &key.PublicKey, key)
	root, _ = x509.ParseCertificate(rootDER)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageKeyEncipherment}, root, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestAttestationSwtpm(t *testing.T) {
	f := newTPMFixture(t)
	d := f.deviceKeys(t)
	n := nonce(t)
	ev := f.evidence(t, d, n)

	t.Run("EK chains ECC and RSA", func(t *testing.T) {
		if err := VerifyEK(f.ekECCCert, f.ekECC.pub, f.roots, f.inters); err != nil {
			t.Fatalf("ECC EK: %v", err)
		}
		if err := VerifyEK(f.ekRSACert, f.ekRSA.pub, f.roots, f.inters); err != nil {
			t.Fatalf("RSA EK: %v", err)
		}
		ek, err := ParseEKCert(f.ekECCCert)
		if err != nil || ek.Manufacturer == "" || ek.Model == "" {
			t.Fatalf("EK SAN: %+v %v", ek, err)
		}
		// Without our SAN handling crypto/x509 refuses the certificate.
		raw, _ := TrimDER(f.ekECCCert)
		c, _ := x509.ParseCertificate(raw)
		if _, err := c.Verify(x509.VerifyOptions{Roots: f.roots, Intermediates: f.inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			t.Log("note: crypto/x509 accepted the EK certificate unaided")
		}
	})
	t.Run("EK untrusted vendor", func(t *testing.T) {
		other := x509.NewCertPool()
		other.AddCert(f.mustRogueRoot(t))
		if err := VerifyEK(f.ekECCCert, f.ekECC.pub, other, nil); !errors.Is(err, ErrEKUntrusted) {
			t.Fatalf("foreign roots: got %v", err)
		}
		p, _ := ParseTPMPublic(f.ekECC.pub)
		if err := VerifyEK(rogueEKCert(t, p.Key), f.ekECC.pub, f.roots, f.inters); !errors.Is(err, ErrEKUntrusted) {
			t.Fatalf("rogue-issued EK cert: got %v", err)
		}
	})
	t.Run("EK cert for another EK", func(t *testing.T) {
		if err := VerifyEK(f.ekRSACert, f.ekECC.pub, f.roots, f.inters); !errors.Is(err, ErrEKMismatch) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("certify ok", func(t *testing.T) {
		c, err := CheckCertify(ev)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.IAK.Name, d.iak.name.Buffer) || !bytes.Equal(c.IDevID.Name, d.idevid.name.Buffer) {
			t.Fatal("names differ from TPM's")
		}
	})
	t.Run("wrong nonce", func(t *testing.T) {
		e := ev
		e.Nonce = nonce(t)
		if err := VerifyCertify(e); !errors.Is(err, ErrCertifyNonce) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("certify over another key", func(t *testing.T) {
		other := f.createPrimary(t, eccSignTemplate(deviceKeyAttrs, false), "other")
		defer f.flush(other)
		info, sig := f.certify(t, other, d.iak, n)
		e := ev
		e.CertifyInfo, e.CertifySignature = info, sig
		if err := VerifyCertify(e); !errors.Is(err, ErrCertifyName) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("signature by another key", func(t *testing.T) {
		e := ev
		e.CertifyInfo = append([]byte(nil), ev.CertifyInfo...)
		e.CertifyInfo[len(e.CertifyInfo)-1] ^= 1
		if err := VerifyCertify(e); !errors.Is(err, ErrCertifySignature) {
			t.Fatalf("tampered attest: got %v", err)
		}
		e = ev
		e.IAKPublic = d.iak.pub
		// IDevID presented as IAK: attribute check fires first.
		e.IAKPublic = d.idevid.pub
		if err := VerifyCertify(e); !errors.Is(err, ErrKeyAttributes) {
			t.Fatalf("IDevID as IAK: got %v", err)
		}
	})
	t.Run("bad magic", func(t *testing.T) {
		e := ev
		e.CertifyInfo = append([]byte(nil), ev.CertifyInfo...)
		e.CertifyInfo[2] = 0
		if err := VerifyCertify(e); !errors.Is(err, ErrCertifyMagic) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("CSR for another key", func(t *testing.T) {
		e := ev
		e.CSR = makeCSR(t, p256(t), "x")
		if err := VerifyCertify(e); !errors.Is(err, ErrCSRKeyMismatch) {
			t.Fatalf("got %v", err)
		}
		e.CSR = append([]byte(nil), ev.CSR...)
		e.CSR[len(e.CSR)-3] ^= 0x40
		if err := VerifyCertify(e); !errors.Is(err, ErrCSRSignature) {
			t.Fatalf("tampered CSR: got %v", err)
		}
	})
	t.Run("activation ECC and RSA EK", func(t *testing.T) {
		for _, ek := range []tpmKey{f.ekECC, f.ekRSA} {
			secret := nonce(t)
			blob, enc, err := MakeCredential(ek.pub, d.iak.name.Buffer, secret)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.activate(t, ek, d.iak, blob, enc)
			if err != nil {
				t.Fatalf("ActivateCredential: %v", err)
			}
			if err := CheckActivation(secret, got); err != nil {
				t.Fatal(err)
			}
			if err := CheckActivation(nonce(t), got); !errors.Is(err, ErrActivation) {
				t.Fatalf("wrong secret: got %v", err)
			}
		}
	})
	t.Run("prepared credential activates once", func(t *testing.T) {
		// The encapsulation is made before the IAK's Name is known (the
		// station does it while the device creates its keys); the TPM
		// activates what Make finishes, and the seed is never used twice.
		for _, ek := range []tpmKey{f.ekECC, f.ekRSA} {
			p, err := PrepareCredential(ek.pub)
			if err != nil {
				t.Fatal(err)
			}
			secret := nonce(t)
			blob, enc, err := p.Make(d.iak.name.Buffer, secret)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.activate(t, ek, d.iak, blob, enc)
			if err != nil {
				t.Fatalf("ActivateCredential: %v", err)
			}
			if err := CheckActivation(secret, got); err != nil {
				t.Fatal(err)
			}
			if _, _, err := p.Make(d.iak.name.Buffer, nonce(t)); err == nil {
				t.Fatal("a prepared credential made a second credential with the same seed")
			}
		}
		if _, err := PrepareCredential([]byte{0, 1, 2}); err == nil {
			t.Fatal("prepared a credential for a malformed EK")
		}
	})
	t.Run("activation bound to another name fails", func(t *testing.T) {
		blob, enc, err := MakeCredential(f.ekECC.pub, d.idevid.name.Buffer, nonce(t))
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.activate(t, f.ekECC, d.iak, blob, enc)
		if !errors.Is(err, tpm2.TPMRCIntegrity) {
			t.Fatalf("TPM activated a credential for another object, or failed otherwise: %v", err)
		}
	})
	t.Run("full flow", func(t *testing.T) {
		a, err := VerifyAttestation(ev, f.roots, f.inters)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.activate(t, f.ekECC, d.iak, a.Challenge.CredentialBlob, a.Challenge.EncryptedSecret)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Challenge.Check(got); err != nil {
			t.Fatal(err)
		}
		if err := a.Challenge.Check(got[1:]); !errors.Is(err, ErrActivation) {
			t.Fatalf("short secret: %v", err)
		}
		// Issue for the attested IDevID, hwSerialNum = EK certificate serial.
		c, _ := newTestCA(t)
		ekc, _ := ParseEKCert(ev.EKCert)
		chain, err := c.Issue(context.Background(), ev.CSR, IssueRequest{DeviceSerial: "TPM-0011223344556677", HWSerial: ekc.Cert.SerialNumber.Bytes()})
		if err != nil {
			t.Fatal(err)
		}
		if !a.Certified.IDevID.Key.(*ecdsa.PublicKey).Equal(chain[0].PublicKey) {
			t.Fatal("certificate is not for the IDevID key")
		}
		hw, err := HardwareModuleNames(chain[0])
		if err != nil || len(hw) != 1 || !bytes.Equal(hw[0].Serial, ekc.Cert.SerialNumber.Bytes()) {
			t.Fatalf("HardwareModuleName %+v %v", hw, err)
		}
	})
	t.Run("IDevID attributes", func(t *testing.T) {
		f.flush(d.idevid) // free a transient slot
		noFixed := deviceKeyAttrs
		noFixed.FixedTPM, noFixed.FixedParent = false, false
		weak := f.createPrimary(t, eccSignTemplate(noFixed, false), "dup")
		info, sig := f.certify(t, weak, d.iak, n)
		e := ev
		e.IDevIDPublic, e.CertifyInfo, e.CertifySignature, e.CSR = weak.pub, info, sig, f.csr(t, weak)
		err := VerifyCertify(e)
		if !errors.Is(err, ErrKeyAttributes) || !bytes.Contains([]byte(err.Error()), []byte("fixedTPM")) {
			t.Fatalf("no fixedTPM: got %v", err)
		}
		f.flush(weak)
		dec := deviceKeyAttrs
		dec.Decrypt = true
		tmpl := eccSignTemplate(dec, false)
		tmpl.Parameters, _ = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{Scheme: tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull}, CurveID: tpm2.TPMECCNistP256}), 0
		both := f.createPrimary(t, tmpl, "decrypt")
		info, sig = f.certify(t, both, d.iak, n)
		e.IDevIDPublic, e.CertifyInfo, e.CertifySignature, e.CSR = both.pub, info, sig, f.csr(t, both)
		if err := VerifyCertify(e); !errors.Is(err, ErrKeyAttributes) {
			t.Fatalf("decrypt IDevID: got %v", err)
		}
	})
}

func (f *tpmFixture) mustRogueRoot(t testing.TB) *x509.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "other vendor"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	c, _ := x509.ParseCertificate(der)
	return c
}

// BenchmarkStationAttestation measures the station-side checks for one
// device with an ECC EK: EK chain + Certify evidence + MakeCredential.
func BenchmarkStationAttestation(b *testing.B) {
	f := newTPMFixture(b)
	d := f.deviceKeys(b)
	ev := f.evidence(b, d, nonce(b))
	durs := make([]time.Duration, 0, 4096)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if _, err := VerifyAttestation(ev, f.roots, f.inters); err != nil {
			b.Fatal(err)
		}
		if len(durs) < cap(durs) {
			durs = append(durs, time.Since(start))
		}
	}
	b.StopTimer()
	reportPercentiles(b, durs)
}

func reportPercentiles(b *testing.B, durs []time.Duration) {
	if len(durs) == 0 {
		return
	}
	sortDur(durs)
	b.ReportMetric(float64(durs[len(durs)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(durs[len(durs)*99/100].Microseconds()), "p99-µs")
}

func sortDur(d []time.Duration) { sort.Slice(d, func(i, j int) bool { return d[i] < d[j] }) }
