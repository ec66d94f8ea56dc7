package ca

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/vault/shamir"
)

// Quorum custody of the root key (M of N). The root key (and the root
// machine's ledger key) are encrypted with a random 32-byte secret instead
// of a passphrase; the secret is split with Shamir secret sharing (HashiCorp
// Vault's shamir package, GF(2^8)) into one share per custodian, any M of
// which rebuild it. Shares are shown once as 25 words of the EFF large
// wordlist carrying the custodian's index and a checksum, or written to one
// file per custodian; the folder keeps only each share's SHA-256 (custody
// file), so a share that was altered is named. The joined secret lives in
// memory for the ceremony only and is never written.
const CustodyFile = "custody.json"

// Custody errors.
var (
	// ErrQuorum: fewer shares than the quorum were given.
	ErrQuorum = errors.New("ca: not enough custodian shares")
	// ErrShareCorrupt: a share's checksum or recorded hash does not match.
	ErrShareCorrupt = errors.New("ca: custodian share corrupted")
	// ErrNoCustody: the folder's root key is not under quorum custody.
	ErrNoCustody = errors.New("ca: root key is not under quorum custody")
)

const (
	custodySecretLen = 32
	shareVersion     = 1
	shareWords       = 25 // ceil(39 bytes * 8 / log2(7776))
)

// Custody is a quorum split of a new root secret (from NewCustody), to be
// given to InitOptions.Custody or produced by Reshare.
type Custody struct {
	Quorum     int
	Custodians []string
	secret     []byte
	shares     [][]byte
}

// String never shows the secret or the shares.
func (c *Custody) String() string {
	return fmt.Sprintf("ca.Custody{quorum: %d of %d}", c.Quorum, len(c.Custodians))
}

// GoString is like String.
func (c *Custody) GoString() string { return c.String() }

// NewCustody draws a random root secret and splits it among custodians
// (their names, recorded in the ledger), quorum of whom unlock the root.
func NewCustody(custodians []string, quorum int) (*Custody, error) {
	n := len(custodians)
	if n < 2 || n > 255 || quorum < 2 || quorum > n {
		return nil, fmt.Errorf("custody: want 2 ≤ quorum ≤ custodians ≤ 255, got %d of %d", quorum, n)
	}
	seen := map[string]bool{}
	for _, c := range custodians {
		if c == "" || strings.ContainsAny(c, "\n\r\t/") || seen[c] {
			return nil, fmt.Errorf("custody: custodian names must be distinct and printable, got %q", c)
		}
		seen[c] = true
	}
	secret := make([]byte, custodySecretLen)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("custody: %w", err)
	}
	shares, err := shamir.Split(secret, n, quorum)
	if err != nil {
		return nil, fmt.Errorf("custody: %w", err)
	}
	return &Custody{Quorum: quorum, Custodians: append([]string(nil), custodians...), secret: secret, shares: shares}, nil
}

// Share is one custodian's share, shown once.
type Share struct {
	Custodian string `json:"custodian"`
	Index     int    `json:"index"`
	Words     string `json:"words"`
}

// Shares returns each custodian's share as words (index and checksum
// included). Show each only to its custodian, once.
func (c *Custody) Shares() []Share {
	out := make([]Share, len(c.shares))
	for i, s := range c.shares {
		out[i] = Share{Custodian: c.Custodians[i], Index: i + 1, Words: encodeShare(byte(i+1), s)}
	}
	return out
}

// Wipe overwrites the secret and shares in memory.
func (c *Custody) Wipe() {
	clear(c.secret)
	for _, s := range c.shares {
		clear(s)
	}
}

func (c *Custody) names() []string { return append([]string(nil), c.Custodians...) }

type custodyFile struct {
	Version    int              `json:"version"`
	Quorum     int              `json:"quorum"`
	Custodians []custodyEntryJS `json:"custodians"`
}

type custodyEntryJS struct {
	Name        string `json:"name"`
	Index       int    `json:"index"`
	ShareSHA256 string `json:"share_sha256"`
}

