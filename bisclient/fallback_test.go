package bisclient

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/mailserver"
)

func TestPOP3Beside(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		imap     string
		implicit bool
		want     string
	}{
		{"127.0.0.1:41143", false, "127.0.0.1:110"},
		{"mail.example.test:143", false, "mail.example.test:110"},
		{"mail.example.test:993", false, "mail.example.test:995"},
		{"10.0.0.7:41993", true, "10.0.0.7:995"},
		{"127.0.0.1:1143", false, "127.0.0.1:1110"},
		{"[::1]:41143", false, "[::1]:110"},
	} {
		if got := pop3Beside(tc.imap, tc.implicit); got != tc.want {
			t.Errorf("pop3Beside(%q, %v) = %q, want %q", tc.imap, tc.implicit, got, tc.want)
		}
	}
}

// With IMAP down the handset falls back to POP3 on the host of its mail server, at the
// standard port, and dials nothing else (no credentials to another server, such as a
// bbsim on 1110).
func TestPOP3FallbackSameServer(t *testing.T) {
	t.Parallel()
	r := startMail(t, mailserver.Options{}, false)
	r.deliver(t, "fallback")
	var mu sync.Mutex
	var dialed []string
	d := &net.Dialer{}
	h := newHandset(t)
	runClient(t, Options{Handset: h, Server: r.imap, Password: pass, PollInterval: time.Hour,
		Dial: func(ctx context.Context, n, addr string) (net.Conn, error) {
			mu.Lock()
			dialed = append(dialed, addr)
			mu.Unlock()
			if addr == "127.0.0.1:110" {
				// Port 110 stands for the rig's POP3 listener, on the same host.
				return d.DialContext(ctx, n, r.pop3)
			}
			return d.DialContext(ctx, n, addr)
		}})
	waitFor(t, "mail over POP3", 10*time.Second, func() bool { return count(h, "fallback") == 1 })
	// The mail is on the handset a moment before the session reports it polls.
	waitFor(t, "polling over POP3", 5*time.Second, func() bool { return h.MailStatus().State == handset.MailPolling })
	if st := h.MailStatus(); st.Protocol != "pop3" || st.Server != "127.0.0.1:110" {
		t.Errorf("status %+v, want pop3 at 127.0.0.1:110", st)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range dialed {
		if a != r.imap && a != "127.0.0.1:110" {
			t.Errorf("dialed %s; want only %s and 127.0.0.1:110 (all: %q)", a, r.imap, dialed)
		}
	}
	if !slices.Contains(dialed, r.imap) {
		t.Errorf("IMAP at %s never tried: %q", r.imap, dialed)
	}
}
