package front

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// conversation writes raw requests on one TCP connection and reads the answers in turn.
type conversation struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *conversation {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &conversation{t: t, c: c, br: bufio.NewReader(c)}
}

// ask sends raw bytes and reads one answer: status, body and whether the server said it
// closes the connection.
func (cv *conversation) ask(raw string) (int, string, bool) {
	cv.t.Helper()
	if _, err := io.WriteString(cv.c, raw); err != nil {
		cv.t.Fatalf("write: %v", err)
	}
	return cv.answer(raw)
}

// answer reads the answer to a request already sent.
func (cv *conversation) answer(req string) (int, string, bool) {
	cv.t.Helper()
	resp, err := http.ReadResponse(cv.br, nil)
	if err != nil {
		cv.t.Fatalf("read answer to %.60q: %v", req, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Close
}

// started sends a request's line and headers (without the blank line) asking for
// 100-continue, and waits for the 100: the front has the request and reads its body next.
func (cv *conversation) started(head string) {
	cv.t.Helper()
	if code, _, _ := cv.ask(head + "Expect: 100-continue\r\n\r\n"); code != http.StatusContinue {
		cv.t.Fatalf("answer %d to a request asking for 100-continue", code)
	}
}

// closed reports whether the server closed the connection (EOF before any byte).
func (cv *conversation) closed() bool {
	cv.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := cv.br.ReadByte()
	return err == io.EOF
}

func chunked(body string) string {
	var b strings.Builder
	for len(body) > 0 {
		n := min(len(body), 700)
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
		body = body[n:]
	}
	return b.String() + "0\r\n\r\n"
}

// echo answers with the request's body, or 413 naming the limit when the front did not
// read it.
func echo(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		http.Error(w, fmt.Sprintf("body over the %d-byte limit", mbe.Limit), http.StatusRequestEntityTooLarge)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%s %d bytes, Transfer-Encoding %q: %s", r.Proto, len(b), r.Header.Get("Transfer-Encoding"), b)
}

// start serves h on a loopback port with the gateway's limits made small; served receives
// what Serve returned.
func start(t *testing.T, h http.Handler) (s *Server, addr string, served <-chan error) {
	t.Helper()
	s = New(Options{Handler: h, MaxHeaderBytes: 1024, MaxBodyBytes: 2000, ReadHeaderTimeout: 10 * time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() { ch <- s.Serve(ln) }()
	t.Cleanup(func() { s.Close() })
	return s, ln.Addr().String(), ch
}

// TestFrontRequests: what the front does with requests a push initiator can send, byte for
// byte on one connection where keeping it matters.
func TestFrontRequests(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", echo)
	mux.HandleFunc("/unread", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not read", http.StatusMethodNotAllowed)
	})
	mux.HandleFunc("/sniff/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html><body>mounted</body></html>")
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		// The handler adds to one header and sets another: its neighbours stay as sent.
		r.Header.Add("X-A", "added")
		r.Header["X-B"][0] = "changed"
		fmt.Fprintf(w, "host=%s a=%q b=%q c=%q n=%d remote=%t", r.Host, r.Header["X-A"], r.Header["X-B"], r.Header["X-C"], len(r.Header), r.RemoteAddr != "")
	})
	_, addr, _ := start(t, mux)
	host := "Host: gw\r\n"

	t.Run("headers as net/http has them", func(t *testing.T) {
		cv := dialRaw(t, addr)
		req := "GET /headers HTTP/1.1\r\n" + host + "x-a: 1\r\nX-B: 2\r\nX-C: 3\r\nX-C: 4\r\n\r\n"
		for range 2 { // the second on the same connection
			code, text, _ := cv.ask(req)
			if want := `host=gw a=["1" "added"] b=["changed"] c=["3" "4"] n=3 remote=true`; code != 200 || !strings.HasSuffix(text, want) {
				t.Fatalf("headers = %d %q, want 200 ending %q", code, text, want)
			}
		}
	})

	t.Run("chunked body read whole", func(t *testing.T) {
		body := strings.Repeat("0123456789", 150)
		cv := dialRaw(t, addr)
		code, text, _ := cv.ask("POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" + chunked(body))
		if want := "1500 bytes"; code != 200 || !strings.Contains(text, want) || !strings.HasSuffix(text, body) {
			t.Fatalf("chunked request = %d %.80q, want 200 with %s", code, text, want)
		}
	})
	t.Run("unread small body keeps the connection", func(t *testing.T) {
		cv := dialRaw(t, addr)
		code, _, closing := cv.ask("GET /unread HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nabcde")
		if code != 405 || closing {
			t.Fatalf("unread body = %d (closing %v), want 405 on a kept connection", code, closing)
		}
		code, text, _ := cv.ask("POST /echo HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi")
		if code != 200 || !strings.HasSuffix(text, ": hi") {
			t.Fatalf("next request on the connection = %d %q", code, text)
		}
	})
	t.Run("declared body over the limit", func(t *testing.T) {
		cv := dialRaw(t, addr)
		code, text, closing := cv.ask("POST /echo HTTP/1.1\r\n" + host + "Content-Length: 1000000\r\n\r\n" + strings.Repeat("x", 4000))
		if code != 413 || !strings.Contains(text, "2000-byte limit") || !closing || !cv.closed() {
			t.Fatalf("oversized body = %d %q (closing %v), want the handler's 413 naming the limit, then the connection closed", code, text, closing)
		}
	})
	t.Run("expect 100-continue", func(t *testing.T) {
		cv := dialRaw(t, addr)
		io.WriteString(cv.c, "POST /echo HTTP/1.1\r\n"+host+"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n")
		line, err := cv.br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
			t.Fatalf("answer to Expect = %q, %v; want 100 Continue", line, err)
		}
		cv.br.ReadString('\n')
		if code, text, _ := cv.ask("hi"); code != 200 || !strings.HasSuffix(text, ": hi") {
			t.Fatalf("body after 100 Continue = %d %q", code, text)
		}
	})
	t.Run("headers over the hard cap", func(t *testing.T) {
		cv := dialRaw(t, addr)
		code, text, _ := cv.ask("POST /echo HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("y", 9000) + "\r\nContent-Length: 0\r\n\r\n")
		if code != 431 || !strings.Contains(text, "PAP") {
			t.Fatalf("huge headers = %d %q, want 431 with a hint to use PAP", code, text)
		}
	})
	t.Run("malformed request", func(t *testing.T) {
		cv := dialRaw(t, addr)
		code, text, _ := cv.ask("HELLO\r\n\r\n")
		if code != 400 || !strings.Contains(text, "malformed HTTP request") || !cv.closed() {
			t.Fatalf("garbage = %d %q, want 400 and the connection closed", code, text)
		}
	})
	t.Run("HTTP/1.0", func(t *testing.T) {
		cv := dialRaw(t, addr)
		code, text, _ := cv.ask("POST /echo HTTP/1.0\r\nContent-Length: 3\r\n\r\nold")
		if code != 200 || !strings.HasPrefix(text, "HTTP/1.0 3 bytes") || !cv.closed() {
			t.Fatalf("HTTP/1.0 request = %d %q, want 200 and the connection closed", code, text)
		}
	})
	t.Run("content type sniffed", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/sniff/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Fatalf("Content-Type of an HTML answer without one = %q", ct)
		}
	})
}

