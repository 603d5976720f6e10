package pushserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/bounded"
)

func FuzzParseRIM(f *testing.F) {
	f.Add("DESTINATION=2100000A&PORT=7874&REQUESTURI=/", "X-RIM-Push-Type: Browser-Channel\nX-RIM-Push-Title: News\nX-RIM-Push-Reliability-Mode: application-preferred")
	f.Add("DESTINATION=alice%40bbsim.test&DESTINATION=%24team&PORT=100", "X-Rim-Push-Reliability: TRANSPORT\nX-RIM-Push-Deliver-After: Sun, 22 Nov 2026 20:00:00 GMT")
	f.Add("PORT=-1", "X-RIM-Push-Priority: urgent")
	f.Add("DESTINATION=&PORT=99999", "X-RIM-Push-NotifyURL: ftp://x")
	f.Add("DESTINATION=2100000A", "X-RIM-Push-Deliver-Before: yesterday")
	f.Fuzz(func(t *testing.T, query, headers string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		h := http.Header{}
		for _, line := range strings.Split(headers, "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok {
				h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
		rr, err := parseRIM(q, h)
		if err != nil {
			return
		}
		if len(rr.Destinations) == 0 || rr.Port <= 0 || rr.Port > 65535 {
			t.Fatalf("parseRIM accepted %q with %d destinations, port %d", query, len(rr.Destinations), rr.Port)
		}
		if rr.Reliability != "transport" && rr.Reliability != "application" && rr.Reliability != "application-preferred" {
			t.Fatalf("reliability %q", rr.Reliability)
		}
		for k := range rr.Headers {
			if controlHeaders[k] || hopHeaders[k] {
				t.Fatalf("control header %s forwarded", k)
			}
		}
	})
}

func FuzzSplitMultipart(f *testing.F) {
	f.Add("multipart/mixed; boundary=b1", "--b1\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--b1\r\nX-RIM-Push-Type: Browser-Channel\r\n\r\ny\r\n--b1--\r\n")
	f.Add(`multipart/related; type="application/xml"; boundary=asdlfkjiurwghasf`, "--asdlfkjiurwghasf\r\nContent-Type: application/xml\r\n\r\n<pap/>\r\n--asdlfkjiurwghasf--\r\n")
	f.Add("multipart/mixed", "no boundary")
	f.Add("text/plain", "plain")
	f.Add("multipart/mixed; boundary=x", "--x\r\n\r\n")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, ctype, body string) {
		parts, err := splitMultipart(ctype, []byte(body))
		if err != nil {
			return
		}
		if len(parts) == 0 || len(parts) > 65 {
			t.Fatalf("splitMultipart(%q) = %d parts without error", ctype, len(parts))
		}
		total := 0
		for _, p := range parts {
			total += len(p.Body)
		}
		if total > len(body) {
			t.Fatalf("parts hold %d bytes, body has %d", total, len(body))
		}
	})
}

// noNetwork is a client whose every dial fails at once: notification URLs named by fuzzed
// documents stay on the machine, so an input costs no network round trip.
func noNetwork() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("no network in this test")
		},
	}}
}

