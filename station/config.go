package station

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/station/label"
	"go.bug.st/serial/enumerator"

	"go.yaml.in/yaml/v3"
)

// FileConfig is the station's configuration file (YAML; every key is
// documented in docs/station-config.md):
//
//	station: line1-bench3
//	database: /var/lib/wsc/station.db
//	ca:
//	  dir: /var/lib/wsc/ca
//	  passphrase: prompt          # or file:PATH, fd:N, env:NAME — never the passphrase itself
//	tpm_vendor_roots: [/etc/wsc/tpm-vendors/infineon-root.pem]
//	tpm_vendor_intermediates: [/etc/wsc/tpm-vendors/infineon-ica.pem]
//	se_vendor_roots: [/etc/wsc/se-vendors/microchip-root.pem]
//	audit: {key_fingerprints: [9f2c…], witness: /mnt/usb/line3.witness}
//	work_order: {id: WO-1001, product: sensor-x, quantity: 500, profile: default, lock: none, proofs: [tpm]}
//	baud: 115200
//	max_failures: 3
//	slots:
//	  - {slot: 1, port: /dev/ttyUSB0}
//	  - {slot: 2, usb: "0403:6001:A1B2C3"}
//
// Relative paths are relative to the configuration file's folder.
type FileConfig struct {
	Station                string   `yaml:"station"`
	Database               string   `yaml:"database"`
	CA                     CAConfig `yaml:"ca"`
	TPMVendorRoots         []string `yaml:"tpm_vendor_roots"`
	TPMVendorIntermediates []string `yaml:"tpm_vendor_intermediates"`
	// SEVendorRoots and SEVendorIntermediates verify secure elements'
	// manufacturer certificate chains (proof atecc608).
	SEVendorRoots         []string  `yaml:"se_vendor_roots"`
	SEVendorIntermediates []string  `yaml:"se_vendor_intermediates"`
	WorkOrder             WorkOrder `yaml:"work_order"`
	// WorkOrders are further work orders a supervisor can switch the
	// bench to on screen (w); WorkOrder is the one it starts with.
	WorkOrders  []WorkOrder `yaml:"work_orders"`
	Baud        int         `yaml:"baud"`
	MaxFailures int         `yaml:"max_failures"`
	Slots       []SlotSpec  `yaml:"slots"`
	// EOLModules, when set, is the folder where each device's end-of-line
	// signed module is kept, for QA to verify later.
	EOLModules string `yaml:"eol_modules"`
	// Label, when set, prints a label for every device that passes (ZPL to
	// a printer on TCP 9100 or into a folder, with a PNG preview).
	Label *label.Config `yaml:"label"`
	// Discover finds the slots' ports at start instead of listing them.
	Discover Discover `yaml:"discover"`
	// Audit pins the audit key and says where the witness file is
	// (AuditConfig); the pin is required.
	Audit AuditConfig `yaml:"audit"`
	// Plant is the plant registry the station syncs its records to (optional; docs/plant.md).
	Plant PlantConfig `yaml:"plant"`
	// OwnerAuth says where TPM owner authorisations are sealed to (trustconfig.go).
	OwnerAuth OwnerAuthConfig `yaml:"owner_auth,omitempty"`
}

// PlantConfig names the plant registry: a PostgreSQL connection string with the station's
// TLS client certificate (sslmode=verify-full sslcert=… sslkey=… sslrootcert=…).
type PlantConfig struct {
	DSN string `yaml:"dsn"`
}

// Discover says where the station looks for its ports when the config
// lists no slots: USB serial adapters by VID:PID (go.bug.st/serial's
// enumerator; e.g. "0403:6001"), and paths matching glob patterns (e.g.
// "/dev/serial/by-path/*", or the links a simulated bench creates). Slots
// are numbered 1..N in the order USB matches (sorted by port name) then glob
// matches (sorted), so a fixed bench wiring gives fixed slot numbers.
type Discover struct {
	USB   []string `yaml:"usb"`
	Globs []string `yaml:"globs"`
}

// Empty reports whether nothing is to be discovered.
func (d Discover) Empty() bool { return len(d.USB) == 0 && len(d.Globs) == 0 }

