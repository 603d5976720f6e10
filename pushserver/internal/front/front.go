// Package front is the push gateway's HTTP/1.1 listener. fasthttp reads the requests, whose
// server costs less CPU per request than net/http's (no goroutine and no extra read per
// request to watch for a closed connection): about a tenth of a push's CPU on a loaded
// gateway (BenchmarkRIMEndToEndWrk). The gateway's handlers stay net/http handlers; the
// front hands them each request it has read, bridged to an *http.Request.
//
// What the front does before a handler runs:
//
//   - request line and headers: at most 4*MaxHeaderBytes+4096 bytes (431 above it); the
//     handlers answer 414/431 with a hint to use PAP above MaxHeaderBytes;
//   - body: up to MaxBodyBytes read ahead before the handler runs; a chunked one is
//     streamed to it; a longer declared one is not read, and the handler sees a body that
//     fails with *http.MaxBytesError, so the 413 is the handler's own (RIM text, PAP
//     badmessage 2000); a body the handler leaves unread is discarded up to 256 KiB, or
//     the connection closes after the answer;
//   - time: the first byte of a request on a kept connection within the idle timeout, then
//     the request line and headers within ReadHeaderTimeout, then the body within
//     bodyTimeout;
//   - Expect: 100-continue is answered before the body is read, with 413 and no 100 when
//     the declared body is over the limit;
//   - a body that breaks (a bad chunk size) is not read further, and the connection closes
//     after the handler's 400; a request with both Content-Length and Transfer-Encoding is
//     answered 400 and its connection closed, so nothing pipelined behind it is served.
//
// A bridged request's context is its connection's, as under net/http: it is done when the
// handler returns, when the client goes away while the handler runs (see watch), when
// Close is called, and when Shutdown's context ends before the handler has answered.
// Shutdown alone lets handlers in progress finish with a live context, as net/http's does.
package front

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

const (
	idleTimeout = 2 * time.Minute
	bodyTimeout = 2 * time.Minute
)

// Options configure a Server. The gateway passes its own resolved limits.
type Options struct {
	Handler           http.Handler  // required: serves every request the front has read
	MaxHeaderBytes    int           // the handlers' limit on request line and headers; required
	MaxBodyBytes      int64         // request body limit; required
	ReadHeaderTimeout time.Duration // request line and headers; 0: none
	// Rejected is called for each request the front answers with an error itself (400,
	// 413, 431, but not 408); default none.
	Rejected func()
	Logger   *slog.Logger // fasthttp's messages and bad requests, at debug level; default discard
}

// Server is the front: Serve, Shutdown and Close as net/http's server has them.
type Server struct {
	opts Options
	log  *slog.Logger
	fs   *fasthttp.Server

	// base is the parent of every connection's context; Close (or Shutdown running out of
	// time) cancels it.
	base       context.Context
	cancelBase context.CancelFunc

	mu     sync.Mutex // guards lns, conns and closed
	lns    []net.Listener
	conns  map[*conn]struct{}
	closed bool
}

// New builds a front that serves opts.Handler.
func New(opts Options) *Server {
	if opts.Rejected == nil {
		opts.Rejected = func() {}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: log, conns: map[*conn]struct{}{}}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.fs = &fasthttp.Server{
		Handler:      s.serveFront,
		ErrorHandler: s.frontError,
		HeaderReceived: func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			s.screenHeader(h)
			return fasthttp.RequestConfig{ReadTimeout: bodyTimeout}
		},
		// Expect: 100-continue with a body over the limit gets 413 at once, never 100.
		ExpectHandler: func(ctx *fasthttp.RequestCtx) int {
			if v := ctx.Request.Header.Peek(frontRefusal); len(v) > 0 && string(v) != refusedCLTE {
				s.opts.Rejected()
				ctx.Error(fmt.Sprintf("body of %s bytes over the %d-byte limit", v, s.opts.MaxBodyBytes), http.StatusRequestEntityTooLarge)
				return http.StatusRequestEntityTooLarge
			}
			return fasthttp.StatusContinue
		},
		ReadBufferSize:               4*opts.MaxHeaderBytes + 4096,
		ReadTimeout:                  opts.ReadHeaderTimeout,
		IdleTimeout:                  idleTimeout,
		MaxRequestBodySize:           int(opts.MaxBodyBytes),
		StreamRequestBody:            true, // longer bodies reach the handlers unread
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		CloseOnShutdown:              true,
		Logger:                       frontLogger{log},
		ConnState:                    s.track,
	}
	return s
}

