package pushserver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/syncbuf"
	"github.com/bbsim/bbsim/rim"
)

const pinA, pinB, pinC = "2100000A", "2100000B", "2100000C"

func seedDevices() []Device {
	return []Device{{PIN: pinA, Email: "alice@bbsim.test"}, {PIN: pinB, Email: "bob@bbsim.test"}, {PIN: pinC, Email: "carol@bbsim.test"}}
}

func TestRIMPushTypesReachReceiver(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	nt := newNotifications(t)
	_, base := startServer(t, Options{Devices: seedDevices()})
	attach(t, base, rc, pinA)
	tests := []struct {
		name    string
		query   string
		headers map[string]string
		port    int
	}{
		{"channel", "DESTINATION=alice%40bbsim.test&PORT=7874&REQUESTURI=/", map[string]string{
			"X-RIM-Push-Type": "Browser-Channel", "X-RIM-Push-Title": "News", "X-RIM-Push-Channel-ID": "http://example.com/news",
			"X-RIM-Push-Unread-Icon-URL": "http://example.com/u.png", "X-RIM-Push-Read-Icon-URL": "http://example.com/r.png",
			"Content-Location": "http://example.com/news", "Content-Type": "text/html", "X-RIM-Push-Priority": "high",
			"X-Rim-Push-Delete-Url": "http://example.com/del", "X-RIM-Transcode-Content": "*/*"}, 7874},
		{"message", "DESTINATION=2100000a&PORT=7874&REQUESTURI=/", map[string]string{
			"x-rim-push-type": "browser-message", "X-RIM-Push-Title": "Hello", "Content-Type": "text/html",
			"Content-Location": "http://example.com/m"}, 7874},
		{"content", "DESTINATION=2100000A&PORT=7874", map[string]string{
			"X-RIM-Push-Type": "Browser-Content", "Content-Type": "text/html", "Content-Location": "http://example.com/c",
			"Expires": "Sun, 22 Nov 2026 20:00:00 GMT"}, 7874},
		{"channel-delete", "DESTINATION=2100000A&PORT=7874", map[string]string{
			"X-RIM-Push-Type": "Browser-Channel-Delete", "X-RIM-Push-Channel-ID": "http://example.com/news"}, 7874},
		{"application", "DESTINATION=2100000A&PORT=100", map[string]string{
			"Content-Type": "application/octet-stream", "X-Rim-Push-Reliability": "transport"}, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := "id-" + tc.name
			h := map[string]string{"X-RIM-Push-ID": id, "X-RIM-Push-NotifyURL": nt.srv.URL + "/n"}
			for k, v := range tc.headers {
				h[k] = v
			}
			body := []byte("<html><body>" + tc.name + "</body></html>")
			code, text, rh := rimPush(t, base, tc.query, h, body)
			if code != 200 || rh.Get("X-RIM-Push-ID") != id {
				t.Fatalf("POST /push = %d %q (id %q), want 200 with id %s", code, text, rh.Get("X-RIM-Push-ID"), id)
			}
			d := rc.wait(t, 1)[0]
			if d.PushID != id || d.PIN != pinA || d.Port != tc.port || !bytes.Equal(d.Body, body) {
				t.Fatalf("delivery = %s %s port %d %q, want %s %s port %d %q", d.PushID, d.PIN, d.Port, d.Body, id, pinA, tc.port, body)
			}
			for k, v := range tc.headers {
				if strings.EqualFold(k, "X-Rim-Push-Reliability") {
					continue
				}
				got := d.Header.Get(k)
				if k == "x-rim-push-type" {
					v = "Browser-Message"
				}
				if got != v {
					t.Errorf("delivered header %s = %q, want %q", k, got, v)
				}
			}
			if d.Header.Get("X-RIM-Push-Reliability-Mode") != "transport" || d.Header.Get("X-Bbsim-Packet") != "0/1" {
				t.Errorf("link headers = %v", d.Header)
			}
			if strings.Contains(tc.query, "REQUESTURI=/") && d.Header.Get("X-RIM-Push-Request-URI") != "/" {
				t.Errorf("X-RIM-Push-Request-URI = %q, want /", d.Header.Get("X-RIM-Push-Request-URI"))
			}
			n := nt.wait(t, 1)[0]
			if n.PushID != id || n.Status != "200" || n.Dest != pinA {
				t.Errorf("notification = %+v, want id %s status 200 dest %s", n, id, pinA)
			}
		})
	}
}

