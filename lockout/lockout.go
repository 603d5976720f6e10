// Package lockout reproduces the BIS IDLE lockout and each of its resolutions: a handset
// keeps an IMAP IDLE session on a mailbox while a POP3 client, a webmail login and a second
// IMAP client arrive, and a test mail is delivered. It reports what each of them saw.
package lockout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/bbsim/bbsim/bisclient"
	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/radio"
	"github.com/bbsim/bbsim/mailserver"
)

// Scenario is one server configuration to reproduce.
type Scenario struct {
	// Name is the scenario's short name: exclusive, polite-disconnect, shared, no-idle,
	// no-imap, or "your server".
	Name string `json:"name"`
	// Server configures the bundled mail server (ignored against an outside server).
	Locking          mailserver.Locking `json:"-"`
	PoliteDisconnect bool               `json:"-"`
	NoIdle, NoIMAP   bool               `json:"-"`
	// Expect is what the scenario must show; nil against an outside server.
	Expect *Expect `json:"expect,omitempty"`
}

// Expect is the behaviour a scenario must show.
type Expect struct {
	POP3OK      bool   `json:"pop3_ok"`      // the POP3 login gets +OK
	WebmailOK   bool   `json:"webmail_ok"`   // the webmail login gets the inbox
	Disconnect  bool   `json:"disconnect"`   // the handset is disconnected (BYE)
	HandsetMode string `json:"handset_mode"` // idling, polling (IMAP without IDLE), pop3
}

// Scenarios are the bundled server's configurations: the lockout and its resolutions.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "exclusive", Locking: mailserver.LockExclusive,
			Expect: &Expect{POP3OK: false, WebmailOK: false, Disconnect: false, HandsetMode: "idling"}},
		{Name: "polite-disconnect", Locking: mailserver.LockExclusive, PoliteDisconnect: true,
			Expect: &Expect{POP3OK: true, WebmailOK: true, Disconnect: true, HandsetMode: "idling"}},
		{Name: "shared", Locking: mailserver.LockShared,
			Expect: &Expect{POP3OK: true, WebmailOK: true, Disconnect: false, HandsetMode: "idling"}},
		{Name: "no-idle", Locking: mailserver.LockExclusive, NoIdle: true,
			Expect: &Expect{POP3OK: true, WebmailOK: true, Disconnect: false, HandsetMode: "polling"}},
		{Name: "no-imap", Locking: mailserver.LockExclusive, NoIMAP: true,
			Expect: &Expect{POP3OK: true, WebmailOK: true, Disconnect: false, HandsetMode: "pop3"}},
	}
}

// Row is what one scenario showed.
type Row struct {
	Scenario string `json:"scenario"`
	// POP3 is the reply to PASS (or to USER when that already failed).
	POP3 string `json:"pop3"`
	// IMAP is what a second IMAP client's LOGIN and SELECT got while the handset held
	// its session ("" when IMAP is off).
	IMAP string `json:"imap,omitempty"`
	// Webmail is what the webmail login showed ("" when there is no webmail).
	Webmail string `json:"webmail,omitempty"`
	// HandsetMode is how the handset followed the mailbox: idling, polling or pop3.
	HandsetMode string `json:"handset_mode"`
	// Bye is the text of the server's BYE the handset saw, "" when none.
	Bye string `json:"bye,omitempty"`
	// BackIn is the time from the POP3 QUIT until the handset followed the mailbox again.
	BackIn time.Duration `json:"back_in_ns"`
	// Reconnects counts the handset's reconnections during the scenario.
	Reconnects int `json:"reconnects"`
	// MailDelay is the time from a test mail's delivery to the handset's message list.
	MailDelay time.Duration `json:"mail_delay_ns"`
	// Lost and Duplicated count the test mails the handset missed or listed twice.
	Lost       int `json:"lost"`
	Duplicated int `json:"duplicated"`
	// Problems lists where the scenario differed from what it should show.
	Problems []string `json:"problems,omitempty"`
	// Err is set when the scenario could not run.
	Err string `json:"error,omitempty"`
}

// OK reports whether the scenario behaved as expected.
func (r Row) OK() bool { return r.Err == "" && len(r.Problems) == 0 }

