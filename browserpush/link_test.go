package browserpush

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bbsim/bbsim/handset"
)

type gwCall struct {
	path string
	body map[string]any
}

// fakeGateway records device-link calls; it refuses the first failAttach attaches.
type fakeGateway struct {
	srv        *httptest.Server
	calls      chan gwCall
	failAttach atomic.Int32
	tokens     atomic.Int32
}

func newFakeGateway(t *testing.T) *fakeGateway {
	g := &fakeGateway{calls: make(chan gwCall, 64)}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body map[string]any
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", 400)
			return
		}
		if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"error":%q}`, err.Error())
			return
		}
		g.calls <- gwCall{path: req.URL.Path, body: body}
		switch req.URL.Path {
		case "/device/attach":
			if g.failAttach.Add(-1) >= 0 {
				http.Error(w, `{"error":"busy"}`, 503)
				return
			}
			n := g.tokens.Add(1)
			secret := ""
			if n == 1 { // the PIN's first attach: the gateway issues its device secret
				secret = `,"device_secret":"sec-1"`
			}
			fmt.Fprintf(w, `{"pin":%q,"queued":0,"link_token":"tok-%d"%s}`, body["pin"], n, secret)
		case "/device/detach", "/device/ack":
			fmt.Fprint(w, `{}`)
		default:
			http.NotFound(w, req)
		}
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeGateway) next(t *testing.T, path string) map[string]any {
	t.Helper()
	select {
	case c := <-g.calls:
		if c.path != path {
			t.Fatalf("gateway got %s %v, want %s", c.path, c.body, path)
		}
		return c.body
	case <-time.After(10 * time.Second):
		t.Fatalf("gateway: no %s", path)
	}
	return nil
}

func TestGatewayLink(t *testing.T) {
	t.Parallel()
	g := newFakeGateway(t)
	g.failAttach.Store(2) // the agent retries with backoff
	h, err := handset.New(handset.Options{PIN: "2100000a", Email: "alice@bbsim.test"})
	if err != nil {
		t.Fatal(err)
	}
	r, _, url := startReceiver(t, Options{Handset: h, Gateway: g.srv.URL + "/"})
	stop := runAgent(t, r)

	// The first attach proposes a device secret the handset made and kept, the same on
	// every retry, so an attach whose answer was lost still proves the device.
	var proposed any
	for range 3 {
		body := g.next(t, "/device/attach")
		if proposed == nil {
			proposed = body["device_secret"]
		}
		want := map[string]any{"pin": "2100000A", "email": "alice@bbsim.test", "receiver_url": url, "software": handset.DefaultSoftware, "device_secret": proposed}
		if s, _ := proposed.(string); len(s) != 64 || fmt.Sprint(body) != fmt.Sprint(want) {
			t.Fatalf("attach = %v, want %v", body, want)
		}
	}
	waitFor(t, func() bool { return h.LinkToken() == "tok-1" }, "link token tok-1")

	// Application reliability: transport 200, then the ack.
	code, _ := post(t, nil, url, map[string]string{"X-RIM-Push-Type": "Browser-Message", "X-RIM-Push-ID": "p-1",
		"X-RIM-Push-Reliability-Mode": "application", "X-Bbsim-Packet": "0/1"}, []byte("hi"))
	if code != 200 {
		t.Fatalf("push = %d", code)
	}
	ack := g.next(t, "/device/ack")
	if fmt.Sprint(ack) != fmt.Sprint(map[string]any{"pin": "2100000A", "push_id": "p-1", "code": 1000.0, "link_token": "tok-1", "device_secret": "sec-1"}) {
		t.Fatalf("ack = %v", ack)
	}
	// A push whose packets name its source: the ack names it too.
	code, _ = post(t, nil, url, map[string]string{"X-RIM-Push-Type": "Browser-Message", "X-RIM-Push-ID": "p-1",
		"X-RIM-Push-Reliability-Mode": "application", "X-Bbsim-Packet": "0/1", "X-Bbsim-Push-Source": "chat"}, []byte("hi"))
	if code != 200 {
		t.Fatalf("push = %d", code)
	}
	ack = g.next(t, "/device/ack")
	if fmt.Sprint(ack) != fmt.Sprint(map[string]any{"pin": "2100000A", "push_id": "p-1", "source": "chat", "code": 1000.0, "link_token": "tok-1", "device_secret": "sec-1"}) {
		t.Fatalf("ack of chat's p-1 = %v", ack)
	}
	// Transport reliability: no ack.
	code, _ = post(t, nil, url, map[string]string{"X-RIM-Push-Type": "Browser-Message", "X-RIM-Push-ID": "p-2",
		"X-RIM-Push-Reliability-Mode": "transport"}, []byte("hi"))
	if code != 200 {
		t.Fatalf("push = %d", code)
	}

	// A downgrade while attached tells the gateway at once; software before 4.0 does not
	// acknowledge at the application level.
	if _, err := h.SetSoftware("3.8.0"); err != nil {
		t.Fatal(err)
	}
	if body := g.next(t, "/device/attach"); body["software"] != "3.8.0" {
		t.Fatalf("attach after the downgrade = %v, want software 3.8.0", body)
	}
	waitFor(t, func() bool { return h.LinkToken() == "tok-2" }, "link token tok-2")
	code, _ = post(t, nil, url, map[string]string{"X-RIM-Push-Type": "Browser-Message", "X-RIM-Push-ID": "p-3",
		"X-RIM-Push-Reliability-Mode": "application", "X-Bbsim-Packet": "0/1"}, []byte("hi"))
	if code != 200 {
		t.Fatalf("push = %d", code)
	}

	h.SetCoverage(false)
	if body := g.next(t, "/device/detach"); fmt.Sprint(body) != fmt.Sprint(map[string]any{"pin": "2100000A", "link_token": "tok-2", "device_secret": "sec-1"}) {
		t.Fatalf("detach = %v (an ack from 3.8.0?)", body)
	}
	waitFor(t, func() bool { return h.LinkToken() == "" }, "link token dropped")
	h.SetCoverage(true)
	if body := g.next(t, "/device/attach"); body["device_secret"] != "sec-1" {
		t.Fatalf("attach after the first = %v, want the device secret the first was given", body)
	}
	waitFor(t, func() bool { return h.LinkToken() == "tok-3" }, "link token tok-3")

	stop()
	g.next(t, "/device/detach")
	select {
	case c := <-g.calls:
		t.Fatalf("unexpected gateway call %v", c)
	default:
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sendPackets delivers body as the gateway does: count packets, optionally in parallel.
func sendPackets(t *testing.T, url, pushID string, hdr map[string]string, body []byte, size int, order []int) []int {
	t.Helper()
	var chunks [][]byte
	for off := 0; off < len(body) || off == 0; off += size {
		chunks = append(chunks, body[off:min(off+size, len(body))])
		if len(body) == 0 {
			break
		}
	}
	if order == nil {
		for i := range chunks {
			order = append(order, i)
		}
	}
	codes := make([]int, len(chunks))
	var wg sync.WaitGroup
	for _, i := range order {
		h := map[string]string{"X-RIM-Push-ID": pushID, "X-Bbsim-Packet": fmt.Sprintf("%d/%d", i, len(chunks)),
			"X-Bbsim-Push-Length": fmt.Sprint(len(body))}
		for k, v := range hdr {
			h[k] = v
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = post(t, nil, url, h, chunks[i])
		}()
		time.Sleep(2 * time.Millisecond) // arrival order, not a readiness wait
	}
	wg.Wait()
	return codes
}

func TestPacketReassembly(t *testing.T) {
	t.Parallel()
	_, h, url := startReceiver(t, Options{})
	page := "<p>" + strings.Repeat("word ", 5000) + "end</p>"
	hdr := map[string]string{"X-RIM-Push-Type": "Browser-Message", "X-RIM-Push-Title": "Big", "Content-Type": "text/html"}
	tests := []struct {
		name  string
		id    string
		order []int
	}{
		{"in order", "in-order", nil},
		{"last first", "last-first", []int{3, 0, 1, 2}},
		{"shuffled", "shuffled", []int{2, 0, 3, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.Messages())
			codes := sendPackets(t, url, tc.id, hdr, []byte(page), 8192, tc.order)
			if len(codes) != 4 {
				t.Fatalf("%d packets, want 4", len(codes))
			}
			for i, c := range codes {
				if c != 200 {
					t.Fatalf("packet %d = %d", i, c)
				}
			}
			ms := h.Messages()
			if len(ms) != before+1 {
				t.Fatalf("%d messages, want %d", len(ms), before+1)
			}
			if got := ms[0]; got.Size != len(page) || !strings.HasSuffix(strings.TrimSpace(got.Text), "end") {
				t.Fatalf("message for %s = %+v", tc.id, got)
			}
		})
	}
	t.Run("retry of a stored push", func(t *testing.T) {
		before := len(h.Messages())
		codes := sendPackets(t, url, "in-order", hdr, []byte(page), 8192, nil)
		for i, c := range codes {
			if c != 200 {
				t.Fatalf("packet %d = %d", i, c)
			}
		}
		if n := len(h.Messages()); n != before {
			t.Fatalf("retry added messages: %d -> %d", before, n)
		}
	})
	t.Run("same push id from another initiator", func(t *testing.T) {
		before := len(h.Messages())
		other := map[string]string{"X-RIM-Push-Type": "Browser-Message", "X-RIM-Push-Title": "Other", "Content-Type": "text/html"}
		for i, c := range sendPackets(t, url, "in-order", other, []byte(page), 8192, nil) {
			if c != 200 {
				t.Fatalf("packet %d = %d", i, c)
			}
		}
		if ms := h.Messages(); len(ms) != before+1 || ms[0].Subject != "Other" {
			t.Fatalf("another initiator's push with a used ID was not stored")
		}
	})
	t.Run("wrong length", func(t *testing.T) {
		before := len(h.Messages())
		code, _ := post(t, nil, url, map[string]string{"X-RIM-Push-ID": "bad-len", "X-Bbsim-Packet": "0/2",
			"X-Bbsim-Push-Length": "10", "X-RIM-Push-Type": "Browser-Message"}, []byte("abc"))
		if code != 200 {
			t.Fatalf("first packet = %d", code)
		}
		code, status := post(t, nil, url, map[string]string{"X-RIM-Push-ID": "bad-len", "X-Bbsim-Packet": "1/2",
			"X-Bbsim-Push-Length": "10", "X-RIM-Push-Type": "Browser-Message"}, []byte("abc"))
		if code != 400 || status != "400" {
			t.Fatalf("last packet = %d %q, want 400 400", code, status)
		}
		if n := len(h.Messages()); n != before {
			t.Fatalf("rejected push added a message")
		}
	})
	t.Run("missing packet", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte("tail")))
		req.Header.Set("X-RIM-Push-ID", "gap")
		req.Header.Set("X-Bbsim-Packet", "1/2")
		req.Header.Set("X-RIM-Push-Type", "Browser-Message")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			drain(resp.Body)
			t.Fatalf("last packet without the first answered %d, want it to wait", resp.StatusCode)
		}
	})
}

// Push ids are unique per source only: two sources' multi-packet pushes with one id,
// their packets interleaved, arrive whole and apart.
func TestPacketReassemblyBySource(t *testing.T) {
	t.Parallel()
	_, h, url := startReceiver(t, Options{})
	bodies := map[string]string{"chat": "chat-first-half|chat-second-half", "other": "othr-first-half|othr-second-half"}
	send := func(source string, index int) {
		t.Helper()
		body := bodies[source]
		half := len(body) / 2
		part := []byte(body[:half])
		if index == 1 {
			part = []byte(body[half:])
		}
		code, status := post(t, nil, url, map[string]string{"X-RIM-Push-ID": "same-id", "X-Bbsim-Push-Source": source,
			"X-Bbsim-Packet": fmt.Sprintf("%d/2", index), "X-Bbsim-Push-Length": fmt.Sprint(len(body)),
			"X-RIM-Push-Type": "Browser-Message", "X-RIM-Push-Title": source, "Content-Type": "text/plain"}, part)
		if code != 200 {
			t.Fatalf("%s packet %d/2 = %d %s", source, index, code, status)
		}
	}
	want := func(n int, source string) {
		t.Helper()
		ms := h.Messages()
		if len(ms) != n || ms[0].Subject != source || strings.TrimSpace(ms[0].Text) != bodies[source] {
			t.Fatalf("after %s's last packet: %d messages, newest %q %q; want %d, %q %q", source, len(ms), ms[0].Subject, ms[0].Text, n, source, bodies[source])
		}
	}
	send("chat", 0)
	send("other", 0)
	send("chat", 1)
	want(1, "chat")
	send("other", 1)
	want(2, "other")
}