// DiscoverSlots resolves d into slots numbered from 1.
func DiscoverSlots(d Discover) ([]SlotSpec, error) {
	var slots []SlotSpec
	seen := map[string]bool{}
	add := func(s SlotSpec, key string) {
		if seen[key] {
			return
		}
		seen[key] = true
		s.Slot = len(slots) + 1
		slots = append(slots, s)
	}
	if len(d.USB) > 0 {
		ports, err := enumerator.GetDetailedPortsList()
		if err != nil {
			return nil, fmt.Errorf("discover USB serial ports: %w", err)
		}
		sort.Slice(ports, func(i, j int) bool { return ports[i].Name < ports[j].Name })
		for _, m := range d.USB {
			vid, pid, ok := strings.Cut(m, ":")
			if !ok {
				return nil, fmt.Errorf("discover usb %q: want VID:PID", m)
			}
			for _, p := range ports {
				if !p.IsUSB || !strings.EqualFold(p.VID, vid) || !strings.EqualFold(p.PID, pid) {
					continue
				}
				if p.SerialNumber != "" {
					// The adapter's own serial keeps the slot when the
					// kernel renames the port.
					add(SlotSpec{USB: p.VID + ":" + p.PID + ":" + p.SerialNumber}, p.Name)
				} else {
					add(SlotSpec{Port: p.Name}, p.Name)
				}
			}
		}
	}
	for _, g := range d.Globs {
		matches, err := filepath.Glob(g)
		if err != nil {
			return nil, fmt.Errorf("discover %q: %w", g, err)
		}
		sort.Strings(matches)
		for _, m := range matches {
			add(SlotSpec{Port: m}, m)
		}
	}
	if len(slots) == 0 {
		return nil, errors.New("discover: no serial port found (check the cables and adapters, or list the slots in the config)")
	}
	return slots, nil
}

// CAConfig locates the CA and says where its passphrase comes from.
type CAConfig struct {
	Dir string `yaml:"dir"`
	// Passphrase is a source (prompt, file:PATH, fd:N, env:NAME).
	Passphrase string `yaml:"passphrase"`
}

// WorkOrder is what the bench produces: a quantity of one product with one
// certificate profile and lock policy.
type WorkOrder struct {
	ID       string `yaml:"id"`
	Product  string `yaml:"product"`
	Quantity int    `yaml:"quantity"`
	Profile  string `yaml:"profile"`
	// Lock is "lock" (write-lock the chain after read-back) or "none".
	Lock string `yaml:"lock"`
	// Proofs is the proof policy: the attestation proofs the work order
	// accepts, in order of preference — tpm, atecc608, unattested. Default
	// [tpm]; unattested only when listed.
	Proofs []string `yaml:"proofs"`
	// SigningKey is auto (default: TPM devices get a code-signing LDevID)
	// or off; FirmwareTrust, when set, is written into the chip (trustconfig.go).
	SigningKey    string               `yaml:"signing_key,omitempty"`
	FirmwareTrust *FirmwareTrustConfig `yaml:"firmware_trust,omitempty"`
	// MeasuredBoot, when set, binds TPM code-signing keys to measured boot
	// (trustconfig.go); it needs signing_key auto.
	MeasuredBoot *MeasuredBootConfig `yaml:"measured_boot,omitempty"`
}

// LoadConfig reads and checks a station configuration file.
func LoadConfig(path string) (*FileConfig, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("station config: %w: write one (docs/station-config.md lists every key), or try a simulated bench with wsc sim, which writes its own", err)
	}
	if err != nil {
		return nil, fmt.Errorf("station config: %w", err)
	}
	var c FileConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("station config %s: %w", path, err)
	}
	makeAbsolute(&c, filepath.Dir(path))
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("station config %s: %w", path, err)
	}
	return &c, nil
}

// makeAbsolute makes the config's relative paths relative to base (the
// configuration file's folder).
func makeAbsolute(c *FileConfig, base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&c.Database)
	abs(&c.CA.Dir)
	abs(&c.EOLModules)
	if c.Label != nil {
		abs(&c.Label.Dir)
	}
	for i := range c.TPMVendorRoots {
		abs(&c.TPMVendorRoots[i])
	}
	for i := range c.TPMVendorIntermediates {
		abs(&c.TPMVendorIntermediates[i])
	}
	for i := range c.SEVendorRoots {
		abs(&c.SEVendorRoots[i])
	}
	for i := range c.SEVendorIntermediates {
		abs(&c.SEVendorIntermediates[i])
	}
	for i := range c.Slots {
		abs(&c.Slots[i].Port)
	}
	for i := range c.Discover.Globs {
		abs(&c.Discover.Globs[i])
	}
	abs(&c.Audit.Witness)
	makeTrustAbsolute(c, abs)
}

