// Package fleet runs many headless handsets in one process for push load tests: each has
// its own push receiver and control API, all served by one shared HTTP listener and
// addressed by PIN (/d/<PIN>/ for pushes, /h/<PIN>/api/v1/… for the control API), plus
// per-handset counters at /api/v1/fleet.
package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bbsim/bbsim/browserpush"
	"github.com/bbsim/bbsim/controlapi"
	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/radio"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

// Options configure a Fleet.
type Options struct {
	// Count is the number of handsets. Default 10.
	Count int
	// FirstPIN is the first handset's PIN; the others follow in sequence. Default 2A000000.
	FirstPIN string
	// Domain of the handsets' e-mail addresses, user1@<Domain>, user2@… Default bbsim.test.
	Domain string
	// Gateway is the push server's base URL; empty: the handsets do not attach.
	Gateway string
	// BaseURL is where the shared listener is reached, e.g. http://127.0.0.1:7900. Required
	// with Gateway: each receiver announces BaseURL/d/<PIN>/.
	BaseURL string
	// CheckEvery is how often each attached handset asks the gateway whether its
	// attachment still holds (see browserpush.Options.CheckEvery). Default 5 s, or longer
	// for a big fleet, so that the fleet asks at most 100 times a second.
	CheckEvery time.Duration
	// Software is the device software of the handsets: VERSION entries are handed out in
	// turn (a mix: 6.0.0.141 and 7.1.0 give every other handset each), PIN=VERSION entries
	// set one handset. Default: handset.DefaultSoftware on all.
	Software []string
	// Radio are the radio conditions of every handset: one profile on the fleet's shared
	// listener (so on every device link), one coverage schedule moving them all together.
	// Default: none, and the listener is not wrapped.
	Radio radio.Conditions
	// Dir is where the fleet keeps its handsets' device secrets, which the gateway issues
	// at each PIN's first attach and asks for at every later one (file device-secrets).
	// Default "": in memory, so a restarted fleet's handsets are refused by a gateway that
	// gave them secrets.
	Dir string
	// EventHistory is how many events each handset keeps. Default 64.
	EventHistory int
	// Client is shared by all receivers. Default: a pooled client with at most 64
	// connections to one host (the gateway).
	Client *http.Client
	// Logger. Default: discard.
	Logger *slog.Logger
}

// Member is one handset of the fleet.
type Member struct {
	Handset  *handset.Handset
	Receiver *browserpush.Receiver

	apiOnce sync.Once
	api     http.Handler
}

// Fleet is a set of handsets behind one listener.
type Fleet struct {
	opts    Options
	log     *slog.Logger
	members []*Member
	byPIN   map[string]*Member
	srv     *http.Server
	link    *radio.Link // nil without a radio profile
	secrets *secretFile // nil without Options.Dir
}

