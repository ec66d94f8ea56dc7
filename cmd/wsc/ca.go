package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/station"
)

// CAAuditLog is the CA folder's own audit log (JSON lines), used for
// ceremonies run without --db, e.g. on the offline root machine.
const CAAuditLog = "audit.log"

// caFlags are the flags every ceremony command shares.
type caFlags struct {
	dir, passSource, dbPath, actor string
}

func (f *caFlags) register(cmd *cobra.Command, withDB bool) {
	cmd.Flags().StringVar(&f.dir, "dir", "ca", "CA folder")
	cmd.Flags().StringVar(&f.passSource, "passphrase-source", "prompt",
		"where the key passphrase (or token PIN) comes from: prompt, file:PATH, fd:N or env:NAME — never the passphrase itself")
	cmd.Flags().StringVar(&f.actor, "actor", defaultActor(), "person or station recorded in the audit record")
	if withDB {
		cmd.Flags().StringVar(&f.dbPath, "db", "", "station database: audit records (and revocations, CRL numbers) go there; without it to DIR/"+CAAuditLog)
	}
}

func defaultActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "security"
}

// passphrase reads the passphrase; "none" (token keys with pin-source) gives nil.
func (f *caFlags) passphrase() ([]byte, error) {
	if f.passSource == "none" {
		return nil, nil
	}
	p, err := ca.ReadPassphrase(f.passSource)
	if err != nil {
		return nil, fmt.Errorf("passphrase (--passphrase-source): %w", err)
	}
	return p, nil
}

// session is an open ceremony: the audit sink and, with --db, the station database.
type session struct {
	store   *db.Store
	auditor ca.Auditor
	actor   string
}

func (s *session) Close() error {
	if s.store != nil {
		return s.store.Close()
	}
	return nil
}

// audit writes a ceremony record; a ceremony whose record fails is reported as failed.
func (s *session) audit(ctx context.Context, kind string, detail map[string]any) error {
	if err := s.auditor.Audit(ctx, kind, s.actor, detail); err != nil {
		return fmt.Errorf("audit %s: %w", kind, err)
	}
	return nil
}

// newSession opens the audit sink: the station database (signed with the
// station's audit key when a passphrase is at hand) or the folder's log.
func (f *caFlags) newSession(pass []byte) (*session, error) {
	s := &session{actor: f.actor}
	if f.dbPath == "" {
		s.auditor = fileAuditor{path: filepath.Join(f.dir, CAAuditLog)}
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
	s.store, s.auditor = st, st
	return s, nil
}

// openCA unlocks the CA with the session's auditor (and store).
// withCA reads the passphrase from the flags' source, opens the audit
// session (station database or the CA folder's audit.log), unlocks the CA
// and runs fn; everything is closed and the passphrase cleared afterwards.
func (f *caFlags) withCA(fn func(c *ca.CA, s *session, pass []byte) error) error {
	pass, err := f.passphrase()
	if err != nil {
		return err
	}
	defer clear(pass)
	s, err := f.newSession(pass)
	if err != nil {
		return err
	}
	defer s.Close()
	c, err := f.openCA(s, pass)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c, s, pass)
}

func (f *caFlags) openCA(s *session, pass []byte) (*ca.CA, error) {
	opts := []ca.Option{ca.WithAuditor(s.auditor, s.actor)}
	if s.store != nil {
		opts = append(opts, ca.WithStore(station.CAStore(s.store)))
	}
	return ca.Open(f.dir, pass, opts...)
}

// fileAuditor appends JSON lines to the CA folder's audit log, fsynced.
type fileAuditor struct{ path string }

// Audit implements ca.Auditor.
func (a fileAuditor) Audit(_ context.Context, kind, actor string, detail any) error {
	line, err := json.Marshal(map[string]any{"at": time.Now().UTC().Format(time.RFC3339Nano), "kind": kind, "actor": actor, "detail": detail})
	if err != nil {
		return err
	}
	fh, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	if _, err := fh.Write(append(line, '\n')); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

func writePEMFile(path, typ string, ders ...[]byte) error {
	var b []byte
	for _, d := range ders {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	return os.WriteFile(path, b, 0o644)
}

func caCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "CA ceremonies: init, intermediate csr/sign/install, root rollover, revoke, crl, bundle, status",
		Long: "Ceremonies on the station's offline CA (docs/ca-ceremony.md). Passphrases are read from\n" +
			"--passphrase-source (prompt, file:PATH, fd:N, env:NAME), never from the command line.\n" +
			"Each ceremony writes an audit record: into the station database with --db, otherwise into DIR/" + CAAuditLog + ".",
	}
	cmd.AddCommand(caInitCmd(), caIntermediateCmd(), caRootCmd(), caRevokeCmd(), caCRLCmd(), caBundleCmd(), caStatusCmd())
	return cmd
}