// checkWorkOrder checks one work order (key prefix: work_order or
// work_orders[i]) and fills in its defaults.
func (c *FileConfig) checkWorkOrder(prefix string, w *WorkOrder) []error {
	var errs []error
	if w.ID == "" || w.Quantity <= 0 {
		errs = append(errs, keyed(prefix+".quantity", fmt.Errorf("%s: id and a positive quantity are required", prefix)))
	}
	switch w.Lock {
	case "":
		w.Lock = "none"
	case "none", "lock":
	default:
		errs = append(errs, keyed(prefix+".lock", fmt.Errorf("%s.lock: %q is neither lock nor none", prefix, w.Lock)))
	}
	if len(w.Proofs) == 0 {
		w.Proofs = []string{"tpm"}
	}
	seen := map[string]bool{}
	for i, p := range w.Proofs {
		key := fmt.Sprintf("%s.proofs[%d]", prefix, i)
		switch {
		case seen[p]:
			errs = append(errs, keyed(key, fmt.Errorf("%s.proofs: %q is listed twice", prefix, p)))
		case p == "tpm" && len(c.TPMVendorRoots) == 0:
			errs = append(errs, keyed(key, fmt.Errorf("%s.proofs: tpm needs tpm_vendor_roots (the TPM vendors' root certificates)", prefix)))
		case p == "atecc608" && len(c.SEVendorRoots) == 0:
			errs = append(errs, keyed(key, fmt.Errorf("%s.proofs: atecc608 needs se_vendor_roots (the secure-element vendors' root certificates)", prefix)))
		case p != "tpm" && p != "atecc608" && p != "unattested":
			errs = append(errs, keyed(key, fmt.Errorf("%s.proofs: unknown proof %q (want tpm, atecc608 or unattested)", prefix, p)))
		}
		seen[p] = true
	}
	return errs
}

func (c *FileConfig) check() error {
	var errs []error
	if c.Station == "" {
		errs = append(errs, keyed("station", errors.New("station: name is required")))
	}
	if c.Database == "" {
		errs = append(errs, keyed("database", errors.New("database: path is required")))
	}
	if c.CA.Dir == "" {
		errs = append(errs, keyed("ca.dir", errors.New("ca.dir is required")))
	}
	if c.CA.Passphrase == "" {
		c.CA.Passphrase = "prompt"
	}
	if err := c.Audit.Check(); err != nil {
		errs = append(errs, keyed("audit.key_fingerprints", err))
	}
	errs = append(errs, c.checkWorkOrder("work_order", &c.WorkOrder)...)
	ids := map[string]bool{c.WorkOrder.ID: true}
	for i := range c.WorkOrders {
		key := fmt.Sprintf("work_orders[%d]", i)
		errs = append(errs, c.checkWorkOrder(key, &c.WorkOrders[i])...)
		if id := c.WorkOrders[i].ID; id != "" && ids[id] {
			errs = append(errs, keyed(key+".id", fmt.Errorf("%s.id: work order %q is listed twice", key, id)))
		}
		ids[c.WorkOrders[i].ID] = true
	}
	errs = append(errs, c.checkTrust()...)
	if len(c.Slots) == 0 && c.Discover.Empty() {
		errs = append(errs, keyed("slots", errors.New("slots: list at least one slot, or say where to discover them (discover: usb/globs)")))
	}
	slotSeen := map[int]bool{}
	for i, s := range c.Slots {
		key := fmt.Sprintf("slots[%d]", i)
		switch {
		case s.Slot <= 0 || slotSeen[s.Slot]:
			errs = append(errs, keyed(key, fmt.Errorf("slots: slot numbers must be positive and unique (slot %d)", s.Slot)))
		case (s.Port == "") == (s.USB == ""):
			errs = append(errs, keyed(key, fmt.Errorf("slots: slot %d needs exactly one of port or usb", s.Slot)))
		}
		slotSeen[s.Slot] = true
	}
	if c.Label != nil {
		if err := c.Label.Check(); err != nil {
			errs = append(errs, keyed("label", err))
		}
	}
	if c.Baud < 0 {
		errs = append(errs, keyed("baud", fmt.Errorf("baud: %d is not a speed", c.Baud)))
	}
	if c.MaxFailures < 0 {
		errs = append(errs, keyed("max_failures", fmt.Errorf("max_failures: %d is negative (0 means the default, 3)", c.MaxFailures)))
	}
	if len(c.Slots) > 0 && !c.Discover.Empty() {
		errs = append(errs, keyed("discover", errors.New("give either slots or discover, not both")))
	}
	return errors.Join(errs...)
}

