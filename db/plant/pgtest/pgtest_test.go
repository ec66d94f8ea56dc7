package pgtest

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestServerTLSClientCertificates(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	if err := s.Psql("postgres", "CREATE ROLE station_a LOGIN"); err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, s.ClientDSN("station_a", "postgres", ""))
	if err != nil {
		t.Fatalf("connect with client certificate: %v", err)
	}
	var ssl bool
	var user string
	if err := c.QueryRow(ctx, "SELECT ssl, current_user FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE pid = pg_backend_pid()").Scan(&ssl, &user); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	if !ssl || user != "station_a" {
		t.Fatalf("ssl=%v user=%q, want TLS as station_a", ssl, user)
	}
	// A certificate for another name than the role is refused (verify-full maps CN to role).
	dsnB := s.ClientDSN("station_b", "postgres", "")
	if _, err := pgx.Connect(ctx, strings.Replace(dsnB, "user=station_b", "user=station_a", 1)); err == nil {
		t.Fatal("certificate of station_b accepted for role station_a")
	}
	// A certificate from another CA is refused.
	foreign, err := s.IssueForeignClient("station_a", "postgres")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, foreign); err == nil {
		t.Fatal("certificate from a foreign CA accepted")
	}
	// Restart keeps the data.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, s.ClientDSN("station_a", "postgres", "")); err == nil {
		t.Fatal("connected to a stopped server")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	c, err = pgx.Connect(ctx, s.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = 'station_a'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("role after restart: n=%d err=%v", n, err)
	}
}
