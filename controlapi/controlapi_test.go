package controlapi

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/handset"
)

func newAPI(t *testing.T) (*handset.Handset, *httptest.Server) {
	t.Helper()
	h, err := handset.New(handset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(h, Options{KeepAlive: 50 * time.Millisecond}).Handler())
	t.Cleanup(srv.Close)
	return h, srv
}

func do(t *testing.T, method, url, body string, want int, out any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s = %d, want %d", method, url, resp.StatusCode, want)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, url, err)
		}
	}
}

func TestRoutes(t *testing.T) {
	h, srv := newAPI(t)
	h.AddMessage(handset.Message{Kind: handset.KindEmail, From: "bob@x", Subject: "hello", Text: "body"})
	c, _ := h.UpsertChannel(handset.Channel{ChannelID: "http://cp/news", Title: "News", URL: "http://cp/news", UnreadIcon: []byte("png"), UnreadIconURL: "http://cp/u.png", UnreadIconLoaded: true})
	h.PutCache(handset.CacheEntry{URL: "http://cp/news", Text: "headline"})
	h.DeclareApp("app1", 100, "")

	var dev handset.Device
	do(t, "GET", srv.URL+"/api/v1/device", "", 200, &dev)
	if dev.PIN != "2100000A" || dev.Coverage != "in" || dev.Unread != 1 {
		t.Errorf("device = %+v", dev)
	}
	var msgs []map[string]any
	do(t, "GET", srv.URL+"/api/v1/messages", "", 200, &msgs)
	if len(msgs) != 1 || msgs[0]["subject"] != "hello" || msgs[0]["read"] != false {
		t.Fatalf("messages = %v", msgs)
	}
	var m handset.Message
	do(t, "POST", srv.URL+"/api/v1/messages/"+msgs[0]["id"].(string)+"/open", "", 200, &m)
	if !m.Read || m.Text != "body" {
		t.Errorf("opened message = %+v", m)
	}
	do(t, "POST", srv.URL+"/api/v1/messages/999/open", "", 404, nil)

	var raw []map[string]any
	do(t, "GET", srv.URL+"/api/v1/channels", "", 200, &raw)
	if len(raw) != 1 || raw[0]["read"] != false || raw[0]["unread_icon"] != nil || raw[0]["unread_icon_url"] != "http://cp/u.png" {
		t.Fatalf("channels = %v", raw)
	}
	var opened OpenedChannel
	do(t, "POST", srv.URL+"/api/v1/channels/"+c.ID+"/open", "", 200, &opened)
	if !opened.Channel.Read || opened.Page == nil || opened.Page.Text != "headline" {
		t.Errorf("opened channel = %+v", opened)
	}
	do(t, "DELETE", srv.URL+"/api/v1/channels/"+c.ID, "", 200, nil)
	do(t, "DELETE", srv.URL+"/api/v1/channels/"+c.ID, "", 404, nil)
	var ev []handset.Event
	do(t, "GET", srv.URL+"/api/v1/events?format=json", "", 200, &ev)
	last := ev[len(ev)-1]
	if last.Kind != handset.EventChannelDeleted || last.Fields["by"] != "user" {
		t.Errorf("last event = %+v", last)
	}

	do(t, "POST", srv.URL+"/api/v1/coverage", `{"in":false}`, 200, &dev)
	if dev.Coverage != "out" {
		t.Errorf("after coverage off device = %+v", dev)
	}
	do(t, "POST", srv.URL+"/api/v1/coverage", `{"on":false}`, 400, nil)
	do(t, "POST", srv.URL+"/api/v1/coverage", `{}`, 400, nil)

	var a handset.App
	do(t, "POST", srv.URL+"/api/v1/apps/app1/deregister", "", 200, &a) // not registered: settled at once
	if a.Want != handset.WantDeregistered {
		t.Errorf("app after deregister request = %+v", a)
	}
	do(t, "POST", srv.URL+"/api/v1/apps/nope/register", "", 404, nil)
	do(t, "GET", srv.URL+"/api/v1/nothing", "", 404, nil)
	do(t, "GET", srv.URL+"/api/v1/events?after=x", "", 400, nil)
}

// TestEventStreamWithCurl reads the server-sent event stream with curl, as a script would.
func TestEventStreamWithCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is not installed (make test installs it)")
	}
	h, srv := newAPI(t)
	h.Emit("test.first", "first", nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", "-sN", srv.URL+"/api/v1/events")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cancel()
	sc := bufio.NewScanner(out)
	var kinds []string
	for sc.Scan() {
		line := sc.Text()
		if k, ok := strings.CutPrefix(line, "event: "); ok {
			kinds = append(kinds, k)
			if k == "test.first" {
				h.Emit("test.second", "second", map[string]string{"a": "b"})
			}
			if k == "test.second" {
				break
			}
		}
	}
	if strings.Join(kinds, ",") != "test.first,test.second" {
		t.Fatalf("curl saw events %v, want test.first,test.second", kinds)
	}
}

