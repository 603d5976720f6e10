// Package bis is the BlackBerry Push Service side of BIS push: device registration with a
// two-step token (/mss/PD_subReg, /mss/PD_subDereg), the push initiator's API
// (/mss/PD_pushRequest with PAP 2.1, subscriber management and the subscription query),
// and a bundled content provider (/cp/…) so standalone runs need no other server.
//
// Choices where the public material is silent: the registration token is answered as the
// plain-text body of the first PD_subReg request; rc codes are answered as "rc=<code>"
// in text/plain; PD_cpDeregUser and PD_cpSub answer "rc=21000" (done) or a 22xxx code; a
// push to an explicit PIN that is not an active subscriber is refused whole with 2002 and
// the PINs named; the 8 KB limit applies to the content part; tokens live 5 minutes.
package bis

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite"

	"github.com/bbsim/bbsim/internal/statedir"
	"github.com/bbsim/bbsim/pushserver"
	"github.com/bbsim/bbsim/pushserver/internal/store"
)

// App is a push application known to the service.
type App struct {
	ID, Password string
	Port         int
	// CPURL is the application's content provider; "" means the bundled one.
	CPURL string
	// MaxSubscribers bounds the subscriptions. Default 1000.
	MaxSubscribers int
}

// Gateway is what the service needs from the push server (*pushserver.Server).
type Gateway interface {
	Enqueue(ctx context.Context, sub pushserver.Submission) error
	PushStateOf(source, pushID string) (pushserver.PushStatus, error)
	CancelOf(source, pushID string) error
	LinkedPIN(linkToken string) (pin string, ok bool)
}

