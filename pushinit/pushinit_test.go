package pushinit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bbsim/bbsim/rim"
)

func TestRIMRequest(t *testing.T) {
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
	}))
	defer srv.Close()
	c := &Client{}
	r := c.Send(t.Context(), Push{
		Gateway: srv.URL, To: []string{"2100000A", "bob@bbsim.test", "$sales"},
		Type: "channel", Title: "News", ChannelID: "http://example.test/news",
		UnreadIcon: "http://example.test/u.png", ReadIcon: "http://example.test/r.png",
		Priority: "high", Reliability: "application", Body: []byte("<p>hi</p>"),
		NotifyURL: "http://127.0.0.1:7778/",
	})
	if !r.OK() {
		t.Fatalf("push refused: %v", r.Err)
	}
	if got.URL.Path != "/push" {
		t.Fatalf("path %q", got.URL.Path)
	}
	q := got.URL.Query()
	if d := q["DESTINATION"]; strings.Join(d, ",") != "2100000A,bob@bbsim.test,$sales" {
		t.Errorf("DESTINATION %q", d)
	}
	if !strings.Contains(got.URL.RawQuery, "%24sales") {
		t.Errorf("group not encoded as %%24: %s", got.URL.RawQuery)
	}
	if q.Get("PORT") != "7874" || q.Get("REQUESTURI") != "/" {
		t.Errorf("PORT/REQUESTURI %q %q", q.Get("PORT"), q.Get("REQUESTURI"))
	}
	for k, v := range map[string]string{
		"X-RIM-Push-Type": "Browser-Channel", "X-RIM-Push-Title": "News",
		"X-RIM-Push-Channel-ID": "http://example.test/news", "Content-Location": "http://example.test/news",
		"X-RIM-Push-Unread-Icon-URL": "http://example.test/u.png", "X-RIM-Push-Read-Icon-URL": "http://example.test/r.png",
		"X-RIM-Push-Priority": "high", "X-RIM-Push-Reliability-Mode": "application",
		"X-RIM-Push-NotifyURL": "http://127.0.0.1:7778/", "Content-Type": "text/html",
		"X-RIM-Push-ID": r.ID,
	} {
		if g := got.Header.Get(k); g != v {
			t.Errorf("%s = %q, want %q", k, g, v)
		}
	}
	if string(body) != "<p>hi</p>" {
		t.Errorf("body %q", body)
	}
}

func TestPAPRequest(t *testing.T) {
	for _, proto := range []Protocol{PAP, BIS} {
		t.Run(string(proto), func(t *testing.T) {
			var ctl, content string
			var contentHdr map[string][]string
			var user, pass, path string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				user, pass, _ = r.BasicAuth()
				path = r.URL.Path
				mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
				if err != nil || mt != "multipart/related" || params["type"] != "application/xml" {
					http.Error(w, "bad content type", 400)
					return
				}
				mr := multipart.NewReader(r.Body, params["boundary"])
				p, _ := mr.NextPart()
				b, _ := io.ReadAll(p)
				ctl = string(b)
				p, _ = mr.NextPart()
				b, _ = io.ReadAll(p)
				content, contentHdr = string(b), p.Header
				w.WriteHeader(http.StatusAccepted)
				fmt.Fprint(w, `<?xml version="1.0"?><pap><push-response push-id="x"><response-result code="1001" desc="Accepted"/></push-response></pap>`)
			}))
			defer srv.Close()
			r := (&Client{}).Send(t.Context(), Push{
				Protocol: proto, Gateway: srv.URL, To: []string{"bob+x@bbsim.test"}, Port: 100,
				Type: "message", Title: "T", Body: []byte("hello"), Reliability: "application",
				Username: "app1", Password: "pw",
			})
			if !r.OK() || r.Code != 1001 {
				t.Fatalf("result %+v", r)
			}
			wantPath := "/pap"
			if proto == BIS {
				wantPath = "/mss/PD_pushRequest"
			}
			if path != wantPath {
				t.Errorf("path %q, want %q", path, wantPath)
			}
			if user != "app1" || pass != "pw" {
				t.Errorf("basic auth %q %q", user, pass)
			}
			wantAddr := `address-value="WAPPUSH=bob+x%40bbsim.test%3A100/TYPE=USER@rim.net"`
			if proto == BIS {
				wantAddr = `address-value="bob+x@bbsim.test"`
				if !strings.Contains(ctl, `source-reference="app1"`) || !strings.Contains(ctl, "PAP 2.1") {
					t.Errorf("BIS control entity: %s", ctl)
				}
			}
			if !strings.Contains(ctl, wantAddr) {
				t.Errorf("address: want %s in\n%s", wantAddr, ctl)
			}
			if !strings.Contains(ctl, `delivery-method="confirmed"`) || !strings.Contains(ctl, `push-id="`+r.ID+`"`) {
				t.Errorf("control entity: %s", ctl)
			}
			if content != "hello" || contentHdr["X-Rim-Push-Type"][0] != "Browser-Message" {
				t.Errorf("content %q headers %v", content, contentHdr)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		code    int
		wantErr string
	}{
		{"bad address", 400, `<pap><push-response><response-result code="2002" desc="Address error"/></push-response></pap>`, 2002, "PAP code 2002 (Address error"},
		{"malformed", 400, `<pap><badmessage-response code="2000" desc="Bad request" bad-message-fragment="x"/></pap>`, 2000, "PAP code 2000"},
		{"forbidden", 403, "unknown recipient 2100FFFF\n", 0, "HTTP 403, forbidden"},
		{"auth", 401, "", 0, "--username"},
		{"proxy", 407, "", 0, "HTTP_PROXY=http://user:password@"},
		{"too big", 431, "", 0, "use PAP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			r := (&Client{}).Send(t.Context(), Push{Gateway: srv.URL, To: []string{"2100000A"}})
			var pe *Error
			if !errors.As(r.Err, &pe) {
				t.Fatalf("want *Error, got %v", r.Err)
			}
			if pe.HTTPStatus != tt.status || pe.Code != tt.code || !strings.Contains(pe.Error(), tt.wantErr) {
				t.Errorf("error %q (status %d code %d), want %q", pe.Error(), pe.HTTPStatus, pe.Code, tt.wantErr)
			}
			if r.Attempts != 1 {
				t.Errorf("%d attempts for a final refusal", r.Attempts)
			}
		})
	}
}