func (c *Custody) stage(tx *fileTx, dir string) {
	f := custodyFile{Version: 1, Quorum: c.Quorum}
	for i, s := range c.shares {
		h := sha256.Sum256(s)
		f.Custodians = append(f.Custodians, custodyEntryJS{Name: c.Custodians[i], Index: i + 1, ShareSHA256: hex.EncodeToString(h[:])})
	}
	b, _ := json.MarshalIndent(f, "", "  ")
	tx.write(filepath.Join(dir, CustodyFile), append(b, '\n'), 0o644)
}

// HasCustody reports whether dir's root key is under quorum custody.
func HasCustody(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, CustodyFile))
	return err == nil
}

func readCustody(dir string) (*custodyFile, error) {
	raw, err := os.ReadFile(filepath.Join(dir, CustodyFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoCustody
	}
	if err != nil {
		return nil, fmt.Errorf("custody: %w", err)
	}
	var f custodyFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("custody %s: %w", CustodyFile, err)
	}
	if f.Quorum < 2 || len(f.Custodians) < f.Quorum {
		return nil, fmt.Errorf("custody %s: quorum %d of %d is not valid", CustodyFile, f.Quorum, len(f.Custodians))
	}
	return &f, nil
}

// CustodyInfo says how many shares a folder needs, for prompts.
func CustodyInfo(dir string) (quorum int, custodians []string, err error) {
	f, err := readCustody(dir)
	if err != nil {
		return 0, nil, err
	}
	for _, c := range f.Custodians {
		custodians = append(custodians, c.Name)
	}
	return f.Quorum, custodians, nil
}

// JoinShares rebuilds the root secret of dir from custodian shares (word
// form). Each share is checked on its own first: a mistyped word fails the
// share's checksum, a share whose hash is not the one recorded for its
// custodian is named. Fewer than the quorum of distinct custodians is
// ErrQuorum. It returns the secret (wipe it after use) and the names of
// the custodians whose shares were used. The secret is never written.
func JoinShares(dir string, shares []string) ([]byte, []string, error) {
	f, err := readCustody(dir)
	if err != nil {
		return nil, nil, err
	}
	var (
		parts [][]byte
		names []string
		used  = map[int]bool{}
	)
	for i, s := range shares {
		idx, part, err := decodeShare(s)
		if err != nil {
			return nil, nil, fmt.Errorf("share %d of %d: %w", i+1, len(shares), err)
		}
		if idx < 1 || idx > len(f.Custodians) {
			return nil, nil, fmt.Errorf("share %d: custodian index %d is not in %s: %w", i+1, idx, CustodyFile, ErrShareCorrupt)
		}
		ent := f.Custodians[idx-1]
		h := sha256.Sum256(part)
		want, _ := hex.DecodeString(ent.ShareSHA256)
		if subtle.ConstantTimeCompare(h[:], want) != 1 {
			return nil, nil, fmt.Errorf("share %d: the share of custodian %q is not the one recorded at the last sharing: %w", i+1, ent.Name, ErrShareCorrupt)
		}
		if used[idx] {
			return nil, nil, fmt.Errorf("share %d: custodian %q gave a share twice", i+1, ent.Name)
		}
		used[idx] = true
		parts = append(parts, part)
		names = append(names, ent.Name)
	}
	if len(parts) < f.Quorum {
		return nil, nil, fmt.Errorf("%w: %d given, %d of %d custodians needed", ErrQuorum, len(parts), f.Quorum, len(f.Custodians))
	}
	secret, err := shamir.Combine(parts)
	if err != nil {
		return nil, nil, fmt.Errorf("join shares: %w", err)
	}
	return secret, names, nil
}

// encodeShare renders version, index, share and a 4-byte checksum as words.
func encodeShare(index byte, share []byte) string {
	payload := append([]byte{shareVersion, index}, share...)
	sum := sha256.Sum256(payload)
	payload = append(payload, sum[:4]...)
	n := new(big.Int).SetBytes(payload)
	words := wordlist()
	base := big.NewInt(int64(len(words)))
	out := make([]string, shareWords)
	m := new(big.Int)
	for i := shareWords - 1; i >= 0; i-- {
		n.DivMod(n, base, m)
		out[i] = words[m.Int64()]
	}
	return strings.Join(out, " ")
}

