package compat

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/bbsim/bbsim/pushinit"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name, in    string
		path, port  string
		body, error string
	}{
		{name: "CRLF with Content-Length", in: "POST /push?DESTINATION=a%40b.c&PORT=7874 HTTP/1.1\r\nX-RIM-Push-Type: Browser-Channel\r\nContent-Length: 2\r\n\r\nhi\r\n",
			path: "/push", port: "7874", body: "hi"},
		{name: "LF without Content-Length", in: "POST http://mds:8080/push?DESTINATION=2100000A HTTP/1.1\nHost: mds\n\n<p>x</p>\n",
			path: "/push", port: "7874", body: "<p>x</p>\n"},
		{name: "PAP", in: "POST /pap HTTP/1.1\nContent-Type: multipart/related; type=\"application/xml\"; boundary=b\n\n--b\n\n<pap><push-message push-id=\"1\"><address address-value=\"WAPPUSH=x%3A3000/TYPE=USER@rim.net\"/></push-message></pap>\n--b--\n",
			path: "/pap", port: "3000"},
		{name: "no empty line", in: "POST /push HTTP/1.1\nHost: x\n", error: "no empty line after the headers"},
		{name: "GET", in: "GET /push HTTP/1.1\n\n", error: "method GET: a push is a POST"},
		{name: "other path", in: "POST /mss/PD_pushRequest HTTP/1.1\n\nx", error: `path "/mss/PD_pushRequest": want /push (RIM push) or /pap`},
		{name: "PAP without push-message", in: "POST /pap HTTP/1.1\n\n<pap/>", error: "a PAP push needs a <push-message>"},
		{name: "short body", in: "POST /push HTTP/1.1\nContent-Length: 9\n\nabc", error: "Content-Length 9 but only 3 bytes follow the headers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRequest([]byte(tt.in))
			if tt.error != "" {
				if err == nil || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("ParseRequest = %v, want an error with %q", err, tt.error)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if r.Path != tt.path || (tt.body != "" && string(r.Body) != tt.body) || r.Header.Get("Host") != "" {
				t.Errorf("ParseRequest = %s %q %v, want %s %q without Host", r.Path, r.Body, r.Header, tt.path, tt.body)
			}
			if got := strconv.Itoa(r.Port()); tt.port != "" && got != tt.port {
				t.Errorf("Port() = %s, want %s", got, tt.port)
			}
		})
	}
}

// TestRunPAP: the report sends a PAP push to each handset, the address and notify URL made
// its own. A confirmed (application-level) push is refused for 3.8 as MDS refused it (3007),
// and acknowledged by the application on 4.0; a transcoded browser message fails to open on
// 6.0.0.141 only.
func TestRunPAP(t *testing.T) {
	t.Parallel()
	build := func(p pushinit.Push) *Request {
		t.Helper()
		p.Protocol, p.Gateway, p.To = pushinit.PAP, "http://x", []string{"someone@example.com"}
		req, err := p.Request(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		r, err := FromHTTP(req)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		name     string
		push     pushinit.Push
		versions []string
		want     map[string]string // version: answer / shown / opened / notified
	}{
		{"confirmed message", pushinit.Push{Type: "message", Title: "M", ContentLocation: "http://x/m", Reliability: "confirmed",
			Body: []byte("<p>m</p>"), Header: http.Header{"X-Rim-Transcode-Content": {"none"}}},
			[]string{"3.8.0", "4.0.0"},
			map[string]string{"3.8.0": "202 3007///", "4.0.0": "202 1001/message/yes/1000 delivered"}},
		{"transcoded message", pushinit.Push{Type: "message", Title: "M", ContentLocation: "http://x/m", Body: []byte("<p>m</p>")},
			[]string{"6.0.0.141", "7.1.0"},
			map[string]string{"6.0.0.141": "202 1001/message/error/1000 delivered", "7.1.0": "202 1001/message/yes/1000 delivered"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rows, err := Run(t.Context(), Options{Request: build(tt.push), Versions: tt.versions, Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				got := strings.Join([]string{r.Answer, r.Shown, r.Opened, r.Notified}, "/")
				if got != tt.want[r.Version] {
					t.Errorf("%s: %s, want %s (problems %q)", r.Version, got, tt.want[r.Version], r.Problems)
				}
				if wantOK := !strings.Contains(got, "error") && !strings.Contains(got, "3007"); r.OK() != wantOK {
					t.Errorf("%s: OK() = %v with %s", r.Version, r.OK(), got)
				}
			}
			if !strings.Contains(Table(rows), "software") {
				t.Errorf("Table:\n%s", Table(rows))
			}
		})
	}
}
