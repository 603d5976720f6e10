package pushserver

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"testing"
)

// TestWritePacket reads a written packet back with net/http's request parser: a header
// name that is not a token is left out, line breaks in a value cannot start a new header.
func TestWritePacket(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:7874/d/2100000A/?x=1")
	var buf bytes.Buffer
	l := &link{path: u.RequestURI(), hostHeader: u.Host, bw: bufio.NewWriter(&buf)}
	base := http.Header{
		"Content-Type":    {"text/plain"},
		"X-Evil":          {"a\r\nX-Injected: yes"},
		"Bad Name":        {"v"},
		"X-Rim-Push-Id":   {"p1"},
		"X-Bbsim-Packet":  {"9/9"}, // replaced by the packet's own
		"X-Rim-Push-Type": {"Browser-Content"},
	}
	l.writePacket(base, 1, 3, []byte("hello"))
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
	case req.Header.Get("Bad Name") != "" || req.Header.Get("X-Rim-Push-Id") != "p1" || req.Header.Get("Content-Type") != "text/plain":
		t.Errorf("headers = %v", req.Header)
	}
}