// MarshalJSON writes the row with "ok": OK().
func (r Row) MarshalJSON() ([]byte, error) {
	type row Row // without this method
	return json.Marshal(struct {
		row
		OK bool `json:"ok"`
	}{row(r), r.OK()})
}

// Target is an outside mail server to run against instead of the bundled one.
type Target struct {
	IMAP, POP3 string // host:port; POP3 may be empty
	// SMTP or LMTP delivers the test mails (host:port); with neither, no mail is sent.
	SMTP, LMTP string
	// Webmail is the base URL of a bbsim-style webmail, optional.
	Webmail            string
	Username, Password string
	// Email is the recipient of the test mails. Default Username.
	Email string
}

// Options configure a run.
type Options struct {
	// Scenarios to run against the bundled server. Default Scenarios().
	Scenarios []Scenario
	// Target runs one scenario against an outside server instead.
	Target *Target
	// Dir is a scratch directory for the bundled server's stores. Required without Target.
	Dir string
	// Hold is how long the POP3 and webmail sessions stay open. Default 300 ms.
	Hold time.Duration
	// Timeout bounds each wait. Default 15 s.
	Timeout time.Duration
	// PollInterval of the handset when it polls. Default 250 ms.
	PollInterval time.Duration
	// Radio puts the handset's mail connection under a radio profile, a new link of the
	// same seed per scenario. Default: none.
	Radio  radio.Conditions
	Logger *slog.Logger

	// wrap, when set, wraps each listener of a scenario's bundled server (name "imap",
	// "pop3", "smtp", "webmail"); tests use it to record what the server wrote.
	wrap func(scenario, name string, ln net.Listener) net.Listener
}

