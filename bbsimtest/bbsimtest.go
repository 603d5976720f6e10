// Package bbsimtest runs bbsim's bundled servers and one handset inside a Go test, on free
// loopback ports, with helpers that wait for what the handset shows and fail the test when
// it does not come: what GreenMail is to JUnit, for push applications and mail clients.
//
// Each Start gets its own servers, handset and data directory, so tests run in parallel
// and never see each other's pushes or mail:
//
//	sim := bbsimtest.Start(t, nil)
//	// point the code under test at sim.PushURL (RIM push: POST sim.RIMPushURL(7874))
//	ch := sim.WaitChannel("News")
package bbsimtest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/bbsim/bbsim/config"
	"github.com/bbsim/bbsim/emulator"
	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/sendmail"
)

// Options configure Start. The zero value (or nil) is the default account and handset.
type Options struct {
	// User is the mail account and the handset's identity. Default alice@bbsim.test,
	// password blackberry, PIN 2100000A.
	User config.User
	// Timeout bounds each Wait helper. Default 10 s.
	Timeout time.Duration
	// FlowControlTimeout is how long the gateway keeps a push for an unreachable handset.
	// Default 10 minutes.
	FlowControlTimeout time.Duration
	// Configure, when set, changes the configuration before anything starts (push groups,
	// BIS push applications, handset apps, mail locking…).
	Configure func(*config.Config)
}

// Sim is a running bbsim: bundled servers and one handset, attached and idling.
type Sim struct {
	// PushURL is the push gateway's base URL: RIM push at /push, PAP at /pap, push states at
	// /api/v1/pushes/{id}.
	PushURL string
	// APIURL is the handset's control API base URL (GET APIURL+"/api/v1/messages"…).
	APIURL string
	// SMTPAddr, IMAPAddr and POP3Addr are the mail server's HOST:PORT; WebmailURL its webmail.
	SMTPAddr, IMAPAddr, POP3Addr, WebmailURL string
	// PIN, Email and Password are the handset's identity and mailbox credentials.
	PIN, Email, Password string
	// Handset is the device itself, for assertions the helpers do not cover.
	Handset *handset.Handset

	t       TB
	timeout time.Duration
}

// Start runs the servers and a handset until the test ends, and returns once the handset is
// attached to the gateway and idling on its mailbox. It fails the test when they do not
// start within 30 s.
func Start(t TB, opts *Options) *Sim {
	t.Helper()
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.User.Email == "" {
		o.User = config.DefaultUser
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	c := config.Default()
	c.Data = t.TempDir()
	for _, p := range []*string{&c.Mail.IMAP, &c.Mail.POP3, &c.Mail.SMTP, &c.Mail.Webmail, &c.Push.Addr,
		&c.DNS.Addr, &c.Handset.Listen, &c.Handset.API} {
		*p = "127.0.0.1:0"
	}
	c.Mail.Users = []config.User{o.User}
	c.Handset.PIN, c.Handset.Email, c.Handset.Password = o.User.PIN, o.User.Email, o.User.Password
	c.Handset.Gateway = "" // the bundled gateway, wherever it bound
	if o.FlowControlTimeout > 0 {
		c.Push.FlowControlTimeout = o.FlowControlTimeout
	}
	if o.Configure != nil {
		o.Configure(&c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("bbsimtest: configuration: %v", err)
	}
	e, err := emulator.New(emulator.Options{Config: c, Mode: emulator.ModeRun})
	if err != nil {
		t.Fatalf("bbsimtest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bbsimtest: stop: %v", err)
		}
	})
	s := &Sim{
		PushURL: "http://" + e.Addr("push"), APIURL: "http://" + e.Addr("api"),
		SMTPAddr: e.Addr("smtp"), IMAPAddr: e.Addr("imap"), POP3Addr: e.Addr("pop3"),
		WebmailURL: "http://" + e.Addr("webmail"),
		PIN:        e.Handset.PIN(), Email: e.Handset.Email(), Password: o.User.Password,
		Handset: e.Handset, t: t, timeout: o.Timeout,
	}
	s.until(30*time.Second, "the handset attached to the gateway and idling on its mailbox", func() bool {
		d := s.Handset.Device()
		return d.Gateway.State == handset.LinkAttached && d.Mail.State == handset.MailIdling
	})
	return s
}