// New builds the handsets and their receivers. It opens no socket: call Serve and Run.
func New(opts Options) (*Fleet, error) {
	if opts.Count <= 0 {
		opts.Count = 10
	}
	if opts.FirstPIN == "" {
		opts.FirstPIN = "2A000000"
	}
	first, err := strconv.ParseUint(opts.FirstPIN, 16, 32)
	if err != nil || len(opts.FirstPIN) != 8 {
		return nil, fmt.Errorf("fleet: first PIN %q is not 8 hex digits", opts.FirstPIN)
	}
	if first+uint64(opts.Count) > 1<<32 {
		return nil, fmt.Errorf("fleet: %d PINs from %s run past FFFFFFFF", opts.Count, opts.FirstPIN)
	}
	if opts.Gateway != "" && opts.BaseURL == "" {
		return nil, errors.New("fleet: a gateway needs the fleet's BaseURL")
	}
	if opts.Domain == "" {
		opts.Domain = "bbsim.test"
	}
	if opts.EventHistory <= 0 {
		opts.EventHistory = 64
	}
	if opts.CheckEvery == 0 {
		opts.CheckEvery = max(5*time.Second, time.Duration(opts.Count)*time.Second/100)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Client == nil {
		// At most 64 requests to the gateway at once: a big fleet starting together would
		// otherwise dial a connection per handset at once, and on a loaded machine most of
		// those attaches took longer than the 10 s timeout and were retried. Requests
		// beyond 64 wait for a connection instead.
		opts.Client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, MaxConnsPerHost: 64, IdleConnTimeout: 30 * time.Second,
		}}
	}
	f := &Fleet{opts: opts, log: opts.Logger.With("component", "fleet"), byPIN: make(map[string]*Member, opts.Count)}
	mix, perPIN, err := softwarePlan(opts.Software, first, opts.Count)
	if err != nil {
		return nil, err
	}
	if opts.Dir != "" {
		if f.secrets, err = openSecrets(opts.Dir); err != nil {
			f.Close()
			return nil, err
		}
	}
	base := strings.TrimRight(opts.BaseURL, "/")
	for i := range opts.Count {
		pin := fmt.Sprintf("%08X", first+uint64(i))
		email := fmt.Sprintf("user%d@%s", i+1, opts.Domain)
		sw := perPIN[pin]
		if sw == "" && len(mix) > 0 {
			sw = mix[i%len(mix)]
		}
		ho := handset.Options{PIN: pin, Email: email, EventHistory: opts.EventHistory, Software: sw}
		if f.secrets != nil {
			ho.DeviceSecret = f.secrets.get(pin)
			ho.KeepSecret = func(secret string) error { return f.secrets.keep(pin, secret) }
		}
		h, err := handset.New(ho)
		if err != nil {
			f.Close()
			return nil, err
		}
		m := &Member{Handset: h}
		f.members = append(f.members, m)
		f.byPIN[pin] = m
		recv := ""
		if base != "" {
			recv = base + "/d/" + pin + "/"
		}
		m.Receiver, err = browserpush.New(browserpush.Options{Handset: h, Gateway: opts.Gateway, ReceiverURL: recv,
			Client: opts.Client, CheckEvery: opts.CheckEvery, Logger: opts.Logger})
		if err != nil {
			f.Close()
			return nil, err
		}
	}
	f.setRadio()
	f.srv = &http.Server{Handler: f.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	return f, nil
}

// setRadio puts the fleet's device links under its radio profile. The profile is the
// fleet's: a change through any handset's control API changes it for all.
func (f *Fleet) setRadio() {
	f.link = f.opts.Radio.Link()
	if f.link == nil {
		return
	}
	for _, m := range f.members {
		radio.Show(m.Handset, f.link)
		m.Handset.SetRadioControl(func(spec string) (handset.RadioStatus, error) {
			p, err := radio.Parse(spec)
			if err != nil {
				return handset.RadioStatus{}, err
			}
			f.link.Set(p)
			st := radio.Status(p)
			for _, o := range f.members {
				if o != m {
					o.Handset.UpdateRadio(func(r *handset.RadioStatus) { *r = r.WithProfile(st) })
				}
			}
			return st, nil
		})
	}
	var drops atomic.Int64
	f.link.OnDrop(func(stream string) {
		f.log.Info("radio dropped a connection", "stream", stream, "drops", drops.Add(1))
	})
}

// softwarePlan sorts Options.Software into the versions handed out in turn and those set
// per PIN, checking each.
func softwarePlan(entries []string, first uint64, count int) (mix []string, perPIN map[string]string, err error) {
	perPIN = map[string]string{}
	var errs []error
	for _, e := range entries {
		for _, e := range strings.Split(e, ",") {
			e = strings.TrimSpace(e)
			if e == "" {
				continue
			}
			pin, ver, ok := strings.Cut(e, "=")
			if !ok {
				ver, pin = pin, ""
			}
			if _, perr := handset.ParseSoftware(ver); perr != nil {
				errs = append(errs, fmt.Errorf("fleet: %w", perr))
				continue
			}
			if pin == "" {
				mix = append(mix, ver)
				continue
			}
			p, ok := handset.NormalizePIN(pin)
			n, _ := strconv.ParseUint(p, 16, 32)
			if !ok || n < first || n >= first+uint64(count) {
				errs = append(errs, fmt.Errorf("fleet: device software %q: %s is not a PIN of this fleet (%08X to %08X)", e, pin, first, first+uint64(count)-1))
				continue
			}
			perPIN[p] = ver
		}
	}
	return mix, perPIN, errors.Join(errs...)
}

