// Package dovecot starts a throwaway Dovecot (Debian's dovecot-imapd, dovecot-pop3d and
// dovecot-lmtpd) on loopback for tests: a real IMAP and POP3 server to hold the handset
// against, with a per-user connection limit or the polite-disconnect fix emulated.
package dovecot

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/bbsim/bbsim/internal/childproc"
	"github.com/bbsim/bbsim/internal/freeport"
	"github.com/bbsim/bbsim/internal/selfsigned"
	"github.com/emersion/go-smtp"
)

// User is a mail account.
type User struct{ Email, Password string }

// Options configure the server.
type Options struct {
	// Users are the accounts. Default alice@bbsim.test / blackberry.
	Users []User
	// MaxUserIPConnections is mail_max_userip_connections for IMAP and POP3 (counted per
	// protocol). Default 10.
	MaxUserIPConnections int
	// Polite makes a POP3 login end the user's IMAP sessions that are in IDLE (they get
	// "* BYE Server shutting down."), emulating the polite-disconnect fix.
	Polite bool
	// TLS turns on STARTTLS and STLS (ssl = yes) with a self-signed certificate for
	// 127.0.0.1, kept in Server.CertFile. Plaintext logins stay allowed.
	TLS bool
}

// Server is a running Dovecot.
type Server struct {
	IMAPAddr, POP3Addr, LMTPAddr string
	Dir                          string
	// CertFile is the server's certificate (PEM) when Options.TLS is set.
	CertFile string
	cmd      *exec.Cmd
}

// Binary finds the dovecot binary, also in /usr/sbin when PATH lacks it.
func Binary() (string, error) {
	if p, err := exec.LookPath("dovecot"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/dovecot"); err == nil {
		return "/usr/sbin/dovecot", nil
	}
	return "", fmt.Errorf("dovecot is not installed: make test-deps installs dovecot-imapd, dovecot-pop3d and dovecot-lmtpd")
}

var conf = template.Must(template.New("").Parse(`base_dir = {{.Dir}}/run
state_dir = {{.Dir}}/state
instance_name = bbsim-test-{{.Instance}}
protocols = imap pop3 lmtp
listen = 127.0.0.1
log_path = {{.Dir}}/dovecot.log
{{if .TLS}}ssl = yes
ssl_cert = <{{.Dir}}/cert.pem
ssl_key = <{{.Dir}}/key.pem
{{else}}ssl = no
{{end}}disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{{.Dir}}/mail/%u
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {{.Dir}}/users
}
userdb {
  driver = passwd-file
  args = username_format=%u {{.Dir}}/users
}
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = {{.IMAP}}
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  chroot =
  inet_listener pop3 {
    address = 127.0.0.1
    port = {{.POP3}}
  }
  inet_listener pop3s {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = {{.LMTP}}
  }
}
service anvil {
  chroot =
}
protocol imap {
  mail_max_userip_connections = {{.Limit}}
}
protocol pop3 {
  mail_max_userip_connections = {{.Limit}}
}
{{if .Polite}}verbose_proctitle = yes
service pop3 {
  executable = pop3 pop3-postlogin
}
service pop3-postlogin {
  executable = script-login {{.Dir}}/pop3-kick-idle.sh
  user = root
  unix_listener pop3-postlogin {
  }
}
{{end}}`))

const kickScript = `#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
for pid in $(doveadm -c "%s/dovecot.conf" who -1 "$USER" 2>/dev/null | awk '$2=="imap"{print $3}'); do
  case "$(ps -o args= -p "$pid" 2>/dev/null)" in *" IDLE]"*) kill -TERM "$pid" ;; esac
done
exec "$@"
`