func (s *Server) track(nc net.Conn, st fasthttp.ConnState) {
	c := asConn(nc)
	if c == nil {
		return
	}
	switch st {
	case fasthttp.StateNew:
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.cancel()
	}
}

// Serve accepts connections on ln until Shutdown or Close; it then returns
// http.ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	err := s.fs.Serve(listener{ln, s})
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return http.ErrServerClosed
	}
	return err
}

// ServeConn serves the requests of one connection until it ends.
func (s *Server) ServeConn(nc net.Conn) error {
	c := s.wrap(nc)
	defer c.cancel()
	return s.fs.ServeConn(c)
}

// Shutdown closes the listeners and idle connections and waits, bounded by ctx, for the
// requests in progress; their connections close after the answer. When ctx ends first,
// the contexts of the requests still in progress are cancelled.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for _, ln := range s.lns {
		ln.Close()
	}
	s.mu.Unlock()
	err := s.fs.ShutdownWithContext(ctx)
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	if ctx.Err() != nil {
		s.cancelBase()
	}
	return err
}

// Close closes the listeners and every connection at once, and cancels the contexts of the
// requests in progress.
func (s *Server) Close() error {
	s.cancelBase()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Shutdown(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
	return nil
}

// listener gives every accepted connection its context.
type listener struct {
	net.Listener
	s *Server
}

func (l listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := l.s.wrap(nc)
	if t, ok := nc.(tlsConner); ok {
		return tlsConn{c, t}, nil
	}
	return c, nil
}

func (s *Server) wrap(nc net.Conn) *conn {
	c := &conn{Conn: nc}
	c.ctx, c.cancel = context.WithCancel(s.base)
	return c
}

// tlsConner is what fasthttp asks of a connection to see it as TLS.
type tlsConner interface {
	Handshake() error
	ConnectionState() tls.ConnectionState
}

// tlsConn is a TLS connection with its context.
type tlsConn struct {
	*conn
	t tlsConner
}

func (c tlsConn) Handshake() error                     { return c.t.Handshake() }
func (c tlsConn) ConnectionState() tls.ConnectionState { return c.t.ConnectionState() }

func asConn(nc net.Conn) *conn {
	switch c := nc.(type) {
	case *conn:
		return c
	case tlsConn:
		return c.conn
	}
	return nil
}

// conn is an accepted connection with the context its requests inherit. While a handler
// runs, a watch may read ahead one byte of the connection, as net/http's server does,
// to learn that the client went away; fasthttp's next read gets that byte first.
type conn struct {
	net.Conn
	ctx    context.Context // done when the client goes away or the front closes
	cancel context.CancelFunc

	// Owned by the watch while one runs, by fasthttp's reads otherwise: a watch ends
	// (watching is closed) before fasthttp reads again.
	b       [1]byte
	hasByte bool

	remote string // the client's address as a string, once a request has asked it
}

func (c *conn) Read(p []byte) (int, error) {
	if c.hasByte && len(p) > 0 {
		p[0], c.hasByte = c.b[0], false
		return 1, nil
	}
	return c.Conn.Read(p)
}

// watch reads one byte ahead until the client sends it, goes away, or the read is
// aborted, and closes done. A client that went away (end of stream or a broken connection,
// not a timeout) cancels the connection's context.
func (c *conn) watch(done chan<- struct{}) {
	defer close(done)
	n, err := c.Conn.Read(c.b[:])
	if n == 1 {
		c.hasByte = true
		return
	}
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		c.cancel()
	}
}

// aLongTimeAgo is a read deadline that ends a watch at once.
var aLongTimeAgo = time.Unix(1, 0)

