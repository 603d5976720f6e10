package browserpush

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/bbsim/bbsim/handset"
)

// Backoff of attach, detach, acks and delete-URL fetches: doubling from backoffMin to
// backoffMax.
const (
	backoffMin = 250 * time.Millisecond
	backoffMax = 30 * time.Second
	// linkBackoffMax caps the attach retries: a gateway that comes back after a restart
	// gets its handsets back within seconds.
	linkBackoffMax = 5 * time.Second
	// DefaultCheckEvery is how often an attached device asks whether its attachment holds.
	DefaultCheckEvery = 5 * time.Second
	// ackAttempts and deleteAttempts bound retries of one-off requests. An ack can reach
	// the gateway before it has read our 200 (it then answers 404), so acks start
	// retrying sooner.
	ackAttempts    = 8
	ackBackoffMin  = 20 * time.Millisecond
	deleteAttempts = 5
	// detachTimeout bounds the farewell detach when Run ends.
	detachTimeout = 2 * time.Second
)

func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return backoffMin
	}
	return min(2*d, backoffMax)
}

// Run is the receiver's device-link agent. While the handset is in coverage it keeps the
// device attached to the gateway (retrying with backoff) and stores the link token; when
// coverage ends it detaches. It also fetches the delete URL of every channel the user
// deletes. Run returns nil when ctx ends, after a last detach, leaving no goroutine.
//
// A gateway that refuses the attach request itself (400, 401, 403, 404, 405: a wrong
// gateway URL, receiver URL or PIN) is a configuration error: Run returns it.
func (r *Receiver) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.watchDeletes(ctx, &wg)
	}()
	var err error
	if r.gateway != "" {
		if err = r.link(ctx); err != nil {
			cancel()
		}
	}
	<-ctx.Done()
	wg.Wait()
	return err
}

// statusError is a gateway's non-200 answer.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// fatal reports whether a gateway answer means retrying cannot help.
func fatal(err error) bool {
	var se *statusError
	if !errors.As(err, &se) {
		return false
	}
	switch se.code {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed:
		return true
	}
	return false
}

// link attaches and detaches as coverage changes until ctx ends, or returns a fatal error.
// While attached it asks the gateway every checkEvery whether the attachment still holds
// (POST /device/check): a gateway that restarted, was killed or lost its state answers no,
// or not at all, and the device attaches again, retrying with backoff.
func (r *Receiver) link(ctx context.Context) error {
	select {
	case <-r.urlReady:
	case <-ctx.Done():
		return nil
	}
	r.h.UpdateLink(func(l *handset.LinkStatus) { l.Gateway = r.gateway; l.State = handset.LinkDetached })
	attached, due := false, false
	var sw handset.Software // the software the gateway was told on the last attach
	var backoff time.Duration
	var lastErr string
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		in, changed := r.h.Coverage()
		now, swChanged := r.h.SoftwareWatch()
		var err error
		switch {
		case in && (!attached || now != sw):
			// An upgrade or downgrade while attached attaches again: the gateway decides
			// by the device's software how to deliver (application-level acknowledgements).
			r.h.UpdateLink(func(l *handset.LinkStatus) { l.State = handset.LinkAttaching })
			sw = now
			err = r.attach(ctx)
			attached = err == nil
			if fatal(err) {
				r.log.Error("device link", "err", err)
				r.linkError(handset.LinkRefused, err)
				r.h.Emit(handset.EventGateway, "the push gateway refused the device: "+err.Error(),
					map[string]string{"state": "refused", "gateway": r.gateway})
				return err
			}
		case !in && attached:
			err = r.detach(ctx)
			attached = err != nil
		case in && attached && due:
			err = r.check(ctx)
			if err != nil && ctx.Err() == nil {
				attached = false
				r.h.SetLinkToken("")
				r.linkError(handset.LinkDetached, err)
				r.log.Warn("push gateway lost", "err", err)
				r.h.Emit(handset.EventGateway, "lost the push gateway: "+err.Error()+"; attaching again",
					map[string]string{"state": "detached", "gateway": r.gateway, "reason": err.Error()})
				lastErr = err.Error()
				continue // attach at once; backoff if that fails
			}
		}
		due = false
		t.Stop()
		var wake <-chan time.Time
		switch {
		case err != nil && ctx.Err() == nil:
			backoff = min(nextBackoff(backoff), linkBackoffMax)
			r.log.Warn("device link", "err", err, "backoff", backoff)
			if in && !attached {
				r.linkError(handset.LinkAttaching, err)
			}
			if err.Error() != lastErr {
				// Each new failure once, not every retry of the same one.
				r.h.Emit(handset.EventGateway, fmt.Sprintf("push gateway: %v; retrying in %v", err, backoff),
					map[string]string{"state": "retrying", "gateway": r.gateway, "reason": err.Error(), "backoff": backoff.String()})
				lastErr = err.Error()
			}
			t.Reset(backoff)
			wake = t.C
		case in && attached && r.checkEvery > 0:
			backoff, lastErr = 0, ""
			t.Reset(r.checkEvery)
			wake = t.C
		default:
			backoff, lastErr = 0, ""
		}
		select {
		case <-ctx.Done():
			if attached {
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), detachTimeout)
				if err := r.detach(dctx); err != nil {
					r.log.Warn("detach on exit", "err", err)
				}
				cancel()
			}
			return nil
		case <-changed:
		case <-swChanged:
		case <-wake:
			due = true
		}
	}
}