func TestRIMPushCurl(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required for this test (apt-get install curl)")
	}
	rc := newReceiver(t)
	_, base := startServer(t, Options{Devices: seedDevices()})
	attach(t, base, rc, pinB)
	out, err := exec.CommandContext(t.Context(), "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
		"-H", "X-RIM-Push-Title: From curl", "-H", "X-RIM-Push-Type: Browser-Message",
		"-H", "Content-Location: http://example.com/x", "-H", "Content-Type: text/html",
		"--data-binary", "<p>curl</p>",
		base+"/push?DESTINATION=bob%40bbsim.test&PORT=7874&REQUESTURI=/").CombinedOutput()
	if err != nil || string(out) != "200" {
		t.Fatalf("curl = %q, %v; want 200", out, err)
	}
	d := rc.wait(t, 1)[0]
	if d.PIN != pinB || string(d.Body) != "<p>curl</p>" || d.Header.Get("X-RIM-Push-Title") != "From curl" {
		t.Fatalf("delivery = %+v", d)
	}
}

func TestRIMPacketsAndFlowControl(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	_, base := startServer(t, Options{Devices: seedDevices(), PacketSize: 1024})
	attach(t, base, rc, pinA)
	body := bytes.Repeat([]byte("0123456789abcdef"), 3000) // 48000 bytes = 47 packets
	code, text, _ := rimPush(t, base, "DESTINATION=2100000A&PORT=7874", map[string]string{"Content-Type": "text/plain", "X-RIM-Push-ID": "big"}, body)
	if code != 200 {
		t.Fatalf("POST /push = %d %s", code, text)
	}
	d := rc.wait(t, 1)[0]
	if !bytes.Equal(d.Body, body) || d.Packets != 47 {
		t.Fatalf("reassembled %d bytes in %d packets, want %d in 47", len(d.Body), d.Packets, len(body))
	}
}

// TestLinkWindow watches the device link on the wire: a receiver that reads requests as
// they arrive and answers each only after a pause sees the gateway stop at 5 unanswered
// packets, all on one connection, in order.
func TestLinkWindow(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	type seen struct {
		conns, maxOut, packets int
		order                  []string
		body                   []byte
	}
	result := make(chan seen, 1)
	go func() {
		var sn seen
		defer func() { result <- sn }()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		sn.conns = 1
		go func() { // a second connection would be a window kept by parallel connections
			if c2, err := ln.Accept(); err == nil {
				c2.Close()
				t.Errorf("the gateway opened a second connection to the receiver")
			}
		}()
		var mu sync.Mutex
		received, answered := 0, 0
		arrived := make(chan string, 100)
		go func() {
			br := bufio.NewReader(c)
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					close(arrived)
					return
				}
				b, _ := io.ReadAll(req.Body)
				mu.Lock()
				received++
				sn.maxOut = max(sn.maxOut, received-answered)
				sn.body = append(sn.body, b...)
				mu.Unlock()
				arrived <- req.Header.Get("X-Bbsim-Packet")
			}
		}()
		for pk := range arrived {
			time.Sleep(10 * time.Millisecond) // the gateway fills its window meanwhile
			mu.Lock()
			answered++
			sn.packets++
			sn.order = append(sn.order, pk)
			mu.Unlock()
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"); err != nil {
				return
			}
			if strings.HasPrefix(pk, "11/") {
				return
			}
		}
	}()
	_, base := startServer(t, Options{Devices: seedDevices(), PacketSize: 1000})
	code, m := postJSON(t, base+"/device/attach", map[string]string{"pin": pinA, "receiver_url": "http://" + ln.Addr().String() + "/"})
	if code != 200 {
		t.Fatalf("attach = %d %v", code, m)
	}
	body := bytes.Repeat([]byte("0123456789"), 1150) // 11,500 bytes = 12 packets of 1000
	if code, text, _ := rimPush(t, base, "DESTINATION="+pinA+"&PORT=7874", map[string]string{"Content-Type": "text/plain", "X-RIM-Push-ID": "win"}, body); code != 200 {
		t.Fatalf("POST /push = %d %s", code, text)
	}
	var sn seen
	select {
	case sn = <-result:
	case <-time.After(10 * time.Second):
		t.Fatal("the receiver did not get 12 packets")
	}
	if sn.maxOut != 5 {
		t.Errorf("packets unanswered at once = %d, want 5", sn.maxOut)
	}
	if !bytes.Equal(sn.body, body) || sn.packets != 12 {
		t.Errorf("got %d packets, %d bytes; want 12, %d", sn.packets, len(sn.body), len(body))
	}
	for i, pk := range sn.order {
		if want := fmt.Sprintf("%d/12", i); pk != want {
			t.Errorf("packet %d arrived as %q, want %q", i, pk, want)
		}
	}
}