// Options configure a Service. Zero values mean the defaults stated per field.
type Options struct {
	// DataDir holds bis.db, the subscribers. Required.
	DataDir string
	// Apps are the push applications.
	Apps []App
	// Gateway delivers pushes and identifies devices by their link token. Required.
	Gateway Gateway
	// TokenTTL is how long a registration token is good for. Default 5 minutes.
	TokenTTL time.Duration
	// QueryLimit is how many subscription queries an application may make per
	// QueryWindow. Default 100 per 10 minutes.
	QueryLimit  int
	QueryWindow time.Duration
	// AuthFailureDelay is how long a wrong application password waits for its 403. Default
	// 2s; negative: none.
	AuthFailureDelay time.Duration
	// Now is the clock. Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Service is the BIS push service.
type Service struct {
	opts Options
	log  *slog.Logger
	db   *sql.DB
	apps map[string]*App
	mux  *http.ServeMux

	mu      sync.Mutex
	tokens  map[string]*token
	held    map[string][]string    // app|pin|op -> its outstanding tokens, oldest first
	issued  map[string][]time.Time // app|pin -> when its recent tokens were issued
	swept   time.Time              // when expired tokens were last removed
	queries map[string][]time.Time // app -> recent subscription queries
}

type token struct {
	app, pin, op string
	expires      time.Time
	used         bool
}

// Registration result codes (PROTOCOLS.md §3).
const (
	RCOK               = 200
	RCInvalidPIN       = 10001
	RCInvalidApp       = 10002
	RCAlreadySub       = 10003
	RCAlreadyUnreg     = 10004
	RCNotFound         = 10007
	RCTokenExpired     = 10008
	RCTokenInvalid     = 10009
	RCLimitReached     = 10010
	RCBadOSOrModel     = 10011
	RCSuspended        = 10012
	RCCPInactive       = 10021
	RCCPEmptyCreds     = 10022
	RCCPAuthFailed     = 10025
	BISDone            = 21000
	BISMalformed       = 22000
	BISAppNotFound     = 22001
	BISInvalidPIN      = 22002
	BISIncorrectStatus = 22003
	BISNoResults       = 22004
	BISCallRate        = 22005
)

// Subscriber states.
const (
	StateActive       = "active"
	StateSuspended    = "suspended"
	StateDeregistered = "cancelled"
)

// migrations are the subscriber store's schema versions (see pushserver/internal/store's
// migrate.go). Version 1 is the schema of the releases before versions, written to adopt
// their stores; append a migration, never edit a released one.
var migrations = []store.Migration{
	{Name: "subscribers and content-provider subscribers", Up: store.Script(`CREATE TABLE IF NOT EXISTS subscribers (
		app TEXT NOT NULL, pin TEXT NOT NULL, state TEXT NOT NULL, updated INTEGER NOT NULL,
		PRIMARY KEY (app, pin));
	CREATE TABLE IF NOT EXISTS cp_subscribers (
		app TEXT NOT NULL, pin TEXT NOT NULL, state TEXT NOT NULL, username TEXT NOT NULL,
		PRIMARY KEY (app, pin));`)},
}

// New opens the subscriber store and builds the service.
func New(opts Options) (*Service, error) {
	if opts.DataDir == "" || opts.Gateway == nil {
		return nil, errors.New("bis: Options.DataDir and Options.Gateway are required")
	}
	if opts.AuthFailureDelay == 0 {
		opts.AuthFailureDelay = 2 * time.Second
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 5 * time.Minute
	}
	if opts.QueryLimit <= 0 {
		opts.QueryLimit = 100
	}
	if opts.QueryWindow <= 0 {
		opts.QueryWindow = 10 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := statedir.Mkdir(opts.DataDir); err != nil {
		return nil, err
	}
	path := filepath.Join(opts.DataDir, "bis.db")
	db, err := statedir.OpenSQLite("BIS subscriber store", path, "_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := store.MigrateSQLite(context.Background(), db, "BIS subscriber store", path, migrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("bis: %w", err)
	}
	if err := statedir.Keep(path); err != nil {
		db.Close()
		return nil, err
	}
	s := &Service{opts: opts, log: opts.Logger.With("component", "bis"), db: db, apps: map[string]*App{},
		tokens: map[string]*token{}, held: map[string][]string{}, issued: map[string][]time.Time{}, queries: map[string][]time.Time{}}
	for i := range opts.Apps {
		a := opts.Apps[i]
		if a.MaxSubscribers <= 0 {
			a.MaxSubscribers = 1000
		}
		s.apps[a.ID] = &a
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /mss/PD_subReg", func(w http.ResponseWriter, r *http.Request) { s.register(w, r, "reg") })
	s.mux.HandleFunc("GET /mss/PD_subDereg", func(w http.ResponseWriter, r *http.Request) { s.register(w, r, "dereg") })
	s.mux.HandleFunc("POST /mss/PD_pushRequest", s.pushRequest)
	s.mux.HandleFunc("/mss/PD_cpDeregUser", s.cpDeregUser)
	s.mux.HandleFunc("/mss/PD_cpSub", s.cpSub)
	s.mux.HandleFunc("/mss/PD_cpSubQuery", s.cpSubQuery)
	s.mux.HandleFunc("/cp/{action}", s.contentProvider)
	return s, nil
}

// Handler serves /mss/… and /cp/….
func (s *Service) Handler() http.Handler { return s.mux }

// Close closes the subscriber store.
func (s *Service) Close() error { return s.db.Close() }

func rc(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "rc=%d", code)
}

func newToken() string {
	var b [20]byte // 160 bits
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// state returns a subscriber's state, "" when unknown.
func (s *Service) state(app, pin string) string {
	var st string
	s.db.QueryRow(`SELECT state FROM subscribers WHERE app = ? AND pin = ?`, app, pin).Scan(&st)
	return st
}

func (s *Service) setState(app, pin, state string) error {
	_, err := s.db.Exec(`INSERT INTO subscribers(app, pin, state, updated) VALUES(?, ?, ?, ?)
		ON CONFLICT(app, pin) DO UPDATE SET state = excluded.state, updated = excluded.updated`, app, pin, state, s.opts.Now().UnixNano())
	return err
}

func (s *Service) count(app string) int {
	var n int
	s.db.QueryRow(`SELECT COUNT(*) FROM subscribers WHERE app = ? AND state != ?`, app, StateDeregistered).Scan(&n)
	return n
}

// register runs both steps of PD_subReg and PD_subDereg: without a token it issues one;
// with the token appended it acts and answers rc=.
func (s *Service) register(w http.ResponseWriter, r *http.Request, op string) {
	pin, ok := s.opts.Gateway.LinkedPIN(r.Header.Get("X-Bbsim-Link-Token"))
	if !ok {
		rc(w, RCInvalidPIN)
		return
	}
	q := r.URL.Query()
	app := s.apps[q.Get("serviceid")]
	if app == nil {
		rc(w, RCInvalidApp)
		return
	}
	if op == "reg" && (strings.TrimSpace(q.Get("osversion")) == "" || strings.TrimSpace(q.Get("model")) == "") {
		rc(w, RCBadOSOrModel)
		return
	}
	// The token is the one parameter without a value: "…&model=9900&<token>".
	tok := ""
	for k, v := range q {
		if len(v) == 1 && v[0] == "" && k != "serviceid" && k != "osversion" && k != "model" {
			tok = k
		}
	}
	if tok == "" {
		t, wait := s.issue(app.ID, pin, op)
		if t == "" {
			s.log.Info("registration tokens asked too fast", "app", app.ID, "pin", pin)
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
			http.Error(w, fmt.Sprintf("too many registration requests for %s from this device: %d a minute at most", app.ID, tokenRate), http.StatusTooManyRequests)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, t)
		return
	}
	s.mu.Lock()
	t := s.tokens[tok]
	switch {
	case t == nil || t.used || t.app != app.ID || t.pin != pin || t.op != op:
		s.mu.Unlock()
		s.log.Info("registration token refused", "app", app.ID, "pin", pin)
		rc(w, RCTokenInvalid)
		return
	case s.opts.Now().After(t.expires):
		s.forget(tok, t)
		s.mu.Unlock()
		rc(w, RCTokenExpired)
		return
	}
	t.used = true
	s.forget(tok, t)
	s.mu.Unlock()

	st := s.state(app.ID, pin)
	if op == "dereg" {
		switch st {
		case "":
			rc(w, RCNotFound)
		case StateDeregistered:
			rc(w, RCAlreadyUnreg)
		default:
			s.setState(app.ID, pin, StateDeregistered)
			s.log.Info("deregistered", "app", app.ID, "pin", pin)
			rc(w, RCOK)
		}
		return
	}
	switch st {
	case StateActive:
		rc(w, RCAlreadySub)
		return
	case StateSuspended:
		rc(w, RCSuspended)
		return
	}
	if s.count(app.ID) >= app.MaxSubscribers {
		rc(w, RCLimitReached)
		return
	}
	if err := s.setState(app.ID, pin, StateActive); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.log.Info("registered", "app", app.ID, "pin", pin)
	rc(w, RCOK)
}

// initiator checks HTTP Basic APPID:PASSWORD: 401 with a challenge when missing, 403 when
// wrong.
func (s *Service) initiator(w http.ResponseWriter, r *http.Request) *App {
	id, pass, ok := r.BasicAuth()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="BIS push"`)
		http.Error(w, "push initiator authentication required (HTTP Basic APPID:PASSWORD)", http.StatusUnauthorized)
		return nil
	}
	app := s.apps[id]
	if app == nil || subtle.ConstantTimeCompare([]byte(pass), []byte(app.Password)) != 1 {
		if d := s.opts.AuthFailureDelay; d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.Context().Done():
			}
			t.Stop()
		}
		http.Error(w, "wrong application ID or password", http.StatusForbidden)
		return nil
	}
	return app
}

// HandleResult follows the push server's final results: a push that found no application
// listening (4502) drops the subscription, as in the field.
func (s *Service) HandleResult(r pushserver.Result) {
	if r.Code != 4502 {
		return
	}
	for _, a := range s.apps {
		if a.Port == r.Port && s.state(a.ID, r.PIN) == StateActive {
			s.setState(a.ID, r.PIN, StateDeregistered)
			s.log.Info("subscription dropped: no application listening", "app", a.ID, "pin", r.PIN)
		}
	}
}

// Subscribers lists an application's subscribers in a state ("" for all but cancelled).
func (s *Service) Subscribers(app, state string) []string {
	q := `SELECT pin FROM subscribers WHERE app = ? AND state != 'cancelled' ORDER BY pin`
	args := []any{app}
	if state != "" {
		q = `SELECT pin FROM subscribers WHERE app = ? AND state = ? ORDER BY pin`
		args = append(args, state)
	}
	rows, err := s.db.Query(q, args...)
	if err != nil {
		return nil
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		rows.Scan(&p)
		out = append(out, p)
	}
	return out
}

// Registration tokens are bounded: each expires after TokenTTL (5 minutes), a device holds
// at most tokensHeld outstanding per application and operation (a new one retires the
// oldest), and may be issued at most tokenRate a minute per application (then 429 with
// Retry-After). A device that asks for tokens in a loop costs a few entries, not memory
// without end.
const (
	tokensHeld = 4
	tokenRate  = 30
)

// issue returns a new token for app, pin and op, or "" and how long to wait when the
// device asks too fast.
func (s *Service) issue(app, pin, op string) (string, time.Duration) {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.swept) > s.opts.TokenTTL/10 {
		s.swept = now
		for id, t := range s.tokens {
			if now.After(t.expires) {
				s.forget(id, t)
			}
		}
		for k, ts := range s.issued {
			if len(ts) == 0 || now.Sub(ts[len(ts)-1]) > time.Minute {
				delete(s.issued, k)
			}
		}
	}
	rk := app + "|" + pin
	recent := s.issued[rk]
	for len(recent) > 0 && now.Sub(recent[0]) > time.Minute {
		recent = recent[1:]
	}
	if len(recent) >= tokenRate {
		s.issued[rk] = recent
		return "", recent[0].Add(time.Minute).Sub(now)
	}
	s.issued[rk] = append(recent, now)
	hk := rk + "|" + op
	for len(s.held[hk]) >= tokensHeld {
		old := s.held[hk][0]
		s.forget(old, s.tokens[old])
	}
	id := newToken()
	s.tokens[id] = &token{app: app, pin: pin, op: op, expires: now.Add(s.opts.TokenTTL)}
	s.held[hk] = append(s.held[hk], id)
	return id, 0
}

// forget removes a token (used, expired or retired); s.mu is held.
func (s *Service) forget(id string, t *token) {
	delete(s.tokens, id)
	if t == nil {
		return
	}
	hk := t.app + "|" + t.pin + "|" + t.op
	ids := s.held[hk]
	for i, x := range ids {
		if x == id {
			ids = append(ids[:i:i], ids[i+1:]...)
			break
		}
	}
	if len(ids) == 0 {
		delete(s.held, hk)
	} else {
		s.held[hk] = ids
	}
}
