package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/station"
	"github.com/wsc-project/wsc/ui"
)

// The ceremonies themselves live in package ca (ca.InitCA,
// ca.IntermediateCSR, ca.SignIntermediateCSR, ca.InstallIntermediate,
// ca.RolloverFolder, ca.RetireRoot, ca.RootCRLs, ca.Import, ca.WriteBundle,
// ca.ChangePassphrase, ca.Reshare); this file parses flags, reads secrets
// from their sources and prints results.

// caFlags are the flags every ceremony command shares.
type caFlags struct {
	dir, passSource, rootPassSource, dbPath, actor string
	shares                                         []string
	asJSON                                         bool
}

func (f *caFlags) register(cmd *cobra.Command, withDB bool) {
	caDirFlag(cmd.Flags(), &f.dir)
	cmd.Flags().StringVar(&f.passSource, "passphrase-source", "prompt",
		"where the key passphrase (or token PIN) comes from: "+secretSources+"; none for token keys with pin-source")
	cmd.Flags().StringVar(&f.actor, "actor", defaultActor(), "person or station recorded in the audit record")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the result as JSON (snake_case)")
	if withDB {
		cmd.Flags().StringVar(&f.dbPath, "db", "", "station database: the audit record goes into its ledger; without it into CA-DIR/"+ca.LedgerFile)
	}
}

// registerRoot adds the flags that unlock the root key: a passphrase
// source or, under quorum custody, the custodians' shares.
func (f *caFlags) registerRoot(cmd *cobra.Command, separate bool) {
	if separate {
		cmd.Flags().StringVar(&f.rootPassSource, "root-passphrase-source", "", "where the root key passphrase comes from (default: --passphrase-source): "+secretSources)
	}
	cmd.Flags().StringArrayVar(&f.shares, "share", nil, "a custodian share (quorum custody): "+secretSources+"; repeat once per custodian present")
}

func defaultActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "security"
}

// passphrase reads the passphrase for keyName; "none" (token keys with
// pin-source) gives nil.
func (f *caFlags) passphrase(keyName string) ([]byte, error) {
	if f.passSource == "none" {
		return nil, nil
	}
	p, err := ca.ReadPassphraseFor(f.passSource, keyName)
	if err != nil {
		return nil, usagef("%s passphrase (--passphrase-source): %w", keyName, err)
	}
	return p, nil
}

// rootSecret unlocks the root: the custodians' shares when the folder is
// under quorum custody, else the root passphrase. It returns the names of
// the custodians who took part.
func (f *caFlags) rootSecret(w io.Writer) ([]byte, []string, error) {
	if ca.HasCustody(f.dir) {
		q, names, err := ca.CustodyInfo(f.dir)
		if err != nil {
			return nil, nil, err
		}
		if len(f.shares) == 0 {
			return nil, nil, usagef("the root key is under quorum custody: give %d of the shares of %s with --share (once per custodian)", q, strings.Join(names, ", "))
		}
		var shares []string
		for i, src := range f.shares {
			s, err := ca.ReadPassphraseFor(src, fmt.Sprintf("custodian share %d of %d", i+1, q))
			if err != nil {
				return nil, nil, usagef("--share %d: %w", i+1, err)
			}
			shares = append(shares, string(s))
			clear(s)
		}
		secret, used, err := ca.JoinShares(f.dir, shares)
		if err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(w, "root unlocked by %s\n", strings.Join(used, ", "))
		return secret, used, nil
	}
	src := f.rootPassSource
	if src == "" {
		src = f.passSource
	}
	p, err := ca.ReadPassphraseFor(src, "root key")
	if err != nil {
		return nil, nil, usagef("root key passphrase: %w", err)
	}
	return p, nil, nil
}

// session is the audit sink of a ceremony: the station database's ledger
// with --db, otherwise the folder ledger (nil Auditor).
type session struct {
	store *db.Store
}

func (s *session) Close() error {
	if s.store != nil {
		return s.store.Close()
	}
	return nil
}

func (f *caFlags) newSession(pass []byte) (*session, error) {
	s := &session{}
	if f.dbPath == "" {
		return s, nil
	}
	opts := []db.Option{db.WithActor(f.actor)}
	if len(pass) > 0 && !ca.IsTokenKey(filepath.Join(f.dir, ca.IntermediateKeyFile)) {
		k, err := ca.AuditKey(f.dir, pass)
		if err != nil {
			return nil, err
		}
		// Checkpoints signed during a ceremony are witnessed too (default place).
		opts = append(opts, db.WithAuditSigner(k, 0), db.WithWitness(filepath.Join(f.dir, station.DefaultWitnessFile)))
	}
	st, err := db.Open(f.dbPath, opts...)
	if err != nil {
		return nil, err
	}
	s.store = st
	return s, nil
}

// ceremony is the ca.Ceremony of this invocation.
func (f *caFlags) ceremony(s *session, custodians []string) ca.Ceremony {
	c := ca.Ceremony{Dir: f.dir, Actor: f.actor, Custodians: custodians}
	if s != nil && s.store != nil {
		c.Auditor = s.store
	}
	return c
}

// withCA reads the station passphrase, opens the audit session and the CA,
// and runs fn; everything is closed and the passphrase cleared afterwards.
func (f *caFlags) withCA(fn func(c *ca.CA, s *session, pass []byte) error) error {
	pass, err := f.passphrase("intermediate key")
	if err != nil {
		return err
	}
	defer clear(pass)
	s, err := f.newSession(pass)
	if err != nil {
		return err
	}
	defer s.Close()
	opts := []ca.Option{}
	if s.store != nil {
		opts = append(opts, ca.WithStore(station.CAStore(s.store)), ca.WithAuditor(s.store, f.actor))
	}
	c, err := ca.Open(f.dir, pass, opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c, s, pass)
}

