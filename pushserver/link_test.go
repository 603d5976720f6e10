package pushserver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/rim"
)

// TestWritePacket reads a written packet back with net/http's request parser: a header
// name that is not a token is left out, line breaks in a value cannot start a new header.
func TestWritePacket(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:7874/d/2100000A/?x=1")
	var buf bytes.Buffer
	l := &link{path: u.RequestURI(), hostHeader: u.Host, c: &linkConn{bw: bufio.NewWriter(&buf)}}
	p := &push{id: "p1", requestURI: "/app\r\nX-Smuggled: 1", reliability: "transport", body: []byte("hello, world"),
		headers: http.Header{
			"Content-Type":    {"text/plain"},
			"X-Evil":          {"a\r\nX-Injected: yes"},
			"Bad Name":        {"v"},
			"X-Rim-Push-Id":   {"other"}, // the push's id is the link's to set
			"X-Bbsim-Packet":  {"9/9"},   // replaced by the packet's own
			"X-Rim-Push-Type": {"Browser-Content"},
		}}
	r := &recip{p: p, pin: "2100000A", port: 7874}
	l.writePacket(r, 1, 3, []byte("hello"))
	l.c.bw.Flush()
	req, err := http.ReadRequest(bufio.NewReader(&buf))
	if err != nil {
		t.Fatalf("ReadRequest: %v\n%s", err, buf.String())
	}
	body, _ := io.ReadAll(req.Body)
	switch {
	case req.Method != "POST" || req.URL.RequestURI() != "/d/2100000A/?x=1" || req.Host != "127.0.0.1:7874":
		t.Errorf("request line/host = %s %s %s", req.Method, req.URL.RequestURI(), req.Host)
	case string(body) != "hello" || req.ContentLength != 5:
		t.Errorf("body = %q (%d)", body, req.ContentLength)
	case req.Header.Get("X-Bbsim-Packet") != "1/3" || len(req.Header["X-Bbsim-Packet"]) != 1:
		t.Errorf("X-Bbsim-Packet = %q", req.Header["X-Bbsim-Packet"])
	case req.Header.Get("X-Injected") != "" || req.Header.Get("X-Evil") != "a X-Injected: yes":
		t.Errorf("X-Evil = %q, X-Injected = %q", req.Header.Get("X-Evil"), req.Header.Get("X-Injected"))
	case req.Header.Get("X-Smuggled") != "" || req.Header.Get("X-Rim-Push-Request-Uri") != "/app X-Smuggled: 1":
		t.Errorf("X-Rim-Push-Request-Uri = %q", req.Header["X-Rim-Push-Request-Uri"])
	case req.Header.Get("Bad Name") != "" || len(req.Header["X-Rim-Push-Id"]) != 1 || req.Header.Get("X-Rim-Push-Id") != "p1" || req.Header.Get("Content-Type") != "text/plain":
		t.Errorf("headers = %v", req.Header)
	}
	// The link carries the same headers as a delivery through net/http's client.
	want := linkHeaders(r, 3)
	want.Set("X-Bbsim-Packet", "1/3")
	delete(want, "Bad Name")
	for k, vs := range want {
		for i, v := range vs {
			vs[i] = strings.TrimSpace(newlineToSpace.Replace(v))
		}
		want[k] = vs
	}
	got := req.Header.Clone()
	for _, k := range []string{"User-Agent", "Content-Length"} {
		delete(got, k)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("link headers\n got %v\nwant %v", got, want)
	}
}

// curlJSON POSTs v as JSON with curl and returns the status and the decoded answer.
func curlJSON(t *testing.T, url string, v any) (int, map[string]any) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required (make test-deps installs it)")
	}
	b, _ := json.Marshal(v)
	out, err := exec.CommandContext(t.Context(), "curl", "-sS", "--max-time", "20", "-H", "Content-Type: application/json",
		"--data-binary", string(b), "-w", "\n%{http_code}", url).Output()
	if err != nil {
		t.Fatalf("curl %s: %v", url, err)
	}
	text := string(out)
	i := strings.LastIndexByte(text, '\n')
	body, status := strings.TrimSpace(text[:i]), text[i+1:]
	code, err := strconv.Atoi(status)
	if err != nil {
		t.Fatalf("curl %s: status %q", url, status)
	}
	var m map[string]any
	if body != "" {
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("curl %s: answer %q is not JSON: %v", url, body, err)
		}
	}
	return code, m
}