func caInitCmd() *cobra.Command {
	var (
		f                        caFlags
		org, rootCN, intCN       string
		keyURI                   string
		rootValidity, intValidty string
		domains                  []string
		force                    bool
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the root and the first station intermediate in --dir",
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := ca.InitOptions{Organization: org, RootCommonName: rootCN, IntermediateCommonName: intCN,
				PermittedDNSDomains: domains, Overwrite: force, KeyURI: keyURI}
			var err error
			if rootValidity != "" {
				if opts.RootValidity, err = ca.ParseDuration(rootValidity); err != nil {
					return fmt.Errorf("--root-validity: %w", err)
				}
			}
			if intValidty != "" {
				if opts.IntermediateValidity, err = ca.ParseDuration(intValidty); err != nil {
					return fmt.Errorf("--intermediate-validity: %w", err)
				}
			}
			pass, err := f.passphrase()
			if err != nil {
				return err
			}
			defer clear(pass)
			if err := ca.Init(f.dir, pass, opts); err != nil {
				return err
			}
			// The audit key is created here, explicitly, and never on first use.
			auditFP := "not created (token CA): run `wsc audit init-key --dir " + f.dir + "`"
			if len(pass) > 0 && !ca.IsTokenKey(filepath.Join(f.dir, ca.IntermediateKeyFile)) {
				if _, auditFP, err = station.CreateAuditKey(f.dir, pass); err != nil && !(force && errors.Is(err, os.ErrExist)) {
					return err
				} else if err != nil {
					auditFP = "kept the existing key (" + ca.AuditKeyFile + ")"
				}
			}
			st, err := ca.ReadStatus(f.dir, time.Now())
			if err != nil {
				return err
			}
			s, err := f.newSession(pass)
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.audit(cmd.Context(), "ca.init", map[string]any{
				"dir": f.dir, "root_key_id": st.Roots[0].KeyID, "root": st.Roots[0].Subject,
				"intermediate_key_id": st.Issuer.KeyID, "intermediate": st.Issuer.Subject,
				"keys": st.IssuerKey, "permitted_dns_domains": st.PermittedDNSDomains,
			}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "CA created in %s\nroot:         %s (key %s, %s)\nintermediate: %s (key %s, %s)\naudit key:    %s (pin it: audit.key_fingerprints in the station config)\n",
				f.dir, st.Roots[0].Subject, st.Roots[0].KeyID, st.RootKey, st.Issuer.Subject, st.Issuer.KeyID, st.IssuerKey, auditFP)
			return nil
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVar(&org, "org", "", "organisation in the CA subjects")
	cmd.Flags().StringVar(&rootCN, "root-cn", "", "root common name (default \"wsc Root CA\")")
	cmd.Flags().StringVar(&intCN, "intermediate-cn", "", "intermediate common name (default \"wsc Station Intermediate CA\")")
	cmd.Flags().StringSliceVar(&domains, "domain", nil, "permitted DNS domain of device names (default "+ca.DefaultPermittedDNSDomain+")")
	cmd.Flags().StringVar(&rootValidity, "root-validity", "", "root validity, e.g. 20y")
	cmd.Flags().StringVar(&intValidty, "intermediate-validity", "", "intermediate validity, e.g. 5y")
	cmd.Flags().StringVar(&keyURI, "key-uri", "", "make the keys in a PKCS#11 token: pkcs11:module-path=…;token=…[?pin-source=FILE] (no pin-value)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing CA folder")
	return cmd
}

func caIntermediateCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "intermediate", Short: "Rotate the station intermediate: csr (station), sign (root machine), install (station)"}

	var (
		fc          caFlags
		cn, out, ku string
	)
	csr := &cobra.Command{
		Use:   "csr",
		Short: "Make the next intermediate key (encrypted, or in the token) and write its CSR",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("-o/--out is required")
			}
			if cn == "" {
				cn = "wsc Station Intermediate CA " + time.Now().UTC().Format("2006-01-02")
			}
			pass, err := fc.passphrase()
			if err != nil {
				return err
			}
			defer clear(pass)
			var kopts []ca.KeyOption
			if cmd.Flags().Changed("key-uri") {
				kopts = append(kopts, ca.WithKeyURI(ku))
			}
			der, err := ca.GenerateIntermediateCSR(fc.dir, pass, cn, kopts...)
			if err != nil {
				return err
			}
			if err := writePEMFile(out, "CERTIFICATE REQUEST", der); err != nil {
				return err
			}
			s, err := fc.newSession(pass)
			if err != nil {
				return err
			}
			defer s.Close()
			sum := sha256.Sum256(der)
			if err := s.audit(cmd.Context(), "ca.intermediate.csr", map[string]any{"subject": cn, "csr_sha256": hex.EncodeToString(sum[:]),
				"key": map[bool]string{true: "pkcs11 token", false: "encrypted file"}[ca.IsTokenKey(filepath.Join(fc.dir, ca.NextIntermediateKeyFile))]}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "CSR for %q written to %s (sha256 %x); sign it on the root machine with `wsc ca intermediate sign`\n", cn, out, sum)
			return nil
		},
	}
	fc.register(csr, true)
	csr.Flags().StringVar(&cn, "cn", "", "common name of the new intermediate")
	csr.Flags().StringVarP(&out, "out", "o", "", "CSR output file (PEM)")
	csr.Flags().StringVar(&ku, "key-uri", "", "make the key in this PKCS#11 token (default: where the current intermediate key is)")

	var (
		fs                          caFlags
		csrIn, sOut, sCN, sOrg, sVl string
		sDomains                    []string
	)
	sign := &cobra.Command{
		Use:   "sign",
		Short: "Root ceremony: certify an intermediate CSR with the root key in --dir (only the CSR's key is used)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if csrIn == "" || sOut == "" {
				return errors.New("--csr and -o/--out are required")
			}
			raw, err := os.ReadFile(csrIn)
			if err != nil {
				return err
			}
			der := raw
			if blk, _ := pem.Decode(raw); blk != nil {
				der = blk.Bytes
			}
			t := ca.IntermediateTemplate{CommonName: sCN, Organization: sOrg, PermittedDNSDomains: sDomains}
			if sVl != "" {
				if t.Validity, err = ca.ParseDuration(sVl); err != nil {
					return fmt.Errorf("--validity: %w", err)
				}
			}
			pass, err := fs.passphrase()
			if err != nil {
				return err
			}
			defer clear(pass)
			cert, err := ca.SignIntermediate(fs.dir, pass, der, t)
			if err != nil {
				return err
			}
			// After a rollover, add the new-by-old cross certificate so that
			// verifiers still trusting only the old root reach the chain.
			ders := [][]byte{cert.Raw}
			if cross, err := os.ReadFile(filepath.Join(fs.dir, ca.CrossDir, "new-by-old.crt")); err == nil {
				if cs, err := ca.ParseCertificatesPEM(cross); err == nil && len(cs) > 0 && string(cs[0].SubjectKeyId) == string(cert.AuthorityKeyId) {
					ders = append(ders, cs[0].Raw)
				}
			}
			if err := writePEMFile(sOut, "CERTIFICATE", ders...); err != nil {
				return err
			}
			s, err := fs.newSession(pass)
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.audit(cmd.Context(), "ca.intermediate.sign", map[string]any{
				"serial": cert.SerialNumber.Text(16), "subject": cert.Subject.String(), "key_id": hex.EncodeToString(cert.SubjectKeyId),
				"issuer_key_id": hex.EncodeToString(cert.AuthorityKeyId), "not_after": cert.NotAfter, "permitted_dns_domains": cert.PermittedDNSDomains,
			}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "intermediate %s (key %x) valid until %s written to %s; install it on the station with `wsc ca intermediate install`\n",
				cert.Subject, cert.SubjectKeyId, cert.NotAfter.Format(time.DateOnly), sOut)
			return nil
		},
	}
	fs.register(sign, true)
	sign.Flags().StringVar(&csrIn, "csr", "", "CSR file from `intermediate csr` (PEM or DER)")
	sign.Flags().StringVarP(&sOut, "out", "o", "", "certificate chain output file (PEM)")
	sign.Flags().StringVar(&sCN, "cn", "", "subject common name (default: the CSR's)")
	sign.Flags().StringVar(&sOrg, "org", "", "subject organisation")
	sign.Flags().StringSliceVar(&sDomains, "domain", nil, "permitted DNS domains (default "+ca.DefaultPermittedDNSDomain+")")
	sign.Flags().StringVar(&sVl, "validity", "", "validity, e.g. 5y (capped at the root's)")

	var (
		fi      caFlags
		chainIn string
	)
	install := &cobra.Command{
		Use:   "install",
		Short: "Install the signed intermediate for the pending key; the old one is retired (kept for its CRL)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if chainIn == "" {
				return errors.New("--chain is required")
			}
			raw, err := os.ReadFile(chainIn)
			if err != nil {
				return err
			}
			chain, err := ca.ParseCertificatesPEM(raw)
			if err != nil || len(chain) == 0 {
				return fmt.Errorf("--chain %s: no certificate (%v)", chainIn, err)
			}
			return fi.withCA(func(c *ca.CA, _ *session, pass []byte) error {
				if err := c.InstallIntermediate(cmd.Context(), chain, pass); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "installed %s (key %x); publish a new bundle (`wsc ca bundle`)\n", chain[0].Subject, chain[0].SubjectKeyId)
				return nil
			})
		},
	}
	fi.register(install, true)
	install.Flags().StringVar(&chainIn, "chain", "", "chain from `intermediate sign` (PEM)")

	cmd.AddCommand(csr, sign, install)
	return cmd
}

func caRootCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "root", Short: "Root ceremonies"}
	var (
		f            caFlags
		cn, validity string
	)
	rollover := &cobra.Command{
		Use:   "rollover",
		Short: "New root, cross-certificates both ways, intermediate re-certified; root.crt then holds both roots",
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := ca.RolloverOptions{CommonName: cn}
			var err error
			if validity != "" {
				if o.Validity, err = ca.ParseDuration(validity); err != nil {
					return fmt.Errorf("--validity: %w", err)
				}
			}
			return f.withCA(func(c *ca.CA, _ *session, pass []byte) error {
				ro, err := c.RolloverRoot(cmd.Context(), pass, o)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "new root %s (key %x) until %s\ncross certificates in %s; distribute the new bundle (`wsc ca bundle`) with both roots\n",
					ro.NewRoot.Subject, ro.NewRoot.SubjectKeyId, ro.NewRoot.NotAfter.Format(time.DateOnly), filepath.Join(f.dir, ca.CrossDir))
				return nil
			})
		},
	}
	f.register(rollover, true)
	rollover.Flags().StringVar(&cn, "cn", "", "common name of the new root (default: old CN + year)")
	rollover.Flags().StringVar(&validity, "validity", "", "validity of the new root, e.g. 20y")
	cmd.AddCommand(rollover)
	return cmd
}

