package bisclient

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/mailserver"
)

// waitEvent waits for an event of kind whose text contains want.
func waitEvent(t *testing.T, h *handset.Handset, kind, want string) handset.Event {
	t.Helper()
	var seq uint64
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, e := range h.Events(seq) {
			seq = e.Seq
			if e.Kind == kind && strings.Contains(e.Text, want) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event with %q", kind, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The polite disconnect's BYE is read above TLS: the handset records the server's words
// and knows it is locked out, as without TLS.
func TestStartTLSPoliteDisconnect(t *testing.T) {
	t.Parallel()
	r := startMail(t, mailserver.Options{PoliteDisconnect: true}, true)
	h := newHandset(t)
	runClient(t, Options{Handset: h, Server: r.imap, Password: pass, Security: "starttls", CAFiles: []string{r.cert},
		Backoff: Backoff{First: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	waitFor(t, "idling", 10*time.Second, func() bool { return state(h) == handset.MailIdling })
	// The server marks the session idling just after "+ idling" went out.
	waitFor(t, "the server to see the session idling", 5*time.Second, func() bool { return r.s.IdleSessions(alice) == 1 })
	p := popLogin(t, r.pop3)
	e := waitEvent(t, h, handset.EventMailBye, "[UNAVAILABLE]")
	if !strings.HasPrefix(e.Text, "server said BYE: [UNAVAILABLE] ") {
		t.Errorf("mail.bye %q", e.Text)
	}
	waitFor(t, "locked out", 5*time.Second, func() bool { return state(h) == handset.MailLockedOut })
	p.quit()
	waitFor(t, "back in IDLE over TLS", 10*time.Second, func() bool { return state(h) == handset.MailIdling })
}

func TestCertificateTrust(t *testing.T) {
	t.Parallel()
	r := startMail(t, mailserver.Options{}, true)
	r.deliver(t, "over tls")
	for _, tc := range []struct {
		name    string
		opts    Options
		pop3    bool
		wantErr string // "" when mail arrives
	}{
		{name: "unknown authority", wantErr: "certificate signed by unknown authority (trust its certificate with --mail-ca-file"},
		{name: "CA file", opts: Options{CAFiles: []string{r.cert}}},
		{name: "insecure", opts: Options{Insecure: true}},
		{name: "CA file over POP3", opts: Options{CAFiles: []string{r.cert}}, pop3: true},
		{name: "unknown authority over POP3", pop3: true, wantErr: "stls: tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHandset(t)
			o := tc.opts
			o.Handset, o.Server, o.Password, o.Security = h, r.imap, pass, "starttls"
			o.PollInterval = time.Hour
			if tc.pop3 {
				o.Protocol, o.Server = "pop3", r.pop3
			}
			runClient(t, o)
			if tc.wantErr != "" {
				waitFor(t, "the refusal", 10*time.Second, func() bool {
					d := h.MailStatus().LastDisconnect
					return d != nil && strings.Contains(d.Reason, tc.wantErr)
				})
				if count(h, "over tls") != 0 {
					t.Fatal("mail fetched from an untrusted server")
				}
				return
			}
			waitFor(t, "mail over TLS", 10*time.Second, func() bool { return count(h, "over tls") == 1 })
		})
	}
}

func TestCAFileErrors(t *testing.T) {
	t.Parallel()
	h := newHandset(t)
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o644)
	for _, tc := range []struct{ file, want string }{
		{filepath.Join(t.TempDir(), "missing.pem"), "no such file"},
		{junk, "no PEM certificate in it"},
	} {
		if _, err := New(Options{Handset: h, CAFiles: []string{tc.file}}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(CAFiles %s) = %v, want %q", tc.file, err, tc.want)
		}
	}
}
