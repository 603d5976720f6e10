package pushserver

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMalformedRequestsAnsweredAtOnce sends the push front the four requests that used to
// hold a connection for the full body timeout or were misread, and times each answer: an
// over-limit Content-Length with 5 bytes sent, the same with Expect: 100-continue, an
// impossible chunk size, and Content-Length with Transfer-Encoding and a GET pipelined
// behind it.
func TestMalformedRequestsAnsweredAtOnce(t *testing.T) {
	t.Parallel()
	_, base := startServer(t, Options{MaxBodyBytes: 64 << 10})
	addr := strings.TrimPrefix(base, "http://")
	const head = "POST /push?DESTINATION=2100000A&PORT=7874 HTTP/1.1\r\nHost: gw\r\nContent-Type: text/plain\r\n"
	tests := []struct {
		name, req string
		want      int
	}{
		{"Content-Length over the limit", head + "Content-Length: 999999999\r\n\r\nhello", http.StatusRequestEntityTooLarge},
		{"Expect: 100-continue over the limit", head + "Content-Length: 999999999\r\nExpect: 100-continue\r\n\r\n", http.StatusRequestEntityTooLarge},
		{"chunk size FFFFFFFFFFFFFFFFFFFF", head + "Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\nabc", http.StatusBadRequest},
		{"Content-Length and Transfer-Encoding", head + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" +
			"GET /api/v1/devices HTTP/1.1\r\nHost: gw\r\n\r\n", http.StatusBadRequest},
		{"Transfer-Encoding before Content-Length", head + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n" +
			"GET /api/v1/devices HTTP/1.1\r\nHost: gw\r\n\r\n", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Generous for a loaded machine, far below the 2-minute body timeout.
			c.SetDeadline(time.Now().Add(20 * time.Second))
			start := time.Now()
			if _, err := io.WriteString(c, tt.req); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer after %v: %v", time.Since(start), err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			t.Logf("HTTP %d after %v: %s", resp.StatusCode, took, strings.TrimSpace(string(body)))
			if resp.StatusCode != tt.want {
				t.Errorf("HTTP %d %q, want %d", resp.StatusCode, body, tt.want)
			}
			// Nothing more on the connection: no second answer, the connection closes.
			if rest, err := io.ReadAll(br); len(rest) > 0 || err != nil {
				t.Errorf("after the answer: %q %v, want the connection closed", rest, err)
			}
		})
	}
}