// linkError records a link failure in the device's status.
func (r *Receiver) linkError(state handset.LinkState, err error) {
	at := time.Now()
	r.h.UpdateLink(func(l *handset.LinkStatus) {
		l.State = state
		l.LastError = &handset.Disconnect{Reason: err.Error(), At: at}
	})
}

// errNotAttached is a gateway's answer that it no longer holds the device's attachment.
var errNotAttached = errors.New("the gateway no longer holds this device's attachment (restarted?)")

// check asks the gateway whether the device's attachment still holds. A gateway without
// the check (404, 405) is taken at its word that it does.
func (r *Receiver) check(ctx context.Context) error {
	var out struct {
		Attached bool `json:"attached"`
	}
	err := r.postJSON(ctx, "/device/check", checkRequest{PIN: r.h.PIN(), LinkToken: r.h.LinkToken()}, &out)
	var se *statusError
	if errors.As(err, &se) && (se.code == http.StatusNotFound || se.code == http.StatusMethodNotAllowed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if !out.Attached {
		return errNotAttached
	}
	return nil
}

type checkRequest struct {
	PIN       string `json:"pin"`
	LinkToken string `json:"link_token"`
}

// attachRequest is an attach or a detach. The device proves its identity with the device
// secret the gateway issued at its first attach, or its account's password; a detach
// also with the link token.
type attachRequest struct {
	PIN          string `json:"pin"`
	Email        string `json:"email,omitempty"`
	ReceiverURL  string `json:"receiver_url,omitempty"`
	DeviceSecret string `json:"device_secret,omitempty"`
	Password     string `json:"password,omitempty"`
	LinkToken    string `json:"link_token,omitempty"`
	Software     string `json:"software,omitempty"` // attach: the device software version
}

type attachResponse struct {
	PIN       string `json:"pin"`
	Queued    int    `json:"queued"`
	LinkToken string `json:"link_token"`
	// DeviceSecret comes once, in the answer to the PIN's first attach.
	DeviceSecret string `json:"device_secret"`
}

type ackRequest struct {
	PIN          string  `json:"pin"`
	PushID       string  `json:"push_id"`
	Source       *string `json:"source,omitempty"` // the push's source, as its packets named it
	Code         int     `json:"code"`
	LinkToken    string  `json:"link_token,omitempty"` // the device's proof, as for a detach
	DeviceSecret string  `json:"device_secret,omitempty"`
	Password     string  `json:"password,omitempty"`
}

func (r *Receiver) attach(ctx context.Context) error {
	var out attachResponse
	secret := r.h.DeviceSecret()
	if secret == "" {
		// The first attach proposes a secret the device keeps first: the gateway adopts it,
		// and an attach retried after its answer was lost still proves the device.
		secret = newDeviceSecret()
		r.keepSecret(secret)
	}
	err := r.postJSON(ctx, "/device/attach",
		attachRequest{PIN: r.h.PIN(), Email: r.h.Email(), ReceiverURL: r.ReceiverURL(), DeviceSecret: secret, Password: r.password,
			Software: r.h.Software().String()}, &out)
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	if out.DeviceSecret != "" && out.DeviceSecret != secret {
		r.keepSecret(out.DeviceSecret) // the gateway issued its own
	}
	r.h.SetLinkToken(out.LinkToken)
	at := time.Now()
	r.h.UpdateLink(func(l *handset.LinkStatus) { l.State = handset.LinkAttached; l.AttachedAt = at; l.Attaches++ })
	r.log.Info("attached", "gateway", r.gateway, "queued", out.Queued)
	r.h.Emit(handset.EventGateway, fmt.Sprintf("attached to the push gateway (%d queued)", out.Queued),
		map[string]string{"state": "attached", "gateway": r.gateway, "queued": strconv.Itoa(out.Queued)})
	return nil
}

// keepSecret records the device secret; one not kept locks the PIN out after a restart,
// which the device says.
func (r *Receiver) keepSecret(secret string) {
	if err := r.h.SetDeviceSecret(secret); err != nil {
		r.log.Error("keep the device secret", "err", err)
		r.h.Emit(handset.EventGateway, "could not keep the device secret ("+err.Error()+"); after a restart the push gateway will refuse this PIN until it is reset",
			map[string]string{"state": "attaching", "gateway": r.gateway})
	}
}

// newDeviceSecret makes the secret a device proposes at its first attach: 32 random bytes
// in hex, as the gateway's own.
func newDeviceSecret() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (r *Receiver) detach(ctx context.Context) error {
	token := r.h.LinkToken()
	r.h.SetLinkToken("")
	// The gateway takes a detach or an ack only from the device: the link token, or the
	// device secret or password when the gateway restarted and forgot the token.
	if err := r.postJSON(ctx, "/device/detach", attachRequest{PIN: r.h.PIN(), LinkToken: token, DeviceSecret: r.h.DeviceSecret(), Password: r.password}, nil); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	r.h.UpdateLink(func(l *handset.LinkStatus) { l.State = handset.LinkDetached })
	r.log.Info("detached", "gateway", r.gateway)
	r.h.Emit(handset.EventGateway, "detached from the push gateway",
		map[string]string{"state": "detached", "gateway": r.gateway})
	return nil
}

// postJSON posts v to the gateway and decodes a 200 answer into out (when not nil).
func (r *Receiver) postJSON(ctx context.Context, path string, v, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	u := r.gateway + path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer drain(resp.Body)
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return &statusError{code: resp.StatusCode, msg: fmt.Sprintf("POST %s: %s: %s", u, resp.Status, bytes.TrimSpace(msg))}
	}
	if out != nil {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
			return fmt.Errorf("POST %s: answer: %w", u, err)
		}
	}
	return nil
}

