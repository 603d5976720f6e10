// Package bisclient is a BlackBerry Internet Service style e-mail integration: it keeps an
// IMAP IDLE session on the user's INBOX and fetches new mail into the handset at once; it
// comes back by itself after the server disconnects it (an untagged BYE, whose reason it
// records) or drops it, with capped exponential backoff; it polls when the server has no
// IDLE and falls back to POP3 when there is no IMAP.
package bisclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"time"

	"github.com/bbsim/bbsim/handset"
)

// Backoff is the reconnection schedule: First, then doubling (Factor) up to Max, each
// delay spread by ±Jitter; a session that lasted StableAfter resets it.
type Backoff struct {
	First, Max  time.Duration
	Factor      float64
	Jitter      float64
	StableAfter time.Duration
}

// DefaultPollInterval is the polling period when Options.PollInterval is zero.
const DefaultPollInterval = 15 * time.Minute

// Options configure a Client. Zero values mean the defaults stated per field.
type Options struct {
	// Handset receives the mail and the connection state. Required.
	Handset *handset.Handset
	// Server is the mail server's host:port. Default: discovered through DNS from the
	// e-mail domain (SRV _imaps, _imap, _pop3s, _pop3, then MX and A).
	Server string
	// Protocol is "auto" (IMAP, else POP3), "imap" or "pop3". Default auto.
	Protocol string
	// Security is "none", "starttls" or "tls". Default none.
	Security string
	// Username and Password log in. Username defaults to the handset's e-mail.
	Username, Password string
	// DNS is the resolver (host:port) used for discovery. Default 127.0.0.1:1053.
	DNS string
	// POP3Server is the POP3 server for the auto fallback. Default: discovered, or
	// Server's host on the standard POP3 port: 110, 995 with implicit TLS or beside port
	// 993, 1110 beside bbsim's own 1143. With Protocol pop3, Server is the POP3 server.
	POP3Server string
	// PollInterval is the polling period without IDLE and over POP3. Default 15 minutes.
	PollInterval time.Duration
	// IdleRefresh re-issues IDLE this often. Default 28 minutes.
	IdleRefresh time.Duration
	// DeadAfter is the silence after which a NOOP checks the connection. Default 2 minutes.
	DeadAfter time.Duration
	// NoopTimeout is how long that NOOP may take before the connection counts as dead.
	// Default 30 s.
	NoopTimeout time.Duration
	// Backoff is the reconnection schedule. Default 250 ms, ×2, up to 60 s, ±20 %, reset
	// after 30 s of a stable session.
	Backoff Backoff
	// Dial opens connections. Default a net.Dialer with a 10 s timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSConfig for starttls and tls. Default: verify against the system roots and
	// CAFiles.
	TLSConfig *tls.Config
	// CAFiles are PEM files of certificates trusted besides the system roots, such as a
	// self-signed server's own certificate. A file that cannot be read or holds no
	// certificate is an error. Default none.
	CAFiles []string
	// Insecure accepts any server certificate, for tests against throwaway servers; the
	// connection is encrypted but anyone can pose as the server. Default off.
	Insecure bool
	// Rand returns a number in [0,1) for the jitter. Default math/rand/v2.
	Rand func() float64
	// Logger. Default: discard.
	Logger *slog.Logger
}

// Client is the mail integration of one handset.
type Client struct {
	opts Options
	h    *handset.Handset
	log  *slog.Logger
	// imapTLS and pop3TLS: discovery found implicit-TLS services (_imaps, _pop3s).
	imapTLS, pop3TLS bool
}