func TestRIMMultipleRecipientsAndGroups(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	nt := newNotifications(t)
	_, base := startServer(t, Options{Devices: seedDevices(), Groups: map[string][]string{"team": {pinB, pinC}}})
	for _, p := range []string{pinA, pinB, pinC} {
		attach(t, base, rc, p)
	}
	code, text, _ := rimPush(t, base, "DESTINATION=2100000A&DESTINATION=%24team&PORT=7874",
		map[string]string{"X-RIM-Push-ID": "multi", "X-RIM-Push-NotifyURL": nt.srv.URL, "Content-Type": "text/plain"}, []byte("hi all"))
	if code != 200 {
		t.Fatalf("POST /push = %d %s", code, text)
	}
	got := map[string]bool{}
	for _, d := range rc.wait(t, 3) {
		if d.PushID != "multi" {
			t.Errorf("push id = %s, want multi", d.PushID)
		}
		got[d.PIN] = true
	}
	if !got[pinA] || !got[pinB] || !got[pinC] {
		t.Fatalf("delivered to %v, want A, B, C", got)
	}
	dests := map[string]string{}
	for _, n := range nt.wait(t, 3) {
		dests[n.Dest] = n.Status
	}
	if len(dests) != 3 || dests[pinA] != "200" || dests[pinC] != "200" {
		t.Fatalf("notifications = %v", dests)
	}
}

func TestRIMRejections(t *testing.T) {
	t.Parallel()
	_, base := startServer(t, Options{Devices: seedDevices(), MaxBodyBytes: 1000, MaxHeaderBytes: 2048})
	if code, text, _ := rimPush(t, base, "DESTINATION=2100000A", map[string]string{"X-RIM-Push-ID": "dup"}, []byte("x")); code != 200 {
		t.Fatalf("first push = %d %s", code, text)
	}
	tests := []struct {
		name    string
		query   string
		headers map[string]string
		body    []byte
		want    int
		text    string
	}{
		{"no destination", "PORT=7874", nil, []byte("x"), 400, "DESTINATION"},
		{"bad port", "DESTINATION=2100000A&PORT=abc", nil, []byte("x"), 400, "PORT"},
		{"unknown PIN", "DESTINATION=2FFFFFFF", nil, []byte("x"), 403, "unknown recipient"},
		{"unknown email", "DESTINATION=nobody%40bbsim.test", nil, []byte("x"), 403, "unknown recipient"},
		{"unknown group", "DESTINATION=%24nogroup", nil, []byte("x"), 403, "unknown group"},
		{"duplicate id", "DESTINATION=2100000A", map[string]string{"X-RIM-Push-ID": "dup"}, []byte("x"), 400, "duplicate"},
		{"bad type", "DESTINATION=2100000A", map[string]string{"X-RIM-Push-Type": "Browser-Foo"}, []byte("x"), 400, "X-RIM-Push-Type"},
		{"bad reliability", "DESTINATION=2100000A", map[string]string{"X-RIM-Push-Reliability-Mode": "sometimes"}, []byte("x"), 400, "reliability"},
		{"bad date", "DESTINATION=2100000A", map[string]string{"X-RIM-Push-Deliver-After": "tomorrow"}, []byte("x"), 400, "HTTP date"},
		{"bad multipart", "DESTINATION=2100000A", map[string]string{"Content-Type": "multipart/mixed; boundary=zz"}, []byte("no parts here"), 400, "multipart"},
		{"body too large", "DESTINATION=2100000A", nil, bytes.Repeat([]byte("x"), 1001), 413, "limit"},
		{"uri too long", "DESTINATION=2100000A&X=" + strings.Repeat("a", 3000), nil, []byte("x"), 414, "PAP"},
		{"headers too large", "DESTINATION=2100000A", map[string]string{"X-Filler": strings.Repeat("b", 2100)}, []byte("x"), 431, "PAP"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, text, _ := rimPush(t, base, tc.query, tc.headers, tc.body)
			if code != tc.want || !strings.Contains(text, tc.text) {
				t.Fatalf("POST /push?%.40s = %d %q, want %d containing %q", tc.query, code, text, tc.want, tc.text)
			}
		})
	}
}

