package main

import (
	"context"
	"crypto/x509"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsc-project/wsc/db"
)

// TestStationHotSwapsIntermediate: while `wsc station` runs, security staff
// rotate the station intermediate with `wsc ca intermediate csr|sign|install`.
// The station notices the CA folder changed, reloads without a restart, and
// the next device is issued by the new intermediate while the first keeps
// the old one.
func TestStationHotSwapsIntermediate(t *testing.T) {
	f := newStationFixture(t, 2, "")
	wsc, _ := buildBinaries(t)
	dev2 := f.bench.Devices[1]
	dev2.Link.SetConnected(false) // slot 2 waits for its cable

	p := startStation(t, f)
	p.wait(t, "device 1 passed", 60*time.Second, func(l []string) bool { return len(countPassed(l)) == 1 })

	caDir, pass := filepath.Join(f.dir, "ca"), "file:"+filepath.Join(f.dir, "pass")
	csr, chain := filepath.Join(f.dir, "next.csr"), filepath.Join(f.dir, "next-chain.pem")
	for _, args := range [][]string{
		{"ca", "intermediate", "csr", "--dir", caDir, "--cn", "wsc Station Intermediate 2", "-o", csr, "--passphrase-source", pass},
		{"ca", "intermediate", "sign", "--dir", caDir, "--csr", csr, "--cn", "wsc Station Intermediate 2", "-o", chain, "--passphrase-source", pass},
		{"ca", "intermediate", "install", "--dir", caDir, "--chain", chain, "--passphrase-source", pass},
	} {
		if b, err := exec.Command(wsc, args...).CombinedOutput(); err != nil {
			t.Fatalf("wsc %v: %v\n%s", args, err, b)
		}
	}
	p.wait(t, "the station reloading the CA", 30*time.Second, func(l []string) bool {
		return strings.Contains(strings.Join(l, "\n"), `ca: CA reloaded: now issuing from "wsc Station Intermediate 2"`)
	})

	dev2.Link.SetConnected(true)
	p.wait(t, "device 2 passed", 60*time.Second, func(l []string) bool { return len(countPassed(l)) == 2 })
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done

	s, err := db.Open(filepath.Join(f.dir, "station.db"), db.WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	issuerOf := func(serial string) string {
		c, err := s.LiveCertificate(context.Background(), serial)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Chain) < 2 {
			t.Fatalf("%s: chain of %d", serial, len(c.Chain))
		}
		iss, err := x509.ParseCertificate(c.Chain[1])
		if err != nil {
			t.Fatal(err)
		}
		return iss.Subject.CommonName
	}
	if got := issuerOf(dev2.Serial); got != "wsc Station Intermediate 2" {
		t.Fatalf("device 2 issued by %q after the rotation", got)
	}
	if got := issuerOf(f.bench.Devices[0].Serial); got == "wsc Station Intermediate 2" {
		t.Fatalf("device 1 (before the rotation) issued by the new intermediate")
	}
}