// reqContext is a bridged request's context: its connection's, ended when the handler
// returns. The watch for the client going away costs a goroutine and two deadline changes,
// so it starts only when someone asks whether the context is done (Done or Err), and only
// once the request's body has been read (the byte read ahead would otherwise be the
// body's); a handler that never waits on its context costs nothing more.
//
// The context that ends with the handler is made only when it is asked for too (Done or
// Err): a handler that never asks costs no context of its own (WithCancel links each child
// into its parent's set of children under the parent's lock, and unlinks it at the end).
type reqContext struct {
	parent context.Context // the connection's
	c      *conn

	mu       sync.Mutex
	ctx      context.Context    // parent's child, ended when the handler returns; nil until asked
	cancel   context.CancelFunc // ends ctx
	bodyRead bool               // the body has been read to its end (or there is none)
	wanted   bool               // Done or Err was called
	finished bool               // the handler returned: no watch starts any more
	watching chan struct{}      // closed when the running watch ends; nil: none started
}

func (r *reqContext) Deadline() (time.Time, bool) { return r.parent.Deadline() }

// Value asks the request's own context once there is one: a context derived from this
// one asks Done first, and then finds through Value the context it links itself to.
func (r *reqContext) Value(key any) any {
	r.mu.Lock()
	ctx := r.ctx
	r.mu.Unlock()
	if ctx == nil {
		ctx = r.parent
	}
	return ctx.Value(key)
}

func (r *reqContext) Done() <-chan struct{} { return r.want().Done() }

func (r *reqContext) Err() error { return r.want().Err() }

// want returns the request's own context, made at the first call (already ended when the
// handler has returned), and starts the watch on the connection.
func (r *reqContext) want() context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx == nil {
		r.ctx, r.cancel = context.WithCancel(r.parent)
		if r.finished {
			r.cancel()
		}
	}
	if !r.wanted {
		r.wanted = true
		r.startLocked()
	}
	return r.ctx
}

// bodyDone is called when the handler has read the body to its end.
func (r *reqContext) bodyDone() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodyRead = true
	r.startLocked()
}

func (r *reqContext) startLocked() {
	if r.c == nil || !r.wanted || !r.bodyRead || r.finished || r.watching != nil || r.c.hasByte {
		return
	}
	r.watching = make(chan struct{})
	go r.c.watch(r.watching)
}

// finish ends the request's watch, if one runs, before fasthttp reads the connection again.
func (r *reqContext) finish() {
	r.mu.Lock()
	if r.finished {
		r.mu.Unlock()
		return
	}
	r.finished = true
	w := r.watching
	if r.cancel != nil {
		r.cancel()
	}
	r.mu.Unlock()
	if w == nil {
		return
	}
	r.c.Conn.SetReadDeadline(aLongTimeAgo)
	<-w
	// fasthttp sets the next request's deadline before it reads again.
	r.c.Conn.SetReadDeadline(time.Time{})
}

// frontRefusal is the header the front marks a request with, before its body is read, when
// that body will not be read: the declared length over the limit, or refusedCLTE. A copy
// sent by the client is removed first.
const (
	frontRefusal = "X-Bbsim-Front-Refusal"
	refusedCLTE  = "cl-te"
)

// screenHeader looks at a request's header before any of its body is read. A declared
// length over MaxBodyBytes is answered 413 without waiting for the body (fasthttp would
// read up to 8 KiB of it first); a request with both Content-Length and Transfer-Encoding
// is answered 400 and the connection closed (RFC 9112 6.3: a sender must not send both,
// and reading either way lets a request be smuggled behind it).
func (s *Server) screenHeader(h *fasthttp.RequestHeader) {
	h.Del(frontRefusal)
	switch {
	case hasCLAndTE(h.RawHeaders()):
		h.Set(frontRefusal, refusedCLTE)
		h.SetContentLength(0)
	case int64(h.ContentLength()) > s.opts.MaxBodyBytes:
		h.Set(frontRefusal, strconv.Itoa(h.ContentLength()))
		h.SetContentLength(0)
	}
}

// hasCLAndTE reports whether raw request headers carry both Content-Length and
// Transfer-Encoding.
func hasCLAndTE(raw []byte) bool {
	var cl, te bool
	for len(raw) > 0 {
		var line []byte
		line, raw, _ = bytes.Cut(raw, []byte("\n"))
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		cl = cl || bytes.EqualFold(name, []byte("Content-Length"))
		te = te || bytes.EqualFold(name, []byte("Transfer-Encoding"))
	}
	return cl && te
}