func TestRIMMultipartDeliveredAsReceived(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	_, base := startServer(t, Options{Devices: seedDevices()})
	attach(t, base, rc, pinA)
	body := "--b1\r\nContent-Type: text/html\r\nX-RIM-Push-Type: Browser-Content\r\nContent-Location: http://e.com/p\r\n\r\n<p>page</p>\r\n" +
		"--b1\r\nContent-Type: text/html\r\nX-RIM-Push-Type: Browser-Channel\r\nX-RIM-Push-Title: T\r\n\r\n<p>chan</p>\r\n--b1--\r\n"
	code, text, _ := rimPush(t, base, "DESTINATION=2100000A&PORT=7874", map[string]string{"Content-Type": "multipart/mixed; boundary=b1"}, []byte(body))
	if code != 200 {
		t.Fatalf("POST /push = %d %s", code, text)
	}
	d := rc.wait(t, 1)[0]
	parts, err := splitMultipart(d.Header.Get("Content-Type"), d.Body)
	if err != nil || len(parts) != 2 || parts[1].Header.Get("X-RIM-Push-Type") != "Browser-Channel" {
		t.Fatalf("delivered multipart splits into %d parts, %v", len(parts), err)
	}
}

func TestQueueWhileDetachedInOrder(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	s, base := startServer(t, Options{Devices: seedDevices()})
	for i := range 10 {
		if code, text, _ := rimPush(t, base, "DESTINATION=2100000C", map[string]string{"X-RIM-Push-ID": fmt.Sprintf("q%d", i)}, []byte(fmt.Sprint(i))); code != 200 {
			t.Fatalf("push %d = %d %s", i, code, text)
		}
	}
	if st := waitState(t, s, "q3", pinC, rim.StateQueued); st.Code != 0 {
		t.Fatalf("state = %+v", st)
	}
	code, m := postJSON(t, base+"/device/attach", map[string]string{"pin": "2100000c", "email": "carol@bbsim.test", "receiver_url": rc.url(pinC)})
	if code != 200 || m["queued"] != float64(10) || m["pin"] != pinC {
		t.Fatalf("attach = %d %v, want queued 10", code, m)
	}
	for i, d := range rc.wait(t, 10) {
		if d.PushID != fmt.Sprintf("q%d", i) {
			t.Fatalf("delivery %d = %s, want q%d (in order)", i, d.PushID, i)
		}
	}
	waitState(t, s, "q9", pinC, rim.StateDelivered)
}

func TestCancelQueuedPush(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	nt := newNotifications(t)
	s, base := startServer(t, Options{Devices: seedDevices()})
	rimPush(t, base, "DESTINATION=2100000A", map[string]string{"X-RIM-Push-ID": "c1", "X-RIM-Push-NotifyURL": nt.srv.URL}, []byte("cancel me"))
	rimPush(t, base, "DESTINATION=2100000A", map[string]string{"X-RIM-Push-ID": "c2"}, []byte("keep me"))
	if err := s.Cancel("c1"); err != nil {
		t.Fatalf("Cancel(c1) = %v", err)
	}
	if err := s.Cancel("c1"); err != ErrNotCancellable {
		t.Fatalf("second Cancel(c1) = %v, want ErrNotCancellable", err)
	}
	if err := s.Cancel("nope"); err != ErrNotFound {
		t.Fatalf("Cancel(nope) = %v, want ErrNotFound", err)
	}
	if n := nt.wait(t, 1)[0]; n.PushID != "c1" || n.Status == "200" {
		t.Fatalf("notification = %+v", n)
	}
	attach(t, base, rc, pinA)
	if d := rc.wait(t, 1)[0]; d.PushID != "c2" {
		t.Fatalf("delivered %s, want c2 only", d.PushID)
	}
	rc.none(t, 100*time.Millisecond)
	waitState(t, s, "c1", pinA, rim.StateCancelled)
}