// ackLater reports application-level acceptance (or refusal) to the gateway in the
// background, after the transport-level 200 has gone out.
func (r *Receiver) ackLater(pushID string, source *string, code int) {
	r.goBackground(func(ctx context.Context) {
		backoff := ackBackoffMin / 2
		for attempt := 1; ; attempt++ {
			err := r.postJSON(ctx, "/device/ack", ackRequest{PIN: r.h.PIN(), PushID: pushID, Source: source, Code: code,
				LinkToken: r.h.LinkToken(), DeviceSecret: r.h.DeviceSecret(), Password: r.password}, nil)
			if err == nil {
				return
			}
			if attempt == ackAttempts || ctx.Err() != nil {
				r.log.Warn("ack", "push_id", pushID, "attempt", attempt, "err", err)
				return
			}
			backoff *= 2
			if !sleep(ctx, backoff) {
				return
			}
		}
	})
}

// watchDeletes fetches, in the background, the delete URL of every channel the user
// deletes, once the handset is in coverage.
func (r *Receiver) watchDeletes(ctx context.Context, wg *sync.WaitGroup) {
	seq := r.startSeq
	for {
		evs, err := r.h.WaitEvents(ctx, seq)
		if err != nil {
			return
		}
		for _, e := range evs {
			seq = e.Seq
			if e.Kind != handset.EventChannelDeleted || e.Fields["by"] != "user" || e.Fields["delete_url"] == "" {
				continue
			}
			u := e.Fields["delete_url"]
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.fetchDeleteURL(ctx, u)
			}()
		}
	}
}

func (r *Receiver) fetchDeleteURL(ctx context.Context, u string) {
	if !isHTTPURL(u) {
		r.log.Info("delete url is not an http URL", "url", u)
		return
	}
	var backoff time.Duration
	for attempt := 1; ; attempt++ {
		if !r.waitCoverage(ctx) {
			return
		}
		err := r.get(ctx, u)
		if err == nil {
			r.log.Info("delete url fetched", "url", u)
			return
		}
		if attempt == deleteAttempts {
			r.log.Warn("delete url", "url", u, "attempt", attempt, "err", err)
			return
		}
		backoff = nextBackoff(backoff)
		if !sleep(ctx, backoff) {
			return
		}
	}
}

func (r *Receiver) get(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer drain(resp.Body)
	if resp.StatusCode >= 500 {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}

// waitCoverage blocks until the handset is in coverage; false when ctx ends first.
func (r *Receiver) waitCoverage(ctx context.Context) bool {
	for {
		in, changed := r.h.Coverage()
		if in {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-changed:
		}
	}
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