// serveFront runs the handler for one request read by the front, through a net/http
// request, and copies its answer into ctx. A body up to MaxBodyBytes has been read ahead;
// a longer one is not read and fails with *http.MaxBytesError, so the handler answers 413
// itself.
func (s *Server) serveFront(ctx *fasthttp.RequestCtx) {
	rh := &ctx.Request.Header
	refusal := string(rh.Peek(frontRefusal))
	if refusal == refusedCLTE {
		s.opts.Rejected()
		ctx.Error("a request with both Content-Length and Transfer-Encoding is refused (RFC 9112 6.3)", http.StatusBadRequest)
		ctx.SetConnectionClose() // after Error, which resets the response
		return
	}
	rh.Del(frontRefusal)
	uri := string(rh.RequestURI())
	if uri == "*" { // the server as a whole (RFC 9110 9.3.7)
		if rh.IsOptions() {
			ctx.Response.Header.Set("Allow", "GET, POST")
			return
		}
		ctx.Error("request target * is for OPTIONS only", http.StatusBadRequest)
		return
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		s.opts.Rejected()
		ctx.Error(fmt.Sprintf("bad request URI %q: %v", uri, err), http.StatusBadRequest)
		return
	}
	// One allocation for what the bridge keeps of a request rather than one each.
	br := &bridged{rc: reqContext{c: asConn(ctx.Conn())}}
	rc := &br.rc
	r := &br.req
	*r = http.Request{
		Method:     string(rh.Method()),
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1, ProtoMinor: 1,
		Header:     bridgeHeader(rh),
		Host:       string(rh.Host()),
		RequestURI: uri,
	}
	if rc.c != nil {
		// fasthttp serves a connection's requests one after another, so this is not raced.
		if rc.c.remote == "" {
			rc.c.remote = ctx.RemoteAddr().String()
		}
		r.RemoteAddr = rc.c.remote
	} else {
		r.RemoteAddr = ctx.RemoteAddr().String()
	}
	if !rh.IsHTTP11() {
		r.Proto, r.ProtoMinor = "HTTP/1.0", 0
	}
	if ctx.IsTLS() {
		r.TLS = ctx.TLSConnectionState()
	}
	rc.parent = context.Background()
	if rc.c != nil {
		rc.parent = rc.c.ctx
	}
	defer rc.finish() // also when the handler panics
	var body *frontBody
	switch stream, n := ctx.RequestBodyStream(), int64(rh.ContentLength()); {
	case refusal != "":
		declared, _ := strconv.ParseInt(refusal, 10, 64)
		r.Body, r.ContentLength = tooLarge{s.opts.MaxBodyBytes}, declared
		ctx.SetConnectionClose() // the body stays unread
	case stream == nil || n == 0:
		r.Body = http.NoBody
		rc.bodyRead = true
	case n > s.opts.MaxBodyBytes:
		r.Body, r.ContentLength = tooLarge{s.opts.MaxBodyBytes}, n
		ctx.SetConnectionClose() // the body stays unread
	default:
		r.ContentLength = max(n, -1) // -1: chunked
		body = &br.body
		*body = frontBody{r: stream, left: r.ContentLength, rc: rc}
		r.Body = body
	}
	r = r.WithContext(rc)
	w := &br.w
	*w = frontWriter{ctx: ctx, h: make(http.Header, 4)}
	s.opts.Handler.ServeHTTP(w, r)
	rc.finish()
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if body != nil && !body.eof {
		// Like net/http: read the rest of a small unread body to keep the connection,
		// otherwise close it after the answer.
		if _, err := io.CopyN(io.Discard, body, 256<<10); err != io.EOF && !body.eof {
			ctx.SetConnectionClose()
		}
	}
}

// bridgeHeader is a request's header as net/http has it, but Host (r.Host, as net/http
// does). Names and values are substrings of one string and the value slices share one
// array, each capped at its one value, so that a handler's Add copies rather than
// overwrites its neighbour: three allocations a request rather than three a header.
// fasthttp has already put the names in net/http's canonical form.
func bridgeHeader(rh *fasthttp.RequestHeader) http.Header {
	n, size := 0, 0
	for k, v := range rh.All() {
		if string(k) != "Host" {
			n++
			size += len(k) + len(v)
		}
	}
	h := make(http.Header, n)
	if n == 0 {
		return h
	}
	var b strings.Builder
	b.Grow(size)
	for k, v := range rh.All() {
		if string(k) != "Host" {
			b.Write(k)
			b.Write(v)
		}
	}
	all := b.String()
	vals := make([]string, n)
	i, off := 0, 0
	for k, v := range rh.All() {
		if string(k) == "Host" {
			continue
		}
		name := all[off : off+len(k)]
		off += len(k)
		vals[i] = all[off : off+len(v)]
		off += len(v)
		if prev, ok := h[name]; ok {
			h[name] = append(prev, vals[i]) // a repeated header: its values in order
		} else {
			h[name] = vals[i : i+1 : i+1]
		}
		i++
	}
	return h
}