func TestDeliverAfter(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	s, base := startServer(t, Options{Devices: seedDevices()})
	attach(t, base, rc, pinA)
	after := time.Now().Add(1500 * time.Millisecond).UTC()
	start := time.Now()
	rimPush(t, base, "DESTINATION=2100000A", map[string]string{"X-RIM-Push-ID": "later", "X-RIM-Push-Deliver-After": after.Format(http.TimeFormat)}, []byte("later"))
	rimPush(t, base, "DESTINATION=2100000A", map[string]string{"X-RIM-Push-ID": "now"}, []byte("now"))
	ds := rc.wait(t, 2)
	if ds[0].PushID != "now" || ds[1].PushID != "later" {
		t.Fatalf("order = %s, %s; want now, later", ds[0].PushID, ds[1].PushID)
	}
	// HTTP dates have one-second resolution.
	if el := time.Since(start); el < 400*time.Millisecond {
		t.Fatalf("deferred push delivered after %v", el)
	}
	waitState(t, s, "later", pinA, rim.StateDelivered)
}

func TestExpiredNotification(t *testing.T) {
	t.Parallel()
	nt := newNotifications(t)
	results := make(chan Result, 4)
	s, base := startServer(t, Options{Devices: seedDevices(), FlowControlTimeout: 300 * time.Millisecond, OnResult: func(r Result) { results <- r }})
	rimPush(t, base, "DESTINATION=2100000B", map[string]string{"X-RIM-Push-ID": "exp", "X-RIM-Push-NotifyURL": nt.srv.URL}, []byte("x"))
	n := nt.wait(t, 1)[0]
	if n.PushID != "exp" || n.Status != "4500" || n.Dest != pinB {
		t.Fatalf("notification = %+v, want exp 4500 %s", n, pinB)
	}
	if r := <-results; r.State != rim.StateExpired || r.Code != 4500 || r.PushID != "exp" {
		t.Fatalf("OnResult = %+v", r)
	}
	if st := waitState(t, s, "exp", pinB, rim.StateExpired); st.Code != 4500 {
		t.Fatalf("state = %+v", st)
	}
}

func TestBusy503(t *testing.T) {
	t.Parallel()
	s, base := startServer(t, Options{Devices: seedDevices(), MaxActive: 3})
	for i := range 3 {
		if code, text, _ := rimPush(t, base, "DESTINATION=2100000A", nil, []byte("x")); code != 200 {
			t.Fatalf("push %d = %d %s", i, code, text)
		}
	}
	code, _, h := rimPush(t, base, "DESTINATION=2100000A", nil, []byte("x"))
	if code != 503 || h.Get("Retry-After") == "" {
		t.Fatalf("push over the limit = %d, want 503 with Retry-After", code)
	}
	if err := s.Enqueue(t.Context(), Submission{PINs: []string{pinA}, Body: []byte("x")}); err != ErrBusy {
		t.Fatalf("Enqueue over the limit = %v, want ErrBusy", err)
	}
}

func TestReceiverVerdicts(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	results := make(chan Result, 10)
	_, base := startServer(t, Options{Devices: seedDevices(), OnResult: func(r Result) { results <- r }})
	rc.setAnswer(func(pin string, h http.Header) (int, string) {
		switch h.Get("X-RIM-Push-ID") {
		case "noapp":
			return 404, "4502"
		case "type":
			return 415, "238"
		}
		return 200, ""
	})
	attach(t, base, rc, pinA)
	for _, tc := range []struct {
		id   string
		code int
	}{{"noapp", 4502}, {"type", 238}} {
		rimPush(t, base, "DESTINATION=2100000A&PORT=3000", map[string]string{"X-RIM-Push-ID": tc.id}, []byte("x"))
		var r Result
		select {
		case r = <-results:
		case <-time.After(30 * time.Second):
			t.Fatalf("no result for %s after 30s", tc.id)
		}
		if r.PushID != tc.id || r.State != rim.StateFailed || r.Code != tc.code || r.Port != 3000 {
			t.Fatalf("result = %+v, want %s failed %d port 3000", r, tc.id, tc.code)
		}
	}
}

