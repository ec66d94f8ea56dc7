package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/station"
)

func ownerAuthCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "owner-auth",
		Short: "The escrow key TPM owner authorisations are sealed to, and unsealing one at the RMA desk",
		Long: `At end of line the station sets a random owner authorisation on each TPM that gets firmware trust
anchors, sealed BEFORE it is set (HPKE: DHKEM(X25519), HKDF-SHA256, AES-256-GCM, bound to the device
serial, chip and work order) to an escrow public key (station.yaml owner_auth.escrow_public_key). The
station never knows it again; security staff open it offline with the escrow private key for an RMA
or a rework. docs/owner-auth.md.`,
	}
	cmd.AddCommand(ownerAuthKeygenCmd(), ownerAuthUnsealCmd(), ownerAuthListCmd())
	return cmd
}

func ownerAuthKeygenCmd() *cobra.Command {
	var out, passSource string
	var generate bool
	cmd := &cobra.Command{
		Use:   "keygen -o DIR",
		Short: "Create the escrow key pair (public key for the stations, encrypted private key for security staff)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("-o DIR is required")
			}
			w := cmd.OutOrStdout()
			pass, err := newSecret(w, passSource, generate, "escrow key")
			if err != nil {
				return usageError(err)
			}
			defer clear(pass)
			pub, priv, err := station.GenerateEscrowKey(out, pass)
			if err != nil {
				if errors.Is(err, os.ErrExist) {
					return usageError(err)
				}
				return internalError(err)
			}
			fmt.Fprintf(w, "escrow public key:  %s (station.yaml: owner_auth: {escrow_public_key: %s})\n", pub, pub)
			fmt.Fprintf(w, "escrow private key: %s (encrypted PKCS#8: keep it offline with security staff, never on a station)\n", priv)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "folder for the key pair (created; existing keys are never overwritten)")
	cmd.Flags().StringVar(&passSource, "passphrase-source", "prompt", "where the new private key passphrase comes from: "+secretSources)
	cmd.Flags().BoolVar(&generate, "generate-passphrase", false, "generate a diceware passphrase and show it once instead of reading one")
	return cmd
}

