package pushserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The front's own behaviour is tested in internal/front; these are the gateway's answers
// through it.

// exchange sends raw bytes on a new connection to the gateway and reads one answer.
func exchange(t *testing.T, base, raw string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read answer to %.60q: %v", raw, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
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

// TestChunkedPushes: a chunked RIM push reaches the device whole and without its
// framing; a chunked PAP push over the limit is a PAP badmessage.
func TestChunkedPushes(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	_, base := startServer(t, Options{Devices: seedDevices(), MaxBodyBytes: 2000, MaxHeaderBytes: 1024})
	attach(t, base, rc, pinA)
	host := "Host: gw\r\n"

	t.Run("chunked push delivered whole", func(t *testing.T) {
		body := strings.Repeat("0123456789", 150)
		code, text := exchange(t, base, "POST /push?DESTINATION="+pinA+"&PORT=7874 HTTP/1.1\r\n"+host+
			"X-RIM-Push-ID: chunky\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked(body))
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
		code, text := exchange(t, base, "POST /pap HTTP/1.1\r\n"+host+"Content-Type: "+ct+"\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked(b))
		if a := decodeAnswer(t, text); code != 413 || a.BadMessage == nil || a.BadMessage.Code != 2000 {
			t.Fatalf("chunked oversized PAP = %d %s, want 413 with badmessage 2000", code, text)
		}
	})
	t.Run("declared push over the limit", func(t *testing.T) {
		code, text := exchange(t, base, "POST /push?DESTINATION="+pinA+" HTTP/1.1\r\n"+host+"Content-Length: 1000000\r\n\r\n"+strings.Repeat("x", 4000))
		if code != 413 || !strings.Contains(text, "2000-byte limit") {
			t.Fatalf("oversized push = %d %q, want 413 naming the limit", code, text)
		}
	})
}

// TestServedRequestContext: through Serve, a handler's request context ends when its
// client goes away, as it does under net/http.
func TestServedRequestContext(t *testing.T) {
	t.Parallel()
	entered, ended := make(chan struct{}, 1), make(chan error, 1)
	wait := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-r.Context().Done():
			ended <- r.Context().Err()
		case <-time.After(30 * time.Second):
			ended <- errors.New("context not done within 30s")
		}
	})
	_, base := startServer(t, Options{Mount: map[string]http.Handler{"/wait/": wait}})
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /wait/ HTTP/1.1\r\nHost: gw\r\n\r\n")
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not entered")
	}
	c.Close()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("context of a request whose client went away ended with %v, want %v", err, context.Canceled)
	}
}