// bridged is what the front builds for a request it hands to the handler.
type bridged struct {
	rc   reqContext
	req  http.Request // the request but for its context (WithContext copies it)
	body frontBody
	w    frontWriter
}

// frontBody is a request body as the front streams it; it knows when it has been read to
// the end.
type frontBody struct {
	r    io.Reader
	left int64       // bytes not yet read of a declared length; -1 for a chunked body
	rc   *reqContext // told once the body has been read to its end
	eof  bool
	err  error // a broken body (a bad chunk size) stays broken: nothing more is read
}

func (b *frontBody) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.left >= 0 && int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	if b.left >= 0 {
		b.left -= int64(n)
		if b.left == 0 {
			err = io.EOF
		}
	}
	if err == io.EOF {
		b.eof = true
		b.rc.bodyDone()
	} else if err != nil {
		b.err = err
	}
	return n, err
}

func (*frontBody) Close() error { return nil }

// tooLarge is the body of a request whose body the front did not read: over the limit.
type tooLarge struct{ limit int64 }

func (b tooLarge) Read([]byte) (int, error) { return 0, &http.MaxBytesError{Limit: b.limit} }
func (tooLarge) Close() error               { return nil }

// frontError answers requests the front could not read.
func (s *Server) frontError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		s.opts.Rejected()
		ctx.Error(fmt.Sprintf("body over the %d-byte limit", s.opts.MaxBodyBytes), http.StatusRequestEntityTooLarge)
	case errors.As(err, &small):
		s.opts.Rejected()
		ctx.Error(fmt.Sprintf("request line and headers over the %d-byte limit; send long destination lists and push options with PAP (POST /pap), which carries them in the body", s.fs.ReadBufferSize), http.StatusRequestHeaderFieldsTooLarge)
	case errors.As(err, &ne) && ne.Timeout():
		ctx.Error("request not received in time", http.StatusRequestTimeout)
	default:
		s.opts.Rejected()
		ctx.Error("malformed HTTP request: "+err.Error(), http.StatusBadRequest)
	}
	s.log.Debug("bad HTTP request", "remote", ctx.RemoteAddr().String(), "err", err)
}

// frontWriter is the http.ResponseWriter of a bridged request. Like net/http's, it sends
// the status and headers as they are at WriteHeader (or the first Write), and sniffs a
// Content-Type the handler did not set from the first bytes written.
type frontWriter struct {
	ctx    *fasthttp.RequestCtx
	h      http.Header
	status int
	sniff  bool // no Content-Type yet: sniff the first Write
}

func (w *frontWriter) Header() http.Header { return w.h }

func (w *frontWriter) WriteHeader(code int) {
	if w.status != 0 || code < 200 {
		return // repeated, or informational (the front sends 100 Continue itself)
	}
	w.status = code
	w.ctx.SetStatusCode(code)
	rh := &w.ctx.Response.Header
	for k, vs := range w.h {
		switch k {
		case "Content-Length", "Transfer-Encoding":
			continue // the front frames the body it is given
		}
		for _, v := range vs {
			rh.Add(k, v)
		}
	}
	_, set := w.h["Content-Type"]
	w.sniff = !set
}

func (w *frontWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.sniff && len(p) > 0 {
		w.sniff = false
		w.ctx.Response.Header.SetContentType(http.DetectContentType(p))
	}
	return w.ctx.Write(p)
}

// frontLogger sends fasthttp's messages to the log at debug level.
type frontLogger struct{ log *slog.Logger }

func (l frontLogger) Printf(format string, args ...any) {
	l.log.Debug("http: " + fmt.Sprintf(format, args...))
}
