package handset

import (
	"fmt"
	"time"
)

// AppState is a push application's registration state.
type AppState string

// Registration states, as the device showed them.
const (
	AppNotRegistered AppState = "not-registered"
	AppPending       AppState = "pending"
	AppActive        AppState = "active"
	AppFailed        AppState = "failed"
)

// AppPush is a push received by a push application.
type AppPush struct {
	ID          string    `json:"id"`
	MessageID   string    `json:"message_id,omitempty"`
	ContentType string    `json:"content_type"`
	Body        string    `json:"body"`
	ReceivedAt  time.Time `json:"received_at"`
}

// App is a push application on the handset.
type App struct {
	ID     string   `json:"id"`
	Port   int      `json:"port"`
	CPURL  string   `json:"cp_url,omitempty"`
	State  AppState `json:"state"`
	LastRC int      `json:"last_rc"`
	Reason string   `json:"reason,omitempty"`
	// Want is what the user asked for: "registered" or "deregistered". The registration
	// agent works until State matches it.
	Want      string    `json:"want"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	Pushes    []AppPush `json:"pushes"`
}

// Wanted registration outcomes.
const (
	WantRegistered   = "registered"
	WantDeregistered = "deregistered"
)

// DeclareApp adds a push application, or updates its port and content-provider URL when it
// exists (keeping its state). A new app wants to be registered.
func (h *Handset) DeclareApp(id string, port int, cpURL string) (App, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.findAppLocked(id)
	var next App
	if a != nil {
		next = *a
		next.Port, next.CPURL = port, cpURL
	} else {
		next = App{ID: id, Port: port, CPURL: cpURL, State: AppNotRegistered, Want: WantRegistered}
	}
	next.Pushes = nil
	if err := h.writeLocked(recApp, next); err != nil {
		return App{}, err
	}
	h.applyAppLocked(next)
	return h.copyApp(h.findAppLocked(id)), nil
}

func (h *Handset) applyAppLocked(a App) {
	if old := h.findAppLocked(a.ID); old != nil {
		pushes := old.Pushes
		*old = a
		old.Pushes = pushes
		return
	}
	cp := a
	h.apps = append(h.apps, &cp)
}

func (h *Handset) findAppLocked(id string) *App {
	for _, a := range h.apps {
		if a.ID == id {
			return a
		}
	}
	return nil
}

func (h *Handset) copyApp(a *App) App {
	out := *a
	out.Pushes = append([]AppPush{}, a.Pushes...)
	return out
}

func (h *Handset) appsLocked() []App {
	out := make([]App, len(h.apps))
	for i, a := range h.apps {
		out[i] = h.copyApp(a)
	}
	return out
}

// Apps returns the push applications.
func (h *Handset) Apps() []App {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.appsLocked()
}

// App returns one push application.
func (h *Handset) App(id string) (App, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.findAppLocked(id)
	if a == nil {
		return App{}, fmt.Errorf("app %s: %w", id, ErrNotFound)
	}
	return h.copyApp(a), nil
}

// AppOnPort returns the push application listening on port.
func (h *Handset) AppOnPort(port int) (App, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.apps {
		if a.Port == port {
			return h.copyApp(a), true
		}
	}
	return App{}, false
}

// SetAppState records a registration outcome. It emits an event with the code and reason.
func (h *Handset) SetAppState(id string, state AppState, rc int, reason string) error {
	h.mu.Lock()
	a := h.findAppLocked(id)
	if a == nil {
		h.mu.Unlock()
		return fmt.Errorf("app %s: %w", id, ErrNotFound)
	}
	next := h.copyApp(a)
	next.State, next.LastRC, next.Reason = state, rc, reason
	next.UpdatedAt = h.now().UTC()
	next.Pushes = nil
	if err := h.writeLocked(recApp, next); err != nil {
		h.mu.Unlock()
		return err
	}
	h.applyAppLocked(next)
	h.mu.Unlock()
	text := fmt.Sprintf("app %s: %s", id, state)
	if rc != 0 {
		text += fmt.Sprintf(" (rc=%d)", rc)
	}
	if reason != "" {
		text += ": " + reason
	}
	h.Emit(EventRegistration, text, map[string]string{"app": id, "state": string(state), "rc": fmt.Sprint(rc), "reason": reason})
	return nil
}

// RequestApp records that the user wants the app registered or deregistered
// (WantRegistered, WantDeregistered); the registration agent acts on it.
func (h *Handset) RequestApp(id, want string) error {
	if want != WantRegistered && want != WantDeregistered {
		return fmt.Errorf("app %s: unknown request %q", id, want)
	}
	h.mu.Lock()
	a := h.findAppLocked(id)
	if a == nil {
		h.mu.Unlock()
		return fmt.Errorf("app %s: %w", id, ErrNotFound)
	}
	next := h.copyApp(a)
	next.Want = want
	next.Pushes = nil
	if err := h.writeLocked(recApp, next); err != nil {
		h.mu.Unlock()
		return err
	}
	h.applyAppLocked(next)
	h.mu.Unlock()
	h.Emit(EventAppRequest, fmt.Sprintf("app %s: %s requested", id, want), map[string]string{"app": id, "want": want})
	return nil
}

// AddAppPush hands a push to the application on port. It returns ErrNotFound when no app
// listens there, and false when the app already has a push with the same MessageID.
func (h *Handset) AddAppPush(port int, p AppPush) (bool, error) {
	if p.ReceivedAt.IsZero() {
		p.ReceivedAt = h.now().UTC()
	}
	h.mu.Lock()
	var a *App
	for _, x := range h.apps {
		if x.Port == port {
			a = x
			break
		}
	}
	if a == nil {
		h.mu.Unlock()
		return false, fmt.Errorf("app on port %d: %w", port, ErrNotFound)
	}
	if p.MessageID != "" {
		for _, old := range a.Pushes {
			if old.MessageID == p.MessageID {
				h.mu.Unlock()
				return false, nil
			}
		}
	}
	if err := h.writeLocked(recAppPush, appPushRec{App: a.ID, Push: p}); err != nil {
		h.mu.Unlock()
		return false, err
	}
	a.Pushes = h.keepPushes(append(a.Pushes, p))
	id := a.ID
	h.mu.Unlock()
	h.Emit(EventPushApp, fmt.Sprintf("push for app %s (%s, %d bytes)", id, p.ContentType, len(p.Body)),
		map[string]string{"app": id, "push_id": p.ID, "port": fmt.Sprint(port)})
	return true, nil
}

type appPushRec struct {
	App  string  `json:"app"`
	Push AppPush `json:"push"`
}

// keepPushes caps an app's pushes at MaxMessages, the oldest going first.
func (h *Handset) keepPushes(ps []AppPush) []AppPush {
	if len(ps) <= h.maxMsgs {
		return ps
	}
	return append([]AppPush(nil), ps[len(ps)-h.maxMsgs:]...)
}
