package main

import (
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/station"
)

func auditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "The station database's audit ledger: verify it, create and pin its key, repair its witness file"}
	cmd.AddCommand(auditVerifyCmd(), auditInitKeyCmd(), auditFingerprintCmd(), auditRepairWitnessCmd())
	return cmd
}

// auditReport is the --json output of `wsc audit verify` (snake_case).
type auditReport struct {
	Result         string         `json:"result"` // "ok" or "failed"
	Database       string         `json:"database"`
	Witness        string         `json:"witness,omitempty"`
	WitnessChecked bool           `json:"witness_checked"`
	PinnedKeys     []string       `json:"pinned_keys"`
	Rows           int64          `json:"rows"`
	Checkpoints    int64          `json:"checkpoints"`
	HeadSeq        int64          `json:"head_seq"`
	HeadHash       string         `json:"head_hash"`
	UnsealedRows   int64          `json:"unsealed_rows"`
	CoveredRows    int64          `json:"covered_rows"`
	RowRefs        int64          `json:"row_refs"`
	WitnessLines   int            `json:"witness_lines"`
	WitnessNewest  int64          `json:"witness_newest_row"`
	Failures       []auditFailure `json:"failures"`
}

// auditFailure is one defect; Kind and ReasonCode are the same stable code
// (docs/reason-codes.md), Message the human reason.
type auditFailure struct {
	Kind       string `json:"kind"`
	ReasonCode string `json:"reason_code"`
	Row        int64  `json:"row,omitempty"`
	Table      string `json:"table,omitempty"`
	Key        string `json:"key,omitempty"`
	Message    string `json:"message"`
}