// New checks the options.
func New(opts Options) (*Client, error) {
	if opts.Handset == nil {
		return nil, errors.New("bisclient: Options.Handset is required")
	}
	switch opts.Protocol {
	case "":
		opts.Protocol = "auto"
	case "auto", "imap", "pop3":
	default:
		return nil, fmt.Errorf("bisclient: protocol %q: want auto, imap or pop3", opts.Protocol)
	}
	switch opts.Security {
	case "":
		opts.Security = "none"
	case "none", "starttls", "tls":
	default:
		return nil, fmt.Errorf("bisclient: security %q: want none, starttls or tls", opts.Security)
	}
	if opts.Username == "" {
		opts.Username = opts.Handset.Email()
	}
	if opts.DNS == "" {
		opts.DNS = "127.0.0.1:1053"
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.IdleRefresh <= 0 {
		opts.IdleRefresh = 28 * time.Minute
	}
	if opts.DeadAfter <= 0 {
		opts.DeadAfter = 2 * time.Minute
	}
	if opts.NoopTimeout <= 0 {
		opts.NoopTimeout = 30 * time.Second
	}
	b := &opts.Backoff
	if b.First <= 0 {
		b.First = 250 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 60 * time.Second
	}
	if b.Factor < 1 {
		b.Factor = 2
	}
	if b.Jitter <= 0 || b.Jitter >= 1 {
		b.Jitter = 0.2
	}
	if b.StableAfter <= 0 {
		b.StableAfter = 30 * time.Second
	}
	if opts.Dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second}
		opts.Dial = d.DialContext
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.TLSConfig == nil {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		opts.TLSConfig = opts.TLSConfig.Clone()
	}
	if len(opts.CAFiles) > 0 {
		pool := opts.TLSConfig.RootCAs
		if pool == nil {
			if pool, _ = x509.SystemCertPool(); pool == nil {
				pool = x509.NewCertPool()
			}
		}
		for _, f := range opts.CAFiles {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("bisclient: CA file: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("bisclient: CA file %s: no PEM certificate in it", f)
			}
		}
		opts.TLSConfig.RootCAs = pool
	}
	if opts.Insecure {
		opts.TLSConfig.InsecureSkipVerify = true
		opts.Logger.Warn("mail server certificates are not verified", "component", "bisclient")
	}
	return &Client{opts: opts, h: opts.Handset, log: opts.Logger.With("component", "bisclient", "pin", opts.Handset.PIN())}, nil
}

// Error kinds a session ends with.
var (
	errAuth     = errors.New("authentication failed")
	errLocked   = errors.New("locked out")
	errNoServer = errors.New("no mail server found")
)

// sessionError is how a session ended: its kind and the server's words.
type sessionError struct {
	kind   error  // errAuth, errLocked, or nil for a disconnect
	reason string // the server's text (BYE, NO, -ERR) or the network error
}

func (e *sessionError) Error() string { return e.reason }
func (e *sessionError) Unwrap() error { return e.kind }

// classify reads a refusal's text: authentication failures are final, lock and limit
// refusals mean locked out.
func classify(text string) error {
	up := strings.ToUpper(text)
	switch {
	case strings.Contains(up, "AUTHENTICATIONFAILED"), strings.Contains(up, "[AUTH]"),
		strings.Contains(up, "AUTHENTICATION FAILED"), strings.Contains(up, "INVALID CREDENTIALS"):
		return errAuth
	case strings.Contains(up, "INUSE"), strings.Contains(up, "IN-USE"), strings.Contains(up, "UNAVAILABLE"),
		strings.Contains(up, "[LIMIT]"), strings.Contains(up, "MAXIMUM NUMBER OF CONNECTIONS"), strings.Contains(up, "LOCKED"):
		return errLocked
	}
	return nil
}

// delay is the n-th backoff delay (n from 0), with jitter.
func (c *Client) delay(n int) time.Duration {
	b := c.opts.Backoff
	d := float64(b.First)
	for range n {
		d *= b.Factor
		if d >= float64(b.Max) {
			d = float64(b.Max)
			break
		}
	}
	d *= 1 + b.Jitter*(2*c.opts.Rand()-1)
	return time.Duration(d)
}