// displaySerials rewrites the certificate serials of what a ceremony or
// `ca inspect` reports into the one form wsc prints (db.DisplaySerial:
// upper-case hex, as openssl prints it); package ca keeps big.Int.Text(16)
// internally (file names, its folder state). A ceremony's file list is []
// rather than null.
func displaySerials(v any) {
	switch r := v.(type) {
	case *ca.Result:
		if r == nil {
			return
		}
		if r.Files == nil { // [] rather than null for scripts
			r.Files = []string{}
		}
		for i := range r.Certificates {
			r.Certificates[i].Serial = db.DisplaySerial(r.Certificates[i].Serial)
		}
	case []ca.Inspected:
		for i := range r {
			if r[i].Serial != "" {
				r[i].Serial = db.DisplaySerial(r[i].Serial)
			}
			for j, e := range r[i].Revoked { // "serial time reason"
				if sn, rest, ok := strings.Cut(e, " "); ok {
					r[i].Revoked[j] = db.DisplaySerial(sn) + " " + rest
				}
			}
		}
	}
}

// print writes a ceremony result as text or JSON.
func (f *caFlags) print(w io.Writer, v any) error {
	displaySerials(v)
	if f.asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	if s, ok := v.(fmt.Stringer); ok {
		_, err := fmt.Fprint(w, s.String())
		return err
	}
	_, err := fmt.Fprintln(w, v)
	return err
}

func readCertFile(path string) ([]*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cs, err := ca.ParseCertificatesPEM(raw)
	if err != nil {
		return nil, usagef("%s: %w", path, err)
	}
	if len(cs) == 0 {
		return nil, usagef("%s: no certificate in it", path)
	}
	return cs, nil
}

func caCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "CA ceremonies: init, intermediate csr/sign/install, root rollover/retire, revoke, crl, import, bundle, status, inspect",
		Long: "Ceremonies on the station's offline CA (docs/ca-ceremony.md lists for each one what goes from which\n" +
			"machine to which). Passphrases and custodian shares are read from sources (prompt, file:PATH, fd:N,\n" +
			"env:NAME), never from the command line. Each ceremony writes one audit record: into the station\n" +
			"database's ledger with --db, otherwise into the folder's ledger (CA-DIR/" + ca.LedgerFile + ", hash-chained, signed).\n" +
			"Every ceremony prints the SHA-256 fingerprints of what it made for the paper log; --json for scripts.",
	}
	cmd.AddCommand(caInitCmd(), caIntermediateCmd(), caRootCmd(), caRevokeCmd(), caCRLCmd(), caImportCmd(), caBundleCmd(),
		caStatusCmd(), caInspectCmd(), caPassphraseCmd(), caCustodyCmd(), caLedgerCmd(), caCeremonyCmd())
	return cmd
}

// newSecret reads or generates a new passphrase for keyName. A generated
// one is shown once, on the terminal output.
func newSecret(w io.Writer, source string, generate bool, keyName string) ([]byte, error) {
	if generate {
		p, err := ca.GeneratePassphrase(ca.MinDicewareWords + 1)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(w, "new %s passphrase (shown once; write it down now): %s\n", keyName, p)
		return p, nil
	}
	return ca.ReadNewPassphrase(source, keyName)
}

func caInitCmd() *cobra.Command {
	var (
		f                         caFlags
		org, rootCN, intCN        string
		keyURI                    string
		rootValidity, intValidity string
		domains, custodianNames   []string
		force, rootOnly, generate bool
		custodians, quorum        int
		shareDir                  string
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the root (and, unless --root-only, the first station intermediate) in --ca-dir",
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			if f.asJSON {
				// Secrets shown once go to the terminal, not into the JSON.
				w = cmd.ErrOrStderr()
			}
			opts := ca.InitOptions{Organization: org, RootCommonName: rootCN, IntermediateCommonName: intCN,
				PermittedDNSDomains: domains, Overwrite: force, KeyURI: keyURI, RootOnly: rootOnly}
			var err error
			if rootValidity != "" {
				if opts.RootValidity, err = ca.ParseDuration(rootValidity); err != nil {
					return usagef("--root-validity: %w", err)
				}
			}
			if intValidity != "" {
				if opts.IntermediateValidity, err = ca.ParseDuration(intValidity); err != nil {
					return usagef("--intermediate-validity: %w", err)
				}
			}
			if custodians > 0 {
				names := custodianNames
				if len(names) == 0 {
					for i := 1; i <= custodians; i++ {
						names = append(names, fmt.Sprintf("custodian-%d", i))
					}
				}
				if len(names) != custodians {
					return usagef("--custodian-name given %d times for --custodians %d", len(names), custodians)
				}
				if opts.Custody, err = ca.NewCustody(names, quorum); err != nil {
					return err
				}
				defer opts.Custody.Wipe()
			}
			var pass []byte
			switch {
			case f.passSource == "none":
			case rootOnly && opts.Custody != nil:
				// The root secret is the custody secret: no passphrase.
			default:
				if pass, err = newSecret(w, f.passSource, generate, map[bool]string{true: "root key", false: "CA key"}[rootOnly]); err != nil {
					return err
				}
				defer clear(pass)
			}
			if opts.Custody != nil && len(pass) == 0 && !rootOnly && keyURI == "" {
				return usagef("with custodians and an intermediate, the intermediate key still needs a station passphrase")
			}
			s, err := f.newSession(pass)
			if err != nil {
				return err
			}
			defer s.Close()
			// Share files are written before the root exists (a root whose
			// shares could not be handed out is useless) and removed again
			// if the ceremony fails.
			var shareFiles []string
			if opts.Custody != nil && shareDir != "" {
				if shareFiles, err = showShares(w, opts.Custody, shareDir); err != nil {
					return err
				}
			}
			res, err := ca.InitCA(cmd.Context(), f.ceremony(s, nil), pass, opts)
			if err != nil {
				for _, p := range shareFiles {
					os.Remove(p)
				}
				return err
			}
			// The station's audit key is created here, explicitly, and never
			// on first use; its fingerprint is what station.yaml pins.
			if !rootOnly && len(pass) > 0 && !ca.IsTokenKey(filepath.Join(f.dir, ca.IntermediateKeyFile)) {
				_, fp, err := station.CreateAuditKey(f.dir, pass)
				switch {
				case err == nil:
					fmt.Fprintf(w, "audit key: created, fingerprint %s (pin it: audit.key_fingerprints in the station config)\n", fp)
				case force && errors.Is(err, os.ErrExist):
					fmt.Fprintf(w, "audit key: kept the existing %s\n", ca.AuditKeyFile)
				default:
					return err
				}
			} else if !rootOnly {
				fmt.Fprintf(w, "audit key: not created (token CA or no passphrase): run `wsc audit init-key --ca-dir %s`\n", f.dir)
			}
			if opts.Custody != nil && shareDir == "" {
				if _, err := showShares(w, opts.Custody, ""); err != nil {
					return err
				}
			}
			return f.print(cmd.OutOrStdout(), res)
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVar(&org, "org", "", "organisation in the CA subjects")
	cmd.Flags().StringVar(&rootCN, "root-cn", "", "root common name (default \"wsc Root CA\")")
	cmd.Flags().StringVar(&intCN, "intermediate-cn", "", "intermediate common name (default \"wsc Station Intermediate CA\")")
	cmd.Flags().StringSliceVar(&domains, "domain", nil, "permitted DNS domain of device names (default "+ca.DefaultPermittedDNSDomain+")")
	cmd.Flags().StringVar(&rootValidity, "root-validity", "", "root validity, e.g. 20y")
	cmd.Flags().StringVar(&intValidity, "intermediate-validity", "", "intermediate validity, e.g. 5y")
	cmd.Flags().StringVar(&keyURI, "key-uri", "", "make the keys in a PKCS#11 token: pkcs11:module-path=…;token=…[?pin-source=FILE] (no pin-value)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing CA folder")
	cmd.Flags().BoolVar(&rootOnly, "root-only", false, "root machine: make only the root (the station makes its intermediate key itself)")
	cmd.Flags().BoolVar(&generate, "generate-passphrase", false, "generate a diceware passphrase (6 words) and show it once instead of reading one")
	cmd.Flags().IntVar(&custodians, "custodians", 0, "quorum custody: split the root secret among this many custodians")
	cmd.Flags().IntVar(&quorum, "quorum", 0, "quorum custody: how many custodians unlock the root")
	cmd.Flags().StringArrayVar(&custodianNames, "custodian-name", nil, "custodian names, in order (default custodian-1 … custodian-N)")
	cmd.Flags().StringVar(&shareDir, "share-dir", "", "write each custodian's share to DIR/<name>.share (0600) instead of showing it")
	return cmd
}

// showShares shows each custodian's share once, or writes one file per
// custodian.
func showShares(w io.Writer, c *ca.Custody, dir string) ([]string, error) {
	shares := c.Shares()
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		var files []string
		for _, s := range shares {
			p := filepath.Join(dir, s.Custodian+".share")
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err == nil {
				_, err = f.Write([]byte(s.Words + "\n"))
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				for _, q := range files {
					os.Remove(q)
				}
				return nil, fmt.Errorf("write share of %s: %w", s.Custodian, err)
			}
			files = append(files, p)
			fmt.Fprintf(w, "share of %s (custodian %d) written to %s: hand it over and delete the copy\n", s.Custodian, s.Index, p)
		}
		return files, nil
	}
	fmt.Fprintf(w, "custodian shares (each shown once; any %d of %d unlock the root):\n", c.Quorum, len(shares))
	for _, s := range shares {
		fmt.Fprintf(w, "  %s (custodian %d): %s\n", s.Custodian, s.Index, s.Words)
	}
	return nil, nil
}

func caIntermediateCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "intermediate", Short: "Station intermediate: csr (station), sign (root machine), install (station)"}

	var (
		fc          caFlags
		cn, out, ku string
	)
	csr := &cobra.Command{
		Use:   "csr",
		Short: "Station: make the next intermediate key (encrypted, or in the token) and write its CSR",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("-o/--output is required")
			}
			if cn == "" {
				cn = "wsc Station Intermediate CA " + time.Now().UTC().Format("2006-01-02")
			}
			var kopts []ca.KeyOption
			if cmd.Flags().Changed("key-uri") {
				kopts = append(kopts, ca.WithKeyURI(ku))
			}
			var pass []byte
			var err error
			if _, serr := os.Stat(filepath.Join(fc.dir, ca.IntermediateKeyFile)); serr == nil || fc.passSource == "none" {
				pass, err = fc.passphrase("intermediate key")
			} else {
				pass, err = ca.ReadNewPassphrase(fc.passSource, "intermediate key")
			}
			if err != nil {
				return err
			}
			defer clear(pass)
			s, err := fc.newSession(pass)
			if err != nil {
				return err
			}
			defer s.Close()
			_, res, err := ca.IntermediateCSR(cmd.Context(), fc.ceremony(s, nil), pass, cn, out, kopts...)
			if err != nil {
				return err
			}
			return fc.print(cmd.OutOrStdout(), res)
		},
	}
	fc.register(csr, true)
	csr.Flags().StringVar(&cn, "cn", "", "common name of the new intermediate (the root machine decides: `sign --cn`)")
	outputFlag(csr.Flags(), &out, "CSR output file (PEM), carried to the root machine")
	csr.Flags().StringVar(&ku, "key-uri", "", "make the key in this PKCS#11 token (default: where the current intermediate key is)")

	var (
		fs                          caFlags
		csrIn, sOut, sCN, sOrg, sVl string
		sDomains                    []string
	)
	sign := &cobra.Command{
		Use:   "sign",
		Short: "Root machine: certify a station's CSR with the root key in --ca-dir (only the CSR's key is used)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if csrIn == "" || sOut == "" {
				return usagef("--csr and -o/--output are required")
			}
			raw, err := os.ReadFile(csrIn)
			if err != nil {
				return usagef("--csr: %w", err)
			}
			der := raw
			if blk, _ := pem.Decode(raw); blk != nil {
				if blk.Type != "CERTIFICATE REQUEST" {
					return usagef("--csr %s: PEM block %q is not a CERTIFICATE REQUEST", csrIn, blk.Type)
				}
				der = blk.Bytes
			}
			t := ca.IntermediateTemplate{CommonName: sCN, Organization: sOrg, PermittedDNSDomains: sDomains}
			if sVl != "" {
				if t.Validity, err = ca.ParseDuration(sVl); err != nil {
					return usagef("--validity: %w", err)
				}
			}
			secret, used, err := fs.rootSecret(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer clear(secret)
			_, res, err := ca.SignIntermediateCSR(cmd.Context(), fs.ceremony(nil, used), secret, der, t, sOut)
			if err != nil {
				return err
			}
			return fs.print(cmd.OutOrStdout(), res)
		},
	}
	fs.register(sign, false)
	fs.registerRoot(sign, false)
	sign.Flags().StringVar(&csrIn, "csr", "", "CSR file from `intermediate csr` (PEM or DER)")
	outputFlag(sign.Flags(), &sOut, "certificate chain output file (PEM), carried to the station")
	sign.Flags().StringVar(&sCN, "cn", "", "subject common name (default \"wsc Station Intermediate CA <date>\"; never taken from the CSR)")
	sign.Flags().StringVar(&sOrg, "org", "", "subject organisation (default: the root's)")
	sign.Flags().StringSliceVar(&sDomains, "domain", nil, "permitted DNS domains (default "+ca.DefaultPermittedDNSDomain+")")
	sign.Flags().StringVar(&sVl, "validity", "", "validity, e.g. 5y (capped at the root's)")

	var (
		fi      caFlags
		chainIn string
	)
	install := &cobra.Command{
		Use:   "install",
		Short: "Station: install the chain from the root machine for the pending key (or a re-certification of the current key)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if chainIn == "" {
				return usagef("--chain is required")
			}
			chain, err := readCertFile(chainIn)
			if err != nil {
				return usagef("--chain: %w", err)
			}
			pass, err := fi.passphrase("intermediate key")
			if err != nil {
				return err
			}
			defer clear(pass)
			s, err := fi.newSession(pass)
			if err != nil {
				return err
			}
			defer s.Close()
			res, err := ca.InstallIntermediate(cmd.Context(), fi.ceremony(s, nil), pass, chain)
			if err != nil {
				return err
			}
			return fi.print(cmd.OutOrStdout(), res)
		},
	}
	fi.register(install, true)
	install.Flags().StringVar(&chainIn, "chain", "", "chain from `intermediate sign` or `root rollover` (PEM)")

	cmd.AddCommand(csr, sign, install)
	return cmd
}

func caRootCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "root", Short: "Root ceremonies: rollover, retire"}
	var (
		f                 caFlags
		cn, validity, out string
	)
	rollover := &cobra.Command{
		Use:   "rollover",
		Short: "New root, cross-certificates both ways, newest intermediate re-certified; root.crt then holds [new, old]",
		Long: "On the root machine, -o writes the re-certified chain for the station. On a single-machine folder\n" +
			"(intermediate.key present) the station side is installed at once (intermediate key passphrase from\n" +
			"--passphrase-source, root key from --root-passphrase-source or --share).",
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := ca.RolloverOptions{CommonName: cn}
			var err error
			if validity != "" {
				if o.Validity, err = ca.ParseDuration(validity); err != nil {
					return usagef("--validity: %w", err)
				}
			}
			single := false
			if _, err := os.Stat(filepath.Join(f.dir, ca.IntermediateKeyFile)); err == nil || ca.IsTokenKey(filepath.Join(f.dir, ca.IntermediateKeyFile)) {
				single = true
			}
			secret, used, err := f.rootSecret(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer clear(secret)
			var pass []byte
			if single {
				if f.rootPassSource == "" && len(f.shares) == 0 {
					pass = append([]byte(nil), secret...)
				} else if pass, err = f.passphrase("intermediate key"); err != nil {
					return err
				}
				defer clear(pass)
			}
			s, err := f.newSession(pass)
			if err != nil {
				return err
			}
			defer s.Close()
			ro, res, err := ca.RolloverFolder(cmd.Context(), f.ceremony(s, used), secret, o, out)
			if err != nil {
				return err
			}
			if single && ro.Intermediate != nil {
				ires, err := ca.InstallIntermediate(cmd.Context(), f.ceremony(s, nil), pass, []*x509.Certificate{ro.Intermediate, ro.NewByOld})
				if err != nil {
					return fmt.Errorf("rollover done, but installing the re-certified intermediate failed: %w", err)
				}
				res.Files = append(res.Files, ires.Files...)
			}
			return f.print(cmd.OutOrStdout(), res)
		},
	}
	f.register(rollover, true)
	f.registerRoot(rollover, true)
	rollover.Flags().StringVar(&cn, "cn", "", "common name of the new root (default: old CN + year)")
	rollover.Flags().StringVar(&validity, "validity", "", "validity of the new root, e.g. 20y")
	outputFlag(rollover.Flags(), &out, "root machine: write the re-certified intermediate chain here, for the station")

	var (
		fr    caFlags
		keyID string
	)
	retire := &cobra.Command{
		Use:   "retire",
		Short: "End an old root's trust after a rollover: it leaves root.crt, its key is destroyed, its CRL no longer published",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyID == "" {
				return usagef("--root-key-id is required (`wsc ca status` lists the roots with their key ids)")
			}
			secret, used, err := fr.rootSecret(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer clear(secret)
			res, err := ca.RetireRoot(cmd.Context(), fr.ceremony(nil, used), secret, keyID)
			if err != nil {
				return err
			}
			return fr.print(cmd.OutOrStdout(), res)
		},
	}
	fr.register(retire, false)
	fr.registerRoot(retire, false)
	retire.Flags().StringVar(&keyID, "root-key-id", "", "key id (hex) of the old root to retire")
	cmd.AddCommand(rollover, retire)
	return cmd
}

// parseSerial reads a certificate serial in hex ("0x", colons and case allowed).
func parseSerial(s string) (*big.Int, error) {
	h := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "0x")
	h = strings.ReplaceAll(h, ":", "")
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || n.Sign() <= 0 {
		return nil, usagef("serial %q is not a hexadecimal number", s)
	}
	return n, nil
}

// revokeResult is what `wsc ca revoke` reports.
type revokeResult struct {
	Serial      string `json:"serial"`
	Subject     string `json:"subject"`
	Reason      string `json:"reason"`
	IssuerKeyID string `json:"issuer_key_id"`
	SHA256      string `json:"sha256"`
	NextStep    string `json:"next_step"`
}

func (r revokeResult) String() string {
	return fmt.Sprintf("revoked %s (%s, %s), issuer key %s\n  SHA-256 %s\nnext: %s\n", r.Serial, r.Subject, r.Reason, r.IssuerKeyID, r.SHA256, r.NextStep)
}