// TestCloseDropsConnections: Close ends idle and busy connections at once; Serve returns
// http.ErrServerClosed, and a later Serve does too.
func TestCloseDropsConnections(t *testing.T) {
	t.Parallel()
	s, addr, served := start(t, http.HandlerFunc(echo))
	idle := dialRaw(t, addr)
	if code, _, _ := idle.ask("GET /echo HTTP/1.1\r\nHost: gw\r\n\r\n"); code != 200 {
		t.Fatalf("GET = %d", code)
	}
	busy := dialRaw(t, addr)
	// In flight, its body awaited (bytes sent and unread would make the close a reset).
	busy.started("POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n")
	begin := time.Now()
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if !idle.closed() || !busy.closed() || time.Since(begin) > 3*time.Second {
		t.Fatalf("connections not closed by Close within 3s (%v)", time.Since(begin))
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Fatalf("Serve = %v, want http.ErrServerClosed", err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln2); err != http.ErrServerClosed {
		t.Fatalf("Serve after Close = %v, want http.ErrServerClosed", err)
	}
}

// TestShutdownFinishesInFlight: Shutdown waits for a request whose body is still arriving;
// it gets its answer (with Connection: close) and Shutdown returns once it has.
func TestShutdownFinishesInFlight(t *testing.T) {
	t.Parallel()
	s, addr, _ := start(t, http.HandlerFunc(echo))
	cv := dialRaw(t, addr)
	cv.started("POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n")
	io.WriteString(cv.c, "half")
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(t.Context()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	code, text, closing := cv.ask("-of-it")
	if code != 200 || !strings.HasSuffix(text, ": half-of-it") || !closing {
		t.Fatalf("in-flight request = %d %q (closing %v), want 200 and Connection: close", code, text, closing)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last answer")
	}
}

// waiter is a handler that waits for its request's context to end (after reading the
// body), reporting that it started and why its context ended.
type waiter struct {
	entered chan struct{}
	ended   chan error
}

func newWaiter() *waiter {
	return &waiter{entered: make(chan struct{}, 1), ended: make(chan error, 1)}
}

func (h *waiter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/unread" {
		io.Copy(io.Discard, r.Body)
	}
	h.entered <- struct{}{}
	select {
	case <-r.Context().Done():
		h.ended <- r.Context().Err()
	case <-time.After(30 * time.Second):
		h.ended <- errors.New("context not done within 30s")
	}
}

func (h *waiter) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-h.entered:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: handler not entered", what)
	}
}