func auditVerifyCmd() *cobra.Command {
	var (
		path, cfgPath, keyPath, witness string
		plantDSN, stationID             string
		fingerprints                    []string
		noWitness, asJSON               bool
		maxGap                          int
	)
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify the audit ledger: chain, signed checkpoints (pinned key), witness file and every covered row; exit 1 when it is bad",
		Long: "Checks every link and signed checkpoint of the ledger, that the checkpoints are signed by the pinned audit key\n" +
			"(--audit-key-fingerprint or audit.key_fingerprints of --config; a public key found beside the database is used\n" +
			"only if its fingerprint is pinned), that the database holds every checkpoint of the witness file, and that every row\n" +
			"of the certificates, revocations, devices, keys, work orders, operators and QA tables matches the ledger.\n" +
			"Exit status: 0 the ledger is sound, 1 it is not (each defect is listed with its kind), 2 usage error.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ac station.AuditConfig
			caDir := ""
			if cfgPath != "" {
				f, err := station.LoadAuditConfig(cfgPath)
				if err != nil {
					return usagef("--config: %w", err)
				}
				ac, caDir = f.Audit, f.CADir
				if path == "" {
					path = f.Database
				}
			}
			if path == "" {
				return usagef("--db (or --config) is required")
			}
			if plantDSN != "" && asJSON {
				return usagef("--plant prints text: it does not combine with --json")
			}
			if _, err := os.Stat(path); err != nil {
				return usagef("database: %w", err)
			}
			if caDir == "" {
				caDir = filepath.Join(filepath.Dir(path), "ca")
			}
			if len(fingerprints) > 0 {
				ac.KeyFingerprints = fingerprints
			}
			if len(ac.KeyFingerprints) == 0 {
				return usagef("no pinned audit key: pass --audit-key-fingerprint HEX (printed by `wsc ca init` or `wsc audit init-key`; " +
					"`wsc audit fingerprint --pub FILE` on a trusted copy of the public key) or --config STATION.yaml with audit.key_fingerprints; " +
					"the public key beside the database is never trusted by itself")
			}
			pins, err := ac.Pins()
			if err != nil {
				return usagef("%w", err)
			}
			opts := db.AuditVerifyOptions{PinnedKeys: pins, MaxGap: maxGap}
			// The public key beside the database, if any, is only a convenience for
			// checkpoints written before they carried their key: VerifyAudit refuses it
			// unless its fingerprint is pinned.
			explicitKey := keyPath != ""
			if !explicitKey {
				keyPath = filepath.Join(caDir, ca.AuditPubKeyFile)
			}
			if pub, err := ca.LoadPublicKey(keyPath); err == nil {
				opts.Keys = []crypto.PublicKey{pub}
			} else if explicitKey {
				return usagef("--key: %w", err)
			}
			switch {
			case noWitness && witness != "":
				return usagef("--witness and --no-witness exclude each other")
			case noWitness:
			case witness != "":
				opts.Witness = witness
			default:
				opts.Witness = ac.WitnessPath(caDir)
			}
			s, err := db.Open(path, db.WithReadOnly())
			if err != nil {
				return internalError(err)
			}
			defer s.Close()
			sum, verr := s.VerifyAudit(cmd.Context(), opts)
			var ae *db.AuditError
			if verr != nil && !errors.As(verr, &ae) {
				return internalError(verr)
			}
			rep := auditReport{Result: "ok", Database: path, Witness: opts.Witness, WitnessChecked: opts.Witness != "", PinnedKeys: []string{}, Failures: []auditFailure{}}
			for _, p := range pins {
				rep.PinnedKeys = append(rep.PinnedKeys, hex.EncodeToString(p))
			}
			if sum != nil {
				rep.Rows, rep.Checkpoints, rep.HeadSeq, rep.HeadHash = sum.Rows, sum.Checkpoints, sum.HeadSeq, hex.EncodeToString(sum.HeadHash)
				rep.UnsealedRows, rep.CoveredRows, rep.RowRefs = sum.Unsealed, sum.CoveredRows, sum.RowRefs
				rep.WitnessLines, rep.WitnessNewest = sum.WitnessLines, sum.WitnessNewest
				for _, f := range sum.Failures {
					rep.Failures = append(rep.Failures, auditFailure{Kind: string(f.Kind), ReasonCode: string(f.Kind), Row: f.Seq, Table: f.Table, Key: displayKey(f.Table, f.Key), Message: f.Error()})
				}
			}
			if verr != nil {
				rep.Result = "failed"
				if len(rep.Failures) == 0 {
					rep.Failures = append(rep.Failures, auditFailure{Kind: string(ae.Kind), ReasonCode: string(ae.Kind), Row: ae.Seq, Table: ae.Table, Key: displayKey(ae.Table, ae.Key), Message: ae.Error()})
				}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				printAuditReport(out, rep)
			}
			var perr error
			if plantDSN != "" { // the plant's copy is checked whatever the local verdict
				perr = verifyAgainstPlant(cmd.Context(), s, plantDSN, stationID, out)
			}
			if verr != nil {
				return failed(verr)
			}
			return perr
		},
	}
	verify.Flags().StringVar(&path, "db", "", "station database file (default: the config's database)")
	verify.Flags().StringVar(&cfgPath, "config", "", "station config: database, CA folder, audit.key_fingerprints and audit.witness")
	verify.Flags().StringSliceVar(&fingerprints, "audit-key-fingerprint", nil, "pinned audit key: hex SHA-256 of its public key (repeatable); overrides the config")
	verify.Flags().StringVar(&keyPath, "key", "", "audit public key PEM for checkpoints that do not carry it (default: ca/audit.pub next to the database; used only if pinned)")
	verify.Flags().StringVar(&witness, "witness", "", "witness file (default: audit.witness in the CA folder, or the config's audit.witness)")
	verify.Flags().BoolVar(&noWitness, "no-witness", false, "do not check a witness file (a deleted ledger tail then goes unnoticed); the report says so")
	verify.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	verify.Flags().IntVar(&maxGap, "max-gap", 0, "most rows allowed between signed checkpoints (default: the station's interval)")
	verify.Flags().StringVar(&plantDSN, "plant", "", "also check the ledger against the plant registry's witnessed copy (PostgreSQL DSN)")
	verify.Flags().StringVar(&stationID, "station", "", "station id in the plant (with --plant)")
	return verify
}

// displayKey shows a row key of the certificates and revocations tables
// (a certificate serial, db's internal lower-case key) in the one printed
// form of a serial.
func displayKey(table, key string) string {
	if key != "" && (table == "certificates" || table == "revocations") {
		return db.DisplaySerial(key)
	}
	return key
}

func printAuditReport(w io.Writer, r auditReport) {
	if r.Result == "ok" {
		fmt.Fprintf(w, "audit ledger: ok — %d rows, %d signed checkpoints, head row %d %s\n", r.Rows, r.Checkpoints, r.HeadSeq, r.HeadHash)
		fmt.Fprintf(w, "covered rows: %d rows of certificates, revocations, device bindings, keys, work orders, operators and QA verdicts match the ledger\n", r.CoveredRows)
		if r.UnsealedRows > 0 {
			fmt.Fprintf(w, "unsealed:     the last %d rows follow the last signed checkpoint (the station's next checkpoint will seal them)\n", r.UnsealedRows)
		}
	} else {
		fmt.Fprintf(w, "audit ledger: FAILED — %d defect(s)\n", len(r.Failures))
		for _, f := range r.Failures {
			fmt.Fprintf(w, "  [%s] %s\n", f.Kind, f.Message)
		}
	}
	if r.WitnessChecked {
		fmt.Fprintf(w, "witness:      %s — %d signed checkpoints, newest of row %d\n", r.Witness, r.WitnessLines, r.WitnessNewest)
	} else {
		fmt.Fprintln(w, "witness:      NOT CHECKED (--no-witness): a deleted ledger tail would go unnoticed")
	}
}

