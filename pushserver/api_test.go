package pushserver

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestEnqueueAPI drives the API the BIS push package uses: Enqueue per source, PushState,
// Cancel, and a mounted handler that identifies the device by its link token.
func TestEnqueueAPI(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	var s *Server
	mss := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pin, ok := s.LinkedPIN(r.Header.Get("X-Bbsim-Link-Token"))
		if !ok {
			http.Error(w, "unknown device", http.StatusForbidden)
			return
		}
		io.WriteString(w, "rc=200 pin="+pin)
	})
	s, base := startServer(t, Options{Devices: seedDevices(), Mount: map[string]http.Handler{"/mss/": mss}})
	ctx := t.Context()
	sub := Submission{PushID: "bis-1", Source: "app1", PINs: []string{"2100000a"}, Port: 33333,
		Headers: http.Header{"Content-Type": {"text/plain"}, "Push-Message-Id": {"m1"}}, Body: []byte("hello app"), Reliability: "confirmed"}
	if err := s.Enqueue(ctx, sub); err != nil {
		t.Fatalf("Enqueue = %v", err)
	}
	tests := []struct {
		name string
		sub  Submission
		want error
	}{
		{"duplicate in source", sub, ErrDuplicate},
		{"no recipients", Submission{PushID: "x", Source: "app1"}, ErrBadSubmission},
		{"bad pin", Submission{PushID: "y", Source: "app1", PINs: []string{"nothex!!"}}, ErrBadSubmission},
		{"bad reliability", Submission{PushID: "z", Source: "app1", PINs: []string{pinA}, Reliability: "maybe"}, ErrBadSubmission},
		{"after not before before", Submission{PushID: "w", Source: "app1", PINs: []string{pinA},
			DeliverAfter: time.Now().Add(2 * time.Hour), DeliverBefore: time.Now().Add(time.Hour)}, ErrBadSubmission},
		{"same id other source", Submission{PushID: "bis-1", Source: "app2", PINs: []string{pinB}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Enqueue(ctx, tc.sub); !errors.Is(err, tc.want) {
				t.Fatalf("Enqueue(%s) = %v, want %v", tc.sub.PushID, err, tc.want)
			}
		})
	}
	ps, err := s.PushState("bis-1")
	if err != nil || ps.Source != "app2" || len(ps.Recipients) != 1 || ps.Recipients[0].PIN != pinB {
		t.Fatalf("PushState(bis-1) = %+v, %v; want the latest (app2)", ps, err)
	}
	if _, err := s.PushState("nope"); err != ErrNotFound {
		t.Fatalf("PushState(nope) = %v", err)
	}
	if err := s.Cancel("bis-1"); err != nil {
		t.Fatalf("Cancel = %v", err)
	}
	tok := attach(t, base, rc, pinA)
	d := rc.wait(t, 1)[0]
	if d.Port != 33333 || d.Header.Get("Push-Message-Id") != "m1" || d.Header.Get("X-RIM-Push-Reliability-Mode") != "application" {
		t.Fatalf("delivery = %+v", d)
	}
	for _, tc := range []struct {
		token string
		want  int
	}{{tok, 200}, {"forged", 403}, {"", 403}} {
		req, _ := http.NewRequest("GET", base+"/mss/PD_subReg?serviceid=x", nil)
		if tc.token != "" {
			req.Header.Set("X-Bbsim-Link-Token", tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || (tc.want == 200 && string(b) != "rc=200 pin="+pinA) {
			t.Fatalf("mounted /mss/ with token %q = %d %q, want %d", tc.token, resp.StatusCode, b, tc.want)
		}
	}
}

// A service built after the server (as the BIS push service is, since it needs the server)
// mounts its handler and hears results through Mount and OnResult.
func TestMountAndOnResultAfterNew(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	s, base, served := startServing(t, Options{Devices: seedDevices()})
	results := make(chan Result, 10)
	s.Mount("/later/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "mounted") }))
	s.OnResult(func(r Result) { results <- r })
	resp, err := http.Get(base + "/later/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "mounted" {
		t.Fatalf("GET /later/x = %d %q, want 200 mounted", resp.StatusCode, body)
	}
	rc.setAnswer(func(string, http.Header) (int, string) { return 404, "4502" })
	attach(t, base, rc, pinA)
	rimPush(t, base, "DESTINATION=2100000A&PORT=3000", map[string]string{"X-RIM-Push-ID": "later-1"}, []byte("x"))
	select {
	case r := <-results:
		if r.PushID != "later-1" || r.Code != 4502 {
			t.Fatalf("result = %+v, want later-1 4502", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no result after 30s")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve = %v, want http.ErrServerClosed", err)
	}
}

// Open's context bounds the PostgreSQL dial: against a server that accepts and never
// answers, Open returns with the context's error once it is cancelled, not after its own
// 20 s.
func TestOpenFollowsContext(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		s, err := Open(ctx, Options{DataDir: t.TempDir(), PushDB: "postgres://bbsim:pw@" + ln.Addr().String() + "/push?sslmode=disable"})
		if s != nil {
			s.Close()
		}
		done <- err
	}()
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(30 * time.Second):
		t.Fatal("Open did not dial the store within 30s")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Open = %v, want context.Canceled", err)
		}
		if el := time.Since(start); el > 15*time.Second {
			t.Fatalf("Open returned after %v, not with its context", el)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Open still dialling 15s after its context ended")
	}
}
