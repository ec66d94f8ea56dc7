package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/wsc-project/wsc/ca"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/db"
)

// workOrderStatsJSON is one row of `wsc db stats --json` (snake_case;
// docs/reason-codes.md describes the JSON outputs).
type workOrderStatsJSON struct {
	WorkOrder  string     `json:"work_order"`
	Quantity   int        `json:"quantity"`
	Assigned   int        `json:"assigned"`
	Done       int        `json:"done"`
	FailedRuns int        `json:"failed_runs"`
	RunsOK     int        `json:"runs_ok"`
	Yield      float64    `json:"yield"`
	PerHour    float64    `json:"devices_per_hour"`
	FirstRunAt *time.Time `json:"first_run_at"`
	LastDoneAt *time.Time `json:"last_done_at"`
}

func dbCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "db", Short: "Read the station database"}
	var (
		path, format, since, workOrder, status string
		asJSON                                 bool
	)
	export := &cobra.Command{
		Use:   "export",
		Short: "Export one record per device (serial, backend, status, certificate, chain, provisioned_at, cert_serial; revoked devices too)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needDB(path); err != nil {
				return err
			}
			if asJSON {
				if cmd.Flags().Changed("format") && format != "json" {
					return usagef("--json and --format %s exclude each other", format)
				}
				format = "json"
			}
			if format != "json" && format != "csv" {
				return usagef("--format must be json or csv, not %q", format)
			}
			f := db.ExportFilter{WorkOrder: workOrder, Status: status}
			if since != "" {
				t, err := parseTime(since)
				if err != nil {
					return usagef("--since: %w", err)
				}
				f.Since = t
			}
			s, err := db.Open(path, db.WithReadOnly())
			if err != nil {
				return internalError(err)
			}
			defer s.Close()
			recs, err := s.Export(cmd.Context(), f)
			if err != nil {
				return internalError(err)
			}
			if format == "csv" {
				return db.WriteCSV(cmd.OutOrStdout(), recs)
			}
			return db.WriteJSON(cmd.OutOrStdout(), recs)
		},
	}
	export.Flags().StringVar(&path, "db", "", "station database file")
	export.Flags().StringVar(&format, "format", "json", "json or csv")
	export.Flags().BoolVar(&asJSON, "json", false, "JSON output (the default; same as --format json)")
	export.Flags().StringVar(&since, "since", "", "only devices provisioned at or after this time (RFC 3339 or YYYY-MM-DD)")
	export.Flags().StringVar(&workOrder, "work-order", "", "only devices of this work order")
	export.Flags().StringVar(&status, "status", "", "only devices of this status: provisioned, revoked (certificate revoked), … (default: every device, revoked ones included)")
	var statsDB, statsWO string
	var statsJSON bool
	stats := &cobra.Command{
		Use:   "stats",
		Short: "Production counters per work order (quantity, done, failed, yield, devices/hour)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needDB(statsDB); err != nil {
				return err
			}
			s, err := db.Open(statsDB, db.WithReadOnly())
			if err != nil {
				return internalError(err)
			}
			defer s.Close()
			st, err := s.Stats(cmd.Context(), statsWO)
			if err != nil {
				return internalError(err)
			}
			out := cmd.OutOrStdout()
			if statsJSON {
				rows := make([]workOrderStatsJSON, 0, len(st))
				for _, w := range st {
					rows = append(rows, workOrderStatsJSON{w.WorkOrder, w.Quantity, w.Assigned, w.Done, w.Failed, w.RunsOK, w.Yield, w.PerHour, w.FirstRunAt, w.LastDoneAt})
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "WORK ORDER\tQUANTITY\tASSIGNED\tDONE\tFAILED RUNS\tYIELD\tDEVICES/HOUR")
			for _, w := range st {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.1f%%\t%.0f\n", w.WorkOrder, w.Quantity, w.Assigned, w.Done, w.Failed, 100*w.Yield, w.PerHour)
			}
			return tw.Flush()
		},
	}
	stats.Flags().StringVar(&statsDB, "db", "", "station database file")
	stats.Flags().StringVar(&statsWO, "work-order", "", "only this work order")
	stats.Flags().BoolVar(&statsJSON, "json", false, "print JSON")
	cmd.AddCommand(export, stats)
	return cmd
}

func operatorCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "operator", Short: "Manage the operators allowed to run the station"}
	var path, id, name, role, pinSource string
	add := &cobra.Command{
		Use:   "add",
		Short: "Add or update an operator; the PIN is stored only as a salted PBKDF2 hash",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" || id == "" {
				return usagef("--db and --id are required")
			}
			pin, err := ca.ReadPassphrase(pinSource)
			if err != nil {
				return usagef("PIN (--pin-source): %w", err)
			}
			defer clear(pin)
			s, err := db.Open(path)
			if err != nil {
				return internalError(err)
			}
			defer s.Close()
			if err := s.UpsertOperator(cmd.Context(), db.Operator{ID: id, Name: name, Role: role}, string(pin)); err != nil {
				return internalError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "operator %s saved\n", id)
			return nil
		},
	}
	add.Flags().StringVar(&path, "db", "", "station database file")
	add.Flags().StringVar(&id, "id", "", "operator id (badge number or short name)")
	add.Flags().StringVar(&name, "name", "", "full name")
	add.Flags().StringVar(&role, "role", "operator", "operator, supervisor, qa or security")
	add.Flags().StringVar(&pinSource, "pin-source", "prompt", "where the operator's PIN comes from: "+secretSources)
	cmd.AddCommand(add)
	return cmd
}

// needDB checks a --db flag that names an existing station database: a
// missing flag or file is a usage error (exit 2), not an internal one.
func needDB(path string) error {
	if path == "" {
		return usagef("--db is required: the station database file")
	}
	if _, err := os.Stat(path); err != nil {
		return usagef("--db: %w", err)
	}
	return nil
}
