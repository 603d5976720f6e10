// Package pgtest starts a throwaway PostgreSQL (Debian's postgresql package) on loopback for
// tests: a real database server for the push store's PostgreSQL mode. As root it runs the
// server as the postgres user, which the package creates, since PostgreSQL refuses root.
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/childproc"
	"github.com/bbsim/bbsim/internal/freeport"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// Server is a running PostgreSQL.
type Server struct {
	Port  int
	dir   string
	bin   string
	cred  *syscall.Credential
	cmd   *exec.Cmd
	admin *sql.DB
	n     atomic.Int64
}

// binDir finds the directory of initdb and postgres: on PATH, or Debian's
// /usr/lib/postgresql/N/bin (the newest N).
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("postgres"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL is not installed: make test-deps installs Debian's postgresql")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Start initialises a cluster in a temporary directory and starts it on a free loopback
// port; t.Cleanup stops it and removes the directory.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := binDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "bbsim-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("PostgreSQL refuses to run as root and there is no postgres user (Debian's postgresql package creates it): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "bbsim", "-A", "trust", "-E", "UTF8", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	s := &Server{Port: freePort(t), dir: dir, bin: bin, cred: cred}
	t.Cleanup(s.stop)
	s.start(t)
	if s.admin, err = sql.Open("pgx", s.url("postgres")); err != nil {
		t.Fatal(err)
	}
	s.waitReady(t)
	return s
}

// start starts the server process on the cluster in s.dir.
func (s *Server) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(s.dir, "postgres.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", filepath.Join(s.dir, "data"), "-p", strconv.Itoa(s.Port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "shared_buffers=32MB", "-c", "max_connections=200")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	s.cmd = cmd
}

func (s *Server) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := s.admin.PingContext(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
			t.Fatalf("postgres on port %d not ready after 30s: %v\n%s", s.Port, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Restart stops the server (ending every connection) and starts it again on the same
// port and data: what clients see when their database restarts.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.halt()
	s.start(t)
	s.waitReady(t)
}

func freePort(t testing.TB) int {
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}

func (s *Server) url(db string) string {
	return fmt.Sprintf("postgres://bbsim@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// NewDatabase creates an empty database and returns its URL.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", s.n.Add(1))
	if _, err := s.admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	return s.url(name)
}

// halt ends the server process: a fast shutdown, then SIGKILL after 5 seconds.
func (s *Server) halt() {
	childproc.Stop(s.cmd, syscall.SIGINT, 5*time.Second)
	s.cmd = nil
}

func (s *Server) stop() {
	if s.admin != nil {
		s.admin.Close()
	}
	s.halt()
}
