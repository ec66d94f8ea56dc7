package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/db"
)

func dbCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "db", Short: "Read the station database"}
	var (
		path, format, since, workOrder string
	)
	export := &cobra.Command{
		Use:   "export",
		Short: "Export one record per device (serial, backend, status, certificate, chain, provisioned_at)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return fmt.Errorf("--db is required")
			}
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("database: %w", err)
			}
			f := db.ExportFilter{WorkOrder: workOrder}
			if since != "" {
				t, err := parseTime(since)
				if err != nil {
					return fmt.Errorf("--since: %w", err)
				}
				f.Since = t
			}
			s, err := db.Open(path, db.WithReadOnly())
			if err != nil {
				return err
			}
			defer s.Close()
			recs, err := s.Export(cmd.Context(), f)
			if err != nil {
				return err
			}
			switch format {
			case "json":
				return db.WriteJSON(cmd.OutOrStdout(), recs)
			case "csv":
				return db.WriteCSV(cmd.OutOrStdout(), recs)
			default:
				return fmt.Errorf("--format must be json or csv, not %q", format)
			}
		},
	}
	export.Flags().StringVar(&path, "db", "", "station database file")
	export.Flags().StringVar(&format, "format", "json", "json or csv")
	export.Flags().StringVar(&since, "since", "", "only devices provisioned at or after this time (RFC 3339 or YYYY-MM-DD)")
	export.Flags().StringVar(&workOrder, "work-order", "", "only devices of this work order")
	cmd.AddCommand(export)
	return cmd
}