// RIMPushURL is the RIM push URL for this handset's port (7874: the browser).
func (s *Sim) RIMPushURL(port int) string {
	return fmt.Sprintf("%s/push?DESTINATION=%s&PORT=%d&REQUESTURI=/", s.PushURL, s.PIN, port)
}

// WaitChannel waits for a browser channel whose title, channel id or URL contains match
// (ignoring case) and returns it; it fails the test after the timeout.
func (s *Sim) WaitChannel(match string) handset.Channel {
	s.t.Helper()
	var got handset.Channel
	s.until(s.timeout, fmt.Sprintf("a channel matching %q", match), func() bool {
		for _, c := range s.Handset.Channels() {
			if contains(match, c.Title, c.ChannelID, c.URL) {
				got = c
				return true
			}
		}
		return false
	})
	return got
}

// WaitMessage waits for a message (mail or browser message) whose subject, sender or URL
// contains match and returns it, without marking it read.
func (s *Sim) WaitMessage(match string) handset.Message {
	s.t.Helper()
	return s.waitMessage(match, "")
}

// WaitMail waits for an e-mail whose subject or sender contains match and returns it.
func (s *Sim) WaitMail(match string) handset.Message {
	s.t.Helper()
	return s.waitMessage(match, handset.KindEmail)
}

func (s *Sim) waitMessage(match string, kind handset.MessageKind) handset.Message {
	s.t.Helper()
	var got handset.Message
	s.until(s.timeout, fmt.Sprintf("a message matching %q", match), func() bool {
		for _, m := range s.Handset.Messages() {
			if (kind == "" || m.Kind == kind) && contains(match, m.Subject, m.From, m.URL) {
				got, _ = s.Handset.Message(m.ID) // with its text
				return true
			}
		}
		return false
	})
	return got
}

// WaitEvent waits for an event of kind (or one of its sub-kinds: "push" matches
// "push.channel") and returns the first one kept.
func (s *Sim) WaitEvent(kind string) handset.Event {
	s.t.Helper()
	var got handset.Event
	s.until(s.timeout, fmt.Sprintf("an event of kind %q", kind), func() bool {
		for _, e := range s.Handset.Events(0) {
			if e.Kind == kind || strings.HasPrefix(e.Kind, kind+".") {
				got = e
				return true
			}
		}
		return false
	})
	return got
}

// SendMail delivers a plain text mail to the handset's mailbox over SMTP.
func (s *Sim) SendMail(subject, body string) {
	s.t.Helper()
	msg, _ := sendmail.Compose("tester@bbsim.test", []string{s.Email}, subject, body, time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if err := sendmail.Send(ctx, s.SMTPAddr, "tester@bbsim.test", []string{s.Email}, msg); err != nil {
		s.t.Fatalf("bbsimtest: send mail %q: %v", subject, err)
	}
}

// Reset clears the handset's messages, channels, cache and events (see
// POST /api/v1/reset), for a test that reuses one Sim across subtests.
func (s *Sim) Reset() {
	s.t.Helper()
	if err := s.Handset.Reset(); err != nil {
		s.t.Fatalf("bbsimtest: reset: %v", err)
	}
}

// until waits, on the handset's events, for cond; it fails the test after d.
func (s *Sim) until(d time.Duration, what string, cond func() bool) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var seq uint64
	for !cond() {
		if ev := s.Handset.Events(0); len(ev) > 0 {
			seq = ev[len(ev)-1].Seq
		}
		if cond() {
			return
		}
		// Some state changes (the mail connection's) emit no event: look again at least
		// every 100 ms.
		wctx, wcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		s.Handset.WaitEvents(wctx, seq)
		wcancel()
		if ctx.Err() != nil && !cond() {
			s.t.Fatalf("bbsimtest: no %s within %v", what, d)
		}
	}
}

func contains(match string, fields ...string) bool {
	m := strings.ToLower(match)
	for _, f := range fields {
		if strings.Contains(strings.ToLower(f), m) {
			return true
		}
	}
	return false
}
