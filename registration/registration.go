// Package registration is the handset's BIS-Push registration agent: for each declared
// push application it runs the push service's two-step token registration
// (/mss/PD_subReg), then subscribes with the application's content provider; it retries
// network errors with backoff, stops on rejections with their code and meaning, keeps the
// state in the handset, and deregisters on request.
package registration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bbsim/bbsim/handset"
)

// Options configure an Agent. Zero values mean the defaults stated per field.
type Options struct {
	// Handset is the device. Required.
	Handset *handset.Handset
	// Gateway is the push service's base URL. Required.
	Gateway string
	// OSVersion and Model identify the device. Default "7.1.0" and "9900".
	OSVersion, Model string
	// Client makes the requests. Default: 10 s timeout.
	Client *http.Client
	// Backoff after network errors: First, doubling up to Max. Default 500 ms and 30 s.
	Backoff struct{ First, Max time.Duration }
	// Password is sent to the content provider with the handset's e-mail as username.
	// Default "bbsim".
	Password string
	Logger   *slog.Logger
}

// Agent registers the handset's push applications.
type Agent struct {
	opts Options
	h    *handset.Handset
	log  *slog.Logger
}

// New checks the options.
func New(opts Options) (*Agent, error) {
	if opts.Handset == nil {
		return nil, errors.New("registration: Options.Handset is required")
	}
	opts.Gateway = strings.TrimRight(opts.Gateway, "/")
	if opts.OSVersion == "" {
		opts.OSVersion = "7.1.0"
	}
	if opts.Model == "" {
		opts.Model = "9900"
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Backoff.First <= 0 {
		opts.Backoff.First = 500 * time.Millisecond
	}
	if opts.Backoff.Max <= 0 {
		opts.Backoff.Max = 30 * time.Second
	}
	if opts.Password == "" {
		opts.Password = "bbsim"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Agent{opts: opts, h: opts.Handset, log: opts.Logger.With("component", "registration")}, nil
}

// Actions of Classify.
const (
	ActionSuccess = "success"
	ActionRetry   = "retry"
	ActionFinal   = "final"
)

var meanings = map[int]string{
	200: "OK", 10001: "invalid PIN", 10002: "invalid application ID", 10003: "already subscribed",
	10004: "already unregistered", 10005: "already unsubscribed by the provider", 10006: "invalid subscription status",
	10007: "subscriber not found", 10008: "token expired", 10009: "token invalid",
	10010: "subscription limit for the application reached", 10011: "bad OS version or model",
	10012: "suspended by the provider", 10020: "bad address", 10021: "cannot suspend or resume an inactive subscription",
	10022: "empty username or password", 10023: "not supported", 10025: "authentication failed",
	10026: "hook failed", 10027: "bad type", 10028: "general error", -9999: "general error",
}

// Classify says how the agent treats a result code: success, retry (a fresh token
// round trip), or final (shown, not retried).
func Classify(rc int) (action, meaning string) {
	meaning = meanings[rc]
	if meaning == "" {
		meaning = "unknown code"
	}
	switch rc {
	case 200, 10003:
		return ActionSuccess, meaning
	case 10008, 10009:
		return ActionRetry, meaning
	}
	return ActionFinal, meaning
}

// errNet is a network failure: retried with backoff.
type errNet struct{ err error }

func (e errNet) Error() string { return e.err.Error() }

// Run works until ctx ends: whenever the handset is linked to the gateway, it brings each
// app to the state the user wants.
func (a *Agent) Run(ctx context.Context) error {
	var after uint64
	backoff := time.Duration(0)
	for {
		retry := false
		if a.h.LinkToken() != "" {
			for _, app := range a.h.Apps() {
				if err := a.reconcile(ctx, app); err != nil {
					var ne errNet
					if errors.As(err, &ne) {
						retry = true
						a.log.Info("registration will retry", "app", app.ID, "err", err)
					}
				}
			}
		}
		if ev := a.h.Events(0); len(ev) > 0 {
			after = max(after, ev[len(ev)-1].Seq)
		}
		var wait <-chan time.Time
		var timer *time.Timer
		if retry {
			backoff = min(max(backoff*2, a.opts.Backoff.First), a.opts.Backoff.Max)
			timer = time.NewTimer(backoff)
			wait = timer.C
		} else {
			backoff = 0
		}
		wctx, cancel := context.WithCancel(ctx)
		evc := make(chan uint64, 1)
		go func(seq uint64) {
			for {
				ev, err := a.h.WaitEvents(wctx, seq)
				if err != nil {
					return
				}
				for _, e := range ev {
					seq = e.Seq
					if e.Kind == handset.EventAppRequest || e.Kind == handset.EventGateway {
						evc <- seq
						return
					}
				}
			}
		}(after)
		select {
		case <-ctx.Done():
		case seq := <-evc:
			after = seq
		case <-wait:
		}
		cancel()
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// reconcile brings one app to its wanted state.
func (a *Agent) reconcile(ctx context.Context, app handset.App) error {
	switch {
	case app.Want == handset.WantRegistered && app.State != handset.AppActive && app.State != handset.AppFailed:
		return a.register(ctx, app)
	case app.Want == handset.WantRegistered && app.State == handset.AppFailed && app.LastRC == 0:
		return a.register(ctx, app) // failed on the network earlier
	case app.Want == handset.WantDeregistered && app.State != handset.AppNotRegistered:
		return a.deregister(ctx, app)
	}
	return nil
}

func (a *Agent) set(app handset.App, st handset.AppState, rc int, reason string) {
	a.h.SetAppState(app.ID, st, rc, reason)
}

// roundTrip runs the two-step token exchange on path and returns the rc.
func (a *Agent) roundTrip(ctx context.Context, path string, app handset.App) (int, error) {
	q := url.Values{"serviceid": {app.ID}, "osversion": {a.opts.OSVersion}, "model": {a.opts.Model}}
	base := a.opts.Gateway + path + "?" + q.Encode()
	body, err := a.get(ctx, base)
	if err != nil {
		return 0, err
	}
	if rc, ok := parseRC(body); ok {
		return rc, nil // refused before a token was issued
	}
	tok := strings.TrimSpace(body)
	body, err = a.get(ctx, base+"&"+url.QueryEscape(tok))
	if err != nil {
		return 0, err
	}
	rc, ok := parseRC(body)
	if !ok {
		return 0, errNet{fmt.Errorf("unexpected answer %q", body)}
	}
	return rc, nil
}

func parseRC(body string) (int, bool) {
	v, ok := strings.CutPrefix(strings.TrimSpace(body), "rc=")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}

func (a *Agent) get(ctx context.Context, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Bbsim-Link-Token", a.h.LinkToken())
	resp, err := a.opts.Client.Do(req)
	if err != nil {
		return "", errNet{err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode >= 500 {
		return "", errNet{fmt.Errorf("HTTP %s", resp.Status)}
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

func (a *Agent) register(ctx context.Context, app handset.App) error {
	a.set(app, handset.AppPending, 0, "registering with the push service")
	var rc int
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		rc, err = a.roundTrip(ctx, "/mss/PD_subReg", app)
		if err != nil {
			a.set(app, handset.AppFailed, 0, "network error: "+err.Error())
			return err
		}
		if action, _ := Classify(rc); action != ActionRetry {
			break
		}
	}
	action, meaning := Classify(rc)
	if action != ActionSuccess {
		a.set(app, handset.AppFailed, rc, "rejected by the push service: "+meaning)
		return fmt.Errorf("rc %d: %s", rc, meaning)
	}
	// Then the content provider.
	cp := app.CPURL
	if cp == "" {
		cp = a.opts.Gateway + "/cp"
	}
	q := url.Values{"username": {a.h.Email()}, "password": {a.opts.Password}, "appid": {app.ID},
		"address": {a.h.PIN()}, "osversion": {a.opts.OSVersion}, "model": {a.opts.Model}}
	body, err := a.get(ctx, strings.TrimRight(cp, "/")+"/subscribe?"+q.Encode())
	if err != nil {
		a.set(app, handset.AppFailed, 0, "content provider: "+err.Error())
		return err
	}
	crc, ok := parseRC(body)
	if !ok || crc != 200 {
		_, m := Classify(crc)
		a.set(app, handset.AppFailed, crc, "rejected by the content provider: "+m)
		return fmt.Errorf("content provider rc %d", crc)
	}
	a.set(app, handset.AppActive, rc, meaning)
	return nil
}

func (a *Agent) deregister(ctx context.Context, app handset.App) error {
	a.set(app, handset.AppPending, 0, "deregistering")
	rc, err := a.roundTrip(ctx, "/mss/PD_subDereg", app)
	if err != nil {
		a.set(app, handset.AppFailed, 0, "network error: "+err.Error())
		return err
	}
	_, meaning := Classify(rc)
	switch rc {
	case 200, 10004, 10007:
		cp := app.CPURL
		if cp == "" {
			cp = a.opts.Gateway + "/cp"
		}
		q := url.Values{"username": {a.h.Email()}, "password": {a.opts.Password}, "appid": {app.ID}, "address": {a.h.PIN()}}
		a.get(ctx, strings.TrimRight(cp, "/")+"/unsubscribe?"+q.Encode())
		a.set(app, handset.AppNotRegistered, rc, meaning)
		return nil
	}
	a.set(app, handset.AppFailed, rc, "deregistration rejected: "+meaning)
	return fmt.Errorf("rc %d: %s", rc, meaning)
}