// Start runs Dovecot until the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := StartServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// StartServer runs Dovecot until Close.
func StartServer(opts Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if len(opts.Users) == 0 {
		opts.Users = []User{{"alice@bbsim.test", "blackberry"}}
	}
	if opts.MaxUserIPConnections <= 0 {
		opts.MaxUserIPConnections = 10
	}
	dir, err := os.MkdirTemp("", "bbsim-dovecot-")
	if err != nil {
		return nil, err
	}
	os.Chmod(dir, 0o755) // the dovecot user reads the users file
	for _, d := range []string{"mail", "home", "run", "state"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	var users strings.Builder
	for _, u := range opts.Users {
		fmt.Fprintf(&users, "%s:{PLAIN}%s:65534:65534::%s/home/%s::\n", u.Email, u.Password, dir, u.Email)
	}
	os.WriteFile(filepath.Join(dir, "users"), []byte(users.String()), 0o644)
	for _, d := range []string{"mail", "home"} {
		os.Chown(filepath.Join(dir, d), 65534, 65534)
	}
	s := &Server{Dir: dir}
	ports, err := freeport.Ports(3)
	if err != nil {
		return nil, err
	}
	imap, pop3, lmtp := ports[0], ports[1], ports[2]
	if opts.TLS {
		s.CertFile = filepath.Join(dir, "cert.pem")
		if err := selfsigned.Write(s.CertFile, filepath.Join(dir, "key.pem"), "localhost"); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	var cf bytes.Buffer
	conf.Execute(&cf, map[string]any{"Dir": dir, "Instance": filepath.Base(dir), "IMAP": imap, "POP3": pop3, "LMTP": lmtp,
		"Limit": opts.MaxUserIPConnections, "Polite": opts.Polite, "TLS": opts.TLS})
	os.WriteFile(filepath.Join(dir, "dovecot.conf"), cf.Bytes(), 0o644)
	if opts.Polite {
		os.WriteFile(filepath.Join(dir, "pop3-kick-idle.sh"), []byte(fmt.Sprintf(kickScript, dir)), 0o755)
	}
	s.IMAPAddr = fmt.Sprintf("127.0.0.1:%d", imap)
	s.POP3Addr = fmt.Sprintf("127.0.0.1:%d", pop3)
	s.LMTPAddr = fmt.Sprintf("127.0.0.1:%d", lmtp)
	s.cmd = exec.Command(bin, "-F", "-c", filepath.Join(dir, "dovecot.conf"))
	var out bytes.Buffer
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	s.cmd.Env = append(os.Environ(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start dovecot: %w", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if up(s.IMAPAddr) && up(s.POP3Addr) && up(s.LMTPAddr) {
			return s, nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			s.Close()
			return nil, fmt.Errorf("dovecot did not start:\n%s\n%s", out.String(), log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close stops Dovecot and removes its directory.
func (s *Server) Close() error {
	s.stop()
	return os.RemoveAll(s.Dir)
}

func up(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (s *Server) stop() { childproc.Stop(s.cmd, syscall.SIGTERM, 5*time.Second) }

// Deliver puts a message in a user's INBOX over LMTP.
func (s *Server) Deliver(t testing.TB, to string, msg []byte) {
	t.Helper()
	if err := s.DeliverErr(context.Background(), to, msg); err != nil {
		t.Fatal(err)
	}
}

// DeliverErr is Deliver returning the error.
func (s *Server) DeliverErr(ctx context.Context, to string, msg []byte) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", s.LMTPAddr)
	if err != nil {
		return err
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return err
	}
	if err := c.SendMail("bob@example.test", []string{to}, bytes.NewReader(msg)); err != nil {
		return fmt.Errorf("lmtp deliver to %s: %w", to, err)
	}
	return c.Quit()
}

// IdleIMAP reports how many of user's IMAP processes show IDLE in their title, as the
// polite kick sees them (Dovecot's verbose_proctitle).
func (s *Server) IdleIMAP(user string) (int, error) {
	doveadm, err := exec.LookPath("doveadm")
	if err != nil {
		doveadm = "/usr/bin/doveadm" // Debian's place, also when PATH lacks it
	}
	out, err := exec.Command(doveadm, "-c", filepath.Join(s.Dir, "dovecot.conf"), "who", "-1", user).Output()
	if err != nil {
		return 0, fmt.Errorf("doveadm who: %w", err)
	}
	n := 0
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) < 3 || f[1] != "imap" {
			continue
		}
		args, err := os.ReadFile("/proc/" + f[2] + "/cmdline")
		if err == nil && strings.Contains(string(args), " IDLE]") {
			n++
		}
	}
	return n, nil
}
