package mailserver

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// pySTARTTLS upgrades a plain connection with the protocol's own command (IMAP STARTTLS,
// POP3 STLS, SMTP STARTTLS), verifying the server against the certificate bbsim wrote,
// then checks the certificate it was shown is that very one and does one real exchange.
const pySTARTTLS = `
import imaplib, poplib, smtplib, ssl, sys
proto, host, port, cert, user, password = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=cert)
want = ssl.PEM_cert_to_DER_cert(open(cert).read())
if proto == "imap":
    c = imaplib.IMAP4(host, int(port), timeout=10)
    c.starttls(ssl_context=ctx)
    got = c.sock.getpeercert(True)
    c.login(user, password)
    typ, data = c.select("INBOX")
    print(typ, data[0].decode(), "messages")
    c.logout()
elif proto == "pop3":
    c = poplib.POP3(host, int(port), timeout=10)
    c.stls(context=ctx)
    got = c.sock.getpeercert(True)
    c.user(user)
    c.pass_(password)
    print("STAT", c.stat()[0], "messages")
    c.quit()
else:
    c = smtplib.SMTP(host, int(port), timeout=10)
    c.starttls(context=ctx)
    got = c.sock.getpeercert(True)
    print("refused:", c.sendmail("bob@example.test", [user], "Subject: over STARTTLS from python\r\n\r\nhi\r\n"))
    c.quit()
if got != want:
    sys.exit("the server showed another certificate than " + cert)
`

// TestSTARTTLS upgrades each protocol to TLS with two outside clients, python's
// starttls()/stls() and curl --ssl-reqd, both verifying the server against the
// certificate bbsim wrote into its data directory; a server that stopped offering the
// upgrade fails them, as --ssl-reqd refuses to go on in the clear.
func TestSTARTTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := startServer(t, Options{DataDir: dir})
	cert := filepath.Join(dir, "cert.pem")
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required (make test-deps installs it)")
	}
	curl := func(t *testing.T, args ...string) string {
		t.Helper()
		args = append([]string{"-sS", "--max-time", "20", "--ssl-reqd", "--cacert", cert, "-u", alice + ":" + pass}, args...)
		out, err := exec.Command("curl", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	py := func(t *testing.T, proto, addr string) string {
		t.Helper()
		host, port, _ := net.SplitHostPort(addr)
		out, err := python(t, pySTARTTLS, proto, host, port, cert, alice, pass)
		if err != nil {
			t.Fatalf("python %s starttls: %v\n%s", proto, err, out)
		}
		return out
	}
	// In order: two messages sent, then read over POP3 and IMAP (each session alone on the
	// store, as exclusive locking wants).
	steps := []struct {
		name string
		run  func(t *testing.T) string
		want string
	}{
		{"smtp/python", func(t *testing.T) string { return py(t, "smtp", r.smtp) }, "refused: {}"},
		{"smtp/curl", func(t *testing.T) string {
			msg := filepath.Join(t.TempDir(), "msg")
			if err := os.WriteFile(msg, []byte("Subject: over STARTTLS from curl\r\n\r\nhi\r\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return curl(t, "smtp://"+r.smtp, "--mail-from", "bob@example.test", "--mail-rcpt", alice, "-T", msg)
		}, ""},
		{"pop3/python", func(t *testing.T) string { return py(t, "pop3", r.pop3) }, "STAT 2 messages"},
		{"pop3/curl", func(t *testing.T) string { return curl(t, "pop3://"+r.pop3+"/") }, "1 "},
		{"imap/python", func(t *testing.T) string { return py(t, "imap", r.imap) }, "OK 2 messages"},
		{"imap/curl", func(t *testing.T) string { return curl(t, "imap://"+r.imap+"/") }, "INBOX"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if got := s.run(t); !strings.Contains(got, s.want) {
				t.Fatalf("%s said %q, want it to contain %q", s.name, got, s.want)
			}
		})
	}
}
