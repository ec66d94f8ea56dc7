package wasmsign

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

// ed25519CompactPEM is the key pair of ed25519-compact's own PEM test
// (src/pem.rs, test_pem): the library wasmsign2 reads and writes PEM and
// DER keys with. Its secret key's public half is its public key.
const (
	ed25519CompactSecretPEM = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIMXY1NUbUe/3dW2YUoKW5evsnCJPMfj60/q0RzGne3gg\n-----END PRIVATE KEY-----\n"
	ed25519CompactPublicPEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAyrRjJfTnhMcW5igzYvPirFW5eUgMdKeClGzQhd4qw+Y=\n-----END PUBLIC KEY-----\n"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "keys", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWasmsign2KeyFormats: every secret and public key encoding wasmsign2
// reads or writes gives the same key, checked against fixtures written by
// other tools (ed25519-compact's test vector, openssl, ssh-keygen) and
// against the byte layouts of wasmsign2's keys.rs built here by hand.
func TestWasmsign2KeyFormats(t *testing.T) {
	// ed25519-compact's vector: secret PEM and public PEM belong together.
	sk, err := ParseEd25519PrivateKey([]byte(ed25519CompactSecretPEM))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ParseEd25519PublicKey([]byte(ed25519CompactPublicPEM))
	if err != nil {
		t.Fatal(err)
	}
	if !pk.Equal(sk.Public()) {
		t.Fatal("ed25519-compact vector: secret and public PEM do not give one key pair")
	}
	if hex.EncodeToString(pk) != "cab46325f4e784c716e6283362f3e2ac55b979480c74a782946cd085de2ac3e6" {
		t.Fatalf("ed25519-compact public key = %x", []byte(pk))
	}

	// wasmsign2 keygen's raw files: 0x81 || seed || public, 0x01 || public.
	seed := bytes.Repeat([]byte{0x42}, 32)
	want := ed25519.NewKeyFromSeed(seed)
	wantPub := want.Public().(ed25519.PublicKey)
	raw := append(append([]byte{0x81}, seed...), wantPub...)
	derSK := append([]byte{0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20}, seed...)
	derPK := append([]byte{0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00}, wantPub...)
	for name, in := range map[string][]byte{"raw key file": raw, "DER (ed25519-compact to_der)": derSK} {
		got, err := ParseEd25519PrivateKey(in)
		if err != nil || !got.Equal(want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, in := range map[string][]byte{"raw key file": append([]byte{0x01}, wantPub...), "DER": derPK} {
		got, err := ParseEd25519PublicKey(in)
		if err != nil || !got.Equal(wantPub) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if got := MarshalEd25519PublicKeyFile(wantPub); !bytes.Equal(got, append([]byte{0x01}, wantPub...)) {
		t.Errorf("MarshalEd25519PublicKeyFile = %x", got)
	}

	// openssl's PKCS#8 and SPKI, PEM and DER.
	osk := readFixture(t, "openssl_ed25519.pem")
	s1, err := ParseEd25519PrivateKey(osk)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := ParseEd25519PrivateKey(readFixture(t, "openssl_ed25519.der"))
	if err != nil || !s2.Equal(s1) {
		t.Fatalf("openssl DER secret key: %v", err)
	}
	for _, f := range []string{"openssl_ed25519.pub.pem", "openssl_ed25519.pub.der"} {
		p, err := ParseEd25519PublicKey(readFixture(t, f))
		if err != nil || !p.Equal(s1.Public()) {
			t.Errorf("%s: %v", f, err)
		}
	}

	// ssh-keygen's public key line is the key of its private key file
	// (read here with x/crypto/ssh, independently of the parser).
	sshKey, err := ssh.ParseRawPrivateKey(readFixture(t, "openssh_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	sshPriv := *sshKey.(*ed25519.PrivateKey)
	line := readFixture(t, "openssh_ed25519.pub")
	p, err := ParseEd25519PublicKey(line)
	if err != nil || !p.Equal(sshPriv.Public()) {
		t.Fatalf("OpenSSH public key line: %v", err)
	}
	// Several lines, the first Ed25519 one counts; comments and other
	// key types are skipped (wasmsign2 --ssh).
	multi := append([]byte("# keys\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7 rsa\n"), line...)
	if p, err := ParseEd25519PublicKey(multi); err != nil || !p.Equal(sshPriv.Public()) {
		t.Fatalf("OpenSSH public key lines: %v", err)
	}

	// Refusals: a raw file whose public half is not its seed's, OpenSSH
	// secret keys (the command reads those), unknown bytes.
	bad := bytes.Clone(raw)
	bad[len(bad)-1] ^= 1
	for name, in := range map[string][]byte{
		"mismatched raw key":   bad,
		"OpenSSH secret key":   readFixture(t, "openssh_ed25519"),
		"public key as secret": append([]byte{0x01}, wantPub...),
		"garbage":              []byte("not a key"),
		"P-256 key":            []byte(p256PKCS8PEM),
	} {
		if _, err := ParseEd25519PrivateKey(in); !errors.Is(err, ErrKeyFormat) {
			t.Errorf("%s: %v, want ErrKeyFormat", name, err)
		} else if bytes.Contains([]byte(err.Error()), seed[:4]) {
			t.Errorf("%s: error quotes key bytes", name)
		}
	}
	for name, in := range map[string][]byte{
		"broken ssh line":  []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== x\n"),
		"secret as public": raw,
		"garbage":          []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
	} {
		if _, err := ParseEd25519PublicKey(in); !errors.Is(err, ErrKeyFormat) {
			t.Errorf("%s: %v, want ErrKeyFormat", name, err)
		}
	}
}

// p256PKCS8PEM is an unencrypted PKCS#8 P-256 key (not Ed25519).
const p256PKCS8PEM = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg7a6kJAGngvq4m0gs
WZtJoYEvkgUa4drRWLv1cyf83AOhRANCAATa00YRtsvx3FzDQcnmoMMtH5Q7ACiM
MjWEI8RD0Yi1R0tOD4lIn8Af/yHBQebsmJ4Efim318L4ViI7ck1eT22T
-----END PRIVATE KEY-----
`

func TestP256FixtureIsNotEd25519(t *testing.T) {
	_, err := ParseEd25519PrivateKey([]byte(p256PKCS8PEM))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("ecdsa")) {
		t.Fatalf("a P-256 PKCS#8 key: %v, want a refusal naming its type", err)
	}
}

// TestBatchVerifyEd25519: files and folders verified with an Ed25519 key,
// one result per module in path order, each with its reason code; an
// unreadable path is an error result, not a panic or a silent skip.
func TestBatchVerifyEd25519(t *testing.T) {
	ed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x33}, 32))
	pub := ed.Public().(ed25519.PublicKey)
	signed, err := Sign(addModule, ed, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := bytes.Clone(signed)
	bad[len(bad)-2] ^= 1
	for name, b := range map[string][]byte{"a.wasm": signed, "b.wasm": bad, "c.wasm": addModule} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := BatchVerifyEd25519(t.Context(), []string{dir}, pub, nil)
	if err != nil || len(res) != 3 {
		t.Fatalf("%d results, %v", len(res), err)
	}
	want := []struct {
		status Status
		code   string
	}{{StatusValid, ReasonOK}, {StatusInvalid, ReasonHashMismatch}, {StatusInvalid, ReasonNotSigned}}
	for i, w := range want {
		if res[i].Status != w.status || res[i].ReasonCode != w.code || res[i].Algorithm != AlgorithmEd25519 {
			t.Errorf("%s: %s %s, want %s %s", res[i].File, res[i].Status, res[i].ReasonCode, w.status, w.code)
		}
	}
	r, err := VerifyEd25519File(filepath.Join(dir, "missing.wasm"), pub)
	if err == nil || r.Status != StatusError || r.ReasonCode != ReasonUnreadable {
		t.Fatalf("missing file: %+v %v", r, err)
	}
}
