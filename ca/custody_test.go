package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// subsets returns every k-element subset of {0..n-1}.
func subsets(n, k int) [][]int {
	var out [][]int
	var rec func(start int, cur []int)
	rec = func(start int, cur []int) {
		if len(cur) == k {
			out = append(out, append([]int(nil), cur...))
			return
		}
		for i := start; i < n; i++ {
			rec(i+1, append(cur, i))
		}
	}
	rec(0, nil)
	return out
}

// TestQuorumCustody: any 3 of 5 shares unlock the root key, no 2 do, a
// corrupted share is named, custodians are named in the ledger, and the
// joined secret reaches neither the folder nor anything the process has
// open (scanned through /proc/self).
func TestQuorumCustody(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	dir := filepath.Join(base, "root")
	names := []string{"ann", "bob", "cy", "dee", "eve"}
	cust, err := NewCustody(names, 3)
	if err != nil {
		t.Fatal(err)
	}
	if s := cust.String(); strings.Contains(s, cust.Shares()[0].Words) {
		t.Fatal("Custody.String shows a share")
	}
	if _, err := InitCA(ctx, Ceremony{Dir: dir}, nil, InitOptions{RootOnly: true, Custody: cust}); err != nil {
		t.Fatal(err)
	}
	shares := cust.Shares()
	cust.Wipe()
	var secret []byte
	for _, sub := range subsets(5, 3) {
		var in []string
		for _, i := range sub {
			in = append(in, shares[i].Words)
		}
		s, used, err := JoinShares(dir, in)
		if err != nil {
			t.Fatalf("shares %v: %v", sub, err)
		}
		if _, err := readKey(filepath.Join(dir, RootKeyFile), s); err != nil {
			t.Fatalf("shares %v do not unlock the root key: %v", sub, err)
		}
		if len(used) != 3 || used[0] != names[sub[0]] {
			t.Errorf("custodians used %v for %v", used, sub)
		}
		secret = s
	}
	for _, sub := range subsets(5, 2) {
		if _, _, err := JoinShares(dir, []string{shares[sub[0]].Words, shares[sub[1]].Words}); !errors.Is(err, ErrQuorum) {
			t.Fatalf("two shares %v: %v", sub, err)
		}
	}
	// A mistyped word breaks the share's checksum: named by position.
	words := strings.Fields(shares[1].Words)
	w := wordlist()
	words[7] = w[(wordIndex()[words[7]]+1)%len(w)]
	_, _, err = JoinShares(dir, []string{shares[0].Words, strings.Join(words, " "), shares[2].Words})
	if !errors.Is(err, ErrShareCorrupt) || !strings.Contains(err.Error(), "share 2 of 3") {
		t.Fatalf("mistyped share: %v", err)
	}
	// A well-formed share that is not the one recorded for its custodian
	// (from another sharing) is named by custodian.
	other, _ := NewCustody(names, 3)
	_, _, err = JoinShares(dir, []string{shares[0].Words, other.Shares()[3].Words, shares[2].Words})
	if !errors.Is(err, ErrShareCorrupt) || !strings.Contains(err.Error(), `"dee"`) {
		t.Fatalf("foreign share: %v", err)
	}
	// A duplicate custodian does not count twice.
	if _, _, err := JoinShares(dir, []string{shares[0].Words, shares[0].Words, shares[2].Words}); err == nil {
		t.Fatal("the same share twice was accepted")
	}
	// A root ceremony with the joined secret names the custodians.
	if _, _, err := RootCRLs(ctx, Ceremony{Dir: dir, Custodians: []string{"ann", "cy", "eve"}}, secret, time.Hour, ""); err != nil {
		t.Fatal(err)
	}
	ledger, _ := os.ReadFile(filepath.Join(dir, LedgerFile))
	if !bytes.Contains(ledger, []byte(`"custodians":["ann","cy","eve"]`)) {
		t.Errorf("ledger does not name the custodians: %s", ledger)
	}
	if rep, err := VerifyLedger(dir, ""); err != nil || rep.Signed != 2 {
		t.Errorf("ledger: %+v %v", rep, err)
	}
	// Re-sharing: old shares stop working, new ones unlock.
	ncust, err := NewCustody([]string{"ann", "bob", "fay"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Reshare(ctx, Ceremony{Dir: dir, Custodians: []string{"ann", "bob", "cy"}}, secret, ncust); err != nil {
		t.Fatal(err)
	}
	ns := ncust.Shares()
	if _, _, err := JoinShares(dir, []string{shares[0].Words, shares[1].Words, shares[2].Words}); !errors.Is(err, ErrShareCorrupt) {
		t.Errorf("old shares after reshare: %v", err)
	}
	s2, _, err := JoinShares(dir, []string{ns[0].Words, ns[2].Words})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readKey(filepath.Join(dir, RootKeyFile), s2); err != nil {
		t.Fatalf("new shares do not unlock: %v", err)
	}
	if _, err := readKey(filepath.Join(dir, RootKeyFile), secret); !errors.Is(err, ErrBadPassphrase) {
		t.Errorf("old secret still unlocks after reshare: %v", err)
	}
	// The joined secrets never reached disk or anything open.
	for _, sec := range [][]byte{secret, s2} {
		forms := [][]byte{sec, []byte(hex.EncodeToString(sec)), []byte(base64.StdEncoding.EncodeToString(sec)), []byte(base64.RawURLEncoding.EncodeToString(sec))}
		scan := func(p string) {
			b, err := os.ReadFile(p)
			if err != nil {
				return
			}
			for _, f := range forms {
				if bytes.Contains(b, f) {
					t.Errorf("%s contains the joined secret", p)
				}
			}
		}
		filepath.WalkDir(base, func(p string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				scan(p)
			}
			return nil
		})
		for _, p := range []string{"/proc/self/environ", "/proc/self/cmdline"} {
			scan(p)
		}
		fds, _ := os.ReadDir("/proc/self/fd")
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
			if err != nil || !strings.HasPrefix(target, "/") {
				continue
			}
			if fi, err := os.Stat(target); err == nil && fi.Mode().IsRegular() && fi.Size() < 64<<20 {
				scan(target)
			}
		}
		tmps, _ := os.ReadDir(os.TempDir())
		for _, e := range tmps {
			if !e.IsDir() {
				scan(filepath.Join(os.TempDir(), e.Name()))
			}
		}
	}
	if len(secret) != custodySecretLen {
		t.Fatalf("secret length %d", len(secret))
	}
}

