package pushserver

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// TestWritePacket reads a written packet back with net/http's request parser: a header
// name that is not a token is left out, line breaks in a value cannot start a new header.
func TestWritePacket(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:7874/d/2100000A/?x=1")
	var buf bytes.Buffer
	l := &link{path: u.RequestURI(), hostHeader: u.Host, bw: bufio.NewWriter(&buf)}
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
	l.bw.Flush()
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
