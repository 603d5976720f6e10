package browserpush

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bbsim/bbsim/handset"
)

// noNetwork is a client whose every dial fails at once: fuzzed icon and delete URLs stay
// on the machine.
func noNetwork() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("no network in this test")
		},
	}}
}

type snapshot struct {
	channels, messages, cache, appPushes int
}

func snap(h *handset.Handset) snapshot {
	s := snapshot{channels: len(h.Channels()), messages: len(h.Messages()), cache: len(h.Cache())}
	for _, a := range h.Apps() {
		s.appPushes += len(a.Pushes)
	}
	return s
}

var knownStatus = map[string]int{"": 0, "234": 409, "235": 403, "237": 503, "238": 415, "400": 400, "4502": 404}

func FuzzReceiver(f *testing.F) {
	multi, multiCT := multipartBody(f, []partSpec{
		{hdr: map[string]string{"X-RIM-Push-Type": "Browser-Content", "Content-Location": "http://x/a"}, body: "<p>a</p>"},
		{hdr: map[string]string{"X-RIM-Push-Type": "Browser-Channel", "X-RIM-Push-Channel-ID": "c"}, body: "b"},
	})
	seeds := []struct{ hdr, body string }{
		{"X-RIM-Push-Type: Browser-Channel\nX-RIM-Push-Channel-ID: http://a/\nX-RIM-Push-Title: T\nContent-Type: text/html", "<h1>x</h1>"},
		{"X-RIM-Push-Type: Browser-Message\nContent-Location: http://a/m\nX-RIM-Push-Priority: high", "hello"},
		{"X-RIM-Push-Type: Browser-Content\nContent-Location: http://a/c\nExpires: Thu, 01 Jan 2099 00:00:00 GMT", "c"},
		{"X-RIM-Push-Type: Browser-Channel-Delete\nX-RIM-Push-Channel-ID: http://a/", ""},
		{"X-RIM-Push-Dest-Port: 100\nPush-Message-ID: 1", "app"},
		{"X-RIM-Push-Dest-Port: 99999", "x"},
		{"X-RIM-Push-ID: p\nX-Bbsim-Packet: 0/2\nX-Bbsim-Push-Length: 4\nX-RIM-Push-Type: Browser-Message", "ab"},
		{"X-RIM-Push-ID: p\nX-Bbsim-Packet: 1/2\nX-Bbsim-Push-Length: 4\nX-RIM-Push-Type: Browser-Message", "cd"},
		{"Content-Type: " + multiCT, string(multi)},
		{"Content-Type: multipart/mixed; boundary=zz\nX-RIM-Push-Type: Browser-Content", "--zz\r\nContent-Location: http://q/\r\n\r\nbody\r\n--zz--"},
		{"X-RIM-Push-Type: Browser-Channel\nX-RIM-Push-Channel-ID: i\nX-RIM-Push-Unread-Icon-URL: http://icons.invalid/u.png", "x"},
		{"X-RIM-Push-Type: Browser-Content\nContent-Location: http://a/h\nContent-Type: text/html; charset=x-unknown", "<meta charset=utf-16>\xff"},
	}
	for _, s := range seeds {
		f.Add(s.hdr, []byte(s.body))
	}
	h, err := handset.New(handset.Options{})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := h.DeclareApp("app", 100, ""); err != nil {
		f.Fatal(err)
	}
	r, err := New(Options{Handset: h, Client: noNetwork(), MaxBody: 64 << 10})
	if err != nil {
		f.Fatal(err)
	}
	r.packetWait = 20 * time.Millisecond
	f.Cleanup(func() { _ = r.Close() })
	f.Fuzz(func(t *testing.T, hdr string, body []byte) {
		mh, err := textproto.NewReader(bufio.NewReader(strings.NewReader(hdr + "\r\n\r\n"))).ReadMIMEHeader()
		if err != nil && len(mh) == 0 {
			mh = textproto.MIMEHeader{}
		}
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/", bytes.NewReader(body))
		for k, vs := range mh {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
		before := snap(h)
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.Handler().ServeHTTP(rec, req)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("receiver hung on %q", hdr)
		}
		status := rec.Header().Get("X-RIM-Push-Status")
		want, ok := knownStatus[status]
		if !ok {
			t.Fatalf("X-RIM-Push-Status %q is not a device status", status)
		}
		if status != "" && rec.Code != want {
			t.Fatalf("status %s with HTTP %d, want %d", status, rec.Code, want)
		}
		if rec.Code != 200 {
			if after := snap(h); after != before {
				t.Fatalf("rejected push (%d %s: %s) changed state %+v -> %+v", rec.Code, status, rec.Body, before, after)
			}
		}
	})
}

// BenchmarkReceiver measures pushes per second through a receiver on loopback, with
// keep-alive clients in parallel: one connection per client, one push at a time on it, as
// the gateway delivers. The clients write prepared requests on raw connections, so the
// figure is the receiver's, not net/http's client's.
func BenchmarkReceiver(b *testing.B) {
	body := []byte("<html><body><h1>Scores</h1><p>Home 2, away 1. <a href=\"http://s/\">more</a></p></body></html>")
	for _, kind := range []string{"content", "message", "channel", "message-journal"} {
		b.Run(kind, func(b *testing.B) {
			ho := handset.Options{EventHistory: 100}
			if kind == "message-journal" { // a handset that keeps its state on disk
				ho.Dir = b.TempDir()
			}
			h, err := handset.New(ho)
			if err != nil {
				b.Fatal(err)
			}
			r, err := New(Options{Handset: h})
			if err != nil {
				b.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = r.Serve(ln) }()
			defer r.Close()
			defer h.Close()
			addr := ln.Addr().String()
			var seq atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				br := bufio.NewReader(c)
				var req bytes.Buffer
				for pb.Next() {
					n := seq.Add(1)
					req.Reset()
					fmt.Fprintf(&req, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"+
						"X-RIM-Push-ID: %d\r\nX-Bbsim-Packet: 0/1\r\n", addr, len(body), n)
					switch kind {
					case "content":
						fmt.Fprintf(&req, "X-RIM-Push-Type: Browser-Content\r\nContent-Location: http://s/%d\r\n", n%100)
					case "message", "message-journal":
						req.WriteString("X-RIM-Push-Type: Browser-Message\r\nX-RIM-Push-Title: Score\r\n")
					case "channel":
						fmt.Fprintf(&req, "X-RIM-Push-Type: Browser-Channel\r\nX-RIM-Push-Channel-ID: http://s/%d\r\n", n%20)
					}
					req.WriteString("\r\n")
					req.Write(body)
					if _, err := c.Write(req.Bytes()); err != nil {
						b.Error(err)
						return
					}
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("push = %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
		})
	}
}