func TestRetryBusy(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			w.WriteHeader(503)
		case 2:
			w.WriteHeader(400)
			io.WriteString(w, `<pap><push-response><response-result code="4001" desc="busy"/></push-response></pap>`)
		}
	}))
	defer srv.Close()
	r := (&Client{Backoff: time.Millisecond}).Send(t.Context(), Push{Gateway: srv.URL, To: []string{"2100000A"}})
	if !r.OK() || r.Attempts != 3 {
		t.Fatalf("result %+v err %v", r, r.Err)
	}
}

// TestRetryAfter: a 503 with Retry-After holds the next try back that long, not the
// client's own (here 1 ms) backoff, as bbsim's gateway asks when it is full.
func TestRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		n := len(at)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(503)
		}
	}))
	defer srv.Close()
	r := (&Client{Backoff: time.Millisecond}).Send(t.Context(), Push{Gateway: srv.URL, To: []string{"2100000A"}})
	if !r.OK() || r.Attempts != 2 {
		t.Fatalf("result %+v err %v", r, r.Err)
	}
	if gap := at[1].Sub(at[0]); gap < 900*time.Millisecond {
		t.Fatalf("retried after %v, want the 1 s the server asked for", gap)
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0},
		{"1", time.Second},
		{" 7 ", 7 * time.Second},
		{"-3", 0},
		{"3600", maxRetryAfter},
		{"soon", 0},
		{now.Add(4 * time.Second).Format(http.TimeFormat), 4 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	} {
		if got := retryAfter(tc.v, now); got != tc.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	r := (&Client{}).Send(t.Context(), Push{Gateway: u, To: []string{"2100000A"}})
	if r.Err == nil || !strings.Contains(r.Err.Error(), "refused") {
		t.Fatalf("want connection refused, got %v", r.Err)
	}
}

func TestBadPush(t *testing.T) {
	tests := []struct {
		p    Push
		want string
	}{
		{Push{To: []string{"x"}}, "no push server URL"},
		{Push{Gateway: "ftp://x", To: []string{"x"}}, `push server "ftp://x": want an http:// or https:// URL`},
		{Push{Gateway: "http://x"}, "no recipient (--to)"},
		{Push{Gateway: "http://x", To: []string{"x"}, Type: "banner"}, `unknown push type "banner" (want channel, message, content or delete)`},
		{Push{Gateway: "http://x", To: []string{"x"}, Protocol: "smtp"}, `unknown protocol "smtp" (want rim, pap or bis)`},
		{Push{Gateway: "http://x", To: []string{"x"}, Protocol: BIS}, "BIS push needs the application ID and password (--username, --password)"},
	}
	for _, tt := range tests {
		if _, err := tt.p.Request(context.Background()); err == nil || err.Error() != tt.want {
			t.Errorf("Request(%+v) = %v, want %q", tt.p, err, tt.want)
		}
	}
}

