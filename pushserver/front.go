package pushserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// The gateway's listener speaks HTTP/1.1 through fasthttp, whose server costs less CPU per
// request than net/http's (no goroutine and no extra read per request to watch for a closed
// connection): about a tenth of a push's CPU on a loaded gateway (BenchmarkRIMEndToEndWrk).
// The handlers stay net/http handlers; Handler() serves them under any net/http server, and
// serveFront hands them each request the front has read in full:
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
const (
	idleTimeout = 2 * time.Minute
	bodyTimeout = 2 * time.Minute
)

type front struct {
	fs *fasthttp.Server

	mu     sync.Mutex
	lns    []net.Listener
	conns  map[net.Conn]struct{}
	closed bool
}

func (s *Server) newFront() *front {
	f := &front{conns: map[net.Conn]struct{}{}}
	f.fs = &fasthttp.Server{
		Handler:      s.serveFront,
		ErrorHandler: s.frontError,
		HeaderReceived: func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			s.screenHeader(h)
			return fasthttp.RequestConfig{ReadTimeout: bodyTimeout}
		},
		// Expect: 100-continue with a body over the limit gets 413 at once, never 100.
		ExpectHandler: func(ctx *fasthttp.RequestCtx) int {
			if v := ctx.Request.Header.Peek(frontRefusal); len(v) > 0 && string(v) != refusedCLTE {
				s.m.rejected.Add(1)
				ctx.Error(fmt.Sprintf("body of %s bytes over the %d-byte limit", v, s.opts.MaxBodyBytes), http.StatusRequestEntityTooLarge)
				return http.StatusRequestEntityTooLarge
			}
			return fasthttp.StatusContinue
		},
		ReadBufferSize:               4*s.opts.MaxHeaderBytes + 4096,
		ReadTimeout:                  s.opts.ReadHeaderTimeout,
		IdleTimeout:                  idleTimeout,
		MaxRequestBodySize:           int(s.opts.MaxBodyBytes),
		StreamRequestBody:            true, // longer bodies reach the handlers unread
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		CloseOnShutdown:              true,
		Logger:                       frontLogger{s.log},
		ConnState:                    f.track,
	}
	return f
}

func (f *front) track(c net.Conn, st fasthttp.ConnState) {
	switch st {
	case fasthttp.StateNew:
		f.mu.Lock()
		f.conns[c] = struct{}{}
		f.mu.Unlock()
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
	}
}

func (f *front) serve(ln net.Listener) error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	f.lns = append(f.lns, ln)
	f.mu.Unlock()
	err := f.fs.Serve(ln)
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return ErrServerClosed
	}
	return err
}

// shutdown closes the listeners and idle connections and waits, bounded by ctx, for the
// requests in progress; their connections close after the answer.
func (f *front) shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.closed = true
	for _, ln := range f.lns {
		ln.Close()
	}
	f.mu.Unlock()
	err := f.fs.ShutdownWithContext(ctx)
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// close closes the listeners and every connection at once.
func (f *front) close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.shutdown(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
	}
	return nil
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
	for _, line := range bytes.Split(raw, []byte("\n")) {
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

// serveFront runs the gateway's handlers for one request read by the front, through a
// net/http request, and copies their answer into ctx. A body up to MaxBodyBytes has been
// read ahead; a longer one is not read and fails with *http.MaxBytesError, so the handler
// answers 413 itself.
func (s *Server) serveFront(ctx *fasthttp.RequestCtx) {
	rh := &ctx.Request.Header
	refusal := string(rh.Peek(frontRefusal))
	if refusal == refusedCLTE {
		s.m.rejected.Add(1)
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
		s.m.rejected.Add(1)
		ctx.Error(fmt.Sprintf("bad request URI %q: %v", uri, err), http.StatusBadRequest)
		return
	}
	r := &http.Request{
		Method:     string(rh.Method()),
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1, ProtoMinor: 1,
		Header:     make(http.Header, rh.Len()),
		Host:       string(rh.Host()),
		RemoteAddr: ctx.RemoteAddr().String(),
		RequestURI: uri,
	}
	if !rh.IsHTTP11() {
		r.Proto, r.ProtoMinor = "HTTP/1.0", 0
	}
	for k, v := range rh.All() {
		if string(k) == "Host" {
			continue // r.Host, as net/http does
		}
		r.Header.Add(string(k), string(v))
	}
	if ctx.IsTLS() {
		r.TLS = ctx.TLSConnectionState()
	}
	var body *frontBody
	switch stream, n := ctx.RequestBodyStream(), int64(rh.ContentLength()); {
	case refusal != "":
		declared, _ := strconv.ParseInt(refusal, 10, 64)
		r.Body, r.ContentLength = tooLarge{s.opts.MaxBodyBytes}, declared
		ctx.SetConnectionClose() // the body stays unread
	case stream == nil:
		r.Body = http.NoBody
	case n > s.opts.MaxBodyBytes:
		r.Body, r.ContentLength = tooLarge{s.opts.MaxBodyBytes}, n
		ctx.SetConnectionClose() // the body stays unread
	default:
		r.ContentLength = max(n, -1) // -1: chunked
		body = &frontBody{r: stream, left: r.ContentLength}
		r.Body = body
	}
	w := frontWriter{ctx: ctx, h: make(http.Header, 4)}
	s.mux.ServeHTTP(&w, r)
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

// frontBody is a request body as the front streams it; it knows when it has been read to
// the end.
type frontBody struct {
	r    io.Reader
	left int64 // bytes not yet read of a declared length; -1 for a chunked body
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
			b.eof, err = true, io.EOF
		}
	}
	if err == io.EOF {
		b.eof = true
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
		s.m.rejected.Add(1)
		ctx.Error(fmt.Sprintf("body over the %d-byte limit", s.opts.MaxBodyBytes), http.StatusRequestEntityTooLarge)
	case errors.As(err, &small):
		s.m.rejected.Add(1)
		ctx.Error(fmt.Sprintf("request line and headers over the %d-byte limit; send long destination lists and push options with PAP (POST /pap), which carries them in the body", s.front.fs.ReadBufferSize), http.StatusRequestHeaderFieldsTooLarge)
	case errors.As(err, &ne) && ne.Timeout():
		ctx.Error("request not received in time", http.StatusRequestTimeout)
	default:
		s.m.rejected.Add(1)
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

// frontLogger sends fasthttp's messages to the gateway's log at debug level.
type frontLogger struct{ log *slog.Logger }

func (l frontLogger) Printf(format string, args ...any) {
	l.log.Debug("http: " + fmt.Sprintf(format, args...))
}
