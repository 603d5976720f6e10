package controlapi

import (
	"bufio"
	"context"
	"encoding/json"
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
	do(t, "POST", srv.URL+"/api/v1/apps/app1/deregister", "", 202, &a)
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
