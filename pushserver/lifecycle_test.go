package pushserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/pgtest"
)

// TestOpenContextEndsEverything: New does no I/O and starts nothing; Open starts delivery
// on its context, and when that context ends every goroutine the gateway started stops
// (reaper, device delivery, its HTTP client's connections, the store's writer and, with a
// shared PostgreSQL store, the hand-over listener and the sweeper), as goroutines counted
// before New and after the cancel show. It runs alone (no t.Parallel), so that no other
// test's goroutines come and go meanwhile.
func TestOpenContextEndsEverything(t *testing.T) {
	tests := []struct {
		name   string
		pushDB func(t *testing.T) string
	}{
		{"SQLite", func(*testing.T) string { return "" }},
		{"PostgreSQL", func(t *testing.T) string { return pgtest.Start(t).NewDatabase(t) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pushDB := tt.pushDB(t)
			rc := newReceiver(t)
			notified := make(chan struct{}, 1)
			notify := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case notified <- struct{}{}:
				default:
				}
			}))
			t.Cleanup(notify.Close)
			dir := filepath.Join(t.TempDir(), "push")
			before := runtime.NumGoroutine()

			s, err := New(Options{DataDir: dir, PushDB: pushDB, Devices: seedDevices()})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("New touched the data directory (%v); it does no I/O", err)
			}
			if n, ok := goroutinesBackTo(before, 2*time.Second); !ok {
				t.Fatalf("%d goroutines after New, %d before: it starts none\n%s", n, before, goroutineDump())
			}
			if err := s.Enqueue(t.Context(), Submission{PushID: "early", PINs: []string{pinA}, Body: []byte("x")}); !errors.Is(err, ErrNotOpen) {
				t.Fatalf("Enqueue before Open = %v, want %v", err, ErrNotOpen)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Serve(ln); !errors.Is(err, ErrNotOpen) {
				t.Fatalf("Serve before Open = %v, want %v", err, ErrNotOpen)
			}

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if err := s.Open(ctx); err != nil {
				t.Fatalf("Open: %v", err)
			}
			// Attached through the handler (Serve's goroutines are Serve's, ended by
			// Shutdown or Close), then a push delivered with a result notification.
			b, _ := json.Marshal(map[string]string{"pin": pinA, "email": "a@bbsim.test", "receiver_url": rc.url(pinA)})
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/device/attach", bytes.NewReader(b)))
			if w.Code != http.StatusOK {
				t.Fatalf("attach = %d %s", w.Code, w.Body)
			}
			if err := s.Enqueue(t.Context(), Submission{PushID: "p1", PINs: []string{pinA}, Port: 7874, Body: []byte("hi"), NotifyURL: notify.URL}); err != nil {
				t.Fatalf("Enqueue: %v", err)
			}
			rc.wait(t, 1)
			select {
			case <-notified:
			case <-time.After(20 * time.Second):
				t.Fatal("no result notification within 20s")
			}
			if n := runtime.NumGoroutine(); n <= before {
				t.Fatalf("%d goroutines after Open and a delivery, %d before New: the count shows nothing", n, before)
			}

			cancel()
			if n, ok := goroutinesBackTo(before, 20*time.Second); !ok {
				t.Fatalf("%d goroutines 20s after Open's context ended, %d before New:\n%s", n, before, goroutineDump())
			}
			if err := s.Enqueue(t.Context(), Submission{PushID: "late", PINs: []string{pinA}, Body: []byte("x")}); err == nil {
				t.Fatal("Enqueue after Open's context ended succeeded")
			}
		})
	}
}

// goroutinesBackTo polls the number of goroutines until it is at most want, or within has
// passed: goroutines of earlier tests (timers firing, connections closing) may come and
// go meanwhile, but one left running stays counted.
func goroutinesBackTo(want int, within time.Duration) (int, bool) {
	deadline := time.Now().Add(within)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return n, true
		}
		if time.Now().After(deadline) {
			return n, false
		}
		time.Sleep(10 * time.Millisecond) // polling a count: there is no event to wait on
	}
}

func goroutineDump() string {
	var b strings.Builder
	pprof.Lookup("goroutine").WriteTo(&b, 1)
	return b.String()
}
