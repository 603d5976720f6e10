package pushserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbsim/bbsim/rim"
	"github.com/bbsim/bbsim/rim/pap"
)

// delivery is one push reassembled by the test receiver.
type delivery struct {
	PIN, PushID string
	Port        int
	Header      http.Header
	Body        []byte
	Packets     int
}

// receiver implements the receiver side of docs/device-link.md for many devices behind one
// listener (http://host/d/<PIN>/), reassembling packets.
type receiver struct {
	t   testing.TB
	srv *httptest.Server
	got chan delivery

	mu      sync.Mutex
	partial map[string]map[int][]byte
	answer  func(pin string, h http.Header) (status int, pushStatus string)
	// secrets: PIN -> the device secret its first attach was given. Its own lock: a test's
	// answer function, called with mu held, may attach.
	smu     sync.Mutex
	secrets map[string]string
}

func newReceiver(t testing.TB) *receiver { return newReceiverOn(t, nil) }

// newReceiverOn is newReceiver serving on wrap's listener around its own (nil: its own).
func newReceiverOn(t testing.TB, wrap func(net.Listener) net.Listener) *receiver {
	rc := &receiver{t: t, got: make(chan delivery, 100000), partial: map[string]map[int][]byte{}, secrets: map[string]string{}}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	if wrap != nil {
		rc.srv.Listener = wrap(rc.srv.Listener)
	}
	rc.srv.Start()
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) url(pin string) string { return rc.srv.URL + "/d/" + pin + "/" }

// secret returns the device secret the gateway issued to pin, "" before its first attach.
func (rc *receiver) secret(pin string) string {
	rc.smu.Lock()
	defer rc.smu.Unlock()
	return rc.secrets[pin]
}

// proved adds pin's proof of identity (its device secret) to a device link request.
func (rc *receiver) proved(pin string, req map[string]any) map[string]any {
	req["device_secret"] = rc.secret(pin)
	return req
}

func (rc *receiver) setAnswer(f func(pin string, h http.Header) (int, string)) {
	rc.mu.Lock()
	rc.answer = f
	rc.mu.Unlock()
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	pin := strings.Trim(strings.TrimPrefix(r.URL.Path, "/d/"), "/")
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := r.Header.Get("X-RIM-Push-ID")
	var idx, n int
	if _, err := fmt.Sscanf(r.Header.Get("X-Bbsim-Packet"), "%d/%d", &idx, &n); err != nil || n < 1 || idx >= n || id == "" {
		w.Header().Set("X-RIM-Push-Status", "400")
		http.Error(w, "bad packet headers", http.StatusBadRequest)
		return
	}
	key := pin + "/" + id
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.partial[key] == nil {
		rc.partial[key] = map[int][]byte{}
	}
	rc.partial[key][idx] = body
	if idx != n-1 {
		w.WriteHeader(http.StatusOK)
		return
	}
	var all []byte
	for i := 0; i < n; i++ {
		b, ok := rc.partial[key][i]
		if !ok {
			w.Header().Set("X-RIM-Push-Status", "400")
			http.Error(w, fmt.Sprintf("packet %d missing", i), http.StatusBadRequest)
			return
		}
		all = append(all, b...)
	}
	delete(rc.partial, key)
	if want, _ := strconv.Atoi(r.Header.Get("X-Bbsim-Push-Length")); want != len(all) {
		w.Header().Set("X-RIM-Push-Status", "400")
		http.Error(w, "length mismatch", http.StatusBadRequest)
		return
	}
	if rc.answer != nil {
		if status, ps := rc.answer(pin, r.Header); status != 0 && status != 200 {
			if ps != "" {
				w.Header().Set("X-RIM-Push-Status", ps)
			}
			http.Error(w, "refused", status)
			return
		}
	}
	port, _ := strconv.Atoi(r.Header.Get("X-RIM-Push-Dest-Port"))
	rc.got <- delivery{PIN: pin, PushID: id, Port: port, Header: r.Header.Clone(), Body: all, Packets: n}
	w.WriteHeader(http.StatusOK)
}

func (rc *receiver) wait(t testing.TB, n int) []delivery {
	t.Helper()
	var out []delivery
	timeout := time.After(20 * time.Second)
	for len(out) < n {
		select {
		case d := <-rc.got:
			out = append(out, d)
		case <-timeout:
			t.Fatalf("got %d deliveries, want %d", len(out), n)
		}
	}
	return out
}

