package main

import (
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
)

func auditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Check the station database's tamper-evident audit ledger"}
	var path, keyPath, plantDSN, stationID string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify every link and signed checkpoint of the audit ledger; exit 1 at the first defect",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return errors.New("--db is required")
			}
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("database: %w", err)
			}
			if keyPath == "" {
				keyPath = filepath.Join(filepath.Dir(path), "ca", ca.AuditPubKeyFile)
			}
			pub, err := ca.LoadPublicKey(keyPath)
			if err != nil {
				return fmt.Errorf("audit public key (--key): %w", err)
			}
			s, err := db.Open(path, db.WithReadOnly())
			if err != nil {
				return err
			}
			defer s.Close()
			sum, err := s.VerifyAudit(cmd.Context(), db.AuditVerifyOptions{Keys: []crypto.PublicKey{pub}})
			if err != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "audit ledger: FAILED: %v\n", err)
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "audit ledger: ok — %d rows, %d signed checkpoints, head row %d %x\n", sum.Rows, sum.Checkpoints, sum.HeadSeq, sum.HeadHash)
			if plantDSN != "" {
				return verifyAgainstPlant(cmd.Context(), s, plantDSN, stationID, cmd.OutOrStdout())
			}
			return nil
		},
	}
	verify.Flags().StringVar(&path, "db", "", "station database file")
	verify.Flags().StringVar(&keyPath, "key", "", "audit public key (PEM; default: ca/audit.pub next to the database)")
	verify.Flags().StringVar(&plantDSN, "plant", "", "also check the ledger against the plant registry's witnessed copy (PostgreSQL DSN)")
	verify.Flags().StringVar(&stationID, "station", "", "station id in the plant (with --plant)")
	cmd.AddCommand(verify)
	return cmd
}