// Members returns the handsets in PIN order.
func (f *Fleet) Members() []*Member { return f.members }

// Member returns the handset with the PIN, or nil.
func (f *Fleet) Member(pin string) *Member {
	if p, ok := handset.NormalizePIN(pin); ok {
		return f.byPIN[p]
	}
	return nil
}

// Handler serves POST /d/<PIN>/… (the handset's push receiver), /h/<PIN>/api/v1/… (its
// control API) and GET /api/v1/fleet (counters of every handset).
func (f *Fleet) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/d/{pin}/", func(w http.ResponseWriter, r *http.Request) {
		m := f.Member(r.PathValue("pin"))
		if m == nil {
			http.Error(w, "no handset with PIN "+r.PathValue("pin")+" in this fleet", http.StatusNotFound)
			return
		}
		m.Receiver.Handler().ServeHTTP(w, r)
	})
	mux.HandleFunc("/h/{pin}/", func(w http.ResponseWriter, r *http.Request) {
		m := f.Member(r.PathValue("pin"))
		if m == nil {
			http.Error(w, "no handset with PIN "+r.PathValue("pin")+" in this fleet", http.StatusNotFound)
			return
		}
		m.apiOnce.Do(func() {
			m.api = http.StripPrefix("/h/"+m.Handset.PIN(), controlapi.New(m.Handset, controlapi.Options{Logger: f.opts.Logger}).Handler())
		})
		m.api.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /api/v1/fleet", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(f.Counters())
	})
	return mux
}

// Counter is one handset's tally.
type Counter struct {
	PIN      string `json:"pin"`
	Email    string `json:"email"`
	Coverage string `json:"coverage"`
	Attached bool   `json:"attached"`
	Messages int    `json:"messages"`
	Channels int    `json:"channels"`
	Cached   int    `json:"cached"`
	Mail     string `json:"mail"`
}

// Counters tallies every handset.
func (f *Fleet) Counters() []Counter {
	out := make([]Counter, 0, len(f.members))
	for _, m := range f.members {
		d := m.Handset.Device()
		c := Counter{PIN: d.PIN, Email: d.Email, Coverage: d.Coverage, Attached: m.Handset.LinkToken() != "",
			Messages: len(m.Handset.Messages()), Channels: len(m.Handset.Channels()), Cached: len(m.Handset.Cache()),
			Mail: string(m.Handset.MailStatus().State)}
		out = append(out, c)
	}
	return out
}

// Serve serves the fleet's handler on ln, under the fleet's radio profile when it has one.
func (f *Fleet) Serve(ln net.Listener) error {
	if f.link != nil {
		ln = f.link.Listener(ln, "device link")
	}
	return f.srv.Serve(ln)
}

// Run runs every handset's device-link agent, and the coverage schedule, until ctx ends.
func (f *Fleet) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if !f.opts.Radio.Schedule.Empty() {
		hs := make([]*handset.Handset, len(f.members))
		for i, m := range f.members {
			hs[i] = m.Handset
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			radio.RunSchedule(ctx, f.opts.Radio.Schedule, f.opts.Radio.Seed, hs...)
		}()
	}
	for _, m := range f.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Receiver.Run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// Shutdown stops the listener gracefully.
func (f *Fleet) Shutdown(ctx context.Context) error { return f.srv.Shutdown(ctx) }

// Close closes the listener and every handset.
func (f *Fleet) Close() error {
	var err error
	if f.srv != nil {
		err = f.srv.Close()
	}
	for _, m := range f.members {
		if m.Receiver != nil {
			m.Receiver.Close()
		}
		m.Handset.Close()
	}
	return errors.Join(err, f.secrets.close())
}
