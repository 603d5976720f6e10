package browserpush

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/httpguard"
)

// ErrServerClosed is returned by Serve after Shutdown or Close. Like every bbsim server's,
// it is http.ErrServerClosed, so one errors.Is test serves them all.
var ErrServerClosed = http.ErrServerClosed

// BrowserPort is the device port of the browser's push listener.
const BrowserPort = 7874

// DefaultMaxBody is the default limit of one push's content.
const DefaultMaxBody = 1 << 20

// Options configure a Receiver. Zero values mean the defaults stated per field.
type Options struct {
	// Handset is the device the pushes are applied to. Required.
	Handset *handset.Handset
	// Gateway is the push server's base URL, e.g. http://127.0.0.1:8080. Default "":
	// standalone, no attach, no application-level acknowledgements.
	Gateway string
	// ReceiverURL is the URL the gateway should deliver to. Default: derived from the
	// address of the first listener passed to Serve, "http://ADDR/". Set it when the
	// receiver is mounted with Handler() instead: Run attaches only once it is known.
	ReceiverURL string
	// Client makes every outgoing request: icon fetches, delete URLs, attach, detach, acks.
	// Default: a client with a 10 s timeout, whose connections Dial opens.
	Client *http.Client
	// Dial opens the default client's connections (a shaped radio link, say). Default the
	// transport's own dialer; ignored when Client is set.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// CheckEvery is how often an attached device asks the gateway whether its attachment
	// still holds, so that it attaches again after the gateway restarts. Default 5 s;
	// negative: never.
	CheckEvery time.Duration
	// Token, when set, is required of every push (Authorization: Bearer, or HTTP Basic's
	// password); the URL announced to the gateway carries it as user info, which the
	// gateway's client sends as Basic. Required when the receiver listens beyond loopback.
	// Default: none.
	Token string
	// Password proves the device's identity when it attaches (its account's password).
	// Default: none, for a gateway that knows no password for this PIN.
	Password string
	// MaxBody is the largest content of one push, in bytes, after reassembly. Default 1 MiB.
	MaxBody int64
	// Logger receives the receiver's logs. Default: discard.
	Logger *slog.Logger
}

// Receiver is the handset's push receiver and its device-link agent.
type Receiver struct {
	h       *handset.Handset
	gateway string
	client  *http.Client
	// ownClient: the client is ours, so closing drops its idle connections.
	ownClient  bool
	maxBody    int64
	checkEvery time.Duration
	token      string
	password   string
	log        *slog.Logger
	srv        *http.Server
	handler    http.Handler

	urlMu    sync.Mutex
	recvURL  string
	urlReady chan struct{} // closed once recvURL is known

	startSeq uint64 // events after this one are watched for user deletions

	packets     *assembler
	packetWait  time.Duration // how long a last packet waits for the earlier ones
	iconTimeout time.Duration // bound of one icon fetch

	bgStop chan struct{} // closed on Close/Shutdown: background acks end
	bg     sync.WaitGroup

	mu     sync.Mutex
	closed bool

	connMu   sync.Mutex
	newConns map[net.Conn]struct{} // connections that have not sent a request yet
}