func caRevokeCmd() *cobra.Command {
	var (
		f                        caFlags
		serial, certFile, reason string
	)
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a certificate: it goes on the CRL of its own issuer (a CA certificate: on its root's CRL)",
		Long: "--serial HEX --db F revokes a device certificate recorded in the station database.\n" +
			"--cert FILE revokes the certificate in FILE: a CA certificate signed by a root of --dir (an intermediate,\n" +
			"a cross-certificate; on the root machine, no passphrase or database needed: the next `crl --root` lists\n" +
			"it), or a device certificate (needs --db).\nValid reasons: " + strings.Join(ca.ReasonNames(), ", ") + ".",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (serial == "") == (certFile == "") {
				return usagef("give one of --serial or --cert")
			}
			code, err := ca.ParseReason(reason)
			if err != nil {
				return usagef("--reason: %w", err)
			}
			var target *x509.Certificate
			if certFile != "" {
				cs, err := readCertFile(certFile)
				if err != nil {
					return usagef("--cert: %w", err)
				}
				target = cs[0]
				if target.IsCA {
					res, err := ca.RevokeByRoot(cmd.Context(), f.ceremony(nil, nil), target, code)
					if err != nil {
						return err
					}
					return f.print(cmd.OutOrStdout(), res)
				}
			}
			if f.dbPath == "" {
				return usagef("--db is required to revoke a device certificate (revocations live in the station database)")
			}
			var n *big.Int
			if target == nil {
				if n, err = parseSerial(serial); err != nil {
					return err
				}
			}
			return f.withCA(func(c *ca.CA, _ *session, _ []byte) error {
				if target != nil {
					err = c.Revoke(cmd.Context(), target, code)
				} else {
					target, err = c.RevokeSerial(cmd.Context(), n, code)
				}
				if err != nil {
					return err
				}
				return f.print(cmd.OutOrStdout(), revokeResult{Serial: station.SerialHex(target), Subject: target.Subject.String(),
					Reason: ca.ReasonName(code), IssuerKeyID: fmt.Sprintf("%x", target.AuthorityKeyId), SHA256: ca.Fingerprint(target.Raw),
					NextStep: "publish CRLs (`wsc ca crl`) and a new bundle (`wsc ca bundle`)"})
			})
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVar(&serial, "serial", "", "serial (hex) of a certificate recorded in the station database")
	cmd.Flags().StringVar(&certFile, "cert", "", "PEM file of the certificate to revoke")
	cmd.Flags().StringVar(&reason, "reason", "unspecified", "RFC 5280 reason: "+strings.Join(ca.ReasonNames(), ", ")+", or its number")
	return cmd
}

func caCRLCmd() *cobra.Command {
	var (
		f        caFlags
		out, vl  string
		withRoot bool
	)
	cmd := &cobra.Command{
		Use:   "crl",
		Short: "Sign CRLs: the station's intermediates (--db) or, with --root on the root machine, every trusted root's",
		Long: "Without --root: one CRL per station intermediate (current and retired), each signed by its own key,\n" +
			"numbers from the station database (--db). With --root (root machine, no database): one CRL per root of\n" +
			"root.crt — after a rollover the old root too, until `wsc ca root retire` — each signed by its own key.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if withRoot {
				validity := 30 * 24 * time.Hour
				if vl != "" {
					var err error
					if validity, err = ca.ParseDuration(vl); err != nil {
						return usagef("--validity: %w", err)
					}
				}
				secret, used, err := f.rootSecret(cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				defer clear(secret)
				_, res, err := ca.RootCRLs(cmd.Context(), f.ceremony(nil, used), secret, validity, out)
				if err != nil {
					return err
				}
				return f.print(cmd.OutOrStdout(), res)
			}
			if f.dbPath == "" {
				return usagef("--db is required for the intermediates' CRLs (revocations and CRL numbers live in the station database); root CRLs: --root on the root machine")
			}
			return f.withCA(func(c *ca.CA, _ *session, _ []byte) error {
				crls, err := c.CRLs(cmd.Context())
				if err != nil {
					return err
				}
				res := &ca.Result{Ceremony: "crl", Dir: f.dir}
				if out != "" {
					if err := os.MkdirAll(out, 0o755); err != nil {
						return err
					}
				}
				for _, crl := range crls {
					file := ""
					if out != "" {
						file = filepath.Join(out, fmt.Sprintf("crl-%x.pem", crl.AuthorityKeyId))
						if err := writeFileAtomic(file, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw})); err != nil {
							return err
						}
					}
					res.CRLs = append(res.CRLs, ca.CRLSummary{Issuer: crl.Issuer.String(), IssuerKeyID: fmt.Sprintf("%x", crl.AuthorityKeyId),
						Number: crl.Number.String(), Entries: len(crl.RevokedCertificateEntries), NextUpdate: crl.NextUpdate, SHA256: ca.Fingerprint(crl.Raw), File: file})
				}
				res.NextSteps = []string{"publish a new bundle (`wsc ca bundle`)"}
				return f.print(cmd.OutOrStdout(), res)
			})
		},
	}
	f.register(cmd, true)
	f.registerRoot(cmd, false)
	outputFlag(cmd.Flags(), &out, "also write crl-<issuer key id>.pem files into this folder (always kept in CA-DIR/"+ca.CRLDir+")")
	cmd.Flags().BoolVar(&withRoot, "root", false, "root machine: sign the CRL of every trusted root (no database needed)")
	cmd.Flags().StringVar(&vl, "validity", "", "root CRLs: nextUpdate distance (default 30d)")
	return cmd
}

// writeFileAtomic writes a public file outside the CA folder through a
// temporary file and a rename.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func caImportCmd() *cobra.Command {
	var (
		f     caFlags
		roots string
	)
	cmd := &cobra.Command{
		Use:   "import [FILE...]",
		Short: "Station: take in what the root machine produced (root.crt, CRLs, cross-certificates), each checked first",
		Long: "--roots root.crt replaces the trust list: a root not yet trusted must come with its new-by-old\n" +
			"cross-certificate (first import: compare the printed SHA-256 with the root machine's paper log).\n" +
			"FILE... are CRLs (signed by a CA of this folder, not expired, number not older) and CA certificates\n" +
			"(signed by a trusted root). Nothing is changed unless every file passes.",
		RunE: func(cmd *cobra.Command, args []string) error {
			// What cannot be read or parsed at all is bad input (exit 2);
			// what parses but does not fit the folder is a failed check
			// (ca.ErrReceived and friends, exit 1).
			for _, p := range append(args[:len(args):len(args)], roots) {
				if p == "" {
					continue
				}
				raw, err := os.ReadFile(p)
				if err != nil {
					return usagef("import: %w", err)
				}
				if _, err := ca.Inspect(raw); err != nil {
					return usagef("import %s: %w", p, err)
				}
			}
			res, err := ca.Import(cmd.Context(), f.ceremony(nil, nil), ca.ImportOptions{Roots: roots, Files: args})
			if err != nil {
				return err
			}
			return f.print(cmd.OutOrStdout(), res)
		},
	}
	f.register(cmd, false)
	cmd.Flags().StringVar(&roots, "roots", "", "root.crt from the root machine")
	return cmd
}