// Run runs the scenarios one after the other.
func Run(ctx context.Context, opts Options) ([]Row, error) {
	if opts.Hold == 0 {
		opts.Hold = 300 * time.Millisecond
	}
	if opts.Timeout == 0 {
		opts.Timeout = 15 * time.Second
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 250 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Target != nil {
		if opts.Target.Email == "" {
			opts.Target.Email = opts.Target.Username
		}
		row := runScenario(ctx, opts, Scenario{Name: "your server"}, *opts.Target)
		return []Row{row}, ctx.Err()
	}
	if opts.Dir == "" {
		return nil, errors.New("lockout: no scratch directory")
	}
	scs := opts.Scenarios
	if scs == nil {
		scs = Scenarios()
	}
	var rows []Row
	for i, sc := range scs {
		if ctx.Err() != nil {
			return rows, ctx.Err()
		}
		rows = append(rows, runBundled(ctx, opts, sc, fmt.Sprintf("%s/%d-%s", opts.Dir, i, sc.Name)))
	}
	return rows, nil
}

const (
	user     = "qa@lockout.test"
	password = "lockout"
)

// runBundled starts a bundled server configured for sc and runs the scenario on it.
func runBundled(ctx context.Context, opts Options, sc Scenario, dir string) Row {
	fail := func(err error) Row { return Row{Scenario: sc.Name, Err: err.Error()} }
	srv, err := mailserver.New(mailserver.Options{
		DataDir: dir, Domain: "lockout.test",
		Users:   []mailserver.User{{Email: user, Password: password}},
		Locking: sc.Locking, PoliteDisconnect: sc.PoliteDisconnect, NoIdle: sc.NoIdle,
		Logger: opts.Logger.With("scenario", sc.Name),
	})
	if err != nil {
		return fail(err)
	}
	defer srv.Close()
	listen := func(name string, serve func(net.Listener) error) (string, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		if opts.wrap != nil {
			go serve(opts.wrap(sc.Name, name, ln))
		} else {
			go serve(ln)
		}
		return ln.Addr().String(), nil
	}
	t := Target{Username: user, Password: password, Email: user}
	if !sc.NoIMAP {
		if t.IMAP, err = listen("imap", srv.ServeIMAP); err != nil {
			return fail(err)
		}
	} else {
		// IMAP turned off: its port refuses connections, and the handset falls back.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		t.IMAP = ln.Addr().String()
		ln.Close()
	}
	if t.POP3, err = listen("pop3", srv.ServePOP3); err != nil {
		return fail(err)
	}
	if t.SMTP, err = listen("smtp", srv.ServeSMTP); err != nil {
		return fail(err)
	}
	web, err := listen("webmail", srv.ServeWebmail)
	if err != nil {
		return fail(err)
	}
	t.Webmail = "http://" + web
	row := runScenario(ctx, opts, sc, t)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return row
}

// runScenario runs a handset against t, then the POP3, IMAP and webmail visitors and two
// test mails, and checks the outcome against sc.Expect.
func runScenario(ctx context.Context, opts Options, sc Scenario, t Target) Row {
	row := Row{Scenario: sc.Name}
	h, err := handset.New(handset.Options{PIN: "2100F00D", Email: t.Email})
	if err != nil {
		row.Err = err.Error()
		return row
	}
	defer h.Close()
	proto, server := "auto", t.IMAP
	if server == "" {
		proto, server = "pop3", t.POP3
	}
	var dial func(ctx context.Context, network, addr string) (net.Conn, error)
	if link := opts.Radio.Link(); link != nil {
		radio.Attach(h, link)
		dial = link.Dialer(nil, "mail")
	}
	bc, err := bisclient.New(bisclient.Options{
		Handset: h, Server: server, POP3Server: t.POP3, Protocol: proto,
		Username: t.Username, Password: t.Password, PollInterval: opts.PollInterval,
		Logger: opts.Logger.With("component", "bisclient"), Dial: dial,
	})
	if err != nil {
		row.Err = err.Error()
		return row
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); bc.Run(cctx) }()
	defer func() { stop(); <-done }()

	following := func() bool {
		st := h.MailStatus()
		return st.State == handset.MailIdling || st.State == handset.MailPolling
	}
	if err := waitFor(ctx, opts.Timeout, following); err != nil {
		st := h.MailStatus()
		row.Err = fmt.Sprintf("the handset never reached the mailbox (state %s)", st.State)
		if st.LastDisconnect != nil {
			row.Err += ": " + st.LastDisconnect.Reason
		}
		return row
	}
	row.HandsetMode = handsetMode(h)
	base := h.MailStatus().Reconnects

	// A first mail shows the delivery delay while the handset follows the mailbox.
	subjects := []string{}
	mail := func(n int) (time.Time, string, error) {
		subj := fmt.Sprintf("lockout %s test %d %d", sc.Name, n, time.Now().UnixNano())
		at := time.Now()
		err := deliver(ctx, t, subj)
		if err == nil {
			subjects = append(subjects, subj)
		}
		return at, subj, err
	}
	canMail := t.SMTP != "" || t.LMTP != ""
	if canMail {
		at, subj, err := mail(1)
		if err != nil {
			row.Err = "deliver: " + err.Error()
			return row
		}
		if err := waitFor(ctx, opts.Timeout, func() bool { return countSubject(h, subj) > 0 }); err == nil {
			row.MailDelay = receivedAt(h, subj).Sub(at)
		}
	}

	// A second IMAP client while the handset holds its session.
	if t.IMAP != "" {
		row.IMAP = secondIMAP(ctx, t)
	}

	// The POP3 visitor: logs in, stays a moment while a second mail arrives, quits.
	var quitAt time.Time
	if t.POP3 != "" {
		// A polling handset holds the store for a moment on each poll: like a person, the
		// visitor tries again a few times before giving up.
		var reply string
		var quit func()
		var err error
		tries := 0
		for tries < 5 {
			tries++
			reply, quit, err = pop3Login(ctx, t.POP3, t.Username, t.Password)
			if quit != nil || !sleep(ctx, 60*time.Millisecond) {
				break
			}
		}
		row.POP3 = reply
		if err != nil && reply == "" {
			row.POP3 = err.Error()
		}
		if quit != nil && tries > 1 {
			row.POP3 += fmt.Sprintf(" (try %d)", tries)
		}
		if canMail {
			mail(2)
		}
		sleep(ctx, opts.Hold)
		if quit != nil {
			quit()
			quitAt = time.Now()
		}
	}
	if quitAt.IsZero() {
		quitAt = time.Now()
	}
	if err := waitFor(ctx, opts.Timeout, following); err == nil {
		row.BackIn = time.Since(quitAt)
	} else {
		row.Problems = append(row.Problems, "the handset did not come back after the POP3 session")
	}

	// The webmail visitor.
	if t.Webmail != "" {
		for try := 1; try <= 5; try++ {
			row.Webmail = webmailLogin(ctx, t.Webmail, t.Username, t.Password, opts.Hold)
			if strings.HasPrefix(row.Webmail, "inbox") || !sleep(ctx, 60*time.Millisecond) {
				break
			}
		}
		waitFor(ctx, opts.Timeout, following)
	}

	// Every test mail must be on the handset exactly once.
	for _, s := range subjects {
		waitFor(ctx, opts.Timeout, func() bool { return countSubject(h, s) > 0 })
	}
	for _, s := range subjects {
		switch n := countSubject(h, s); {
		case n == 0:
			row.Lost++
		case n > 1:
			row.Duplicated += n - 1
		}
	}
	st := h.MailStatus()
	row.Reconnects = st.Reconnects - base
	for _, e := range h.Events(0) {
		if e.Kind == handset.EventMailBye {
			row.Bye = e.Fields["reason"]
		}
	}
	check(&row, sc.Expect)
	return row
}

