package mailserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/wirelog"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"
)

const (
	alice = "alice@bbsim.test"
	pass  = "blackberry"
)

type rig struct {
	s                         *Server
	imap, pop3, smtp, webmail string
}

func startServer(t testing.TB, opts Options) *rig {
	t.Helper()
	return startServerWire(t, opts, nil)
}

// startServerWire is startServer with every byte the servers write also recorded, in the
// order the writes returned, in w (when not nil).
func startServerWire(t testing.TB, opts Options, w *wirelog.Log) *rig {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{s: s}
	var wg sync.WaitGroup
	serve := func(name string, f func(net.Listener) error) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if w != nil {
			ln = w.Listener(name, ln)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ln); err != ErrServerClosed {
				t.Errorf("serve: %v", err)
			}
		}()
		return ln.Addr().String()
	}
	r.imap = serve("imap", s.ServeIMAP)
	r.pop3 = serve("pop3", s.ServePOP3)
	r.smtp = serve("smtp", s.ServeSMTP)
	r.webmail = serve("webmail", s.ServeWebmail)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		wg.Wait()
	})
	return r
}

func sendSMTP(t testing.TB, addr, to, subject string) {
	t.Helper()
	if err := sendSMTPErr(addr, to, subject); err != nil {
		t.Fatal(err)
	}
}

// sendSMTPErr is sendSMTP for goroutines other than the test's.
func sendSMTPErr(addr, to, subject string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	msg := fmt.Sprintf("From: bob@example.test\r\nTo: %s\r\nSubject: %s\r\n\r\nHello.\r\n", to, subject)
	if err := c.SendMail("bob@example.test", []string{to}, strings.NewReader(msg)); err != nil {
		return fmt.Errorf("send %s: %w", subject, err)
	}
	return nil
}

// idler is a go-imap client idling on INBOX; exists receives each EXISTS count.
type idler struct {
	c        *imapclient.Client
	idle     *imapclient.IdleCommand
	exists   chan uint32
	expunged chan uint32
	closed   chan struct{}
}

func startIdler(t testing.TB, addr string) *idler {
	t.Helper()
	id := &idler{exists: make(chan uint32, 100), expunged: make(chan uint32, 100), closed: make(chan struct{})}
	c, err := imapclient.DialInsecure(addr, &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Expunge: func(seq uint32) { id.expunged <- seq },
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					id.exists <- *d.NumMessages
				}
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	id.c = c
	go func() { <-c.Closed(); close(id.closed) }()
	if err := c.Login(alice, pass).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	id.idle, err = c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return id
}