// decodeShare parses a share in word form.
func decodeShare(s string) (int, []byte, error) {
	fields := strings.Fields(strings.ToLower(s))
	if len(fields) != shareWords {
		return 0, nil, fmt.Errorf("%w: %d words, want %d", ErrShareCorrupt, len(fields), shareWords)
	}
	idx := wordIndex()
	words := wordlist()
	base := big.NewInt(int64(len(words)))
	n := new(big.Int)
	for i, w := range fields {
		v, ok := idx[w]
		if !ok {
			return 0, nil, fmt.Errorf("%w: word %d is not in the wordlist", ErrShareCorrupt, i+1)
		}
		n.Mul(n, base).Add(n, big.NewInt(int64(v)))
	}
	const payloadLen = 2 + custodySecretLen + 1 + 4
	b := n.Bytes()
	if len(b) > payloadLen {
		return 0, nil, fmt.Errorf("%w: checksum wrong (a word is mistyped)", ErrShareCorrupt)
	}
	b = append(make([]byte, payloadLen-len(b)), b...)
	sum := sha256.Sum256(b[:payloadLen-4])
	if subtle.ConstantTimeCompare(sum[:4], b[payloadLen-4:]) != 1 || b[0] != shareVersion {
		return 0, nil, fmt.Errorf("%w: checksum wrong (a word is mistyped)", ErrShareCorrupt)
	}
	return int(b[1]), b[2 : payloadLen-4], nil
}

// Reshare is the ceremony for a change of custodians (one leaves, one
// joins, a new quorum): the current shares unlock the root, a new random
// secret is drawn and split among the new custodians, and every key it
// protects (root keys, older root keys still trusted, the ledger key) is
// re-encrypted with it in one atomic step. Old shares are useless after.
//
// cust is the new split (NewCustody); the caller hands its shares out
// (writes the share files) before calling Reshare, so a root is never
// left with shares nobody holds.
func Reshare(ctx context.Context, cer Ceremony, oldSecret []byte, cust *Custody) (*Result, error) {
	custodians, quorum := cust.Custodians, cust.Quorum
	var tx fileTx
	if err := stageReencrypt(&tx, rootSecretKeys(cer.Dir), oldSecret, cust.secret); err != nil {
		return nil, fmt.Errorf("reshare: %w", err)
	}
	cust.stage(&tx, cer.Dir)
	res := &Result{Ceremony: "custody reshare", Dir: cer.Dir, Notes: []string{fmt.Sprintf("new quorum %d of %d: %s", quorum, len(custodians), strings.Join(custodians, ", "))}}
	if err := cer.finish(ctx, &tx, res, cust.secret, "ca.custody.reshare", map[string]any{
		"new_custodians": custodians, "quorum": quorum,
	}); err != nil {
		return nil, err
	}
	return res, nil
}

// rootSecretKeys lists the key files protected by the root secret.
func rootSecretKeys(dir string) []string {
	out := []string{filepath.Join(dir, RootKeyFile)}
	if m, _ := filepath.Glob(filepath.Join(dir, RetiredDir, "root-*.key")); len(m) > 0 {
		out = append(out, m...)
	}
	if _, err := os.Stat(filepath.Join(dir, LedgerKeyFile)); err == nil {
		out = append(out, filepath.Join(dir, LedgerKeyFile))
	}
	return out
}

// stageReencrypt decrypts each key file with oldSecret and stages it
// encrypted with newSecret. Token keys (references) are skipped: their
// PIN is the token's business.
func stageReencrypt(tx *fileTx, paths []string, oldSecret, newSecret []byte) error {
	for _, p := range paths {
		if IsTokenKey(p) {
			continue
		}
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		k, err := readKey(p, oldSecret)
		if err != nil {
			return err
		}
		b, err := encryptKeyPEM(k, newSecret)
		if err != nil {
			return err
		}
		tx.write(p, b, 0o600)
	}
	return nil
}