// parseSerial reads a certificate serial in hex ("0x", colons and case allowed).
func parseSerial(s string) (*big.Int, error) {
	h := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "0x")
	h = strings.ReplaceAll(h, ":", "")
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || n.Sign() <= 0 {
		return nil, fmt.Errorf("serial %q is not a hexadecimal number", s)
	}
	return n, nil
}

func caRevokeCmd() *cobra.Command {
	var (
		f                        caFlags
		serial, certFile, reason string
	)
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a certificate: listed in the CRL of its own issuer (an intermediate: in the root's CRL)",
		Long: "--serial revokes a device certificate recorded in the station database; --cert FILE revokes the\n" +
			"certificate in FILE (a device certificate, or an intermediate of this CA after a compromise).",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.dbPath == "" || (serial == "") == (certFile == "") {
				return errors.New("--db and one of --serial or --cert are required")
			}
			code, err := ca.ParseReason(reason)
			if err != nil {
				return err
			}
			var target *x509.Certificate
			var n *big.Int
			if certFile != "" {
				raw, err := os.ReadFile(certFile)
				if err != nil {
					return err
				}
				cs, err := ca.ParseCertificatesPEM(raw)
				if err != nil || len(cs) == 0 {
					return fmt.Errorf("--cert %s: no certificate (%v)", certFile, err)
				}
				target = cs[0]
			} else if n, err = parseSerial(serial); err != nil {
				return err
			}
			return f.withCA(func(c *ca.CA, s *session, _ []byte) error {
				if target != nil {
					err = c.Revoke(cmd.Context(), target, code)
				} else {
					target, err = c.RevokeSerial(cmd.Context(), n, code)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked %x (%s, %s), issuer key %x; publish CRLs (`wsc ca crl`)\n",
					target.SerialNumber, target.Subject, ca.ReasonName(code), target.AuthorityKeyId)
				return nil
			})
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVar(&serial, "serial", "", "serial (hex) of a certificate recorded in the station database")
	cmd.Flags().StringVar(&certFile, "cert", "", "PEM file of the certificate to revoke")
	cmd.Flags().StringVar(&reason, "reason", "unspecified", "RFC 5280 reason: keyCompromise, superseded, cessationOfOperation, … or its number")
	return cmd
}

func caCRLCmd() *cobra.Command {
	var (
		f        caFlags
		out      string
		withRoot bool
	)
	cmd := &cobra.Command{
		Use:   "crl",
		Short: "Sign one CRL per issuer (current and retired intermediates), each with a new, higher number",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.dbPath == "" {
				return errors.New("--db is required (revocations and CRL numbers live in the station database)")
			}
			return f.withCA(func(c *ca.CA, _ *session, pass []byte) error {
				crls, err := c.CRLs(cmd.Context())
				if err != nil {
					return err
				}
				if withRoot {
					rc, err := c.CurrentRootCRL(cmd.Context(), pass)
					if err != nil {
						return err
					}
					crls = append(crls, rc)
				}
				if out != "" {
					if err := os.MkdirAll(out, 0o755); err != nil {
						return err
					}
				}
				for _, crl := range crls {
					line := fmt.Sprintf("CRL of issuer key %x: number %v, %d entries, next update %s", crl.AuthorityKeyId, crl.Number,
						len(crl.RevokedCertificateEntries), crl.NextUpdate.Format(time.RFC3339))
					if out != "" {
						p := filepath.Join(out, "crl-"+hex.EncodeToString(crl.AuthorityKeyId)+".pem")
						if err := writePEMFile(p, "X509 CRL", crl.Raw); err != nil {
							return err
						}
						line += " -> " + p
					}
					fmt.Fprintln(cmd.OutOrStdout(), line)
				}
				return nil
			})
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVarP(&out, "out", "o", "", "also write crl-<issuer key id>.pem files into this folder (always kept in DIR/"+ca.CRLDir+")")
	cmd.Flags().BoolVar(&withRoot, "root", false, "also sign the root's CRL (root key in --dir: ceremony machine)")
	return cmd
}

func caBundleCmd() *cobra.Command {
	var (
		f   caFlags
		out string
	)
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Write the trust bundle (PEM): roots, intermediates and cross-certificates, current CRLs",
		Long: "Without --db the bundle is read from the CA folder (no passphrase needed) with the last CRLs made;\n" +
			"with --db the CRLs are regenerated first.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("-o/--out is required")
			}
			var pass []byte
			if f.dbPath != "" {
				var err error
				if pass, err = f.passphrase(); err != nil {
					return err
				}
				defer clear(pass)
			}
			s, err := f.newSession(pass)
			if err != nil {
				return err
			}
			defer s.Close()
			if f.dbPath != "" {
				c, err := f.openCA(s, pass)
				if err != nil {
					return err
				}
				_, err = c.CRLs(cmd.Context())
				c.Close()
				if err != nil {
					return err
				}
			}
			b, err := ca.ReadBundle(f.dir)
			if err != nil {
				return err
			}
			data := b.PEM()
			if err := os.WriteFile(out, data, 0o644); err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			if err := s.audit(cmd.Context(), "ca.bundle", map[string]any{"file": out, "sha256": hex.EncodeToString(sum[:]),
				"roots": len(b.Roots), "intermediates": len(b.Intermediates), "crls": len(b.CRLs)}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "bundle %s: %d roots, %d intermediates/cross certificates, %d CRLs (sha256 %x)\n",
				out, len(b.Roots), len(b.Intermediates), len(b.CRLs), sum)
			return nil
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVarP(&out, "out", "o", "", "bundle file (PEM)")
	return cmd
}

func caStatusCmd() *cobra.Command {
	var (
		dir    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "What the CA folder holds, validity left, next CRL due, warnings (no passphrase needed)",
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
	cmd.Flags().StringVar(&dir, "dir", "ca", "CA folder")
	cmd.Flags().BoolVar(&asJSON, "json", false, "JSON output")
	return cmd
}