func auditInitKeyCmd() *cobra.Command {
	var dir, passSource string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "init-key",
		Short: "Create the station's audit key (once; encrypted PKCS#8) and print the fingerprint to pin in the station config",
		Long: "The audit key signs the ledger's checkpoints. It is created only by this command (and by `wsc ca init`),\n" +
			"never implicitly: a station whose audit.key is missing stops. An existing key is never replaced.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			pass, err := ca.ReadPassphrase(passSource)
			if err != nil {
				return usagef("passphrase (--passphrase-source): %w", err)
			}
			defer clear(pass)
			_, fp, err := station.CreateAuditKey(dir, pass)
			if errors.Is(err, fs.ErrExist) {
				return usagef("%w (an audit key is never replaced: pin its fingerprint, `wsc audit fingerprint`)", err)
			}
			if err != nil {
				return internalError(err)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]string{"key_file": filepath.Join(dir, ca.AuditKeyFile),
					"public_key_file": filepath.Join(dir, ca.AuditPubKeyFile), "fingerprint": fp})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "audit key created in %s\nfingerprint: %s\npin it in the station config:\n  audit:\n    key_fingerprints: [%s]\n",
				filepath.Join(dir, ca.AuditKeyFile), fp, fp)
			return nil
		},
	}
	caDirFlag(cmd.Flags(), &dir)
	cmd.Flags().StringVar(&passSource, "passphrase-source", "prompt", "where the audit key's passphrase comes from: "+secretSources)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print {key_file, public_key_file, fingerprint} as JSON")
	return cmd
}

func auditFingerprintCmd() *cobra.Command {
	var pubPath string
	cmd := &cobra.Command{
		Use:   "fingerprint",
		Short: "Print the fingerprint (hex SHA-256 of the PKIX public key) of an audit public key, for the station config's pin",
		RunE: func(cmd *cobra.Command, _ []string) error {
			pub, err := ca.LoadPublicKey(pubPath)
			if err != nil {
				return usagef("--pub: %w", err)
			}
			fp, err := ca.AuditKeyFingerprint(pub)
			if err != nil {
				return usagef("--pub: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), fp)
			return nil
		},
	}
	cmd.Flags().StringVar(&pubPath, "pub", filepath.Join("ca", ca.AuditPubKeyFile), "audit public key (PEM); take it from a trusted copy")
	return cmd
}

func auditRepairWitnessCmd() *cobra.Command {
	var path, witness, actor string
	cmd := &cobra.Command{
		Use:   "repair-witness",
		Short: "Record in the ledger and cut an incomplete last line of the witness file (after a power cut)",
		Long: "The station refuses to start when its witness file ends with an incomplete line. Run `wsc audit verify` first:\n" +
			"when it reports nothing but [witness-torn], this command checks every complete witness line against the\n" +
			"database, appends a witness.repair row (length and SHA-256 of the cut bytes) to the ledger and cuts them.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" || witness == "" {
				return usagef("--db and --witness are required")
			}
			if _, err := os.Stat(path); err != nil {
				return usagef("--db: %w", err)
			}
			s, err := db.Open(path, db.WithActor(actor))
			if err != nil {
				return internalError(err)
			}
			defer s.Close()
			rep, err := s.RepairWitness(cmd.Context(), witness)
			if errors.Is(err, db.ErrWitnessMismatch) || errors.Is(err, db.ErrAuditTampered) {
				return failed(err)
			}
			if err != nil {
				return err
			}
			if rep == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "witness %s ends with a complete line: nothing to repair\n", witness)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "witness %s: cut %d incomplete bytes (sha256 %s) after the checkpoint of row %d; recorded in the ledger\n",
				witness, rep.TornBytes, rep.TornHash, rep.Newest)
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "db", "", "station database file")
	cmd.Flags().StringVar(&witness, "witness", "", "witness file")
	cmd.Flags().StringVar(&actor, "actor", defaultActor(), "person recorded in the ledger")
	return cmd
}
