package pushserver

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// conversation writes raw requests on one TCP connection and reads the answers in turn.
type conversation struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, base string) *conversation {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
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
	resp, err := http.ReadResponse(cv.br, nil)
	if err != nil {
		cv.t.Fatalf("read answer to %.60q: %v", raw, err)
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

// TestFrontRequests: what the gateway's HTTP front does with requests a push initiator can
// send, byte for byte on one connection where keeping it matters.
func TestFrontRequests(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	sniffed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html><body>mounted</body></html>")
	})
	_, base := startServer(t, Options{Devices: seedDevices(), MaxBodyBytes: 2000, MaxHeaderBytes: 1024,
		Mount: map[string]http.Handler{"/sniff/": sniffed}})
	attach(t, base, rc, pinA)
	host := "Host: gw\r\n"

	t.Run("chunked push delivered whole", func(t *testing.T) {
		body := strings.Repeat("0123456789", 150)
		cv := dialRaw(t, base)
		code, text, _ := cv.ask("POST /push?DESTINATION=" + pinA + "&PORT=7874 HTTP/1.1\r\n" + host +
			"X-RIM-Push-ID: chunky\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(body))
		if code != 200 {
			t.Fatalf("chunked push = %d %q", code, text)
		}
		d := rc.wait(t, 1)[0]
		if d.PushID != "chunky" || string(d.Body) != body || d.Header.Get("Transfer-Encoding") != "" {
			t.Fatalf("delivered %s with %d bytes, headers %v", d.PushID, len(d.Body), d.Header)
		}
	})
	t.Run("chunked PAP over the limit is a badmessage", func(t *testing.T) {
		b, ct := papMultipart(papDoctype20, `<push-message push-id="bigc"><address address-value="2100000A"/></push-message>`, "Content-Type: text/plain\r\n", strings.Repeat("x", 3000))
		cv := dialRaw(t, base)
		code, text, _ := cv.ask("POST /pap HTTP/1.1\r\n" + host + "Content-Type: " + ct + "\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b))
		if a := decodeAnswer(t, text); code != 413 || a.BadMessage == nil || a.BadMessage.Code != 2000 {
			t.Fatalf("chunked oversized PAP = %d %s, want 413 with badmessage 2000", code, text)
		}
	})
	t.Run("unread small body keeps the connection", func(t *testing.T) {
		cv := dialRaw(t, base)
		code, _, closing := cv.ask("GET /push HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nabcde")
		if code != 405 || closing {
			t.Fatalf("GET /push with a body = %d (closing %v), want 405 on a kept connection", code, closing)
		}
		code, text, _ := cv.ask("GET /api/v1/devices HTTP/1.1\r\n" + host + "\r\n")
		if code != 200 || !strings.Contains(text, pinA) {
			t.Fatalf("next request on the connection = %d %q", code, text)
		}
	})
	t.Run("declared body over the limit", func(t *testing.T) {
		cv := dialRaw(t, base)
		code, text, closing := cv.ask("POST /push?DESTINATION=" + pinA + " HTTP/1.1\r\n" + host + "Content-Length: 1000000\r\n\r\n" + strings.Repeat("x", 4000))
		if code != 413 || !strings.Contains(text, "2000-byte limit") || !closing || !cv.closed() {
			t.Fatalf("oversized push = %d %q (closing %v), want 413 naming the limit, then the connection closed", code, text, closing)
		}
	})
	t.Run("expect 100-continue", func(t *testing.T) {
		cv := dialRaw(t, base)
		io.WriteString(cv.c, "POST /push?DESTINATION="+pinA+" HTTP/1.1\r\n"+host+"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n")
		line, err := cv.br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
			t.Fatalf("answer to Expect = %q, %v; want 100 Continue", line, err)
		}
		cv.br.ReadString('\n')
		if code, text, _ := cv.ask("hi"); code != 200 {
			t.Fatalf("push after 100 Continue = %d %q", code, text)
		}
	})
	t.Run("headers over the hard cap", func(t *testing.T) {
		cv := dialRaw(t, base)
		code, text, _ := cv.ask("POST /push?DESTINATION=" + pinA + " HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("y", 9000) + "\r\nContent-Length: 0\r\n\r\n")
		if code != 431 || !strings.Contains(text, "PAP") {
			t.Fatalf("huge headers = %d %q, want 431 with a hint to use PAP", code, text)
		}
	})
	t.Run("malformed request", func(t *testing.T) {
		cv := dialRaw(t, base)
		code, text, _ := cv.ask("HELLO\r\n\r\n")
		if code != 400 || !strings.Contains(text, "malformed HTTP request") || !cv.closed() {
			t.Fatalf("garbage = %d %q, want 400 and the connection closed", code, text)
		}
	})
	t.Run("HTTP/1.0", func(t *testing.T) {
		cv := dialRaw(t, base)
		code, text, _ := cv.ask("POST /push?DESTINATION=" + pinA + " HTTP/1.0\r\nContent-Length: 3\r\n\r\nold")
		if code != 200 || !strings.Contains(text, "accepted") || !cv.closed() {
			t.Fatalf("HTTP/1.0 push = %d %q, want 200 and the connection closed", code, text)
		}
	})
	t.Run("content type sniffed", func(t *testing.T) {
		resp, err := http.Get(base + "/sniff/x")
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
// ErrServerClosed, and a later Serve does too.
func TestCloseDropsConnections(t *testing.T) {
	t.Parallel()
	s, base, served := startServing(t, Options{Devices: seedDevices()})
	idle := dialRaw(t, base)
	if code, _, _ := idle.ask("GET /api/v1/devices HTTP/1.1\r\nHost: gw\r\n\r\n"); code != 200 {
		t.Fatalf("devices = %d", code)
	}
	busy := dialRaw(t, base)
	// In flight, its body awaited (bytes sent and unread would make the close a reset).
	busy.started("POST /push?DESTINATION=" + pinA + " HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n")
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if !idle.closed() || !busy.closed() || time.Since(start) > 3*time.Second {
		t.Fatalf("connections not closed by Close within 3s (%v)", time.Since(start))
	}
	if err := <-served; err != ErrServerClosed {
		t.Fatalf("Serve = %v, want ErrServerClosed", err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln2); err != ErrServerClosed {
		t.Fatalf("Serve after Close = %v, want ErrServerClosed", err)
	}
}

// TestShutdownFinishesInFlight: Shutdown waits for a request whose body is still arriving;
// it gets its answer (with Connection: close) and Shutdown returns once it has.
func TestShutdownFinishesInFlight(t *testing.T) {
	t.Parallel()
	s, base, _ := startServing(t, Options{Devices: seedDevices()})
	cv := dialRaw(t, base)
	cv.started("POST /push?DESTINATION=" + pinA + " HTTP/1.1\r\nHost: gw\r\nX-RIM-Push-ID: late\r\nContent-Length: 10\r\n")
	io.WriteString(cv.c, "half")
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(t.Context()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	code, text, closing := cv.ask("-of-it")
	if code != 200 || !strings.Contains(text, "late accepted") || !closing {
		t.Fatalf("in-flight push = %d %q (closing %v), want 200 and Connection: close", code, text, closing)
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