func TestParseBulk(t *testing.T) {
	tests := []struct {
		in   string
		want string
		err  string
	}{
		{"# host port pin\n127.0.0.1 8080 2100000A\n\nlocalhost 9090 2100000B\n", "127.0.0.1:8080:2100000A localhost:9090:2100000B", ""},
		{"host,port,pin\n127.0.0.1,8080,2100000A\n", "127.0.0.1:8080:2100000A", ""},
		{"127.0.0.1, 8080, 2100000A\n", "127.0.0.1:8080:2100000A", ""},
		{"127.0.0.1 80x 2100000A\n", "", "line 1: bad port"},
		{"127.0.0.1 8080\n", "", "line 1: want"},
		{"\n# nothing\n", "", "no recipients"},
	}
	for _, tt := range tests {
		ts, err := ParseBulk(strings.NewReader(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		var got []string
		for _, x := range ts {
			got = append(got, fmt.Sprintf("%s:%d:%s", x.Host, x.Port, x.PIN))
		}
		if strings.Join(got, " ") != tt.want || err != nil {
			t.Errorf("%q: got %v %v", tt.in, got, err)
		}
	}
}

func TestBulkConcurrencyCap(t *testing.T) {
	var inflight, peak atomic.Int32
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		inflight.Add(-1)
		mu.Lock()
		seen[r.URL.Query().Get("DESTINATION")]++
		mu.Unlock()
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	var targets []Target
	for i := range 300 {
		targets = append(targets, Target{Host: u.Hostname(), Port: atoiPort(u.Port()), PIN: fmt.Sprintf("%08X", 0x21000000+i)})
	}
	var last Progress
	res := (&Client{}).Bulk(t.Context(), Push{Type: "message"}, targets, 20, func(p Progress) { last = p })
	for i, r := range res {
		if !r.OK() {
			t.Fatalf("target %d: %v", i, r.Err)
		}
	}
	if peak.Load() > 20 {
		t.Errorf("%d requests in flight, cap 20", peak.Load())
	}
	if len(seen) != 300 || last.Done != 300 || !strings.Contains(last.Bar(60), "100%") {
		t.Errorf("seen %d, last progress %+v %q", len(seen), last, last.Bar(60))
	}
}

func atoiPort(s string) int {
	var n int
	fmt.Sscanf(s, "%d", &n)
	return n
}

func TestNotifyHandler(t *testing.T) {
	var got []Notification
	srv := httptest.NewServer(NotifyHandler(func(n Notification) { got = append(got, n) }))
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL, nil)
	req.Header.Set("X-RIM-Push-ID", "p1")
	req.Header.Set("X-RIM-Push-Status", "200")
	req.Header.Set("X-RIM-Push-Destination", "2100000A")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("rim notification: %v %v", resp, err)
	}
	resp, err = http.Post(srv.URL, "application/xml", strings.NewReader(`<?xml version="1.0"?>
<!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 2.0//EN" "http://www.wapforum.org/DTD/pap_2.0.dtd">
<pap><resultnotification-message push-id="p2" message-state="expired" code="4500" desc="Expired">
<address address-value="WAPPUSH=2100000B%3A7874/TYPE=USER@rim.net"/></resultnotification-message></pap>`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), `resultnotification-response push-id="p2" code="1000"`) {
		t.Errorf("response %s", b)
	}
	if len(got) != 2 || got[0].Status != 200 || got[0].Destination != "2100000A" || got[1].Code != 4500 || got[1].State != rim.MessageStateExpired {
		t.Fatalf("got %+v", got)
	}
	if s := got[1].String(); !strings.Contains(s, "expired, code 4500 (Expired)") {
		t.Errorf("string %q", s)
	}
}

// TestBarKeepsItsWidth checks that the bar is as long at 100 % as at the start.
func TestBarKeepsItsWidth(t *testing.T) {
	want := -1
	for _, done := range []int{0, 7, 99, 1000} {
		p := Progress{Done: done, Total: 1000, Elapsed: time.Duration(done+1) * 7 * time.Millisecond}
		got := strings.IndexByte(p.Bar(72), ']')
		if want < 0 {
			want = got
		}
		if got != want {
			t.Errorf("Bar at %d/1000 is %d wide, want %d: %q", done, got, want, p.Bar(72))
		}
	}
}
