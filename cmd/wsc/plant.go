package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/db/plant"
	"github.com/wsc-project/wsc/station"
	"github.com/wsc-project/wsc/ui/web"
)

// plantCmd is `wsc plant …`: the plant registry on PostgreSQL (docs/plant.md).
func plantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "plant", Short: "The plant registry on PostgreSQL: set-up, sync, checks, revocation, bundle, reports"}
	var dsn string
	cmd.PersistentFlags().StringVar(&dsn, "dsn", os.Getenv("WSC_PLANT_DSN"), "PostgreSQL connection string of the registry (default $WSC_PLANT_DSN)")
	open := func(ctx context.Context) (*plant.Registry, error) {
		if dsn == "" {
			return nil, usagef("--dsn is required (or set WSC_PLANT_DSN): the registry's PostgreSQL connection string")
		}
		return plant.Open(ctx, dsn)
	}

	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create or upgrade the registry's schema (as the plant's database administrator)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer r.Close()
			applied, err := r.Migrate(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "plant registry: schema version %d (%d migrations applied now)\n", plant.SchemaVersion(), len(applied))
			return nil
		},
	}

	var stID, stRole, stKey string
	stationAdd := &cobra.Command{
		Use:   "add",
		Short: "Register a station: its id, PostgreSQL role and pinned audit public key",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if stID == "" || stRole == "" || stKey == "" {
				return usagef("--id, --role and --audit-key are required")
			}
			pub, err := ca.LoadPublicKey(stKey)
			if err != nil {
				return usagef("--audit-key: %w", err)
			}
			r, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer r.Close()
			if err := r.AddStation(cmd.Context(), stID, stRole, pub); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "station %s registered as role %s; issue it a client certificate with CN=%s from the plant CA\n", stID, stRole, stRole)
			return nil
		},
	}
	stationAdd.Flags().StringVar(&stID, "id", "", "station id (as in its station.yaml)")
	stationAdd.Flags().StringVar(&stRole, "role", "", "PostgreSQL login role of the station (= CN of its client certificate)")
	stationAdd.Flags().StringVar(&stKey, "audit-key", "", "the station's audit public key (PEM, ca/audit.pub on the station)")
	stationCmd := &cobra.Command{Use: "station", Short: "Manage stations"}
	stationCmd.AddCommand(stationAdd)

	var readerRole string
	readerAdd := &cobra.Command{
		Use:   "add",
		Short: "Create a read-only role (dashboard, reports)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer r.Close()
			return r.AddReader(cmd.Context(), readerRole)
		},
	}
	readerAdd.Flags().StringVar(&readerRole, "role", "", "PostgreSQL login role")
	readerCmd := &cobra.Command{Use: "reader", Short: "Manage read-only roles"}
	readerCmd.AddCommand(readerAdd)

	var cfgPath, dbPath, stationName string
	syncCmd := &cobra.Command{
		Use:   "sync",
		Short: "Push the station's outbox to the registry once and exit (0 = in sync)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath != "" {
				cfg, err := station.LoadConfig(cfgPath)
				if err != nil {
					return usageError(fmt.Errorf("--config: %w", err))
				}
				dbPath, stationName = cfg.Database, cfg.Station
				if dsn == "" {
					dsn = cfg.Plant.DSN
				}
			}
			if dbPath == "" || stationName == "" {
				return usagef("give --config station.yaml, or --db and --station")
			}
			r, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer r.Close()
			if _, err := os.Stat(dbPath); err != nil {
				return usagef("database: %w", err)
			}
			s, err := db.Open(dbPath)
			if err != nil {
				return internalError(err)
			}
			defer s.Close()
			sy := &plant.Syncer{Store: s, Registry: r, Station: stationName}
			n, err := sy.SyncOnce(cmd.Context())
			st, serr := s.OutboxStatus(cmd.Context())
			if serr == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%d records sent; %s\n", n, st)
			}
			if err != nil {
				return failed(err)
			}
			return nil
		},
	}
	syncCmd.Flags().StringVar(&cfgPath, "config", "", "station configuration file (database, station id, plant.dsn)")
	syncCmd.Flags().StringVar(&dbPath, "db", "", "station database file")
	syncCmd.Flags().StringVar(&stationName, "station", "", "station id")

	var asJSON, asCSV bool
	checkCmd := &cobra.Command{
		Use:   "check",
		Short: "Plant-wide checks (chip or key at two stations, serial with two chips, certificate without run, alarms); exit 1 on any finding",
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer r.Close()
			fs, err := r.Check(cmd.Context())
			if err != nil {
				return err
			}
			for i := range fs {
				if fs[i].Check == plant.CheckCertWithoutRun { // its subject is a certificate serial
					fs[i].Subject = db.DisplaySerial(fs[i].Subject)
				}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if fs == nil {
					fs = []plant.Finding{}
				}
				if err := json.NewEncoder(out).Encode(fs); err != nil {
					return err
				}
			} else {
				for _, f := range fs {
					fmt.Fprintf(out, "%-22s %-24s %-20s %s\n", f.Check, f.Subject, strings.Join(f.Stations, ","), f.Detail)
				}
				if len(fs) == 0 {
					fmt.Fprintln(out, "plant check: ok")
				}
			}
			if len(fs) > 0 {
				return failed(fmt.Errorf("plant check: %d findings: look at each with the security team before shipping the devices concerned", len(fs)))
			}
			return nil
		},
	}
	checkCmd.Flags().BoolVar(&asJSON, "json", false, "JSON output")

	var revSerial, revReason string
	revokeCmd := &cobra.Command{
		Use:   "revoke",
		Short: "Request the revocation of a certificate; the issuing station applies it on its next sync",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if revSerial == "" || revReason == "" {
				return usagef("--serial and --reason are required")
			}
			r, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer r.Close()
			q, err := r.RequestRevocation(cmd.Context(), revSerial, revReason)
			if errors.Is(err, plant.ErrUnknownCertificate) || errors.Is(err, plant.ErrBadReason) {
				return usageError(err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revocation of %s (%s) requested; station %s applies it on its next sync\n", db.DisplaySerial(q.SerialHex), q.Reason, q.Station)
			return nil
		},
	}
	revokeCmd.Flags().StringVar(&revSerial, "serial", "", "certificate serial (hex)")
	revokeCmd.Flags().StringVar(&revReason, "reason", "", "RFC 5280 reason: keyCompromise, superseded, cessationOfOperation, …")

	var bundleOut string
	bundleCmd := &cobra.Command{
		Use:   "bundle",
		Short: "Write one trust bundle (PEM) with every station's intermediates and current CRLs, for QA",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if bundleOut == "" {
				return usagef("-o/--output is required")
			}
			r, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer r.Close()
			b, err := r.Bundle(cmd.Context())
			if err != nil {
				return err
			}
			if err := os.WriteFile(bundleOut, b.PEM(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", bundleOut, b.Summary())
			return nil
		},
	}
	outputFlag(bundleCmd.Flags(), &bundleOut, "trust bundle file to write (PEM)")

	var day string
	reportCmd := &cobra.Command{
		Use:   "report",
		Short: "Production report per station and work order for a day: devices, first-pass yield, devices/hour, cycle time, failure Pareto",
		RunE: func(cmd *cobra.Command, _ []string) error {
			from := time.Now().UTC().Truncate(24 * time.Hour)
			if day != "" {
				var err error
				if from, err = time.Parse("2006-01-02", day); err != nil {
					return usagef("--day: want YYYY-MM-DD: %w", err)
				}
			}
			r, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer r.Close()
			rep, err := r.Report(cmd.Context(), from, from.Add(24*time.Hour))
			if err != nil {
				return err
			}
			return writeReport(cmd.OutOrStdout(), rep, asJSON, asCSV)
		},
	}
	reportCmd.Flags().StringVar(&day, "day", "", "day (UTC, YYYY-MM-DD; default today)")
	reportCmd.Flags().BoolVar(&asJSON, "json", false, "JSON output")
	reportCmd.Flags().BoolVar(&asCSV, "csv", false, "CSV output")

	findCmd := &cobra.Command{
		Use:   "find SERIAL",
		Short: "Look a device up by device serial or certificate serial",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer r.Close()
			ls, err := r.Find(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if len(ls) == 0 {
				return failed(fmt.Errorf("%s: not in the registry", args[0]))
			}
			for i := range ls {
				ls[i].CertSerial = db.DisplaySerial(ls[i].CertSerial)
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(ls)
		},
	}

	var listen, usersFile, tlsCert, tlsKey, clientCA string
	serveCmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the read-only plant dashboard over HTTPS (client certificates or a user list)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tlsCert == "" || tlsKey == "" {
				return usagef("--tls-cert and --tls-key are required: the dashboard is served over HTTPS only")
			}
			if (usersFile == "") == (clientCA == "") {
				return usagef("give either --client-ca (TLS client certificates) or --users (name:bcrypt-hash lines, e.g. from htpasswd -nB)")
			}
			var users map[string][]byte
			tcfg := &tls.Config{MinVersion: tls.VersionTLS12}
			if usersFile != "" {
				var err error
				if users, err = web.LoadUsers(usersFile); err != nil {
					return usagef("--users: %w", err)
				}
			} else {
				pemCA, err := os.ReadFile(clientCA)
				if err != nil {
					return usagef("--client-ca: %w", err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pemCA) {
					return usagef("--client-ca %s: no PEM certificate", clientCA)
				}
				tcfg.ClientCAs, tcfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			r, err := open(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			dash, err := web.New(r, users)
			if err != nil {
				return err
			}
			srv := &http.Server{Addr: listen, Handler: dash.Handler(), TLSConfig: tcfg, ReadHeaderTimeout: 10 * time.Second}
			go func() { <-ctx.Done(); srv.Close() }()
			fmt.Fprintf(cmd.OutOrStdout(), "plant dashboard on https://%s/\n", listen)
			if err := srv.ListenAndServeTLS(tlsCert, tlsKey); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	serveCmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8443", "address to listen on")
	serveCmd.Flags().StringVar(&usersFile, "users", "", "user list: name:bcrypt-hash per line")
	serveCmd.Flags().StringVar(&tlsCert, "tls-cert", "", "server certificate (PEM)")
	serveCmd.Flags().StringVar(&tlsKey, "tls-key", "", "server key (PEM)")
	serveCmd.Flags().StringVar(&clientCA, "client-ca", "", "CA of the supervisors' client certificates (PEM)")

	cmd.AddCommand(initCmd, stationCmd, readerCmd, syncCmd, checkCmd, revokeCmd, bundleCmd, reportCmd, findCmd, serveCmd)
	return cmd
}

func writeReport(out io.Writer, rep *plant.Report, asJSON, asCSV bool) error {
	switch {
	case asJSON:
		if rep.Rows == nil { // [] rather than null for scripts
			rep.Rows = []plant.ReportRow{}
		}
		if rep.Pareto == nil {
			rep.Pareto = []plant.ParetoRow{}
		}
		return json.NewEncoder(out).Encode(rep)
	case asCSV:
		w := csv.NewWriter(out)
		w.Write([]string{"station", "work_order", "devices", "runs", "first_pass_yield", "devices_per_hour", "mean_cycle_s", "p95_cycle_s"})
		f := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
		for _, r := range rep.Rows {
			w.Write([]string{r.Station, r.WorkOrder, strconv.FormatInt(r.Devices, 10), strconv.FormatInt(r.Runs, 10),
				f(r.FirstPassYield), f(r.DevicesPerHour), f(r.MeanCycle), f(r.P95Cycle)})
		}
		w.Flush()
		return w.Error()
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s .. %s\nSTATION\tWORK ORDER\tDEVICES\tRUNS\tFPY\tDEV/H\tMEAN S\tP95 S\n", rep.From.Format(time.DateOnly), rep.To.Format(time.DateOnly))
	for _, r := range rep.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f%%\t%.1f\t%.2f\t%.2f\n", r.Station, r.WorkOrder, r.Devices, r.Runs, 100*r.FirstPassYield,
			r.DevicesPerHour, r.MeanCycle, r.P95Cycle)
	}
	if len(rep.Pareto) > 0 {
		fmt.Fprintf(tw, "\nFAILURES\tSTEP\tERROR\tSTATIONS\n")
		for _, p := range rep.Pareto {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", p.Count, p.Step, p.Error, p.Station)
		}
	}
	return tw.Flush()
}

// plantLog is where the background sync reports: stderr when headless, nowhere under the
// terminal UI (it would tear the screen; the outbox rows keep the errors).
func plantLog(headless bool, w io.Writer) io.Writer {
	if headless || !isTerminal() {
		return w
	}
	return io.Discard
}

// startPlantSync runs the station's syncer in the background when the config names a plant
// registry (plant.dsn); the returned function stops it. Sync failures never stop
// provisioning: the outbox keeps the records, the status line says "offline since".
func startPlantSync(ctx context.Context, l *line, log io.Writer) func() {
	if l.cfg.Plant.DSN == "" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r, err := plant.Open(ctx, l.cfg.Plant.DSN)
		if err != nil {
			fmt.Fprintf(log, "plant: %v\n", err)
			return
		}
		defer r.Close()
		sy := &plant.Syncer{Store: l.store, Registry: r, Station: l.cfg.Station,
			OnError: func(err error) { fmt.Fprintf(log, "plant: sync failed (will retry): %v\n", err) },
			Revoke: func(ctx context.Context, serialHex string, reason int) error {
				n, ok := new(big.Int).SetString(serialHex, 16)
				if !ok {
					return fmt.Errorf("serial %q is not hexadecimal", serialHex)
				}
				_, err := l.ca.RevokeSerial(ctx, n, reason)
				return err
			},
			Trust: func(ctx context.Context) ([]*x509.Certificate, []*x509.RevocationList, error) {
				crls, err := l.ca.CRLs(ctx)
				return l.ca.Intermediates(), crls, err
			},
		}
		go func() { // the status line, printed when it changes kind (in sync, behind, offline)
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			last := ""
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				st, err := l.store.OutboxStatus(ctx)
				if err != nil {
					continue
				}
				kind := "in sync"
				if st.FailingSince != nil {
					kind = "offline"
				} else if st.Pending > 0 {
					kind = "behind"
				}
				if kind != last {
					fmt.Fprintln(log, st.String())
					last = kind
				}
			}
		}()
		if err := sy.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(log, "plant: sync stopped: %v\n", err)
		}
	}()
	return func() { cancel(); <-done }
}

// verifyAgainstPlant is `wsc audit verify --plant DSN`: the local ledger against the
// registry's witnessed copy.
func verifyAgainstPlant(ctx context.Context, s *db.Store, dsn, stationID string, out io.Writer) error {
	if stationID == "" {
		return usagef("--station is required with --plant (the station id registered in the plant)")
	}
	r, err := plant.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer r.Close()
	rep, err := plant.VerifyStation(ctx, s, r, stationID)
	if err != nil {
		fmt.Fprintf(out, "plant witness: FAILED: %v\n", err)
		return failed(err)
	}
	fmt.Fprintf(out, "plant witness: ok — %d rows identical to the registry's copy (head %d), %d local rows not yet synced\n",
		rep.Witnessed, rep.PlantHead, rep.Unwitnessed)
	return nil
}