// none asserts no further delivery arrives within d.
func (rc *receiver) none(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case x := <-rc.got:
		t.Fatalf("unexpected delivery of %s to %s", x.PushID, x.PIN)
	case <-time.After(d):
	}
}

// notifications collects result notifications (RIM headers or PAP XML bodies).
type notifications struct {
	srv *httptest.Server
	got chan notice
}

type notice struct {
	PushID, Dest, Status string
	Body                 string
}

func newNotifications(t testing.TB) *notifications {
	n := &notifications{got: make(chan notice, 10000)}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		n.got <- notice{PushID: r.Header.Get("X-RIM-Push-ID"), Dest: r.Header.Get("X-RIM-Push-Destination"), Status: r.Header.Get("X-RIM-Push-Status"), Body: string(b)}
	}))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *notifications) wait(t testing.TB, k int) []notice {
	t.Helper()
	var out []notice
	timeout := time.After(20 * time.Second)
	for len(out) < k {
		select {
		case x := <-n.got:
			out = append(out, x)
		case <-timeout:
			t.Fatalf("got %d notifications, want %d", len(out), k)
		}
	}
	return out
}

// startServer runs a Server on a loopback listener and returns it and its base URL.
func startServer(t testing.TB, opts Options) (*Server, string) {
	t.Helper()
	s, base, _ := startServing(t, opts)
	t.Cleanup(func() { s.Close() })
	return s, base
}

// startServing starts a server on a loopback port and leaves ending it to the test (for
// tests of Close and Shutdown); served receives what Serve returned.
func startServing(t testing.TB, opts Options) (s *Server, base string, served <-chan error) {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	s, err := Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() { ch <- s.Serve(ln) }()
	return s, "http://" + ln.Addr().String(), ch
}

func postJSON(t testing.TB, url string, v any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(v)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func attach(t testing.TB, base string, rc *receiver, pin string) string {
	t.Helper()
	tok, err := attachErr(base, rc, pin)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// attachErr attaches pin's receiver and returns its link token; it may run on any
// goroutine.
func attachErr(base string, rc *receiver, pin string) (string, error) {
	return attachSoftware(base, rc, pin, "")
}

// attachSoftware is attachErr for a device that reports its software version.
func attachSoftware(base string, rc *receiver, pin, software string) (string, error) {
	req := map[string]string{"pin": pin, "email": strings.ToLower(pin) + "@bbsim.test", "receiver_url": rc.url(pin),
		"device_secret": rc.secret(pin)}
	if software != "" {
		req["software"] = software
	}
	b, _ := json.Marshal(req)
	resp, err := http.Post(base+"/device/attach", "application/json", bytes.NewReader(b))
	if err != nil {
		return "", fmt.Errorf("attach %s: %w", pin, err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("attach %s = %d %v", pin, resp.StatusCode, m)
	}
	if secret, _ := m["device_secret"].(string); secret != "" {
		rc.smu.Lock()
		if rc.secrets == nil {
			rc.secrets = map[string]string{}
		}
		rc.secrets[pin] = secret
		rc.smu.Unlock()
	}
	tok, _ := m["link_token"].(string)
	return tok, nil
}

func detach(t testing.TB, base string, rc *receiver, pin string) {
	t.Helper()
	if code, m := postJSON(t, base+"/device/detach", rc.proved(pin, map[string]any{"pin": pin})); code != 200 {
		t.Fatalf("detach %s = %d %v", pin, code, m)
	}
}

// rimPush sends a RIM push with net/http and returns the status and body.
func rimPush(t testing.TB, base, query string, h map[string]string, body []byte) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/push?"+query, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /push: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func getJSON(t testing.TB, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if v != nil {
		json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

// waitState polls the push status API until the recipient reaches state.
func waitState(t testing.TB, s *Server, pushID, pin string, state rim.State) RecipientStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last PushStatus
	for time.Now().Before(deadline) {
		ps, err := s.PushState(pushID)
		if err == nil {
			last = ps
			for _, r := range ps.Recipients {
				if r.PIN == pin && r.State == state {
					return r
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("push %s for %s never reached %s: %+v", pushID, pin, state, last)
	return RecipientStatus{}
}

// DOCTYPEs and timestamps as initiators write them.
var (
	papDoctype20 = pap.Doctype(pap.Version20)
	papDoctype21 = pap.Doctype(pap.Version21)
)

const papTimeLayout = pap.TimeLayout
