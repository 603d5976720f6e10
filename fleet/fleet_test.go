package fleet

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/pushinit"
	"github.com/bbsim/bbsim/pushserver"
)

// startFleet runs a push server and a fleet of n handsets attached to it.
func startFleet(t *testing.T, n int, maxActive int) (*Fleet, string) {
	t.Helper()
	gateway := startGateway(t, pushserver.Options{DataDir: t.TempDir(), MaxActive: maxActive})
	f, _ := runFleet(t, Options{Count: n, Gateway: gateway})
	waitUntil(t, 30*time.Second, func() bool {
		for _, c := range f.Counters() {
			if !c.Attached {
				return false
			}
		}
		return true
	})
	return f, gateway
}

// startGateway serves a push server on loopback for the test and returns its URL.
func startGateway(t *testing.T, opts pushserver.Options) string {
	t.Helper()
	ps, err := pushserver.Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ps.Serve(ln)
	t.Cleanup(func() { ps.Close() })
	return "http://" + ln.Addr().String()
}

// serveFleet serves f on loopback for the test and returns its URL.
func serveFleet(t *testing.T, f *Fleet) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go f.Serve(ln)
	return "http://" + ln.Addr().String()
}

// runFleet starts a fleet on its own listener (opts.BaseURL is set to it) and runs it
// until the returned stop, which the test's cleanup calls too.
func runFleet(t *testing.T, opts Options) (*Fleet, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.BaseURL = "http://" + ln.Addr().String()
	f, err := New(opts)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	go f.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done; f.Close() }
	t.Cleanup(stop)
	return f, stop
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFleetBulkPush(t *testing.T) {
	const n = 200
	f, gateway := startFleet(t, n, 0)
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(gateway, "http://"))
	p, _ := strconv.Atoi(port)
	var targets []pushinit.Target
	for _, m := range f.Members() {
		targets = append(targets, pushinit.Target{Host: host, Port: p, PIN: m.Handset.PIN()})
	}
	res := (&pushinit.Client{}).Bulk(t.Context(), pushinit.Push{Type: "message", Title: "load", Body: []byte("<p>hello</p>")}, targets, 50, nil)
	for i, r := range res {
		if !r.OK() {
			t.Fatalf("push %d: %v", i, r.Err)
		}
	}
	waitUntil(t, 30*time.Second, func() bool {
		for _, c := range f.Counters() {
			if c.Messages != 1 {
				return false
			}
		}
		return true
	})
}

func TestFleetRouting(t *testing.T) {
	f, err := New(Options{Count: 3, FirstPIN: "2B0000FE"})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	base := serveFleet(t, f)

	// A direct push to the second handset, as curl would send it.
	req, _ := http.NewRequest("POST", base+"/d/2b0000ff/", strings.NewReader("<p>direct</p>"))
	req.Header.Set("Content-Type", "text/html")
	req.Header.Set("X-RIM-Push-Type", "Browser-Message")
	req.Header.Set("X-RIM-Push-Title", "direct")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("push: %s", resp.Status)
	}

	var dev struct {
		PIN   string `json:"pin"`
		Email string `json:"email"`
	}
	getJSON(t, base+"/h/2B0000FF/api/v1/device", &dev)
	if dev.PIN != "2B0000FF" || dev.Email != "user2@bbsim.test" {
		t.Fatalf("device %+v", dev)
	}
	var msgs []struct{ Subject string }
	getJSON(t, base+"/h/2B0000FF/api/v1/messages", &msgs)
	if len(msgs) != 1 || msgs[0].Subject != "direct" {
		t.Fatalf("messages %+v", msgs)
	}
	var counters []Counter
	getJSON(t, base+"/api/v1/fleet", &counters)
	if len(counters) != 3 || counters[2].PIN != "2B000100" {
		t.Fatalf("counters %+v", counters)
	}
	for i, c := range counters {
		if want := map[int]int{1: 1}[i]; c.Messages != want {
			t.Errorf("handset %s: %d messages, want %d", c.PIN, c.Messages, want)
		}
	}
	resp, err = http.Post(base+"/d/21FFFFFF/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown PIN: %s", resp.Status)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func TestFleetOptions(t *testing.T) {
	tests := []struct {
		o    Options
		want string
	}{
		{Options{FirstPIN: "xyz"}, `fleet: first PIN "xyz" is not 8 hex digits`},
		{Options{FirstPIN: "FFFFFFFF", Count: 2}, "fleet: 2 PINs from FFFFFFFF run past FFFFFFFF"},
		{Options{Gateway: "http://127.0.0.1:1"}, "fleet: a gateway needs the fleet's BaseURL"},
		{Options{Software: []string{"9.0"}}, `fleet: device software "9.0": BlackBerry Device Software ran from 3.x to 7.x`},
		{Options{Count: 2, Software: []string{"3B000000=6.0.0.141"}}, `fleet: device software "3B000000=6.0.0.141": 3B000000 is not a PIN of this fleet (2A000000 to 2A000001)`},
	}
	for _, tt := range tests {
		if _, err := New(tt.o); err == nil || err.Error() != tt.want {
			t.Errorf("New(%+v) = %v, want %q", tt.o, err, tt.want)
		}
	}
}

func TestFleetSoftwareMix(t *testing.T) {
	f, err := New(Options{Count: 5, Software: []string{"6.0.0.141,7.1.0", "2a000004=5.0.0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := []string{"6.0.0.141", "7.1.0", "6.0.0.141", "7.1.0", "5.0.0"}
	for i, m := range f.Members() {
		if got := m.Handset.Device().Software.Version; got != want[i] {
			t.Errorf("handset %s software = %s, want %s", m.Handset.PIN(), got, want[i])
		}
	}
}