func TestPassphraseRules(t *testing.T) {
	for _, tc := range []struct {
		p  string
		ok bool
	}{
		{"a", false},
		{"correct horse", false},
		{"twenty characters!!x", true},
		{"abacus-abdomen-zoom-zoology-unwashed", true},
		{"ab cd ef gh ij", false},
	} {
		if err := CheckPassphraseStrength([]byte(tc.p)); (err == nil) != tc.ok {
			t.Errorf("%q: %v", tc.p, err)
		} else if err != nil && !errors.Is(err, ErrWeakPassphrase) {
			t.Errorf("%q: %v", tc.p, err)
		}
	}
	g1, err := GeneratePassphrase(6)
	if err != nil {
		t.Fatal(err)
	}
	g2, _ := GeneratePassphrase(6)
	if bytes.Equal(g1, g2) || len(rejoinHyphenated(strings.Split(string(g1), "-"))) != 6 || CheckPassphraseStrength(g1) != nil {
		t.Errorf("generated %q %q", g1, g2)
	}
	if len(wordlist()) != 7776 {
		t.Fatalf("wordlist has %d words", len(wordlist()))
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "pass")
	os.WriteFile(f, []byte("twenty characters!!x\n"), 0o644)
	os.Chmod(f, 0o644)
	if _, err := ReadPassphrase("file:" + f); !errors.Is(err, ErrPassphraseFileMode) {
		t.Errorf("0644 passphrase file: %v", err)
	}
	os.Chmod(f, 0o600)
	if p, err := ReadPassphrase("file:" + f); err != nil || string(p) != "twenty characters!!x" {
		t.Errorf("0600 passphrase file: %q %v", p, err)
	}
	// Change the station passphrase in place.
	ca := filepath.Join(dir, "ca")
	if err := Init(ca, stationPass, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ChangePassphrase(context.Background(), Ceremony{Dir: ca}, "intermediate", stationPass, []byte("short")); !errors.Is(err, ErrWeakPassphrase) {
		t.Errorf("weak new passphrase: %v", err)
	}
	if _, err := ChangePassphrase(context.Background(), Ceremony{Dir: ca}, "intermediate", []byte("wrong old passphrase, long enough"), rootPass); !errors.Is(err, ErrBadPassphrase) {
		t.Errorf("wrong old passphrase: %v", err)
	}
	newPass := []byte("the new intermediate passphrase 2026")
	if _, err := ChangePassphrase(context.Background(), Ceremony{Dir: ca}, "intermediate", stationPass, newPass); err != nil {
		t.Fatal(err)
	}
	if _, err := readKey(filepath.Join(ca, IntermediateKeyFile), stationPass); !errors.Is(err, ErrBadPassphrase) {
		t.Errorf("old passphrase still works: %v", err)
	}
	if _, err := readKey(filepath.Join(ca, IntermediateKeyFile), newPass); err != nil {
		t.Errorf("new passphrase: %v", err)
	}
	if _, err := readKey(filepath.Join(ca, RootKeyFile), stationPass); err != nil {
		t.Errorf("root key changed with --key intermediate: %v", err)
	}
}

func TestLedgerTamper(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if err := Init(dir, stationPass, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := RevokeByRoot(ctx, Ceremony{Dir: dir}, mustCert(t, dir), ReasonSuperseded); err != nil {
			t.Fatal(err)
		}
		if _, _, err := RootCRLs(ctx, Ceremony{Dir: dir}, stationPass, time.Hour, ""); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := VerifyLedger(dir, "")
	if err != nil || rep.Records != 5 || rep.Signed != 4 {
		t.Fatalf("ledger: %+v %v", rep, err)
	}
	if _, err := VerifyLedger(dir, rep.KeyFingerprint); err != nil {
		t.Fatalf("pinned: %v", err)
	}
	if _, err := VerifyLedger(dir, strings.Repeat("ab", 32)); !errors.Is(err, ErrLedgerBroken) {
		t.Errorf("wrong pin: %v", err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, LedgerFile))
	lines := strings.SplitAfter(string(raw), "\n")
	for name, edited := range map[string]string{
		"edit":   strings.Join(lines[:2], "") + strings.Replace(lines[2], "ca.", "cb.", 1) + strings.Join(lines[3:], ""),
		"delete": strings.Join(lines[:3], "") + strings.Join(lines[4:], ""),
	} {
		os.WriteFile(filepath.Join(dir, LedgerFile), []byte(edited), 0o644)
		if _, err := VerifyLedger(dir, ""); !errors.Is(err, ErrLedgerBroken) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func mustCert(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	cs, err := readCerts(filepath.Join(dir, IntermediateCertFile))
	if err != nil {
		t.Fatal(err)
	}
	return cs[0]
}