func TestApplicationAck(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	results := make(chan Result, 10)
	s, base := startServer(t, Options{Devices: seedDevices(), FlowControlTimeout: 2 * time.Second, OnResult: func(r Result) { results <- r }})
	attach(t, base, rc, pinA)
	rimPush(t, base, "DESTINATION=2100000A&PORT=100", map[string]string{"X-RIM-Push-ID": "app1", "X-RIM-Push-Reliability-Mode": "Application-Preferred"}, []byte("x"))
	d := rc.wait(t, 1)[0]
	if d.Header.Get("X-RIM-Push-Reliability-Mode") != "application" {
		t.Fatalf("reliability header = %q", d.Header.Get("X-RIM-Push-Reliability-Mode"))
	}
	if st := waitState(t, s, "app1", pinA, rim.StatePending); st.TransportAt == nil {
		t.Fatalf("pending without transport time: %+v", st)
	}
	if code, _ := postJSON(t, base+"/device/ack", rc.proved(pinA, map[string]any{"pin": pinA, "push_id": "app1", "code": 1000})); code != 200 {
		t.Fatalf("ack = %d", code)
	}
	if r := <-results; r.State != rim.StateDelivered || r.Code != 1000 {
		t.Fatalf("result = %+v", r)
	}
	if code, _ := postJSON(t, base+"/device/ack", rc.proved(pinA, map[string]any{"pin": pinA, "push_id": "app1", "code": 1000})); code != 404 {
		t.Fatalf("second ack = %d, want 404", code)
	}
	// No ack at all: the recipient times out.
	rimPush(t, base, "DESTINATION=2100000A&PORT=100", map[string]string{"X-RIM-Push-ID": "app2", "X-RIM-Push-Reliability": "application"}, []byte("x"))
	rc.wait(t, 1)
	if r := <-results; r.PushID != "app2" || r.State != rim.StateExpired || r.Code != 4500 {
		t.Fatalf("result = %+v", r)
	}
	waitState(t, s, "app2", pinA, rim.StateTimeout)
}

func TestDeviceLink(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	s, base := startServer(t, Options{})
	tests := []struct {
		name string
		body map[string]string
		want int
	}{
		{"bad pin", map[string]string{"pin": "xyz", "receiver_url": rc.url("x")}, 400},
		{"bad url", map[string]string{"pin": pinA, "receiver_url": "ftp://x"}, 400},
		{"ok", map[string]string{"pin": "2100000a", "email": "a@b.test", "receiver_url": rc.url(pinA)}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, m := postJSON(t, base+"/device/attach", tc.body)
			if code != tc.want {
				t.Fatalf("attach = %d %v, want %d", code, m, tc.want)
			}
			if code == 400 && m["error"] == "" {
				t.Fatalf("400 without error text")
			}
			if secret, _ := m["device_secret"].(string); secret != "" {
				rc.smu.Lock()
				rc.secrets[pinA] = secret // the first attach's: the next need it
				rc.smu.Unlock()
			}
		})
	}
	tok := attach(t, base, rc, pinA)
	if len(tok) < 32 {
		t.Fatalf("link token %q too short", tok)
	}
	if pin, ok := s.LinkedPIN(tok); !ok || pin != pinA {
		t.Fatalf("LinkedPIN = %q %v", pin, ok)
	}
	tok2 := attach(t, base, rc, pinA)
	if _, ok := s.LinkedPIN(tok); ok || tok2 == tok {
		t.Fatal("old token still valid after re-attach")
	}
	// The e-mail from the attachment joins the directory.
	if code, text, _ := rimPush(t, base, "DESTINATION=2100000a%40bbsim.test", map[string]string{"X-RIM-Push-ID": "by-email"}, []byte("x")); code != 200 {
		t.Fatalf("push by attached e-mail = %d %s", code, text)
	}
	rc.wait(t, 1)
	waitState(t, s, "by-email", pinA, rim.StateDelivered)
	detach(t, base, rc, pinA)
	if _, ok := s.LinkedPIN(tok2); ok {
		t.Fatal("token valid after detach")
	}
	var devs []deviceInfo
	if getJSON(t, base+"/api/v1/devices", &devs) != 200 || len(devs) != 1 || devs[0].Attached || devs[0].Delivered != 1 {
		t.Fatalf("devices = %+v", devs)
	}
}