// python runs a python3 script and returns its output.
func python(t *testing.T, script string, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("python3 is required (make test-deps installs it)")
	}
	out, err := exec.Command("python3", append([]string{"-c", script}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

const pyPOP = `
import poplib, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=10)
p.user(sys.argv[3])
try:
    print(p.pass_(sys.argv[4]).decode())
except poplib.error_proto as e:
    print(e.args[0].decode()); sys.exit(0)
print(p.stat())
p.quit()
`

func popLogin(t *testing.T, addr string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	out, err := python(t, pyPOP, host, port, alice, pass)
	if err != nil {
		t.Fatalf("poplib: %v\n%s", err, out)
	}
	return out
}

func TestSMTPReachesIdler(t *testing.T) {
	r := startServer(t, Options{})
	id := startIdler(t, r.imap)
	host, port, _ := net.SplitHostPort(r.smtp)
	out, err := python(t, `
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=10)
print(s.sendmail("bob@example.test", ["alice@bbsim.test"], "Subject: via python\r\n\r\nhi\r\n"))
s.quit()`, host, port)
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	select {
	case n := <-id.exists:
		if n != 1 {
			t.Fatalf("EXISTS %d, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no EXISTS at the idler")
	}
}

func TestUnknownRecipient(t *testing.T) {
	r := startServer(t, Options{})
	c, err := smtp.Dial(r.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Mail("bob@example.test", nil)
	err = c.Rcpt("nobody@bbsim.test", nil)
	if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
		t.Fatalf("RCPT unknown: %v", err)
	}
}

func TestLockingPolicies(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		pop3     string // prefix of the PASS reply
		bye      bool   // the idler gets a BYE
		imap2    string // prefix of a second IMAP client's SELECT outcome
		webLocks bool   // the webmail login is refused (after the POP3 session ended)
	}{
		{"exclusive", Options{}, "-ERR [IN-USE]", false, "NO [INUSE]", true},
		{"polite", Options{PoliteDisconnect: true}, "+OK", true, "NO [INUSE]", false},
		{"shared", Options{Locking: LockShared}, "+OK", false, "OK", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wire wirelog.Log
			r := startServerWire(t, tt.opts, &wire)
			sendSMTP(t, r.smtp, alice, "before")
			raw := rawIdler(t, r.imap)
			waitIdling(t, r.s, 1)
			if got := secondSelect(t, r.imap); !strings.HasPrefix(got, tt.imap2) {
				t.Errorf("second IMAP SELECT: %q, want %q", got, tt.imap2)
			}
			got := popLogin(t, r.pop3)
			if !strings.HasPrefix(got, tt.pop3) {
				t.Fatalf("POP3 PASS: %q, want %q", got, tt.pop3)
			}
			wait := 300 * time.Millisecond
			if tt.bye {
				wait = 2 * time.Second
			}
			line := raw.next(wait)
			if tt.bye != strings.HasPrefix(line, "* BYE [UNAVAILABLE]") {
				t.Fatalf("idler saw %q, bye wanted %v", line, tt.bye)
			}
			// The idler is told before POP3 is let in: the BYE reaches its socket before
			// the +OK to PASS reaches POP3's.
			if tt.bye {
				if err := wire.Before("imap: * BYE [UNAVAILABLE]", "pop3: +OK Logged in", 5*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			if got := webmailLogin(t, r.webmail); got != tt.webLocks {
				t.Errorf("webmail locked out: %v, want %v", got, tt.webLocks)
			}
		})
	}
}

// secondSelect logs in with a second client and selects INBOX: "OK" or the refusal.
func secondSelect(t *testing.T, addr string) string {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(alice, pass).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		if ie, ok := err.(*imap.Error); ok {
			return fmt.Sprintf("%s [%s] %s", ie.Type, ie.Code, ie.Text)
		}
		return err.Error()
	}
	c.Logout().Wait()
	return "OK"
}

// rawConn is an IMAP connection read line by line, to see BYE texts.
type rawConn struct {
	c     net.Conn
	lines chan string
}

// rawIdler logs in, selects INBOX and idles over a raw connection.
func rawIdler(t *testing.T, addr string) *rawConn { return rawIdlerB(t, addr) }

func rawIdlerB(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawConn{c: c, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			rc.lines <- sc.Text()
		}
		close(rc.lines)
	}()
	rc.next(2 * time.Second) // greeting
	for _, cmd := range []string{"a LOGIN " + alice + " " + pass, "b SELECT INBOX", "c IDLE"} {
		fmt.Fprintf(c, "%s\r\n", cmd)
		tag := cmd[:1]
		for {
			l := rc.next(2 * time.Second)
			if strings.HasPrefix(l, tag+" OK") || strings.HasPrefix(l, "+ ") {
				break
			}
			if strings.HasPrefix(l, tag+" ") || l == "(closed)" || l == "(nothing)" {
				t.Fatalf("%s: %s", cmd, l)
			}
		}
	}
	return rc
}

// waitIdling waits until n IMAP sessions of alice are idling on the server (the "+ idling"
// continuation goes out just before the server marks the session).
func waitIdling(t testing.TB, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		idling := s.IdleSessions(alice)
		if idling >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions idling, want %d", idling, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func (rc *rawConn) next(d time.Duration) string {
	select {
	case l, ok := <-rc.lines:
		if !ok {
			return "(closed)"
		}
		return l
	case <-time.After(d):
		return "(nothing)"
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// formToken returns the form token of a webmail page.
func formToken(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form token in the page:\n%s", page)
	}
	return m[1]
}

// webmailSignIn signs alice in through the webmail's form (with its token) on hc, which
// must keep cookies.
func webmailSignIn(t *testing.T, hc *http.Client, addr string) {
	t.Helper()
	resp, err := hc.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp, err = hc.PostForm("http://"+addr+"/login", url.Values{"csrf": {formToken(t, string(page))}, "email": {alice}, "password": {pass}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/inbox" {
		t.Fatalf("webmail sign-in ended on %s (HTTP %d), want /inbox", resp.Request.URL.Path, resp.StatusCode)
	}
}

// webmailLogin signs in to the webmail with curl and reports whether it was refused
// because the mailbox is in use.
func webmailLogin(t *testing.T, addr string) (locked bool) {
	t.Helper()
	jar := filepath.Join(t.TempDir(), "cookies")
	form, err := exec.Command("curl", "-s", "-c", jar, "http://"+addr+"/").Output()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	out, err := exec.Command("curl", "-s", "-b", jar, "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
		"--data-urlencode", "csrf="+formToken(t, string(form)),
		"--data-urlencode", "email="+alice, "--data-urlencode", "password="+pass, "http://"+addr+"/login").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v %s", err, out)
	}
	switch code := strings.TrimSpace(string(out)); code {
	case "303":
		return false
	case "423":
		return true
	default:
		t.Fatalf("webmail login: HTTP %s", code)
		return false
	}
}

// Mail that arrives between a client's last command and its IDLE is announced as soon as
// IDLE starts.
func TestIdleFlushesEarlierMail(t *testing.T) {
	r := startServer(t, Options{})
	c, err := net.Dial("tcp", r.imap)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	readUntil := func(prefix string) string {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %q: %v", prefix, err)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
	}
	readUntil("* OK")
	fmt.Fprintf(c, "a LOGIN %s %s\r\n", alice, pass)
	readUntil("a OK")
	fmt.Fprintf(c, "b SELECT INBOX\r\n")
	readUntil("b OK")
	sendSMTP(t, r.smtp, alice, "between commands")
	fmt.Fprintf(c, "c IDLE\r\n")
	readUntil("+ ")
	if l := readUntil("* "); !strings.Contains(l, "1 EXISTS") {
		t.Fatalf("after IDLE: %q", l)
	}
}
