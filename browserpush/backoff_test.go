package browserpush

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bbsim/bbsim/handset"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestAttachBackoff checks the exact retry delays of attach, and that detach follows
// coverage, on a fake clock with an in-memory gateway.
func TestAttachBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var calls []string
		gw := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			var body map[string]any
			_ = json.NewDecoder(req.Body).Decode(&body)
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, req.URL.Path+" @"+time.Since(start).String())
			code, answer := 200, `{"pin":"2100000A","queued":0,"link_token":"t"}`
			if req.URL.Path == "/device/attach" && len(calls) <= 4 {
				code, answer = 503, `{"error":"busy"}`
			}
			return &http.Response{StatusCode: code, Body: io.NopCloser(strings.NewReader(answer)), Header: http.Header{}, Request: req}, nil
		})
		h, err := handset.New(handset.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := New(Options{Handset: h, Gateway: "http://gw.test", ReceiverURL: "http://dev.test/",
			Client: &http.Client{Transport: gw}})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()

		time.Sleep(10 * time.Second)
		synctest.Wait()
		if h.LinkToken() != "t" {
			t.Fatalf("LinkToken = %q after retries", h.LinkToken())
		}
		h.SetCoverage(false)
		synctest.Wait()
		if h.LinkToken() != "" {
			t.Fatalf("LinkToken = %q out of coverage", h.LinkToken())
		}
		time.Sleep(time.Second)
		h.SetCoverage(true)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v", err)
		}
		want := []string{
			"/device/attach @0s", "/device/attach @250ms", "/device/attach @750ms", "/device/attach @1.75s",
			"/device/attach @3.75s", "/device/detach @10s", "/device/attach @11s", "/device/detach @11s",
		}
		mu.Lock()
		defer mu.Unlock()
		if strings.Join(calls, ", ") != strings.Join(want, ", ") {
			t.Fatalf("gateway calls =\n%s\nwant\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
		}
	})
}

// TestAttachRefused checks that a gateway refusing the attach itself ends Run with the
// error (a configuration problem), leaving no goroutine behind.
func TestAttachRefused(t *testing.T) {
	for _, code := range []int{400, 404} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				gw := roundTripFunc(func(req *http.Request) (*http.Response, error) {
					return &http.Response{StatusCode: code, Body: io.NopCloser(strings.NewReader(`{"error":"bad receiver_url"}`)),
						Header: http.Header{}, Request: req}, nil
				})
				h, err := handset.New(handset.Options{})
				if err != nil {
					t.Fatal(err)
				}
				r, err := New(Options{Handset: h, Gateway: "http://gw.test", ReceiverURL: "http://dev.test/",
					Client: &http.Client{Transport: gw}})
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				err = r.Run(t.Context())
				if err == nil || !strings.Contains(err.Error(), "bad receiver_url") {
					t.Fatalf("Run = %v, want the gateway's refusal", err)
				}
				if !hasEvent(h, handset.EventGateway, "state", "refused") {
					t.Fatal("no gateway refused event")
				}
			})
		})
	}
}
