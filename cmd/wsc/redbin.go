package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/ui"
)

// supervisorRoles may release a device from the red bin.
var supervisorRoles = map[string]bool{"supervisor": true, "security": true}

func redbinCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "redbin", Short: "Devices held in the red bin (by chip identity), and their release by a supervisor"}
	var path string
	var all, asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the devices held in the red bin (--all: released ones too)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needDB(path); err != nil {
				return err
			}
			s, err := db.Open(path, db.WithReadOnly())
			if err != nil {
				return internalError(err)
			}
			defer s.Close()
			entries, err := s.RedBins(cmd.Context(), !all)
			if err != nil {
				return internalError(err)
			}
			if asJSON {
				type row struct {
					Chip        string     `json:"chip"`
					Serial      string     `json:"serial"`
					Reason      string     `json:"reason"`
					CertSerial  string     `json:"cert_serial"`
					Operator    string     `json:"operator"`
					At          time.Time  `json:"at"`
					ReleasedAt  *time.Time `json:"released_at"`
					ReleasedBy  string     `json:"released_by"`
					ReleaseNote string     `json:"release_note"`
				}
				rows := make([]row, 0, len(entries))
				for _, e := range entries {
					certSerial := ""
					if e.CertSerial != "" {
						certSerial = db.DisplaySerial(e.CertSerial)
					}
					rows = append(rows, row{hex.EncodeToString(e.ChipID), e.Serial, e.Reason, certSerial, e.Operator, e.CreatedAt, e.ReleasedAt, e.ReleasedBy, e.ReleaseNote})
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CHIP\tDEVICE\tSINCE\tBY\tREASON\tRELEASED")
			for _, e := range entries {
				rel := "-"
				if e.ReleasedAt != nil {
					rel = fmt.Sprintf("%s by %s", e.ReleasedAt.Format(time.DateTime), ui.Untrusted(e.ReleasedBy))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", hex.EncodeToString(e.ChipID)[:16], ui.Untrusted(e.Serial),
					e.CreatedAt.Format(time.DateTime), ui.Untrusted(e.Operator), ui.Untrusted(e.Reason), rel)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&path, "db", "", "station database file")
	list.Flags().BoolVar(&all, "all", false, "also list released entries")
	list.Flags().BoolVar(&asJSON, "json", false, "JSON output (snake_case)")

	var serial, chip, supervisor, pinSource, note string
	release := &cobra.Command{
		Use:   "release",
		Short: "Release a device from the red bin (a supervisor signs in; the release is in the ledger)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			switch {
			case (serial == "") == (chip == ""):
				return usagef("give the device as --serial or --chip (one of them)")
			case note == "":
				return usagef("--note is required: say why the device may be provisioned again")
			}
			if err := needDB(path); err != nil {
				return err
			}
			var id []byte
			if chip != "" {
				var err error
				if id, err = hex.DecodeString(chip); err != nil || len(id) == 0 {
					return usagef("--chip: want the chip identity in hex (wsc redbin list shows it)")
				}
			}
			s, err := db.Open(path, db.WithActor(supervisor))
			if err != nil {
				return internalError(err)
			}
			defer s.Close()
			op, err := login(ctx, s, supervisor, pinSource)
			if err != nil {
				// No supervisor id, an unreadable PIN source or a wrong PIN: the
				// person's input, not the machine.
				return usageError(err)
			}
			who, err := s.GetOperator(ctx, op)
			if err != nil {
				return internalError(err)
			}
			if !supervisorRoles[who.Role] {
				return usagef("%s has role %q: only a supervisor (or security) releases the red bin", op, who.Role)
			}
			if chip == "" {
				if id, _, err = s.ChipOf(ctx, serial); errors.Is(err, db.ErrNotFound) {
					return usagef("--serial %s: no such device in the station database", serial)
				} else if err != nil {
					return internalError(err)
				}
				if len(id) == 0 {
					return usagef("device %s is not bound to a chip: nothing to release (use --chip for a chip that never passed its proof)", serial)
				}
			}
			if err := s.ReleaseRedBin(ctx, id, op, note); err != nil {
				if errors.Is(err, db.ErrNotFound) {
					return usagef("chip %s is not in the red bin", hex.EncodeToString(id))
				}
				return internalError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "released chip %s (released by %s)\n", hex.EncodeToString(id), op)
			return nil
		},
	}
	release.Flags().StringVar(&path, "db", "", "station database file")
	release.Flags().StringVar(&serial, "serial", "", "device serial (its bound chip is released)")
	release.Flags().StringVar(&chip, "chip", "", "chip identity in hex, as `wsc redbin list` shows it")
	release.Flags().StringVar(&supervisor, "supervisor", "", "supervisor's operator id")
	release.Flags().StringVar(&pinSource, "pin-source", "prompt", "where the supervisor's PIN comes from: "+secretSources)
	release.Flags().StringVar(&note, "note", "", "why the device may be provisioned again (recorded)")
	cmd.AddCommand(list, release)
	return cmd
}