// Run follows the mailbox until ctx ends: in coverage it keeps a session, and after any
// end of it reconnects on the backoff schedule; out of coverage it closes it. It returns
// nil when ctx ends.
func (c *Client) Run(ctx context.Context) error {
	attempt := 0
	started := false
	for ctx.Err() == nil {
		in, changed := c.h.Coverage()
		if !in {
			c.setState(handset.MailDisconnected, "", func(st *handset.MailStatus) {
				st.LastDisconnect = &handset.Disconnect{Reason: "out of coverage", At: time.Now()}
			})
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
			}
			attempt = 0
			continue
		}
		sctx, cancel := context.WithCancel(ctx)
		go func() {
			// Leaving coverage ends the session.
			for {
				select {
				case <-sctx.Done():
					return
				case <-changed:
				}
				var now bool
				now, changed = c.h.Coverage()
				if !now {
					cancel()
					return
				}
			}
		}()
		if started {
			c.h.UpdateMail(func(st *handset.MailStatus) { st.Reconnects++ })
		}
		started = true
		begin := time.Now()
		err := c.session(sctx)
		cancel()
		if ctx.Err() != nil {
			c.setState(handset.MailOff, "", nil)
			return nil
		}
		if in, _ := c.h.Coverage(); !in {
			continue
		}
		if time.Since(begin) >= c.opts.Backoff.StableAfter {
			attempt = 0
		}
		reason := "connection closed"
		if err != nil {
			reason = err.Error()
		}
		switch {
		case errors.Is(err, errAuth):
			c.h.Emit(handset.EventMailAuthFailed, "login refused: "+reason, map[string]string{"reason": reason})
			c.setState(handset.MailAuthFailed, "", func(st *handset.MailStatus) {
				st.LastDisconnect = &handset.Disconnect{Reason: reason, At: time.Now()}
			})
			c.log.Warn("authentication failed; not retrying until coverage changes", "reason", reason)
			// Final: wait for a coverage change (or the end) rather than hammer the
			// server; coming back into coverage tries once more.
			_, changed := c.h.Coverage()
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
			}
			attempt = 0
			continue
		}
		d := c.delay(attempt)
		attempt++
		state, kind := handset.MailBackoff, handset.EventMailBackoff
		if errors.Is(err, errLocked) {
			state, kind = handset.MailLockedOut, handset.EventMailLockedOut
		}
		retry := time.Now().Add(d)
		c.setState(state, "", func(st *handset.MailStatus) {
			st.RetryAt = retry
			st.LastDisconnect = &handset.Disconnect{Reason: reason, At: time.Now()}
		})
		c.h.Emit(kind, fmt.Sprintf("%s; retrying in %s", reason, d.Round(time.Millisecond)),
			map[string]string{"reason": reason, "delay": d.String()})
		c.log.Info("mail session ended", "reason", reason, "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			c.setState(handset.MailOff, "", nil)
			return nil
		case <-t.C:
		}
	}
	return nil
}

// setState updates the handset's mail status.
func (c *Client) setState(s handset.MailState, protocol string, f func(*handset.MailStatus)) {
	c.h.UpdateMail(func(st *handset.MailStatus) {
		st.State = s
		if protocol != "" {
			st.Protocol = protocol
		}
		if s != handset.MailBackoff && s != handset.MailLockedOut {
			st.RetryAt = time.Time{}
		}
		if f != nil {
			f(st)
		}
	})
}

// session runs one connection's lifetime with the configured protocol.
func (c *Client) session(ctx context.Context) error {
	imapAddr, pop3Addr, err := c.servers(ctx)
	if err != nil {
		return &sessionError{reason: err.Error()}
	}
	if c.opts.Protocol != "pop3" && imapAddr != "" {
		err := c.imapSession(ctx, imapAddr)
		var oe *net.OpError
		refused := errors.As(err, &oe) && oe.Op == "dial"
		if c.opts.Protocol == "auto" && refused && pop3Addr != "" {
			c.log.Info("IMAP unreachable, falling back to POP3", "imap", imapAddr, "pop3", pop3Addr)
			return c.pop3Loop(ctx, pop3Addr)
		}
		return wrapNet(err)
	}
	if pop3Addr == "" {
		return &sessionError{reason: errNoServer.Error()}
	}
	return c.pop3Loop(ctx, pop3Addr)
}

func wrapNet(err error) error {
	if err == nil {
		return nil
	}
	var se *sessionError
	if errors.As(err, &se) {
		return se
	}
	return &sessionError{reason: err.Error()}
}