// TestWaitPageReset covers the long-poll ?wait= with ?match=, reading a page without
// opening it, the POST answers after the change, and POST /api/v1/reset.
func TestWaitPageReset(t *testing.T) {
	t.Parallel()
	h, srv := newAPI(t)
	// Nothing there: an empty list once the wait is over.
	var msgs []MessageSummary
	do(t, "GET", srv.URL+"/api/v1/messages?match=late&wait=100ms", "", 200, &msgs)
	if len(msgs) != 0 {
		t.Fatalf("messages = %+v, want none", msgs)
	}
	do(t, "GET", srv.URL+"/api/v1/messages?wait=forever", "", 400, nil)
	// A message that arrives while the request waits is the answer.
	got := make(chan []MessageSummary, 1)
	go func() {
		var out []MessageSummary
		resp, err := http.Get(srv.URL + "/api/v1/messages?match=LATE&wait=30s")
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
		}
		got <- out
	}()
	h.AddMessage(handset.Message{Kind: handset.KindEmail, From: "bob@x", Subject: "early"})
	waitEvent(t, h, handset.EventMailNew)
	h.AddMessage(handset.Message{Kind: handset.KindEmail, From: "bob@x", Subject: "the late one", Text: "late text"})
	if out := <-got; len(out) != 1 || out[0].Subject != "the late one" {
		t.Fatalf("waited messages = %+v", out)
	}
	var chs []ChannelView
	c, _ := h.UpsertChannel(handset.Channel{ChannelID: "http://cp/news", Title: "News", URL: "http://cp/news"})
	h.PutCache(handset.CacheEntry{URL: "http://cp/news", ContentType: "text/html", Body: []byte("<h1>Head</h1>"), Text: "Head"})
	do(t, "GET", srv.URL+"/api/v1/channels?match=news&wait=1s", "", 200, &chs)
	if len(chs) != 1 {
		t.Fatalf("channels = %+v", chs)
	}
	for _, tt := range []struct{ format, want string }{{"html", "<h1>Head</h1>"}, {"text", "Head"}} {
		resp, err := http.Get(srv.URL + "/api/v1/channels/" + c.ID + "/page?format=" + tt.format)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != tt.want {
			t.Errorf("page?format=%s = %d %q, want %q", tt.format, resp.StatusCode, b, tt.want)
		}
	}
	if c, _ := h.Channel(c.ID); c.Read {
		t.Error("reading the page opened the channel")
	}
	do(t, "GET", srv.URL+"/api/v1/channels/"+c.ID+"/page?format=pdf", "", 400, nil)
	var ev []handset.Event
	do(t, "GET", srv.URL+"/api/v1/events?format=json&kind=mail&wait=1s", "", 200, &ev)
	if len(ev) != 2 {
		t.Fatalf("message events = %+v", ev)
	}

	// Coverage off answers once the mail agent has let go of the connection.
	h.UpdateMail(func(st *handset.MailStatus) { st.State = handset.MailIdling })
	go func() {
		_, changed := h.Coverage()
		<-changed
		h.UpdateMail(func(st *handset.MailStatus) { st.State = handset.MailDisconnected })
	}()
	var dev handset.Device
	do(t, "POST", srv.URL+"/api/v1/coverage", `{"in":false}`, 200, &dev)
	if dev.Mail.State != handset.MailDisconnected {
		t.Errorf("mail after coverage off = %q, want disconnected", dev.Mail.State)
	}

	do(t, "POST", srv.URL+"/api/v1/reset", "", 200, &dev)
	if len(h.Messages()) != 0 || len(h.Channels()) != 0 || len(h.Cache()) != 0 || dev.Unread != 0 {
		t.Fatalf("after reset: %d messages, %d channels, %d cached", len(h.Messages()), len(h.Channels()), len(h.Cache()))
	}
	do(t, "GET", srv.URL+"/api/v1/events?format=json", "", 200, &ev)
	if len(ev) != 1 || ev[0].Kind != handset.EventReset {
		t.Fatalf("events after reset = %+v", ev)
	}
}

func waitEvent(t *testing.T, h *handset.Handset, kind string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var seq uint64
	for {
		ev, err := h.WaitEvents(ctx, seq)
		if err != nil {
			t.Fatalf("no %s event", kind)
		}
		for _, e := range ev {
			if e.Kind == kind {
				return
			}
			seq = e.Seq
		}
	}
}