// TestRequestContextEnds: a bridged request's context is done when its client goes away
// (body read or not yet), when the front is closed, and when Shutdown runs out of time.
func TestRequestContextEnds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  string
		end  func(t *testing.T, s *Server, cv *conversation)
	}{
		{"client goes away", "GET /w HTTP/1.1\r\nHost: gw\r\n\r\n",
			func(t *testing.T, s *Server, cv *conversation) { cv.c.Close() }},
		{"client goes away after a body", "POST /w HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello",
			func(t *testing.T, s *Server, cv *conversation) { cv.c.Close() }},
		{"client goes away, an empty body unread", "POST /unread HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n",
			func(t *testing.T, s *Server, cv *conversation) { cv.c.Close() }},
		{"client goes away after a chunked body", "POST /w HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked("hello"),
			func(t *testing.T, s *Server, cv *conversation) { cv.c.Close() }},
		{"Close", "GET /w HTTP/1.1\r\nHost: gw\r\n\r\n",
			func(t *testing.T, s *Server, cv *conversation) { s.Close() }},
		{"Shutdown runs out of time", "GET /w HTTP/1.1\r\nHost: gw\r\n\r\n",
			func(t *testing.T, s *Server, cv *conversation) {
				ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
				defer cancel()
				if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Shutdown with a request in progress = %v, want %v", err, context.DeadlineExceeded)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newWaiter()
			s, addr, _ := start(t, h)
			cv := dialRaw(t, addr)
			io.WriteString(cv.c, tt.req)
			h.wait(t, tt.name)
			tt.end(t, s, cv)
			if err := <-h.ended; !errors.Is(err, context.Canceled) {
				t.Fatalf("%s: the request's context ended with %v, want %v", tt.name, err, context.Canceled)
			}
		})
	}
}

// TestRequestContextLives: a handler's context stays live while its client waits, and
// the byte the front reads ahead to watch the client belongs to the next request on the
// connection, which is served whole.
func TestRequestContextLives(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		done := r.Context().Done() // starts the watch
		entered <- struct{}{}
		select {
		case <-done:
			http.Error(w, "context ended: "+r.Context().Err().Error(), http.StatusInternalServerError)
		case <-release:
			io.WriteString(w, "held")
		}
	})
	mux.HandleFunc("/echo", echo)
	_, addr, _ := start(t, mux)
	cv := dialRaw(t, addr)
	const hold = "GET /hold HTTP/1.1\r\nHost: gw\r\n\r\n"
	io.WriteString(cv.c, hold)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not entered")
	}
	// Sent while the handler holds: the watch reads its first byte.
	const next = "POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\nnext"
	io.WriteString(cv.c, next)
	close(release)
	if code, text, _ := cv.answer(hold); code != 200 || text != "held" {
		t.Fatalf("held request = %d %q, want 200 held", code, text)
	}
	if code, text, _ := cv.answer(next); code != 200 || text != `HTTP/1.1 4 bytes, Transfer-Encoding "": next` {
		t.Fatalf("request sent while the previous one held = %d %q", code, text)
	}
}

// TestRequestContextAfterHandler: a request's context is done once its handler has
// returned, whether the handler asked it anything or not, and so is a context derived from
// it while the handler ran.
func TestRequestContextAfterHandler(t *testing.T) {
	t.Parallel()
	kept := make(chan context.Context, 2)
	mux := http.NewServeMux()
	mux.HandleFunc("/never-asked", func(w http.ResponseWriter, r *http.Request) {
		kept <- r.Context()
	})
	mux.HandleFunc("/derived", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		_ = cancel // ended by the request's end, not here
		if ctx.Err() != nil {
			t.Errorf("derived context ended while the handler runs: %v", ctx.Err())
		}
		kept <- ctx
	})
	_, addr, _ := start(t, mux)
	cv := dialRaw(t, addr)
	for _, path := range []string{"/never-asked", "/derived"} {
		req := "GET " + path + " HTTP/1.1\r\nHost: gw\r\n\r\n"
		io.WriteString(cv.c, req)
		if code, _, _ := cv.answer(req); code != 200 {
			t.Fatalf("%s = %d", path, code)
		}
		ctx := <-kept
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: context not done after the handler returned", path)
		}
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Fatalf("%s: context ended with %v, want %v", path, ctx.Err(), context.Canceled)
		}
	}
}

// cpuTime is the process's user and system CPU time: client and front together.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFront: requests bridged to a handler that answers at once, on keep-alive
// connections, by a handler that never asks its context and by one that does (which
// starts the watch for the client going away on each request). cpu-µs/op counts the
// client's CPU too.
func BenchmarkFront(b *testing.B) {
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
	}{
		{"context unasked", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }},
		{"context asked", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			default:
			}
			io.WriteString(w, "ok")
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := New(Options{Handler: tc.h, MaxHeaderBytes: 1024, MaxBodyBytes: 2000})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go s.Serve(ln)
			defer s.Close()
			const req = "GET / HTTP/1.1\r\nHost: gw\r\n\r\n"
			b.SetParallelism(4)
			b.ResetTimer()
			cpu0 := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				br := bufio.NewReader(c)
				for pb.Next() {
					if _, err := io.WriteString(c, req); err != nil {
						b.Error(err)
						return
					}
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