// New builds a Receiver. It opens no socket; call Serve and Run.
func New(opts Options) (*Receiver, error) {
	if opts.Handset == nil {
		return nil, errors.New("browserpush: Options.Handset is required")
	}
	gw := strings.TrimRight(opts.Gateway, "/")
	if gw != "" && !strings.HasPrefix(gw, "http://") && !strings.HasPrefix(gw, "https://") {
		return nil, fmt.Errorf("browserpush: gateway %q is not an http URL", opts.Gateway)
	}
	ownClient := opts.Client == nil
	if ownClient {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 8
		if opts.Dial != nil {
			tr.DialContext = opts.Dial
		}
		opts.Client = &http.Client{Timeout: 10 * time.Second, Transport: tr}
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.CheckEvery == 0 {
		opts.CheckEvery = DefaultCheckEvery
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Receiver{
		h:           opts.Handset,
		gateway:     gw,
		client:      opts.Client,
		maxBody:     opts.MaxBody,
		checkEvery:  opts.CheckEvery,
		log:         log.With("component", "browserpush", "pin", opts.Handset.PIN()),
		urlReady:    make(chan struct{}),
		packets:     newAssembler(opts.MaxBody),
		packetWait:  packetWait,
		iconTimeout: iconTimeout,
		ownClient:   ownClient,
	}
	if ev := opts.Handset.Events(0); len(ev) > 0 {
		r.startSeq = ev[len(ev)-1].Seq
	}
	r.token = opts.Token
	r.password = opts.Password
	if opts.ReceiverURL != "" {
		r.recvURL = r.withToken(opts.ReceiverURL)
		close(r.urlReady)
	}
	r.bgStop = make(chan struct{})
	// A page in the developer's browser must not push to the device (a cross-origin POST,
	// or a rebound host name), nor anyone without the token when there is one.
	r.handler = httpguard.Wrap(http.HandlerFunc(r.serveHTTP), httpguard.Options{Token: opts.Token})
	r.srv = &http.Server{
		Handler:           r.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute, // a push of 1 MiB, however slow the link
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
		ConnState:         r.trackConn,
	}
	r.newConns = map[net.Conn]struct{}{}
	r.srv.RegisterOnShutdown(r.closeNewConns)
	opts.Handset.SetPageFetcher(r.fetchPage)
	return r, nil
}

// Handler returns the receiver's HTTP handler: POST a push to any path.
func (r *Receiver) Handler() http.Handler { return r.handler }

// ReceiverURL returns the URL announced to the gateway ("" until known).
func (r *Receiver) ReceiverURL() string {
	r.urlMu.Lock()
	defer r.urlMu.Unlock()
	return r.recvURL
}

// Serve accepts pushes on ln until Shutdown or Close, then returns ErrServerClosed.
func (r *Receiver) Serve(ln net.Listener) error {
	r.urlMu.Lock()
	if r.recvURL == "" {
		r.recvURL = r.withToken("http://" + announceAddr(ln.Addr()) + "/")
		close(r.urlReady)
	}
	r.urlMu.Unlock()
	return r.srv.Serve(ln)
}

// withToken puts the receiver's token into u as user info, so that the gateway sends it.
func (r *Receiver) withToken(u string) string {
	if r.token == "" {
		return u
	}
	pu, err := url.Parse(u)
	if err != nil {
		return u
	}
	pu.User = url.UserPassword("bbsim", r.token)
	return pu.String()
}

// announceAddr turns a listener address into one a local gateway can dial.
func announceAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func (r *Receiver) trackConn(c net.Conn, st http.ConnState) {
	r.connMu.Lock()
	defer r.connMu.Unlock()
	if st == http.StateNew {
		r.newConns[c] = struct{}{}
	} else {
		delete(r.newConns, c)
	}
}

// closeNewConns closes connections that never sent a request (clients dial spares):
// net/http's Shutdown would otherwise wait 5 s for each before calling them idle.
func (r *Receiver) closeNewConns() {
	r.connMu.Lock()
	defer r.connMu.Unlock()
	for c := range r.newConns {
		_ = c.Close()
		delete(r.newConns, c)
	}
}

// Shutdown stops accepting pushes and waits, until ctx ends, for the pushes in progress
// and the application acknowledgements still being sent; then it cancels what is left.
func (r *Receiver) Shutdown(ctx context.Context) error {
	err := r.srv.Shutdown(ctx)
	r.stopBackground(ctx)
	return err
}

// Close stops the receiver at once.
func (r *Receiver) Close() error {
	err := r.srv.Close()
	r.stopBackground(nil)
	return err
}

// stopBackground ends background work: it lets it finish until ctx ends (nil: not at all).
func (r *Receiver) stopBackground(ctx context.Context) {
	r.mu.Lock()
	wasClosed := r.closed
	r.closed = true
	r.mu.Unlock()
	r.packets.close()
	if ctx != nil {
		done := make(chan struct{})
		go func() {
			r.bg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
	if !wasClosed {
		close(r.bgStop)
	}
	r.bg.Wait()
	if r.ownClient {
		r.client.CloseIdleConnections()
	}
}

// goBackground runs f in a goroutine that Close and Shutdown wait for. It reports false
// when the receiver is closed.
func (r *Receiver) goBackground(f func(ctx context.Context)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		finished := make(chan struct{})
		defer close(finished)
		go func() {
			select {
			case <-r.bgStop:
				cancel()
			case <-finished:
			}
		}()
		f(ctx)
	}()
	return true
}

// drain reads and discards a little of a response body so the connection can be reused.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}