// TestBrowserCannotDriveAPI sends what a web page open in the developer's browser can send
// to the API: a cross-origin "simple" POST, a rebound Host name, and a request without the
// token. None changes the device.
func TestBrowserCannotDriveAPI(t *testing.T) {
	t.Parallel()
	h, err := handset.New(handset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(h, Options{}).Handler())
	t.Cleanup(srv.Close)
	tokSrv := httptest.NewServer(New(h, Options{Token: "s3cret"}).Handler())
	t.Cleanup(tokSrv.Close)
	tests := []struct {
		name    string
		base    string
		method  string
		path    string
		headers map[string]string
		body    string
		want    int
	}{
		{"cross-origin text/plain", srv.URL, "POST", "/api/v1/coverage",
			map[string]string{"Origin": "http://evil.example", "Content-Type": "text/plain"}, `{"in":false}`, 403},
		{"cross-site fetch", srv.URL, "POST", "/api/v1/coverage",
			map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, `{"in":false}`, 403},
		{"text/plain without origin", srv.URL, "POST", "/api/v1/coverage",
			map[string]string{"Content-Type": "text/plain"}, `{"in":false}`, 415},
		{"form post", srv.URL, "POST", "/api/v1/coverage",
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, `{"in":false}`, 415},
		{"rebound host", srv.URL, "POST", "/api/v1/coverage",
			map[string]string{"Host": "attacker.example", "Content-Type": "application/json"}, `{"in":false}`, 421},
		{"rebound host read", srv.URL, "GET", "/api/v1/messages", map[string]string{"Host": "attacker.example:7880"}, "", 421},
		{"no token", tokSrv.URL, "POST", "/api/v1/coverage",
			map[string]string{"Content-Type": "application/json"}, `{"in":false}`, 401},
		{"wrong token", tokSrv.URL, "GET", "/api/v1/device", map[string]string{"Authorization": "Bearer nope"}, "", 401},
		{"token", tokSrv.URL, "GET", "/api/v1/device", map[string]string{"Authorization": "Bearer s3cret"}, "", 200},
		{"same-origin", srv.URL, "GET", "/api/v1/device",
			map[string]string{"Sec-Fetch-Site": "same-origin", "Host": "localhost"}, "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tt.method, tt.base+tt.path, strings.NewReader(tt.body))
			for k, v := range tt.headers {
				if k == "Host" {
					req.Host = v
				} else {
					req.Header.Set(k, v)
				}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var e struct{ Error string }
			json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%s %s = %d (%s), want %d", tt.method, tt.path, resp.StatusCode, e.Error, tt.want)
			}
			if tt.want != 200 && e.Error == "" {
				t.Errorf("%s %s: refusal without an error text", tt.method, tt.path)
			}
		})
	}
	if got := h.Device().Coverage; got != "in" {
		t.Errorf("coverage = %q after the refused requests, want in", got)
	}
}

func TestDeviceSoftware(t *testing.T) {
	_, srv := newAPI(t)
	var dev handset.Device
	do(t, "GET", srv.URL+"/api/v1/device", "", 200, &dev)
	if dev.Software.Version != handset.DefaultSoftware || !dev.Software.RendersTranscoded {
		t.Errorf("default software = %+v", dev.Software)
	}
	do(t, "POST", srv.URL+"/api/v1/device/software", `{"version":"6.0.0.141"}`, 200, &dev)
	if dev.Software.Version != "6.0.0.141" || dev.Software.RendersTranscoded || dev.Software.Browser != "WebKit" {
		t.Errorf("after POST software = %+v", dev.Software)
	}
	var e map[string]string
	do(t, "POST", srv.URL+"/api/v1/device/software", `{"version":"six"}`, 400, &e)
	if !strings.Contains(e["error"], `device software "six"`) {
		t.Errorf("bad version error = %q", e["error"])
	}
}

// TestOpenShowsBrowser: the browser that displays a page is WebKit from device software 6.0,
// the BlackBerry Browser before.
func TestOpenShowsBrowser(t *testing.T) {
	h, srv := newAPI(t)
	c, _ := h.UpsertChannel(handset.Channel{ChannelID: "http://x/", Title: "X", URL: "http://x/"})
	h.PutCache(handset.CacheEntry{URL: "http://x/", ContentType: "text/html", Text: "x"})
	m, _, _ := h.AddMessage(handset.Message{Kind: handset.KindBrowser, Subject: "M", URL: "http://x/", Key: "m"})
	for _, tt := range []struct{ version, browser string }{{"5.0.0", "BlackBerry Browser"}, {"6.0.0.203", "WebKit"}} {
		do(t, "POST", srv.URL+"/api/v1/device/software", `{"version":"`+tt.version+`"}`, 200, nil)
		var oc OpenedChannel
		do(t, "POST", srv.URL+"/api/v1/channels/"+c.ID+"/open", "", 200, &oc)
		var om OpenedMessage
		do(t, "POST", srv.URL+"/api/v1/messages/"+m.ID+"/open", "", 200, &om)
		if oc.Browser != tt.browser || om.Browser != tt.browser || oc.Error != nil {
			t.Errorf("%s: channel opened in %q (error %v), message in %q; want %q", tt.version, oc.Browser, oc.Error, om.Browser, tt.browser)
		}
	}
}