func caBundleCmd() *cobra.Command {
	var (
		f   caFlags
		out string
	)
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Write the trust bundle (PEM): every trusted root, every intermediate ever used, cross-certificates, a CRL per CA",
		Long: "Refuses (fails closed) unless every CA in the bundle has a CRL signed by itself with nextUpdate in the\n" +
			"future: intermediates' CRLs from `wsc ca crl` (with --db they are regenerated first), roots' CRLs from\n" +
			"`wsc ca crl --root` on the root machine, brought in with `wsc ca import`.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("-o/--output is required")
			}
			if f.dbPath != "" {
				if err := f.withCA(func(c *ca.CA, _ *session, _ []byte) error {
					_, err := c.CRLs(cmd.Context())
					return err
				}); err != nil {
					return err
				}
			}
			var s *session
			if f.dbPath != "" {
				var err error
				if s, err = f.newSession(nil); err != nil {
					return err
				}
				defer s.Close()
			}
			_, res, err := ca.WriteBundle(cmd.Context(), f.ceremony(s, nil), out)
			if err != nil {
				return err
			}
			return f.print(cmd.OutOrStdout(), res)
		},
	}
	f.register(cmd, true)
	outputFlag(cmd.Flags(), &out, "bundle file (PEM)")
	return cmd
}

func caStatusCmd() *cobra.Command {
	var (
		dir    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "What the CA folder holds, which root is new and which old, validity left, CRLs due, warnings (no passphrase)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := ca.ReadStatus(dir, time.Now())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			fmt.Fprint(cmd.OutOrStdout(), st.String())
			return nil
		},
	}
	caDirFlag(cmd.Flags(), &dir)
	cmd.Flags().BoolVar(&asJSON, "json", false, "JSON output (snake_case)")
	return cmd
}

func caInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Show a certificate, CSR or CRL (PEM or DER) in readable form with its SHA-256 fingerprint",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return usagef("inspect: %w", err)
			}
			items, err := ca.Inspect(raw)
			if err != nil {
				return usagef("inspect %s: %w", args[0], err)
			}
			displaySerials(items)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(items)
			}
			for _, it := range items {
				fmt.Fprint(cmd.OutOrStdout(), it.String())
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "JSON output (snake_case)")
	return cmd
}

func caPassphraseCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "passphrase", Short: "Passphrases of the CA keys"}
	var (
		f          caFlags
		key, newSo string
		generate   bool
	)
	change := &cobra.Command{
		Use:   "change",
		Short: "Re-encrypt the root, intermediate or audit key(s) with a new passphrase, atomically",
		RunE: func(cmd *cobra.Command, _ []string) error {
			name := map[string]string{"root": "root key", "intermediate": "intermediate key", "audit": "audit key"}[key]
			if name == "" {
				return usagef("--key must be root, intermediate or audit, not %q", key)
			}
			old, err := f.passphrase("current " + name)
			if err != nil {
				return err
			}
			defer clear(old)
			if newSo == "" {
				newSo = "prompt"
			}
			nw, err := newSecret(cmd.OutOrStdout(), newSo, generate, name)
			if err != nil {
				return err
			}
			defer clear(nw)
			res, err := ca.ChangePassphrase(cmd.Context(), f.ceremony(nil, nil), key, old, nw)
			if err != nil {
				return err
			}
			return f.print(cmd.OutOrStdout(), res)
		},
	}
	f.register(change, false)
	change.Flags().StringVar(&key, "key", "", "root, intermediate or audit")
	change.Flags().StringVar(&newSo, "new-passphrase-source", "prompt", "where the new passphrase comes from (asked twice at a prompt): "+secretSources)
	change.Flags().BoolVar(&generate, "generate-passphrase", false, "generate a diceware passphrase and show it once")
	cmd.AddCommand(change)
	return cmd
}

func caCustodyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "custody", Short: "Quorum custody of the root key"}
	var (
		f        caFlags
		names    []string
		quorum   int
		shareDir string
	)
	reshare := &cobra.Command{
		Use:   "reshare",
		Short: "New custodians or quorum: the current shares unlock the root, a new secret is split, old shares become useless",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(names) < 2 || quorum < 2 {
				return usagef("--custodian-name (at least 2) and --quorum are required")
			}
			secret, used, err := f.rootSecret(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer clear(secret)
			cust, err := ca.NewCustody(names, quorum)
			if err != nil {
				return err
			}
			defer cust.Wipe()
			// Share files first (removed if the ceremony fails); shown
			// shares after it succeeded.
			var files []string
			if shareDir != "" {
				if files, err = showShares(cmd.OutOrStdout(), cust, shareDir); err != nil {
					return err
				}
			}
			res, err := ca.Reshare(cmd.Context(), f.ceremony(nil, used), secret, cust)
			if err != nil {
				for _, p := range files {
					os.Remove(p)
				}
				return err
			}
			if shareDir == "" {
				showShares(cmd.OutOrStdout(), cust, "")
			}
			return f.print(cmd.OutOrStdout(), res)
		},
	}
	f.register(reshare, false)
	f.registerRoot(reshare, false)
	reshare.Flags().StringArrayVar(&names, "custodian-name", nil, "new custodians, in order (repeat)")
	reshare.Flags().IntVar(&quorum, "quorum", 0, "how many of the new custodians unlock the root")
	reshare.Flags().StringVar(&shareDir, "share-dir", "", "write each new share to DIR/<name>.share (0600) instead of showing it")
	cmd.AddCommand(reshare)
	return cmd
}

