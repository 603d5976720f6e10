package bisclient

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/dovecot"
)

func TestDovecot(t *testing.T) {
	dv := dovecot.Start(t, dovecot.Options{})
	h := newHandset(t)
	runClient(t, Options{Handset: h, Server: dv.IMAPAddr, Password: pass})
	waitFor(t, "idling on Dovecot", 15*time.Second, func() bool { return state(h) == handset.MailIdling })
	dv.Deliver(t, alice, []byte("From: bob@example.test\r\nSubject: from dovecot\r\n\r\nHi.\r\n"))
	waitFor(t, "mail from Dovecot", 10*time.Second, func() bool { return count(h, "from dovecot") == 1 })
}

func TestDovecotConnectionLimit(t *testing.T) {
	dv := dovecot.Start(t, dovecot.Options{MaxUserIPConnections: 1})
	// Another client holds the only IMAP slot.
	other, err := imapclient.DialInsecure(dv.IMAPAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Login(alice, pass).Wait(); err != nil {
		t.Fatal(err)
	}
	h := newHandset(t)
	runClient(t, Options{Handset: h, Server: dv.IMAPAddr, Password: pass, Backoff: Backoff{First: 50 * time.Millisecond, Max: 200 * time.Millisecond}})
	waitFor(t, "locked out by the limit", 15*time.Second, func() bool { return state(h) == handset.MailLockedOut })
	if d := h.MailStatus().LastDisconnect; d == nil || !strings.Contains(d.Reason, "mail_max_userip_connections=1") {
		t.Fatalf("reason %+v", d)
	}
	other.Logout().Wait()
	other.Close()
	waitFor(t, "recovered when the slot freed", 15*time.Second, func() bool { return state(h) == handset.MailIdling })
}

func TestDovecotPoliteKick(t *testing.T) {
	dv := dovecot.Start(t, dovecot.Options{Polite: true})
	h := newHandset(t)
	runClient(t, Options{Handset: h, Server: dv.IMAPAddr, Password: pass, Backoff: Backoff{First: 50 * time.Millisecond}})
	waitFor(t, "idling", 15*time.Second, func() bool { return state(h) == handset.MailIdling })
	popWhileIdle(t, dv)
	waitFor(t, "the BYE", 15*time.Second, func() bool {
		d := h.MailStatus().LastDisconnect
		return d != nil && strings.Contains(d.Reason, "shutting down")
	})
	waitFor(t, "back in IDLE", 15*time.Second, func() bool { return state(h) == handset.MailIdling })
}

// Dovecot with ssl = yes kicks the idling handset (the polite-disconnect emulation) over
// STARTTLS: the handset reads the BYE above TLS and records Dovecot's words.
func TestDovecotStartTLSKick(t *testing.T) {
	dv := dovecot.Start(t, dovecot.Options{Polite: true, TLS: true})
	h := newHandset(t)
	runClient(t, Options{Handset: h, Server: dv.IMAPAddr, Password: pass, Security: "starttls", CAFiles: []string{dv.CertFile},
		Backoff: Backoff{First: 50 * time.Millisecond}})
	waitFor(t, "idling", 15*time.Second, func() bool { return state(h) == handset.MailIdling })
	// The login went over TLS: Dovecot's log says so.
	log, err := os.ReadFile(filepath.Join(dv.Dir, "dovecot.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`imap-login: Info: Login: user=<` + regexp.QuoteMeta(alice) + `>.*, TLS`).Match(log) {
		t.Fatalf("Dovecot logged no login over TLS:\n%s", log)
	}
	popWhileIdle(t, dv)
	e := waitEvent(t, h, handset.EventMailBye, "Server shutting down.")
	if e.Text != "server said BYE: Server shutting down." {
		t.Errorf("mail.bye %q", e.Text)
	}
	waitFor(t, "back in IDLE", 15*time.Second, func() bool { return state(h) == handset.MailIdling })
}

// Dovecot sends the envelope's encoded words as they are: the handset decodes them, and
// the body, in charsets beyond UTF-8 and Latin-1.
func TestDovecotCharsets(t *testing.T) {
	dv := dovecot.Start(t, dovecot.Options{})
	dv.Deliver(t, alice, []byte("From: =?koi8-r?b?7s/Xz9PUyQ==?= <news@example.test>\r\n"+
		"Subject: =?windows-1252?q?=93Caf=E9=94_=80_5?=\r\n"+
		"Content-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xf0\xd2\xc9\xd7\xc5\xd4\r\n"))
	h := newHandset(t)
	runClient(t, Options{Handset: h, Server: dv.IMAPAddr, Password: pass})
	waitFor(t, "the mail", 15*time.Second, func() bool { return len(h.Messages()) == 1 })
	m := h.Messages()[0]
	if m.From != "Новости <news@example.test>" || m.Subject != "“Café” € 5" || m.Text != "Привет" {
		t.Fatalf("message from Dovecot: from %q, subject %q, text %q", m.From, m.Subject, m.Text)
	}
}

// popWhileIdle waits until Dovecot shows alice's IMAP session in IDLE (the kick finds it by
// its process title, which shows IDLE a moment after the client saw "+ idling"), then logs
// in over POP3, which kicks it; the POP3 session stays open until the test ends.
func popWhileIdle(t *testing.T, dv *dovecot.Server) {
	t.Helper()
	waitFor(t, "Dovecot's process title to show IDLE", 15*time.Second, func() bool {
		n, err := dv.IdleIMAP(alice)
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
	c, err := net.Dial("tcp", dv.POP3Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	buf := make([]byte, 512)
	c.Read(buf)
	fmt.Fprintf(c, "USER %s\r\nPASS %s\r\n", alice, pass)
}