func TestUnreachableRetriedThenDelivered(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	fail := make(chan struct{})
	calls := 0
	rc.setAnswer(func(pin string, h http.Header) (int, string) {
		select {
		case <-fail:
			return 200, ""
		default:
			calls++
			if calls == 3 {
				close(fail)
			}
			return 503, ""
		}
	})
	s, base := startServer(t, Options{Devices: seedDevices()})
	attach(t, base, rc, pinA)
	rimPush(t, base, "DESTINATION=2100000A", map[string]string{"X-RIM-Push-ID": "retry"}, []byte("x"))
	rc.wait(t, 1)
	waitState(t, s, "retry", pinA, rim.StateDelivered)
}

func TestPAPCurl(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required for this test (apt-get install curl)")
	}
	rc := newReceiver(t)
	_, base := startServer(t, Options{Devices: seedDevices()})
	attach(t, base, rc, pinC)
	body, ctype := papMultipart(papDoctype20, `<push-message push-id="curl-pap"><address address-value="WAPPUSH=carol%40bbsim.test%3A7874/TYPE=USER@rim.net"/><quality-of-service delivery-method="unconfirmed"/></push-message>`,
		"Content-Type: text/html\r\nX-RIM-Push-Type: Browser-Channel\r\nX-RIM-Push-Title: Curl\r\n", "<p>via curl</p>")
	f := t.TempDir() + "/pap.txt"
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), "curl", "-sS", "-w", "\n%{http_code}", "-H", "Content-Type: "+ctype,
		"--data-binary", "@"+f, base+"/pap").CombinedOutput()
	if err != nil || !strings.HasSuffix(string(out), "\n202") || !strings.Contains(string(out), `code="1001"`) {
		t.Fatalf("curl /pap = %q, %v; want 202 with 1001", out, err)
	}
	d := rc.wait(t, 1)[0]
	if d.PushID != "curl-pap" || string(d.Body) != "<p>via curl</p>" || d.Header.Get("X-RIM-Push-Type") != "Browser-Channel" {
		t.Fatalf("delivery = %+v", d)
	}
}

func TestReattachDuringDeliveryNoDuplicate(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	first := true
	rc.setAnswer(func(pin string, h http.Header) (int, string) {
		if first {
			first = false
			close(entered)
			<-release
		}
		return 200, ""
	})
	s, base := startServer(t, Options{Devices: seedDevices()})
	attach(t, base, rc, pinA)
	rimPush(t, base, "DESTINATION=2100000A", map[string]string{"X-RIM-Push-ID": "once"}, []byte("x"))
	<-entered
	detach(t, base, rc, pinA)
	code, m := postJSON(t, base+"/device/attach", rc.proved(pinA, map[string]any{"pin": pinA, "receiver_url": rc.url(pinA)}))
	go func() {
		// The receiver holds its lock while answering; release from outside it.
		close(release)
	}()
	if code != 200 {
		t.Fatalf("re-attach = %d %v", code, m)
	}
	rc.wait(t, 1)
	waitState(t, s, "once", pinA, rim.StateDelivered)
	rc.none(t, 300*time.Millisecond)
}