// ledgerJSON is `wsc ca ledger verify --json`: the report with a result
// ("ok" or "failed") and, when failed, a reason_code (ledger-broken,
// ledger-unsigned; docs/reason-codes.md) and the human message.
type ledgerJSON struct {
	Result     string `json:"result"`
	ReasonCode string `json:"reason_code,omitempty"`
	Message    string `json:"message,omitempty"`
	ca.LedgerReport
}

func caLedgerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ledger", Short: "The CA folder's own ceremony ledger"}
	var (
		dir, pin string
		asJSON   bool
	)
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the folder ledger's hash chain and signatures (and the ledger key's fingerprint with --pin)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := ca.VerifyLedger(dir, pin)
			if err != nil && asJSON && (errors.Is(err, ca.ErrLedgerBroken) || errors.Is(err, ca.ErrLedgerUnsigned)) {
				code := "ledger-broken"
				if !errors.Is(err, ca.ErrLedgerBroken) {
					code = "ledger-unsigned"
				}
				out := ledgerJSON{Result: "failed", ReasonCode: code, Message: err.Error(), LedgerReport: rep}
				if jerr := json.NewEncoder(cmd.OutOrStdout()).Encode(out); jerr != nil {
					return jerr
				}
			}
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(ledgerJSON{Result: "ok", LedgerReport: rep})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ledger OK: %d records, %d signed, %d after the last signature; ledger key SHA-256 %s\n",
				rep.Records, rep.Signed, rep.UnsignedTail, rep.KeyFingerprint)
			return nil
		},
	}
	caDirFlag(verify.Flags(), &dir)
	verify.Flags().StringVar(&pin, "pin", "", "expected SHA-256 of the ledger key (from the paper log)")
	verify.Flags().BoolVar(&asJSON, "json", false, "JSON output")
	cmd.AddCommand(verify)
	return cmd
}

// ceremonyFlow builds the steps of a guided ceremony (`wsc ca ceremony`)
// for one machine: each step calls the same package ca function as the
// plain command. media is the removable medium's folder.
func ceremonyFlow(role, flow, dir, media, actor string) ([]ui.CeremonyStep, error) {
	cer := ca.Ceremony{Dir: dir, Actor: actor}
	in := func(name string) string { return filepath.Join(media, name) }
	text := func(r *ca.Result) string { displaySerials(r); return r.String() }
	// rootSecrets are the prompts that unlock the root (shares under custody).
	rootSecrets := []string{"root key passphrase"}
	if q, _, err := ca.CustodyInfo(dir); err == nil {
		rootSecrets = nil
		for i := 1; i <= q; i++ {
			rootSecrets = append(rootSecrets, fmt.Sprintf("custodian share %d of %d", i, q))
		}
	}
	unlock := func(secrets [][]byte) ([]byte, []string, error) {
		if !ca.HasCustody(dir) {
			return append([]byte(nil), secrets[0]...), nil, nil
		}
		var shares []string
		for _, s := range secrets {
			shares = append(shares, string(s))
		}
		return ca.JoinShares(dir, shares)
	}
	newPass := func(secrets [][]byte) ([]byte, error) {
		if string(secrets[0]) != string(secrets[1]) {
			return nil, ca.ErrPassphraseMismatch
		}
		if err := ca.CheckPassphraseStrength(secrets[0]); err != nil {
			return nil, err
		}
		return append([]byte(nil), secrets[0]...), nil
	}
	rootCRLs := ui.CeremonyStep{Title: "Sign the CRL of every trusted root", Machine: "root machine", Secrets: rootSecrets,
		Run: func(ctx context.Context, s [][]byte) (string, error) {
			secret, used, err := unlock(s)
			if err != nil {
				return "", err
			}
			defer clear(secret)
			c := cer
			c.Custodians = used
			_, res, err := ca.RootCRLs(ctx, c, secret, 30*24*time.Hour, media)
			if err != nil {
				return "", err
			}
			return text(res), nil
		}}
	copyOut := func(title string, files ...string) ui.CeremonyStep {
		return ui.CeremonyStep{Title: title, Machine: "root machine", Run: func(context.Context, [][]byte) (string, error) {
			var out []string
			for _, f := range files {
				raw, err := os.ReadFile(filepath.Join(dir, f))
				if err != nil {
					return "", err
				}
				dst := in(filepath.Base(f))
				if err := writeFileAtomic(dst, raw); err != nil {
					return "", err
				}
				out = append(out, "copied "+f+" to "+dst)
			}
			return strings.Join(out, "\n"), nil
		}}
	}
	switch role + "/" + flow {
	case "root/init":
		return []ui.CeremonyStep{
			{Title: "Create the root", Machine: "root machine", Secrets: []string{"new root key passphrase", "repeat the new root key passphrase"},
				Run: func(ctx context.Context, s [][]byte) (string, error) {
					p, err := newPass(s)
					if err != nil {
						return "", err
					}
					defer clear(p)
					res, err := ca.InitCA(ctx, cer, p, ca.InitOptions{RootOnly: true})
					if err != nil {
						return "", err
					}
					return text(res), nil
				}},
			rootCRLs,
			copyOut("Put root.crt on the medium", ca.RootCertFile),
		}, nil
	case "root/sign":
		return []ui.CeremonyStep{
			{Title: "Sign the station's CSR", Machine: "root machine", Carry: []string{"next.csr (from the station)"}, Secrets: rootSecrets,
				Run: func(ctx context.Context, s [][]byte) (string, error) {
					raw, err := os.ReadFile(in("next.csr"))
					if err != nil {
						return "", err
					}
					der := raw
					if blk, _ := pem.Decode(raw); blk != nil {
						der = blk.Bytes
					}
					secret, used, err := unlock(s)
					if err != nil {
						return "", err
					}
					defer clear(secret)
					c := cer
					c.Custodians = used
					_, res, err := ca.SignIntermediateCSR(ctx, c, secret, der, ca.IntermediateTemplate{}, in("chain.pem"))
					if err != nil {
						return "", err
					}
					return text(res), nil
				}},
			rootCRLs,
		}, nil
	case "root/rollover":
		return []ui.CeremonyStep{
			{Title: "Roll the root over", Machine: "root machine", Secrets: rootSecrets,
				Run: func(ctx context.Context, s [][]byte) (string, error) {
					secret, used, err := unlock(s)
					if err != nil {
						return "", err
					}
					defer clear(secret)
					c := cer
					c.Custodians = used
					_, res, err := ca.RolloverFolder(ctx, c, secret, ca.RolloverOptions{}, in("chain.pem"))
					if err != nil {
						return "", err
					}
					return text(res), nil
				}},
			rootCRLs,
			copyOut("Put root.crt and the cross-certificates on the medium", ca.RootCertFile,
				filepath.Join(ca.CrossDir, "new-by-old.crt"), filepath.Join(ca.CrossDir, "old-by-new.crt")),
		}, nil
	case "station/rollover":
		return []ui.CeremonyStep{
			{Title: "Trust the new root (with its cross-certificates) and take in the CRLs of both roots", Machine: "station",
				Carry: []string{"root.crt, new-by-old.crt, old-by-new.crt, crl-<keyid>.pem (from the root machine: `wsc ca ceremony --role root --flow rollover`)"},
				Run: func(ctx context.Context, _ [][]byte) (string, error) {
					crls, _ := filepath.Glob(in("crl-*.pem"))
					res, err := ca.Import(ctx, cer, ca.ImportOptions{Roots: in("root.crt"), Files: append([]string{in("new-by-old.crt"), in("old-by-new.crt")}, crls...)})
					if err != nil {
						return "", err
					}
					return text(res), nil
				}},
			{Title: "Install the re-certified intermediate", Machine: "station", Carry: []string{"chain.pem (from the root machine)"}, Secrets: []string{"intermediate key passphrase"},
				Run: func(ctx context.Context, s [][]byte) (string, error) {
					chain, err := readCertFile(in("chain.pem"))
					if err != nil {
						return "", err
					}
					res, err := ca.InstallIntermediate(ctx, cer, s[0], chain)
					if err != nil {
						return "", err
					}
					return text(res) + "next: `wsc ca crl --db F` and `wsc ca bundle`\n", nil
				}},
		}, nil
	case "station/rotate", "station/setup":
		var steps []ui.CeremonyStep
		if flow == "setup" {
			steps = append(steps, ui.CeremonyStep{Title: "Trust the root (compare its SHA-256 with the paper log)", Machine: "station", Carry: []string{"root.crt (from the root machine)"},
				Run: func(ctx context.Context, _ [][]byte) (string, error) {
					res, err := ca.Import(ctx, cer, ca.ImportOptions{Roots: in("root.crt")})
					if err != nil {
						return "", err
					}
					return text(res), nil
				}})
		}
		csrSecrets := []string{"intermediate key passphrase"}
		if flow == "setup" {
			csrSecrets = []string{"new intermediate key passphrase", "repeat the new intermediate key passphrase"}
		}
		steps = append(steps,
			ui.CeremonyStep{Title: "Make the next intermediate key and its CSR", Machine: "station", Secrets: csrSecrets,
				Run: func(ctx context.Context, s [][]byte) (string, error) {
					p := append([]byte(nil), s[0]...)
					if len(s) == 2 {
						var err error
						if p, err = newPass(s); err != nil {
							return "", err
						}
					}
					defer clear(p)
					cn := "wsc Station Intermediate CA " + time.Now().UTC().Format(time.DateOnly)
					_, res, err := ca.IntermediateCSR(ctx, cer, p, cn, in("next.csr"))
					if err != nil {
						return "", err
					}
					return text(res), nil
				}},
			ui.CeremonyStep{Title: "Install the signed intermediate and the root CRLs", Machine: "station",
				Carry: []string{"chain.pem and crl-<keyid>.pem (from the root machine: `wsc ca ceremony --role root --flow sign`)"}, Secrets: []string{"intermediate key passphrase"},
				Run: func(ctx context.Context, s [][]byte) (string, error) {
					chain, err := readCertFile(in("chain.pem"))
					if err != nil {
						return "", err
					}
					res, err := ca.InstallIntermediate(ctx, cer, s[0], chain)
					if err != nil {
						return "", err
					}
					crls, _ := filepath.Glob(in("crl-*.pem"))
					ires, err := ca.Import(ctx, cer, ca.ImportOptions{Files: crls})
					if err != nil {
						return "", err
					}
					return text(res) + text(ires) + "next: `wsc ca crl --db F` and `wsc ca bundle`\n", nil
				}})
		return steps, nil
	}
	return nil, usagef("no guided flow %q for the %s: root: init, sign, rollover; station: setup, rotate, rollover", flow, role)
}

