// Package pgtest starts a throwaway PostgreSQL 15 cluster for tests: initdb and pg_ctl in a
// temporary folder, TLS on with a plant CA, a server certificate and client certificates
// made for the test, client-certificate authentication (clientcert=verify-full) for TCP
// connections, a unix socket in the folder for the superuser, a free port. It runs the
// server as an unprivileged user when the test runs as root (initdb refuses root).
package pgtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BinDir is where Debian installs the PostgreSQL 15 server programs.
const BinDir = "/usr/lib/postgresql/15/bin"

// RunAs is the unprivileged account that owns the cluster when the test runs as root.
const RunAs = "postgres"

// Server is a running throwaway cluster.
type Server struct {
	Dir  string // everything lives here: data/, socket, certificates, log
	Port int

	t       testing.TB
	data    string
	uid     int
	gid     int
	asRoot  bool
	caKey   *ecdsa.PrivateKey
	caCert  *x509.Certificate
	mu      sync.Mutex
	clients map[string]bool
}

// Start initialises and starts a cluster, stopped and removed at the end of the test. When
// the PostgreSQL programs are missing it skips under `go test -short` and fails otherwise
// (scripts/deps installs them).
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat(filepath.Join(BinDir, "initdb")); err != nil {
		if testing.Short() {
			t.Skipf("PostgreSQL 15 not installed (%v); run scripts/deps", err)
		}
		t.Fatalf("PostgreSQL 15 not installed at %s (%v): run scripts/deps", BinDir, err)
	}
	dir, err := os.MkdirTemp("", "wsc-pg-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Dir: dir, t: t, data: filepath.Join(dir, "data"), uid: os.Getuid(), gid: os.Getgid(), clients: map[string]bool{}}
	t.Cleanup(func() {
		s.stop("immediate")
		os.RemoveAll(dir)
	})
	if os.Getuid() == 0 {
		s.asRoot = true
		u, err := ensureUser(RunAs)
		if err != nil {
			t.Fatal(err)
		}
		s.uid, s.gid = u[0], u[1]
		// The server user must reach its files; others still cannot read the keys (0600).
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, s.uid, s.gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.makePKI(); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(s.data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(s.data, s.uid, s.gid); err != nil {
		t.Fatal(err)
	}
	if err := s.run(filepath.Join(BinDir, "initdb"), "-D", s.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
		"--no-locale", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v", err)
	}
	if err := s.configure(); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range 5 {
		if s.Port, lastErr = freePort(); lastErr != nil {
			continue
		}
		if lastErr = s.writePort(); lastErr != nil {
			t.Fatal(lastErr)
		}
		if lastErr = s.Start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("start PostgreSQL: %v\n%s", lastErr, s.Log())
	return nil
}

func ensureUser(name string) ([2]int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		out, aerr := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
		if aerr != nil {
			return [2]int{}, fmt.Errorf("create user %s to run PostgreSQL (it refuses root): %v: %s", name, aerr, out)
		}
		if u, err = user.Lookup(name); err != nil {
			return [2]int{}, err
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return [2]int{uid, gid}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run executes a PostgreSQL program as the cluster's owner.
func (s *Server) run(prog string, args ...string) error {
	cmd := exec.Command(prog, args...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if s.asRoot {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(s.uid), Gid: uint32(s.gid)}}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(prog), strings.Join(args, " "), err, out)
	}
	return nil
}

func (s *Server) writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(path, mode); err != nil {
		return err
	}
	return os.Chown(path, s.uid, s.gid)
}

func (s *Server) configure() error {
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
ssl = on
ssl_cert_file = '%s'
ssl_key_file = '%s'
ssl_ca_file = '%s'
ssl_min_protocol_version = 'TLSv1.2'
fsync = off
full_page_writes = off
max_connections = 100
shared_buffers = 128MB
log_min_messages = warning
include_if_exists = 'port.conf'
`, s.Dir, filepath.Join(s.Dir, "server.crt"), filepath.Join(s.Dir, "server.key"), filepath.Join(s.Dir, "ca.crt"))
	f, err := os.OpenFile(filepath.Join(s.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(conf); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// The superuser only over the unix socket in the test folder; every TCP client proves
	// itself with a certificate of the plant CA whose CN is its role (verify-full).
	hba := "local all all trust\nhostssl all all 127.0.0.1/32 cert clientcert=verify-full\n"
	return s.writeFile(filepath.Join(s.data, "pg_hba.conf"), []byte(hba), 0o600)
}

func (s *Server) writePort() error {
	return s.writeFile(filepath.Join(s.data, "port.conf"), []byte(fmt.Sprintf("port = %d\n", s.Port)), 0o600)
}

// Start starts the (stopped) cluster and waits until it accepts connections.
func (s *Server) Start() error {
	return s.run(filepath.Join(BinDir, "pg_ctl"), "-D", s.data, "-l", filepath.Join(s.Dir, "postgres.log"), "-w", "-t", "120", "start")
}

// Stop stops the cluster (fast shutdown: open sessions are cut).
func (s *Server) Stop() error { return s.stop("fast") }

func (s *Server) stop(mode string) error {
	if _, err := os.Stat(filepath.Join(s.data, "postmaster.pid")); err != nil {
		return nil
	}
	return s.run(filepath.Join(BinDir, "pg_ctl"), "-D", s.data, "-m", mode, "-w", "-t", "120", "stop")
}

// Kill sends SIGKILL to the postmaster (a crash); Start recovers from the WAL.
func (s *Server) Kill() error {
	b, err := os.ReadFile(filepath.Join(s.data, "postmaster.pid"))
	if err != nil {
		return fmt.Errorf("read postmaster.pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return fmt.Errorf("postmaster.pid: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	// Wait for the postmaster to be gone (its children exit when they see it die).
	for i := 0; i < 6000; i++ {
		if syscall.Kill(pid, 0) != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A killed postmaster leaves its children briefly; pg_ctl start waits for them.
	return nil
}

// Log returns the server log.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "postgres.log"))
	return string(b)
}

// AdminDSN is the superuser's connection string over the unix socket.
func (s *Server) AdminDSN() string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", s.Dir, s.Port)
}

// AdminDSNFor is the superuser's connection string to database db.
func (s *Server) AdminDSNFor(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", s.Dir, s.Port, db)
}

// CreateDatabase creates a database.
func (s *Server) CreateDatabase(name string) error {
	return s.run(filepath.Join(BinDir, "createdb"), "-h", s.Dir, "-p", strconv.Itoa(s.Port), "-U", "postgres", name)
}

// Psql runs one SQL command as the superuser in database db.
func (s *Server) Psql(db, sql string) error {
	return s.run(filepath.Join(BinDir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", s.Dir, "-p", strconv.Itoa(s.Port),
		"-U", "postgres", "-d", db, "-c", sql)
}

// Dump writes a plain-SQL pg_dump of database db to the file name in the cluster's folder
// and returns its path.
func (s *Server) Dump(db, name string) (string, error) {
	path := filepath.Join(s.Dir, name)
	return path, s.run(filepath.Join(BinDir, "pg_dump"), "-h", s.Dir, "-p", strconv.Itoa(s.Port), "-U", "postgres", "-f", path, db)
}

// Restore loads a plain-SQL dump into database db (created first).
func (s *Server) Restore(db, path string) error {
	if err := s.CreateDatabase(db); err != nil {
		return err
	}
	return s.run(filepath.Join(BinDir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", s.Dir, "-p", strconv.Itoa(s.Port),
		"-U", "postgres", "-d", db, "-f", path)
}

// ClientDSN issues (once) a client certificate for role from the test's plant CA and
// returns a TLS connection string to database db at addr (host:port; empty means the
// server itself) that verifies the server's certificate and name.
func (s *Server) ClientDSN(role, db, addr string) string {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	crt, key := filepath.Join(s.Dir, "client-"+role+".crt"), filepath.Join(s.Dir, "client-"+role+".key")
	if !s.clients[role] {
		if err := s.issue(role, nil, false, crt, key); err != nil {
			s.t.Fatalf("client certificate for %s: %v", role, err)
		}
		s.clients[role] = true
	}
	host, port := "localhost", strconv.Itoa(s.Port)
	if addr != "" {
		var err error
		if _, port, err = net.SplitHostPort(addr); err != nil {
			s.t.Fatal(err)
		}
	}
	return fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s connect_timeout=10",
		host, port, role, db, filepath.Join(s.Dir, "ca.crt"), crt, key)
}

// CAFile is the plant CA certificate (PEM).
func (s *Server) CAFile() string { return filepath.Join(s.Dir, "ca.crt") }

// IssueForeignClient writes a client certificate for role signed by a CA the server does
// not trust, and returns a DSN using it (to test that PostgreSQL refuses it).
func (s *Server) IssueForeignClient(role, db string) (string, error) {
	other := &Server{Dir: s.Dir, uid: s.uid, gid: s.gid}
	if err := other.makeCA(); err != nil {
		return "", err
	}
	crt, key := filepath.Join(s.Dir, "foreign-"+role+".crt"), filepath.Join(s.Dir, "foreign-"+role+".key")
	if err := other.issue(role, nil, false, crt, key); err != nil {
		return "", err
	}
	return fmt.Sprintf("host=localhost port=%d user=%s dbname=%s sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s connect_timeout=10",
		s.Port, role, db, filepath.Join(s.Dir, "ca.crt"), crt, key), nil
}

func (s *Server) makeCA() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wsc test plant CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	s.caKey = key
	s.caCert, err = x509.ParseCertificate(der)
	return err
}

func (s *Server) makePKI() error {
	if err := s.makeCA(); err != nil {
		return err
	}
	if err := s.writeFile(filepath.Join(s.Dir, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.caCert.Raw}), 0o644); err != nil {
		return err
	}
	return s.issue("localhost", []string{"localhost"}, true, filepath.Join(s.Dir, "server.crt"), filepath.Join(s.Dir, "server.key"))
}

func (s *Server) issue(cn string, dns []string, server bool, crtPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = dns
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.caCert, &key.PublicKey, s.caKey)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := s.writeFile(crtPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return s.writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
}