func ownerAuthUnsealCmd() *cobra.Command {
	var serial, dbPath, keyPath, passSource, actor string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "unseal --serial S --db DB --key FILE",
		Short: "Open a device's sealed owner authorisation (RMA desk; the unseal is written to the ledger)",
		Long: `unseal prints the owner authorisation of the device's TPM as tpm2-tools takes it (hex:…), e.g. for
tpm2_changeauth -c o -p hex:… and tpm2_clear hex:… (the lockout authorisation is the same value)
before a rework. The ledger records who unsealed which record (never the
value). Run it offline, at the RMA desk, on a copy of the station database or the station itself.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if serial == "" || dbPath == "" || keyPath == "" {
				return usagef("--serial, --db and --key are required")
			}
			if actor == "" {
				return usagef("--actor is required: the ledger records who unsealed the owner authorisation")
			}
			pass, err := ca.ReadPassphraseFor(passSource, "escrow key")
			if err != nil {
				return usagef("escrow key passphrase (--passphrase-source): %w", err)
			}
			k, err := station.LoadEscrowPrivateKey(keyPath, pass)
			clear(pass)
			if err != nil {
				return usageError(err)
			}
			st, err := db.Open(dbPath, db.WithActor(actor))
			if err != nil {
				return internalError(err)
			}
			defer st.Close()
			auth, rec, err := station.UnsealRecorded(cmd.Context(), st, serial, actor, k)
			if err != nil {
				if errors.Is(err, station.ErrUnseal) {
					return failed(err)
				}
				return internalError(err)
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(w).Encode(map[string]any{"serial": serial, "record": rec.ID, "state": rec.State, "chip": fmt.Sprintf("%x", rec.ChipID),
					"work_order": rec.WorkOrder, "owner_auth": auth.Hex()})
			}
			fmt.Fprintf(w, "%s (record %d, %s)\n", auth.Hex(), rec.ID, rec.State)
			return nil
		},
	}
	cmd.Flags().StringVar(&serial, "serial", "", "device serial")
	cmd.Flags().StringVar(&dbPath, "db", "", "station database (SQLite)")
	cmd.Flags().StringVar(&keyPath, "key", "", "escrow private key (owner-auth-escrow.key.pem)")
	cmd.Flags().StringVar(&passSource, "passphrase-source", "prompt", "where the escrow key passphrase comes from: "+secretSources)
	cmd.Flags().StringVar(&actor, "actor", os.Getenv("USER"), "who unseals (recorded in the ledger)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// ownerAuthRow is one record in `wsc owner-auth list --json` (no secret:
// the sealed blob stays in the database).
type ownerAuthRow struct {
	Record        int64  `json:"record"`
	Serial        string `json:"serial"`
	Run           int64  `json:"run,omitempty"`
	RunResult     string `json:"run_result,omitempty"`
	Chip          string `json:"chip"`
	WorkOrder     string `json:"work_order"`
	Policy        string `json:"policy"`
	State         string `json:"state"`
	MaybeSet      bool   `json:"maybe_set"`
	Meaning       string `json:"meaning"`
	CreatedAt     string `json:"created_at"`
	SetAt         string `json:"set_at,omitempty"`
	AbandonedAt   string `json:"abandoned_at,omitempty"`
	AbandonReason string `json:"abandon_reason,omitempty"`
}

func ownerAuthListCmd() *cobra.Command {
	var serial, dbPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list --serial S --db DB",
		Short: "A device's owner authorisation records: state (pending = maybe set, set, abandoned, none) and the run that wrote each",
		Long: `list shows, oldest first, every owner authorisation the station recorded for a device: the run that
wrote it and that run's result, and its state. pending means sealed and recorded but not confirmed
on the chip: the run stopped after it may have sent the value, so the line treats the chip as set
(RMA desk). abandoned means the value provably never reached the chip. No secret is shown.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if serial == "" || dbPath == "" {
				return usagef("--serial and --db are required")
			}
			st, err := db.Open(dbPath, db.WithReadOnly())
			if err != nil {
				return internalError(err)
			}
			defer st.Close()
			recs, err := st.OwnerAuths(cmd.Context(), serial)
			if err != nil {
				return internalError(err)
			}
			if len(recs) == 0 {
				return failed(fmt.Errorf("%s has no owner authorisation recorded in %s", serial, dbPath))
			}
			rows := make([]ownerAuthRow, len(recs))
			for i, r := range recs {
				rows[i] = ownerAuthRow{Record: r.ID, Serial: r.DeviceSerial, Run: r.RunID, RunResult: r.RunResult, Chip: fmt.Sprintf("%x", r.ChipID),
					WorkOrder: r.WorkOrder, Policy: r.Policy, State: r.State, MaybeSet: r.MaybeSet(), Meaning: station.OwnerAuthStateText(r.State),
					CreatedAt: r.CreatedAt.UTC().Format(time.RFC3339), AbandonReason: r.AbandonReason}
				if r.SetAt != nil {
					rows[i].SetAt = r.SetAt.UTC().Format(time.RFC3339)
				}
				if r.AbandonedAt != nil {
					rows[i].AbandonedAt = r.AbandonedAt.UTC().Format(time.RFC3339)
				}
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(w).Encode(rows)
			}
			for _, r := range rows {
				run := "no run"
				if r.Run != 0 {
					res := r.RunResult
					if res == "" {
						res = "did not finish"
					}
					run = fmt.Sprintf("run %d (%s)", r.Run, res)
				}
				fmt.Fprintf(w, "record %d  %-9s  %s  chip %.16s  %s  %s\n", r.Record, r.State, run, r.Chip, r.CreatedAt, r.Meaning)
				if r.AbandonReason != "" {
					fmt.Fprintf(w, "           why abandoned: %s\n", r.AbandonReason)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&serial, "serial", "", "device serial")
	cmd.Flags().StringVar(&dbPath, "db", "", "station database (SQLite), opened read-only")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
