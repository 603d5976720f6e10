package bisclient

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/wirelog"
	"github.com/bbsim/bbsim/mailserver"
)

const (
	alice = "alice@bbsim.test"
	pass  = "blackberry"
)

type mailRig struct {
	s                *mailserver.Server
	imap, pop3, smtp string
	cert             string       // the server's self-signed certificate
	wire             *wirelog.Log // what the server's connections wrote, in order
}

func startMail(t testing.TB, opts mailserver.Options, imapOn bool) *mailRig {
	t.Helper()
	opts.DataDir = t.TempDir()
	s, err := mailserver.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r := &mailRig{s: s, cert: mailserver.CertFile(opts.DataDir), wire: &wirelog.Log{}}
	listen := func(name string, f func(net.Listener) error) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go f(r.wire.Listener(name, ln))
		return ln.Addr().String()
	}
	if imapOn {
		r.imap = listen("imap", s.ServeIMAP)
	} else {
		// A closed port: connection refused, as with IMAP turned off.
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		r.imap = ln.Addr().String()
		ln.Close()
	}
	r.pop3 = listen("pop3", s.ServePOP3)
	r.smtp = listen("smtp", s.ServeSMTP)
	return r
}

func (r *mailRig) deliver(t testing.TB, subject string) {
	t.Helper()
	msg := fmt.Sprintf("From: Bob <bob@example.test>\r\nTo: %s\r\nSubject: %s\r\n\r\nBody of %s.\r\n", alice, subject, subject)
	if err := r.s.Deliver(context.Background(), "bob@example.test", []string{alice}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

func newHandset(t testing.TB) *handset.Handset {
	t.Helper()
	h, err := handset.New(handset.Options{PIN: "2100000A", Email: alice, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// runClient runs a client of opts until stop, which waits for it to end; the test's
// cleanup calls it too.
func runClient(t testing.TB, opts Options) (stop func()) {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func count(h *handset.Handset, subject string) int {
	n := 0
	for _, m := range h.Messages() {
		if m.Subject == subject {
			n++
		}
	}
	return n
}

func state(h *handset.Handset) handset.MailState { return h.MailStatus().State }

func TestNewMailReachesHandset(t *testing.T) {
	r := startMail(t, mailserver.Options{}, true)
	r.deliver(t, "before")
	h := newHandset(t)
	runClient(t, Options{Handset: h, Server: r.imap, Password: pass})
	waitFor(t, "idling", 10*time.Second, func() bool { return state(h) == handset.MailIdling })
	if count(h, "before") != 1 {
		t.Fatalf("mail from before the connection: %d", count(h, "before"))
	}
	r.deliver(t, "while idling")
	waitFor(t, "new mail", 5*time.Second, func() bool { return count(h, "while idling") == 1 })
	m := h.Messages()[0]
	if m.From != "Bob <bob@example.test>" || !strings.Contains(m.Text, "Body of while idling.") || m.Kind != handset.KindEmail {
		t.Fatalf("message %+v", m)
	}
	if st := h.MailStatus(); st.Protocol != "imap" || st.Server != r.imap {
		t.Fatalf("status %+v", st)
	}
}

func TestPoliteDisconnect(t *testing.T) {
	r := startMail(t, mailserver.Options{PoliteDisconnect: true}, true)
	h := newHandset(t)
	runClient(t, Options{Handset: h, Server: r.imap, Password: pass, Backoff: Backoff{First: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	waitFor(t, "idling", 10*time.Second, func() bool { return state(h) == handset.MailIdling })
	// The server marks the session idling just after "+ idling" went out.
	waitFor(t, "the server to see the session idling", 5*time.Second, func() bool { return r.s.IdleSessions(alice) == 1 })

	p := popLogin(t, r.pop3)
	waitFor(t, "the BYE", 5*time.Second, func() bool {
		d := h.MailStatus().LastDisconnect
		return d != nil && strings.Contains(d.Reason, "[UNAVAILABLE]")
	})
	// The handset is told before POP3 is let in: the BYE reached its socket first.
	if err := r.wire.Before("imap: * BYE [UNAVAILABLE]", "pop3: +OK Logged in", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	r.deliver(t, "during POP3")
	// While POP3 holds the store the handset is locked out and keeps trying.
	waitFor(t, "locked out", 5*time.Second, func() bool { return state(h) == handset.MailLockedOut })
	if count(h, "during POP3") != 0 {
		t.Fatal("mail arrived while POP3 held the store")
	}
	p.quit()
	waitFor(t, "back in IDLE", 5*time.Second, func() bool { return state(h) == handset.MailIdling })
	waitFor(t, "the mail", 5*time.Second, func() bool { return count(h, "during POP3") == 1 })
	// A later message fetched on the same session comes after any second copy would have.
	r.deliver(t, "after POP3")
	waitFor(t, "the later mail", 5*time.Second, func() bool { return count(h, "after POP3") == 1 })
	if n := count(h, "during POP3"); n != 1 {
		t.Fatalf("mail shown %d times", n)
	}
	if h.MailStatus().Reconnects < 1 {
		t.Fatalf("reconnects %d", h.MailStatus().Reconnects)
	}
}

func TestNoIdlePolls(t *testing.T) {
	r := startMail(t, mailserver.Options{NoIdle: true}, true)
	h := newHandset(t)
	runClient(t, Options{Handset: h, Server: r.imap, Password: pass, PollInterval: 50 * time.Millisecond})
	waitFor(t, "polling", 10*time.Second, func() bool { return state(h) == handset.MailPolling })
	r.deliver(t, "polled")
	waitFor(t, "polled mail", 5*time.Second, func() bool { return count(h, "polled") == 1 })
	// Between polls the store is free: POP3 gets in under exclusive locking.
	p := popLoginRetry(t, r.pop3)
	p.quit()
}

func TestPOP3Fallback(t *testing.T) {
	r := startMail(t, mailserver.Options{}, false)
	r.deliver(t, "over pop3")
	h := newHandset(t)
	runClient(t, Options{Handset: h, Server: r.imap, POP3Server: r.pop3, Password: pass, PollInterval: 50 * time.Millisecond})
	waitFor(t, "pop3 mail", 10*time.Second, func() bool { return count(h, "over pop3") == 1 })
	r.deliver(t, "second")
	waitFor(t, "second pop3 mail", 5*time.Second, func() bool { return count(h, "second") == 1 })
	// Two more polls, each seen by the mail it brings: nothing came twice meanwhile.
	for _, subject := range []string{"third", "fourth"} {
		r.deliver(t, subject)
		waitFor(t, subject+" pop3 mail", 5*time.Second, func() bool { return count(h, subject) == 1 })
	}
	if count(h, "over pop3") != 1 || count(h, "second") != 1 || count(h, "third") != 1 {
		t.Fatal("duplicates over POP3")
	}
	if st := h.MailStatus(); st.Protocol != "pop3" || st.State != handset.MailPolling {
		t.Fatalf("status %+v", st)
	}
}

func TestAuthFailureIsFinal(t *testing.T) {
	r := startMail(t, mailserver.Options{}, true)
	var dials atomic.Int32
	h := newHandset(t)
	d := &net.Dialer{}
	runClient(t, Options{Handset: h, Server: r.imap, Password: "wrong", Backoff: Backoff{First: time.Millisecond},
		Dial: func(ctx context.Context, n, a string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, n, a)
		}})
	waitFor(t, "auth-failed", 10*time.Second, func() bool { return state(h) == handset.MailAuthFailed })
	// That no retry follows is TestAuthFailureWaitsForCoverage's, with exact times.
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d connections after a refused login, want 1", n)
	}
	// Leaving and re-entering coverage tries once more.
	h.SetCoverage(false)
	h.SetCoverage(true)
	waitFor(t, "second try", 5*time.Second, func() bool { return dials.Load() == 2 })
}

func TestCoverage(t *testing.T) {
	r := startMail(t, mailserver.Options{}, true)
	h := newHandset(t)
	runClient(t, Options{Handset: h, Server: r.imap, Password: pass})
	waitFor(t, "idling", 10*time.Second, func() bool { return state(h) == handset.MailIdling })
	h.SetCoverage(false)
	waitFor(t, "disconnected", 5*time.Second, func() bool { return state(h) == handset.MailDisconnected })
	// The server has let the session go: nothing is left that could carry new mail.
	waitFor(t, "the server to end the session", 5*time.Second, func() bool { return r.s.Sessions(alice) == 0 })
	r.deliver(t, "while away")
	if count(h, "while away") != 0 {
		t.Fatal("mail arrived out of coverage")
	}
	h.SetCoverage(true)
	waitFor(t, "resync", 5*time.Second, func() bool { return count(h, "while away") == 1 })
}

// A line-level POP3 client.
type pop3Conn struct {
	c net.Conn
	t testing.TB
}

func popLogin(t testing.TB, addr string) *pop3Conn {
	t.Helper()
	p, reply := popTry(t, addr)
	if !strings.HasPrefix(reply, "+OK") {
		t.Fatalf("POP3 PASS: %q", reply)
	}
	return p
}

func popLoginRetry(t testing.TB, addr string) *pop3Conn {
	t.Helper()
	for range 100 {
		p, reply := popTry(t, addr)
		if strings.HasPrefix(reply, "+OK") {
			return p
		}
		p.c.Close()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("POP3 never got the store")
	return nil
}

func popTry(t testing.TB, addr string) (*pop3Conn, string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	buf := make([]byte, 512)
	read := func() string {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := c.Read(buf)
		return strings.TrimSpace(string(buf[:n]))
	}
	read()
	fmt.Fprintf(c, "USER %s\r\n", alice)
	read()
	fmt.Fprintf(c, "PASS %s\r\n", pass)
	return &pop3Conn{c: c, t: t}, read()
}

func (p *pop3Conn) quit() {
	fmt.Fprintf(p.c, "QUIT\r\n")
	buf := make([]byte, 256)
	p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	p.c.Read(buf)
	p.c.Close()
}
