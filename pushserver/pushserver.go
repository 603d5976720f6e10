package pushserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bbsim/bbsim/pushserver/internal/front"
	"github.com/bbsim/bbsim/rim"
)

// Errors returned by the Server.
var (
	// ErrServerClosed is returned by Serve after Shutdown or Close. Like every bbsim
	// server's, it is http.ErrServerClosed, so one errors.Is test serves them all.
	ErrServerClosed = http.ErrServerClosed
	// ErrDuplicate is returned by Enqueue when the source already used the push id.
	ErrDuplicate = errors.New("pushserver: duplicate push id")
	// ErrBusy is returned by Enqueue when MaxActive pushes are pending.
	ErrBusy = errors.New("pushserver: too many pending pushes")
	// ErrNotFound is returned for an unknown push id.
	ErrNotFound = errors.New("pushserver: push id not found")
	// ErrNotCancellable is returned by Cancel when no recipient of the push is still queued.
	ErrNotCancellable = errors.New("pushserver: cancellation not possible")
	// ErrBadSubmission is returned by Enqueue for an invalid submission (wrapped with details).
	ErrBadSubmission = errors.New("pushserver: bad submission")
	// ErrDeliveryMethod is an application-reliable push to a device whose software does
	// not acknowledge at the application level (before 4.0).
	ErrDeliveryMethod = errors.New("pushserver: " + errDeliveryMethodText)
	// ErrNotOpen is returned by Serve, Enqueue, PushState and Cancel before Open.
	ErrNotOpen = errors.New("pushserver: not open (call Open first)")
)

// errDeliveryMethodText is what MDS answered an application-reliable push to a device it
// did not know to acknowledge at the application level.
const errDeliveryMethodText = "the specified delivery method is not possible"

// noAppAcks says why a device cannot take an application-reliable push, at submission
// and at delivery alike.
func noAppAcks(sw rim.Software) string {
	return "device software " + sw.String() + " has no application-level acknowledgements (4.0 or later)"
}

// Device is one handset known from the configuration (--user).
type Device struct {
	PIN, Email string
	// Password proves a handset is this PIN's device when it attaches (its account's --user
	// password), as the device secret the gateway keeps does. Default: none, the secret only.
	Password string
}

// Initiator is a push initiator allowed to push when push authentication is on.
type Initiator struct {
	Name, Password string
	// Allowed lists the PINs and "$group" names the initiator may reach; empty = anyone.
	Allowed []string
}

// Options configure a Server. Zero values mean the defaults stated per field.
type Options struct {
	DataDir            string              // required: directory of the SQLite store push.db
	PushDB             string              // postgres://… keeps pushes in PostgreSQL instead; default "" (SQLite)
	PushInstance       string              // this gateway's name among those sharing PushDB; default "default"
	Devices            []Device            // PIN<->email directory seed; default none
	Groups             map[string][]string // group name (without "$") -> PINs; default none
	PacketSize         int                 // bytes of body per packet; default 8192
	FlowControlTimeout time.Duration       // how long a push waits for its device; default 10m
	MaxActive          int                 // pushes pending at once before 503/4001; default 1000
	MaxHeaderBytes     int                 // request line + headers before 414/431; default 3072
	MaxBodyBytes       int64               // request body limit; default 1 MiB
	ReadHeaderTimeout  time.Duration       // against slow senders; default 10s
	PushAuth           []Initiator         // empty = no push authentication
	// ResetDevices are PINs whose device secrets the gateway forgets as it opens ("all":
	// every PIN's), so that a handset that lost its state may attach again as a first
	// attach. Default none.
	ResetDevices []string
	// Mount adds handlers by path prefix (e.g. "/mss/", "/cp/") to the same server; default none.
	Mount map[string]http.Handler
	// OnResult is called, in its own goroutine, for every final per-recipient result; default none.
	OnResult func(Result)
	Client   *http.Client     // deliveries and notifications; default a tuned transport
	Logger   *slog.Logger     // default discard
	Now      func() time.Time // clock; default time.Now

	sweepEvery time.Duration // shared store: how often to take pushes from stopped gateways; default 5 s
	// noticeLag, in tests, delays this gateway's handling of other gateways' attachment
	// notices, as a loaded machine may; default none.
	noticeLag time.Duration
}