func handsetMode(h *handset.Handset) string {
	st := h.MailStatus()
	if st.Protocol == "pop3" {
		return "pop3"
	}
	return string(st.State)
}

func check(r *Row, e *Expect) {
	if r.Lost > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d test mail(s) lost", r.Lost))
	}
	if r.Duplicated > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d test mail(s) shown twice", r.Duplicated))
	}
	if e == nil {
		return
	}
	if got := strings.HasPrefix(r.POP3, "+OK"); got != e.POP3OK {
		r.Problems = append(r.Problems, fmt.Sprintf("POP3 login: want ok=%v, got %q", e.POP3OK, r.POP3))
	}
	if r.Webmail != "" {
		if got := strings.HasPrefix(r.Webmail, "inbox"); got != e.WebmailOK {
			r.Problems = append(r.Problems, fmt.Sprintf("webmail login: want ok=%v, got %q", e.WebmailOK, r.Webmail))
		}
	}
	if got := r.Bye != ""; got != e.Disconnect {
		r.Problems = append(r.Problems, fmt.Sprintf("server's BYE to the handset: want %v, got %q", e.Disconnect, r.Bye))
	}
	if r.HandsetMode != e.HandsetMode {
		r.Problems = append(r.Problems, fmt.Sprintf("handset mode: want %s, got %s", e.HandsetMode, r.HandsetMode))
	}
}

func countSubject(h *handset.Handset, subj string) int {
	n := 0
	for _, m := range h.Messages() {
		if m.Subject == subj {
			n++
		}
	}
	return n
}

func receivedAt(h *handset.Handset, subj string) time.Time {
	for _, m := range h.Messages() {
		if m.Subject == subj {
			return m.ReceivedAt
		}
	}
	return time.Time{}
}

// waitFor polls cond until it holds, ctx ends or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		if !sleep(ctx, 2*time.Millisecond) {
			return ctx.Err()
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// formTokenField finds a sign-in form's hidden token field (bbsim's is named csrf).
var formTokenField = regexp.MustCompile(`<input type="hidden" name="(csrf|_token|csrf_token|token)" value="([^"]*)"`)

// webmailLogin posts the webmail login form and summarises what came back: "inbox (N
// messages)" or the refusal's text.
func webmailLogin(ctx context.Context, base, user, pass string, hold time.Duration) string {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Timeout: 10 * time.Second, Jar: jar}
	form := url.Values{"email": {user}, "username": {user}, "password": {pass}}
	// A form token, when the sign-in page has one, goes back with the form.
	if greq, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/", nil); err == nil {
		if gresp, err := c.Do(greq); err == nil {
			if m := formTokenField.FindStringSubmatch(readText(gresp)); m != nil {
				form.Set(m[1], m[2])
			}
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	body := readText(resp)
	sleep(ctx, hold)
	lreq, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/logout", nil)
	if lresp, err := c.Do(lreq); err == nil {
		lresp.Body.Close()
	}
	return summarizeWebmail(resp.StatusCode, body)
}