// FuzzPAPHandler sends arbitrary bodies to POST /pap: nothing panics, every answer but
// HTTP's own 414/431 for an over-long request line or headers is a well-formed PAP
// document, a push handled (202) carries 1001 or its 2xxx refusal, and every other
// rejection is a 4xx whose answer carries a 2xxx code.
func FuzzPAPHandler(f *testing.F) {
	body, ctype := papMultipart(papDoctype20, `<push-message push-id="f1"><address address-value="2100000A"/></push-message>`, "Content-Type: text/plain\r\n", "x")
	f.Add(ctype, body)
	f.Add("application/xml", `<pap><statusquery-message push-id="f1"/></pap>`)
	f.Add("application/xml", `<pap><cancel-message push-id="f1"/></pap>`)
	f.Add("multipart/related; boundary=b", "--b\r\n\r\n<pap>\r\n--b--")
	f.Add("text/plain", "x")
	s, err := Open(f.Context(), Options{DataDir: f.TempDir(), Devices: seedDevices(), MaxActive: 1 << 30, Client: noNetwork()})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	h := s.Handler()
	f.Fuzz(func(t *testing.T, ctype, body string) {
		req := httptest.NewRequest("POST", "/pap", strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		w := httptest.NewRecorder()
		// Each input is handled within a short deadline (the store's waits end with the
		// request's context), so no input can keep the worker past -fuzztime.
		bounded.Run(t, 2*time.Second, "POST /pap", func(ctx context.Context) { h.ServeHTTP(w, req.WithContext(ctx)) })
		answer := w.Body.String()
		if (w.Code == 414 || w.Code == 431) && strings.Contains(answer, "-byte limit; put addresses and options in the PAP body") {
			return // HTTP's own size answer, given before any PAP is read (checkSize)
		}
		if !strings.Contains(answer, "<pap") {
			t.Fatalf("POST /pap %q = %d, not a PAP answer: %s", ctype, w.Code, answer)
		}
		d := xml.NewDecoder(strings.NewReader(answer))
		for {
			if _, err := d.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("POST /pap %q = %d, answer not well-formed (%v): %s", ctype, w.Code, err, answer)
			}
		}
		switch {
		case w.Code == 200 || w.Code == 202:
			if strings.Contains(answer, "<push-response") && !strings.Contains(answer, `code="1001"`) && !strings.Contains(answer, `code="2`) {
				t.Fatalf("POST /pap %q = %d, a push answered without 1001 or a 2xxx code: %s", ctype, w.Code, answer)
			}
		case w.Code >= 400 && w.Code < 500:
			if !strings.Contains(w.Body.String(), `code="2`) {
				t.Fatalf("POST /pap %q = %d without a PAP 2xxx code: %s", ctype, w.Code, w.Body.String())
			}
		default:
			t.Fatalf("POST /pap %q = %d: %s", ctype, w.Code, w.Body.String())
		}
	})
}

// memConn is a connection that reads a fixed request stream and records the answers.
type memConn struct {
	r *strings.Reader
	w bytes.Buffer
}

func (c *memConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return c.w.Write(p) }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzFront: raw bytes on a connection to the gateway's HTTP front. Nothing panics, and
// every answer is an HTTP/1.1 response whose error statuses carry a text.
func FuzzFront(f *testing.F) {
	f.Add("POST /push?DESTINATION=2100000A&PORT=7874&REQUESTURI=/ HTTP/1.1\r\nHost: gw\r\nX-RIM-Push-ID: f1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi")
	f.Add("POST /push?DESTINATION=2100000A HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
	f.Add("POST /push?DESTINATION=2100000A HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx")
	f.Add("POST /push?DESTINATION=2100000A HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nxx")
	f.Add("POST /pap HTTP/1.1\r\nContent-Type: application/xml\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n<pap>\r\n0\r\n\r\n")
	f.Add("GET /api/v1/pushes/f1 HTTP/1.1\r\n\r\nGET /metrics HTTP/1.0\r\n\r\n")
	f.Add("POST http://gw/push?DESTINATION=%zz HTTP/1.1\r\n\r\n")
	f.Add("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
	f.Add("GET /device/attach HTTP/1.1\r\nX: " + strings.Repeat("y", 7000) + "\r\n\r\n") // over the front's 6 KiB
	f.Add("HELLO\r\n\r\n")
	s, err := Open(f.Context(), Options{DataDir: f.TempDir(), Devices: seedDevices(), MaxActive: 1 << 30, MaxBodyBytes: 4096, MaxHeaderBytes: 512, Client: noNetwork()})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	f.Fuzz(func(t *testing.T, raw string) {
		c := &memConn{r: strings.NewReader(raw)}
		s.front.ServeConn(c)
		out := strings.TrimPrefix(c.w.String(), "HTTP/1.1 100 Continue\r\n\r\n")
		if out == "" {
			return // nothing complete to answer
		}
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
		if err != nil {
			t.Fatalf("answer to %q is not HTTP: %v\n%q", raw, err, out)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 400 && len(b) == 0 {
			t.Fatalf("answer %d to %q without a text", resp.StatusCode, raw)
		}
	})
}
