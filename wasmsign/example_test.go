package wasmsign_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"

	"github.com/wsc-project/wsc/wasmsign"
)

// Example signs a module with a device key and its certificate chain, then
// verifies it against the pinned root and the root's CRL (verification
// requires a fresh CRL of every CA on the path).
func Example() {
	now := time.Now()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Example Root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	rootDER, _ := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	root, _ := x509.ParseCertificate(rootDER)

	devKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(0x1234),
		Subject:   pkix.Name{CommonName: "device", SerialNumber: "TPM-0011223344556677"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	leafDER, _ := x509.CreateCertificate(rand.Reader, leafTmpl, root, &devKey.PublicKey, rootKey)
	leaf, _ := x509.ParseCertificate(leafDER)

	module := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00} // an empty module
	signed, err := wasmsign.Sign(module, devKey, []*x509.Certificate{leaf}, nil)
	if err != nil {
		panic(err)
	}
	crlDER, _ := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)}, root, rootKey)
	crl, _ := x509.ParseRevocationList(crlDER)
	res, err := wasmsign.Verify(signed, &wasmsign.TrustPolicy{Roots: []*x509.Certificate{root}, CRLs: []*x509.RevocationList{crl}})
	fmt.Println(res.Status, res.DeviceSerial, res.SignerSerial, err)
	// Output: valid TPM-0011223344556677 1234 <nil>
}