// ProofPolicy loads the vendor roots and returns the work order's proofs.
func (c *FileConfig) ProofPolicy() ([]Proof, error) {
	load := func(paths []string) (*x509.CertPool, error) {
		if len(paths) == 0 {
			return nil, nil
		}
		return LoadCertPool(paths...)
	}
	tpmRoots, err := load(c.TPMVendorRoots)
	if err != nil {
		return nil, fmt.Errorf("tpm_vendor_roots: %w", err)
	}
	tpmInter, err := load(c.TPMVendorIntermediates)
	if err != nil {
		return nil, fmt.Errorf("tpm_vendor_intermediates: %w", err)
	}
	seRoots, err := load(c.SEVendorRoots)
	if err != nil {
		return nil, fmt.Errorf("se_vendor_roots: %w", err)
	}
	seInter, err := load(c.SEVendorIntermediates)
	if err != nil {
		return nil, fmt.Errorf("se_vendor_intermediates: %w", err)
	}
	return NewProofs(c.WorkOrder.Proofs, tpmRoots, tpmInter, seRoots, seInter)
}

// ForWorkOrder returns a copy of the config whose work order is id (the
// main one or one of WorkOrders), for a bench that switches to it.
func (c *FileConfig) ForWorkOrder(id string) (*FileConfig, error) {
	cp := *c
	if c.WorkOrder.ID == id {
		return &cp, nil
	}
	for _, w := range c.WorkOrders {
		if w.ID == id {
			cp.WorkOrder = w
			return &cp, nil
		}
	}
	return nil, fmt.Errorf("work order %s is not in the station config (work_order, work_orders)", id)
}

// WorkOrderIDs lists the work orders of the config, the main one first.
func (c *FileConfig) WorkOrderIDs() []string {
	ids := []string{c.WorkOrder.ID}
	for _, w := range c.WorkOrders {
		ids = append(ids, w.ID)
	}
	return ids
}

// BenchSlots returns the configured slots, or discovers them.
func (c *FileConfig) BenchSlots() ([]SlotSpec, error) {
	if len(c.Slots) > 0 {
		return c.Slots, nil
	}
	return DiscoverSlots(c.Discover)
}

// LoadCertPool reads every PEM certificate of the files into one pool; a
// file without a certificate is an error.
func LoadCertPool(paths ...string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("certificate file: %w", err)
		}
		n := 0
		for {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			cert, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate file %s: %w", path, err)
			}
			pool.AddCert(cert)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("certificate file %s: no certificate", path)
		}
	}
	return pool, nil
}

// EnsureWorkOrder records the work order, or checks that the recorded one
// has the same product and quantity.
func EnsureWorkOrder(ctx context.Context, s *db.Store, w WorkOrder) error {
	err := s.CreateWorkOrder(ctx, db.WorkOrder{ID: w.ID, Product: w.Product, Quantity: w.Quantity, Profile: w.Profile, LockPolicy: w.Lock})
	if errors.Is(err, db.ErrDuplicate) {
		got, gerr := s.GetWorkOrder(ctx, w.ID)
		if gerr != nil {
			return gerr
		}
		if got.Quantity != w.Quantity || got.Product != w.Product {
			return fmt.Errorf("work order %s is recorded with product %q quantity %d, the config says %q quantity %d: fix the config",
				w.ID, got.Product, got.Quantity, w.Product, w.Quantity)
		}
		return nil
	}
	return err
}
