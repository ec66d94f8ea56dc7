package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wsc-project/wsc/db/plant"
	"github.com/wsc-project/wsc/db/plant/pgtest"
)

// Without a user list the dashboard serves only TLS clients whose certificate verified; a
// client without one is refused in the handshake, and a plain HTTP listener gets 401.
func TestDashboardClientCertificates(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Start(t)
	if err := srv.CreateDatabase("plant"); err != nil {
		t.Fatal(err)
	}
	admin, err := plant.Open(ctx, srv.AdminDSNFor("plant"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	dash, err := New(admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Supervisors' CA and one supervisor certificate.
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "supervisors"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	lt := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "alice"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	lder, _ := x509.CreateCertificate(rand.Reader, lt, caCert, &k.PublicKey, caKey)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)

	ts := httptest.NewUnstartedServer(dash.Handler())
	ts.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	ts.StartTLS()
	defer ts.Close()
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
	}
	if resp, err := client().Get(ts.URL + "/"); err == nil {
		resp.Body.Close()
		t.Fatalf("no client certificate: status %d, want a refused handshake", resp.StatusCode)
	}
	resp, err := client(tls.Certificate{Certificate: [][]byte{lder}, PrivateKey: k}).Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Plant —") {
		t.Fatalf("with a client certificate: %d %.200s", resp.StatusCode, body)
	}
	plain := httptest.NewServer(dash.Handler())
	defer plain.Close()
	resp, err = http.Get(plain.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("plain HTTP without users: %d", resp.StatusCode)
	}
}