func caCeremonyCmd() *cobra.Command {
	var (
		dir, media, role, flow, actor, transcript string
	)
	cmd := &cobra.Command{
		Use:   "ceremony",
		Short: "Guided ceremony in the terminal: what to carry, secrets, checks, and a transcript for the paper log",
		Long: "Walks security staff through one machine's part of a ceremony, running the same steps as the plain\n" +
			"commands: --role root --flow init|sign|rollover on the root machine, --role station --flow setup|rotate|rollover on\n" +
			"the station. --media is the removable medium's folder.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			steps, err := ceremonyFlow(role, flow, dir, media, actor)
			if err != nil {
				return err
			}
			m := ui.NewCeremonyModel(ui.CeremonyOptions{Title: "wsc ca ceremony — " + role + " " + flow, Steps: steps,
				Transcript: func(s string) error {
					if transcript == "" {
						return nil
					}
					return writeFileAtomic(transcript, []byte(s+"\n"))
				}})
			if _, err := tea.NewProgram(m, tea.WithContext(cmd.Context())).Run(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), m.Transcript())
			if !m.Finished() {
				if m.Err() != nil {
					return m.Err()
				}
				return errors.New("ceremony stopped before its last step")
			}
			return nil
		},
	}
	caDirFlag(cmd.Flags(), &dir)
	cmd.Flags().StringVar(&media, "media", "", "folder of the removable medium")
	cmd.Flags().StringVar(&role, "role", "", "root or station")
	cmd.Flags().StringVar(&flow, "flow", "", "root: init, sign, rollover; station: setup, rotate, rollover")
	cmd.Flags().StringVar(&actor, "actor", defaultActor(), "person recorded in the ledger")
	cmd.Flags().StringVar(&transcript, "transcript", "", "also write the transcript to this file")
	cmd.MarkFlagRequired("media")
	cmd.MarkFlagRequired("role")
	cmd.MarkFlagRequired("flow")
	return cmd
}
