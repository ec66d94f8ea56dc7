package station

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"go.yaml.in/yaml/v3"
)

// DefaultWitnessFile is the audit witness file's name in the CA folder when the config
// names no other path.
const DefaultWitnessFile = "audit.witness"

// AuditConfig is the `audit:` section of the station config:
//
//	audit:
//	  key_fingerprints: [9f2c…]        # hex SHA-256 of the audit public key (wsc ca init prints it)
//	  witness: /mnt/usb/line3.witness  # default: <ca.dir>/audit.witness
//
// The fingerprints pin the audit key: `wsc audit verify` and the station never trust a
// public key found beside the database. More than one fingerprint is allowed only while a
// replaced audit key's checkpoints are still in the ledger.
type AuditConfig struct {
	KeyFingerprints []string `yaml:"key_fingerprints"`
	Witness         string   `yaml:"witness"`
}

// Check validates the section; a station config without a pinned key is refused.
func (a *AuditConfig) Check() error {
	if len(a.KeyFingerprints) == 0 {
		return errors.New("audit.key_fingerprints: pin the audit key (the fingerprint `wsc ca init` or `wsc audit init-key` printed; " +
			"`wsc audit fingerprint --pub CA/audit.pub` shows it again)")
	}
	_, err := a.Pins()
	return err
}

// Pins returns the pinned fingerprints as bytes (db.AuditVerifyOptions.PinnedKeys).
func (a *AuditConfig) Pins() ([][]byte, error) {
	return ParseFingerprints(a.KeyFingerprints)
}

// ParseFingerprints decodes hex SHA-256 fingerprints (colons and spaces allowed).
func ParseFingerprints(fps []string) ([][]byte, error) {
	var out [][]byte
	for _, f := range fps {
		clean := strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(f))
		b, err := hex.DecodeString(clean)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("audit key fingerprint %q: want 64 hex digits (SHA-256)", f)
		}
		out = append(out, b)
	}
	return out, nil
}

// WitnessPath is the witness file: the configured path, else DefaultWitnessFile in caDir.
func (a *AuditConfig) WitnessPath(caDir string) string {
	if a.Witness != "" {
		return a.Witness
	}
	return filepath.Join(caDir, DefaultWitnessFile)
}

// StoreOptions checks that signer is a pinned audit key and returns the db.Open options
// of the station: the signer and the witness file. A key that is not pinned stops the
// station (someone replaced audit.key, or the config pins another station's key).
func (a *AuditConfig) StoreOptions(caDir string, signer crypto.Signer) ([]db.Option, error) {
	pins, err := a.Pins()
	if err != nil {
		return nil, err
	}
	if len(pins) == 0 {
		return nil, a.Check()
	}
	fp, err := db.KeyID(signer.Public())
	if err != nil {
		return nil, err
	}
	for _, p := range pins {
		if bytes.Equal(p, fp) {
			return []db.Option{db.WithAuditSigner(signer, 0), db.WithWitness(a.WitnessPath(caDir))}, nil
		}
	}
	return nil, fmt.Errorf("the audit key in %s (fingerprint %x) is not the one pinned in the station config (audit.key_fingerprints): "+
		"restore the station's audit.key from its backup, or correct the pin if the key was replaced by a recorded ceremony", caDir, fp)
}

// AuditFile is what `wsc audit verify --config` reads from a station config file: the
// database, the CA folder and the audit section (paths resolved against the file's folder).
type AuditFile struct {
	Database string
	CADir    string
	Audit    AuditConfig
}

// LoadAuditConfig reads the audit-related keys of a station config file, ignoring the
// others (they are LoadConfig's business).
func LoadAuditConfig(path string) (*AuditFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("station config: %w", err)
	}
	var raw struct {
		Database string      `yaml:"database"`
		CA       CAConfig    `yaml:"ca"`
		Audit    AuditConfig `yaml:"audit"`
	}
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("station config %s: %w", path, err)
	}
	base := filepath.Dir(path)
	abs := func(p string) string {
		if p != "" && !filepath.IsAbs(p) {
			return filepath.Join(base, p)
		}
		return p
	}
	f := &AuditFile{Database: abs(raw.Database), CADir: abs(raw.CA.Dir), Audit: raw.Audit}
	f.Audit.Witness = abs(f.Audit.Witness)
	return f, nil
}

// CreateAuditKey is the explicit initialisation of a station's audit key (see
// ca.CreateAuditKey); it returns the key and the fingerprint to pin.
func CreateAuditKey(caDir string, passphrase []byte) (crypto.Signer, string, error) {
	k, err := ca.CreateAuditKey(caDir, passphrase)
	if err != nil {
		return nil, "", err
	}
	fp, err := ca.AuditKeyFingerprint(k.Public())
	return k, fp, err
}