// TestRIMPushRawSample sends a RIM push byte for byte as RIM's PHP sample writes it on a
// socket (its header spellings, HTTP/1.0-style close), and checks the answer and delivery.
func TestRIMPushRawSample(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	_, base := startServer(t, Options{Devices: seedDevices()})
	attach(t, base, rc, pinA)
	code, text := rawPOST(t, base, "/push?DESTINATION=alice@bbsim.test&PORT=7874&REQUESTURI=/", "text/html",
		"<html><body>Hello from PHP</body></html>",
		"X-RIM-PUSH-TITLE: PHP push\r\n", "X-RIM-Push-Type: browser-channel\r\n",
		"Content-Location: http://example.com/php\r\n", "X-RIM-PUSH-CHANNEL-ID: http://example.com/php\r\n",
		"X-RIM-Push-Unread-Icon-URL: http://example.com/u.png\r\n", "X-RIM-Push-Read-Icon-URL: http://example.com/r.png\r\n")
	if code != 200 {
		t.Fatalf("raw RIM push = %d %q", code, text)
	}
	d := rc.wait(t, 1)[0]
	if d.Header.Get("X-RIM-Push-Title") != "PHP push" || d.Header.Get("X-RIM-Push-Type") != "Browser-Channel" ||
		d.Header.Get("X-RIM-Push-Channel-ID") != "http://example.com/php" || d.Header.Get("Content-Type") != "text/html" {
		t.Fatalf("delivered headers = %v", d.Header)
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	s, base, served := startServing(t, Options{Devices: seedDevices()})
	if code, text, _ := rimPush(t, base, "DESTINATION=2100000A", nil, []byte("x")); code != 200 {
		t.Fatalf("push = %d %s", code, text)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if err := <-served; err != ErrServerClosed {
		t.Fatalf("Serve = %v, want ErrServerClosed", err)
	}
	if err := s.Enqueue(t.Context(), Submission{PINs: []string{pinA}}); err == nil {
		t.Fatal("Enqueue after Shutdown succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after Shutdown = %v", err)
	}
}

// TestLinkReconnects: a receiver that closes the idle link between pushes (as a handset's
// receiver does after its idle timeout) gets the next push at once on a new connection,
// without the gateway counting it as unreachable.
func TestLinkReconnects(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	var logs syncbuf.Buffer
	s, base := startServer(t, Options{Devices: seedDevices(), Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	attach(t, base, rc, pinA)
	for i := range 3 {
		id := fmt.Sprintf("again-%d", i)
		if code, text, _ := rimPush(t, base, "DESTINATION="+pinA+"&PORT=7874", map[string]string{"Content-Type": "text/plain", "X-RIM-Push-ID": id}, []byte(id)); code != 200 {
			t.Fatalf("POST /push = %d %s", code, text)
		}
		if d := rc.wait(t, 1)[0]; d.PushID != id {
			t.Fatalf("delivered %q, want %q", d.PushID, id)
		}
		waitState(t, s, id, pinA, rim.StateDelivered) // the answer reached the gateway
		rc.srv.CloseClientConnections()
	}
	if strings.Contains(logs.String(), "retrying") {
		t.Errorf("a closed idle link was taken for an unreachable device:\n%s", logs.String())
	}
}

// TestLinkConnectionClose: a receiver that closes the connection after every answer (an
// HTTP/1.0-style server) still gets a many-packet push whole, once.
func TestLinkConnectionClose(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	rc.srv.Config.SetKeepAlivesEnabled(false)
	_, base := startServer(t, Options{Devices: seedDevices(), PacketSize: 100})
	attach(t, base, rc, pinA)
	body := bytes.Repeat([]byte("0123456789"), 95) // 950 bytes = 10 packets
	if code, text, _ := rimPush(t, base, "DESTINATION="+pinA+"&PORT=7874", map[string]string{"Content-Type": "text/plain", "X-RIM-Push-ID": "close"}, body); code != 200 {
		t.Fatalf("POST /push = %d %s", code, text)
	}
	d := rc.wait(t, 1)[0]
	if !bytes.Equal(d.Body, body) || d.Packets != 10 {
		t.Fatalf("reassembled %d bytes in %d packets, want %d in 10", len(d.Body), d.Packets, len(body))
	}
	rc.none(t, 300*time.Millisecond)
}

// TestHTTPSReceiver: a receiver on https (outside the plain-http device link) is reached
// through the server's HTTP client, packets and all.
func TestHTTPSReceiver(t *testing.T) {
	t.Parallel()
	rc := &receiver{t: t, got: make(chan delivery, 100), partial: map[string]map[int][]byte{}}
	rc.srv = httptest.NewTLSServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	_, base := startServer(t, Options{Devices: seedDevices(), PacketSize: 100, Client: rc.srv.Client()})
	attach(t, base, rc, pinA)
	body := bytes.Repeat([]byte("abcdefghij"), 33) // 330 bytes = 4 packets
	if code, text, _ := rimPush(t, base, "DESTINATION="+pinA+"&PORT=7874", map[string]string{"Content-Type": "text/plain", "X-RIM-Push-ID": "tls"}, body); code != 200 {
		t.Fatalf("POST /push = %d %s", code, text)
	}
	d := rc.wait(t, 1)[0]
	if !bytes.Equal(d.Body, body) || d.Packets != 4 || !strings.HasPrefix(rc.url(pinA), "https://") {
		t.Fatalf("reassembled %d bytes in %d packets over %s", len(d.Body), d.Packets, rc.url(pinA))
	}
}