// TestDeviceLinkCurl drives the handset's side of the device link with curl, as a receiver
// written in any language would: attach, check, an application acknowledgement, detach.
func TestDeviceLinkCurl(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	s, base := startServer(t, Options{Devices: seedDevices(), FlowControlTimeout: 30 * time.Second})
	if code, m := curlJSON(t, base+"/device/attach", map[string]string{"pin": "21", "receiver_url": rc.url(pinA)}); code != 400 || m["error"] == "" {
		t.Fatalf("attach with a bad PIN = %d %v, want 400 with an error text", code, m)
	}
	// A body over the limit is refused as such, not as JSON cut short.
	if code, m := curlJSON(t, base+"/device/attach", map[string]string{"pin": pinB, "receiver_url": rc.url(pinB), "device_secret": strings.Repeat("a", 100<<10)}); code != 413 || m["error"] != "JSON body over 64 KiB" {
		t.Fatalf("attach with a 100 KiB body = %d %v, want 413 JSON body over 64 KiB", code, m)
	}
	code, m := curlJSON(t, base+"/device/attach", map[string]string{"pin": strings.ToLower(pinA), "email": "alice@bbsim.test", "receiver_url": rc.url(pinA)})
	tok, _ := m["link_token"].(string)
	secret, _ := m["device_secret"].(string)
	if code != 200 || m["pin"] != pinA || len(tok) < 32 || len(secret) < 32 {
		t.Fatalf("attach = %d %v, want 200 with the PIN upper-case, a link token and a device secret", code, m)
	}
	if code, m := curlJSON(t, base+"/device/check", map[string]string{"pin": pinA, "link_token": tok}); code != 200 || m["attached"] != true {
		t.Fatalf("check = %d %v, want attached", code, m)
	}
	rimPush(t, base, "DESTINATION=2100000A&PORT=100", map[string]string{"X-RIM-Push-ID": "curl-ack", "X-RIM-Push-Reliability-Mode": "application"}, []byte("x"))
	if d := rc.wait(t, 1)[0]; d.Header.Get("X-RIM-Push-ID") != "curl-ack" {
		t.Fatalf("delivered %+v", d)
	}
	waitState(t, s, "curl-ack", pinA, rim.StatePending)
	if code, m := curlJSON(t, base+"/device/ack", map[string]any{"pin": pinA, "push_id": "curl-ack", "code": 1000, "device_secret": secret}); code != 200 {
		t.Fatalf("ack = %d %v", code, m)
	}
	waitState(t, s, "curl-ack", pinA, rim.StateDelivered)
	if code, m := curlJSON(t, base+"/device/detach", map[string]string{"pin": pinA, "link_token": tok}); code != 200 {
		t.Fatalf("detach = %d %v", code, m)
	}
	if code, m := curlJSON(t, base+"/device/check", map[string]string{"pin": pinA, "link_token": tok}); code != 200 || m["attached"] != false {
		t.Fatalf("check after detach = %d %v, want not attached", code, m)
	}
}

// TestLinkAnswer reads receivers' answers as the link does: each is classified by its
// status and X-RIM-Push-Status, and the connection is kept only when the answer ended
// where the next one starts. The "next" answer after each must be read whole.
func TestLinkAnswer(t *testing.T) {
	t.Parallel()
	const next = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	long := strings.Repeat("x", maxAnswer+1)
	tests := []struct {
		name, answer string
		ok, retry    bool
		code         int
		reason       string
		keep         bool
	}{
		{"200", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true, false, 0, "", true},
		{"chunked with trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n", true, false, 0, "", true},
		{"after 100 Continue", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true, false, 0, "", true},
		{"204", "HTTP/1.1 204 No Content\r\n\r\n", true, false, 0, "", true},
		{"Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", true, false, 0, "", false},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", true, false, 0, "", false},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", true, false, 0, "", true},
		{"refused", "HTTP/1.1 403 Forbidden\r\nX-RIM-Push-Status: 4000\r\nContent-Length: 20\r\n\r\nno room\r\nsecond line", false, false, 4000, "no room", true},
		{"busy", "HTTP/1.1 503 Service Unavailable\r\nX-Rim-Push-Status: 237\r\nContent-Length: 0\r\n\r\n", false, true, 237, "", true},
		{"no status", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", false, true, 0, "", true},
		{"body over the limit", "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(long)) + "\r\n\r\n" + long, true, false, 0, "", false},
		{"chunked over the limit", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(int64(len(long)), 16) + "\r\n" + long + "\r\n0\r\n\r\n", true, false, 0, "", false},
		{"body cut short", "HTTP/1.1 403 Forbidden\r\nX-RIM-Push-Status: 4000\r\nContent-Length: 99\r\n\r\nno", false, false, 4000, "noHTTP/1.1 200 OK", false}, // the reason is what came
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &linkConn{br: bufio.NewReaderSize(strings.NewReader(tc.answer+next), 4096)}
			res, keep, err := c.answer()
			if err != nil {
				t.Fatalf("answer() error %v", err)
			}
			if res.ok != tc.ok || res.retry != tc.retry || res.code != tc.code || res.reason != tc.reason || keep != tc.keep {
				t.Fatalf("answer() = ok %v retry %v code %d reason %q keep %v, want %v %v %d %q %v (err %v)",
					res.ok, res.retry, res.code, res.reason, keep, tc.ok, tc.retry, tc.code, tc.reason, tc.keep, res.err)
			}
			if !tc.ok && !strings.Contains(res.err.Error(), tc.answer[9:12]) {
				t.Errorf("error %q does not name the status", res.err)
			}
			if keep {
				if res, _, err := c.answer(); err != nil || !res.ok {
					t.Fatalf("next answer: %+v, %v", res, err)
				}
			}
		})
	}
	// Nothing to read, or no HTTP answer: no answer at all, and the packet is sent again.
	for _, in := range []string{"", "SSH-2.0-OpenSSH\r\n\r\n"} {
		c := &linkConn{br: bufio.NewReader(strings.NewReader(in))}
		if _, _, err := c.answer(); err == nil {
			t.Errorf("answer() from %q: no error", in)
		}
	}
}