// Result is the final outcome of a push for one recipient.
type Result struct {
	PushID, PIN string
	Port        int
	State       rim.State // delivered|expired|failed|cancelled
	Code        int
	Reason      string // the device's words when it refused the push
	At          time.Time
}

// Submission is a push to enqueue (used by the BIS push API and by the RIM and PAP handlers).
type Submission struct {
	PushID  string
	Source  string // initiator or application id; push ids are unique per source
	PINs    []string
	Port    int
	Headers http.Header // content headers forwarded to the device
	Body    []byte
	// Reliability is "" (transport), "transport", "application" or "confirmed".
	Reliability                 string
	DeliverBefore, DeliverAfter time.Time
	NotifyURL                   string

	requestURI string
	notifyPAP  bool // notify with a PAP resultnotification-message
	papVersion string
	ports      []int // per-PIN ports (PAP addresses carry their own); nil = Port for all
}

// PushStatus is the state of a push per recipient.
type PushStatus struct {
	PushID     string            `json:"push_id"`
	Source     string            `json:"source"`
	AcceptedAt time.Time         `json:"accepted_at"`
	Recipients []RecipientStatus `json:"recipients"`
}

// RecipientStatus is the state of one recipient of a push. State is queued, pending
// (transport-delivered, waiting for the application's acknowledgement), delivered, expired,
// timeout, failed or cancelled.
type RecipientStatus struct {
	PIN         string     `json:"pin"`
	Port        int        `json:"port"`
	State       rim.State  `json:"state"`
	Code        int        `json:"code"`
	Reason      string     `json:"reason,omitempty"` // the device's words when it refused the push
	TransportAt *time.Time `json:"transport_at,omitempty"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

// Server is the push gateway.
type Server struct {
	opts      Options
	passwords map[string]string // PIN -> its account's password, a proof of the device
	log       *slog.Logger
	now       func() time.Time
	client    *http.Client
	links     linkPool   // the device links' idle connections
	workers   workerPool // the goroutines that send pushes (workers.go)
	front     *front.Server
	mux       *http.ServeMux
	handler   http.Handler // mux, answering 503 until Open

	// life guards the opening and the stop: st, ho, ctx and cancel are set by Open, before
	// opened; stopped, once stop has begun, keeps Open from starting anything more.
	life      sync.Mutex
	st        *pushStore
	ho        handover        // the other gateways sharing the store, if any (gateways.go)
	ctx       context.Context // Open's, until stop
	cancel    context.CancelFunc
	stopAfter func() bool // unregisters the stop when Open's context ends
	stopped   bool
	opened    atomic.Bool // the store is open and restored: requests are served
	ownClient bool        // client is the gateway's own: its idle connections close at stop

	wg       sync.WaitGroup                 // the goroutines Open and deliveries start
	onResult atomic.Pointer[[]func(Result)] // Options.OnResult and those added by OnResult
	notifyWG sync.WaitGroup                 // result notifications in flight; they start from the store's writer

	// mu guards the devices and their queues, the push index (byID, pending, active) and
	// the hand-over's state (shared); never held across I/O. A device's own sending and
	// handing locks are taken before it. One lock, not one per part: making a recipient
	// final changes its device's queue and the push index at once, so split locks would
	// cost every delivery a second lock.
	mu      sync.Mutex
	devices map[string]*device
	emails  map[string]string // lower-case email -> PIN
	tokens  map[string]string // link token -> PIN
	active  int               // pushes with open recipients (plus reservations)
	byID    map[string]*push  // latest active push per push id
	pending map[string]*recip // transport-delivered, awaiting app ack; by pendingKey
	closed  bool

	notifySem     chan struct{}
	notifyWaiting atomic.Int64
	m             metrics
	closeOnce     sync.Once
	closeErr      error
}

// The defaults of Options, which the configuration (and so the flags) read.
const (
	DefaultPacketSize         = 8192
	DefaultFlowControlTimeout = 10 * time.Minute
	DefaultMaxActive          = 1000
	// DefaultMaxHeaderBytes: a request line plus headers of about 3 KB made the field's
	// Tomcat in front of MDS drop the request; the gateway answers 414/431 above it instead.
	DefaultMaxHeaderBytes    = 3072
	DefaultMaxBodyBytes      = 1 << 20
	DefaultReadHeaderTimeout = 10 * time.Second
)

// Open is New and then the server's Open: a gateway ready to Serve, whose delivery runs
// until ctx ends or Shutdown or Close. When the opening fails, the server is closed.
func Open(ctx context.Context, opts Options) (*Server, error) {
	s, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := s.Open(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// New checks opts and builds the gateway. It does no I/O and starts no goroutine: Open
// opens the store and starts delivery. Mount and OnResult may be called before or after
// Open, before Serve.
func New(opts Options) (*Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("pushserver: DataDir is required")
	}
	if opts.PacketSize <= 0 {
		opts.PacketSize = DefaultPacketSize
	}
	if opts.FlowControlTimeout <= 0 {
		opts.FlowControlTimeout = DefaultFlowControlTimeout
	}
	if opts.MaxActive <= 0 {
		opts.MaxActive = DefaultMaxActive
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.ReadHeaderTimeout <= 0 {
		opts.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "pushserver")
	client := opts.Client
	ownClient := client == nil
	if ownClient {
		// No Client.Timeout (it costs a timer per request): the dial and the response
		// header are bounded, and receivers answer packets with empty bodies.
		client = &http.Client{
			Transport: &http.Transport{
				Proxy:                 nil,
				DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:          4096,
				MaxIdleConnsPerHost:   1024,
				IdleConnTimeout:       90 * time.Second,
				ResponseHeaderTimeout: 30 * time.Second,
			},
		}
	}
	s := &Server{
		opts: opts, log: log, now: opts.Now, client: client, ownClient: ownClient,
		devices:   map[string]*device{},
		emails:    map[string]string{},
		tokens:    map[string]string{},
		byID:      map[string]*push{},
		pending:   map[string]*recip{},
		notifySem: make(chan struct{}, 64),
	}
	s.ho = solo{s} // until Open finds the store shared
	s.m.init(s)
	if opts.OnResult != nil {
		s.OnResult(opts.OnResult)
	}
	s.passwords = map[string]string{}
	for _, d := range opts.Devices {
		pin, ok := rim.NormalizePIN(d.PIN)
		if !ok {
			return nil, fmt.Errorf("pushserver: device %q: bad PIN", d.PIN)
		}
		s.device(pin).email = d.Email
		if d.Password != "" {
			s.passwords[pin] = d.Password
		}
		if d.Email != "" {
			s.emails[lower(d.Email)] = pin
		}
	}
	for name, pins := range opts.Groups {
		for _, p := range pins {
			if _, ok := rim.NormalizePIN(p); !ok {
				return nil, fmt.Errorf("pushserver: group %s: bad PIN %q", name, p)
			}
		}
	}
	s.mux = s.routes()
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.opened.Load() {
			http.Error(w, "push gateway not open yet", http.StatusServiceUnavailable)
			return
		}
		// RIM pushes, nearly every request a loaded gateway serves, skip the mux's
		// matching (about 2% of a push's CPU): "/push" is an exact pattern of the mux, with
		// no method and nothing mounted over it, so the mux would choose the same handler.
		if r.URL.Path == "/push" {
			s.handleRIM(w, r)
			return
		}
		s.mux.ServeHTTP(w, r)
	})
	s.front = front.New(front.Options{
		Handler:        s.handler,
		MaxHeaderBytes: opts.MaxHeaderBytes, MaxBodyBytes: opts.MaxBodyBytes,
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		Rejected:          func() { s.m.rejected.Add(1) },
		Logger:            log,
	})
	return s, nil
}

// Open opens the store (dialling PostgreSQL when Options.PushDB names it), restores the
// queued pushes and starts delivery: the reaper and, with a shared store, the hand-over
// listener and the sweeper. ctx bounds the opening (each PostgreSQL step also within 20 s,
// the wait for the hand-over listener within 10 s) and the life of everything Open starts:
// when ctx ends, as at Shutdown or Close, every goroutine the gateway started stops and the
// store closes; Serve goes on answering (503) until Shutdown or Close. When the opening
// fails or ctx ends first, Open stops what it started and returns the error. Open once.
func (s *Server) Open(ctx context.Context) error {
	s.life.Lock()
	switch {
	case s.stopped:
		s.life.Unlock()
		return ErrServerClosed
	case s.ctx != nil:
		s.life.Unlock()
		return errors.New("pushserver: Open called twice")
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.stopAfter = context.AfterFunc(ctx, func() { s.stop() })
	s.wg.Add(1) // the opening: a stop meanwhile cancels it and waits for it
	s.life.Unlock()
	if err := s.open(); err != nil {
		s.stop()
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("pushserver: open: %w (%v)", ctx.Err(), err)
		}
		return err
	}
	return nil
}

func (s *Server) open() error {
	defer s.wg.Done()
	st, err := openStore(s.ctx, s.opts.DataDir, s.opts.PushDB, s.opts.PushInstance, s.log)
	if err != nil {
		return err
	}
	s.life.Lock()
	if s.stopped {
		s.life.Unlock()
		st.Close()
		return ErrServerClosed
	}
	s.st = st
	if st.shared != nil {
		s.ho = newShared(s, st.Instance())
	}
	s.life.Unlock()
	if err := s.resetDevices(s.ctx, s.opts.ResetDevices); err != nil {
		return err
	}
	if err := s.restore(s.ctx); err != nil {
		return err
	}
	s.life.Lock()
	if s.stopped {
		s.life.Unlock()
		return ErrServerClosed
	}
	s.wg.Add(1)
	go s.reaper()
	s.life.Unlock()
	if err := s.ho.start(s.ctx, s.opts.Devices); err != nil {
		return err
	}
	s.opened.Store(true)
	return nil
}

// usable returns ErrNotOpen before Open has opened the store.
func (s *Server) usable() error {
	if !s.opened.Load() {
		return ErrNotOpen
	}
	return nil
}

// Handler returns the HTTP handler of the gateway (push, PAP, device link, API, mounts);
// it answers 503 until Open has opened the store.
func (s *Server) Handler() http.Handler { return s.handler }

// Mount adds a handler by path prefix, as Options.Mount does, to a built server: for a
// service that needs the server itself (the BIS push service), and so is built after it.
// Mount before Serve.
func (s *Server) Mount(prefix string, h http.Handler) { s.mux.Handle(prefix, h) }

// OnResult adds f to the functions called, each in its own goroutine, for every final
// per-recipient result, as Options.OnResult is: for a service built after the server.
func (s *Server) OnResult(f func(Result)) {
	for {
		old := s.onResult.Load()
		var fs []func(Result)
		if old != nil {
			fs = append(fs, *old...)
		}
		fs = append(fs, f)
		if s.onResult.CompareAndSwap(old, &fs) {
			return
		}
	}
}

// Serve accepts connections on ln until Shutdown or Close; it then returns ErrServerClosed.
// Before Open it closes ln and returns ErrNotOpen.
func (s *Server) Serve(ln net.Listener) error {
	if !s.opened.Load() {
		s.life.Lock()
		stopped := s.stopped
		s.life.Unlock()
		if !stopped {
			ln.Close()
			return ErrNotOpen
		}
	}
	return s.front.Serve(ln)
}

// Shutdown stops accepting requests, waits for active ones (bounded by ctx), stops delivery
// and closes the store. Queued pushes stay in the store for the next start.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.front.Shutdown(ctx)
	return errors.Join(err, s.stop())
}

// Close closes listeners and connections at once, stops delivery and closes the store.
func (s *Server) Close() error {
	err := s.front.Close()
	return errors.Join(err, s.stop())
}

// stop stops everything Open started and closes the store: at Shutdown, at Close, and
// when Open's context ends.
func (s *Server) stop() error {
	s.closeOnce.Do(func() {
		s.life.Lock()
		s.stopped = true
		cancel, st, after := s.cancel, s.st, s.stopAfter
		s.life.Unlock()
		if after != nil {
			after()
		}
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		s.wg.Wait()
		s.workers.stop()
		if st != nil {
			s.closeErr = st.Close() // reports its last results, which may start notifications
		}
		s.notifyWG.Wait()
		s.links.close()
		if s.ownClient {
			s.client.CloseIdleConnections()
		}
	})
	return s.closeErr
}
