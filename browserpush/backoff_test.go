package browserpush

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
			if req.URL.Path == "/device/check" {
				answer = `{"pin":"2100000A","attached":true}`
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
			"/device/attach @3.75s", "/device/check @8.75s", "/device/detach @10s", "/device/attach @11s", "/device/detach @11s",
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

// TestReattachAfterGatewayLoss checks that an attached device finds out that its gateway
// went away (a failed check) or forgot it (a check answered "not attached"), and attaches
// again with backoff, recording the state and the last error, on a fake clock.
func TestReattachAfterGatewayLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var calls []string
		token, n := "", 0
		gw := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			var body map[string]string
			_ = json.NewDecoder(req.Body).Decode(&body)
			mu.Lock()
			defer mu.Unlock()
			now := time.Since(start)
			calls = append(calls, req.URL.Path+" @"+now.String())
			if now >= 4*time.Second && now < 7*time.Second { // the gateway is down
				token = ""
				return nil, errors.New("connection refused")
			}
			answer := ""
			switch req.URL.Path {
			case "/device/attach":
				n++
				token = fmt.Sprintf("t%d", n)
				answer = fmt.Sprintf(`{"pin":"2100000A","queued":0,"link_token":%q}`, token)
			case "/device/check":
				answer = fmt.Sprintf(`{"pin":"2100000A","attached":%v}`, body["link_token"] == token && token != "")
			default:
				answer = `{"pin":"2100000A"}`
			}
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(answer)), Header: http.Header{}, Request: req}, nil
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

		time.Sleep(9 * time.Second)
		synctest.Wait()
		if st := h.LinkStatus(); st.State != handset.LinkAttached || st.Attaches != 2 || h.LinkToken() != "t2" ||
			st.LastError == nil || !strings.Contains(st.LastError.Reason, "connection refused") {
			t.Fatalf("LinkStatus = %+v, token %q; want attached a second time with the last error", st, h.LinkToken())
		}
		// A gateway that restarted and is up again answers the check with "not attached".
		mu.Lock()
		token = ""
		mu.Unlock()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v", err)
		}
		want := []string{
			"/device/attach @0s", "/device/check @5s", "/device/attach @5s", "/device/attach @5.25s",
			"/device/attach @5.75s", "/device/attach @6.75s", "/device/attach @8.75s",
			"/device/check @13.75s", "/device/attach @13.75s", "/device/detach @14s",
		}
		mu.Lock()
		defer mu.Unlock()
		if strings.Join(calls, ", ") != strings.Join(want, ", ") {
			t.Fatalf("gateway calls =\n%s\nwant\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
		}
		if st := h.LinkStatus(); st.Attaches != 3 || st.LastError == nil || !strings.Contains(st.LastError.Reason, "no longer holds") {
			t.Fatalf("LinkStatus = %+v, want 3 attaches and the gateway's answer as the last error", st)
		}
		var states []string
		for _, e := range h.Events(0) {
			if e.Kind == handset.EventGateway {
				states = append(states, e.Fields["state"])
			}
		}
		if got, want := strings.Join(states, " "), "attached detached retrying attached detached attached detached"; got != want {
			t.Fatalf("gateway events = %s, want %s", got, want)
		}
	})
}
