package bbsimtest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bbsim/bbsim/bbsimtest"
	"github.com/bbsim/bbsim/config"
	"github.com/bbsim/bbsim/controlapi"
	"github.com/bbsim/bbsim/handset"
)

// TestBlackBerry60TranscodedPush replays RIM's knowledge-base case end to end, with RIM
// pushes over HTTP to a running gateway and a handset attached to it: BlackBerry 6.0.0.141
// cannot open a channel whose HTML the gateway transcoded, and each of the three ways out
// opens it.
func TestBlackBerry60TranscodedPush(t *testing.T) {
	t.Parallel()
	sim := bbsimtest.Start(t, &bbsimtest.Options{Configure: func(c *config.Config) { c.Handset.Software = "6.0.0.141" }})
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, "<html><body><h1>Fetched %s</h1></body></html>", r.URL.Path)
	}))
	t.Cleanup(site.Close)

	send := func(typ, id, transcode, body string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, sim.RIMPushURL(7874), strings.NewReader(body))
		req.Header.Set("X-RIM-Push-Type", typ)
		req.Header.Set("X-RIM-Push-Title", id)
		req.Header.Set("X-RIM-Push-Channel-ID", site.URL+"/"+id)
		req.Header.Set("Content-Location", site.URL+"/"+id)
		req.Header.Set("Content-Type", "text/html")
		if transcode != "" {
			req.Header.Set("X-RIM-Transcode-Content", transcode)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("push %s: %s", id, resp.Status)
		}
	}
	push := func(id, transcode, body string) handset.Channel {
		t.Helper()
		send("Browser-Channel", id, transcode, body)
		return sim.WaitChannel(id)
	}
	post := func(path, body string, out any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, sim.APIURL+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %s", path, resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	open := func(c handset.Channel) controlapi.OpenedChannel {
		t.Helper()
		var o controlapi.OpenedChannel
		post("/api/v1/channels/"+c.ID+"/open", "", &o)
		return o
	}
	software := func(v string) {
		t.Helper()
		var d handset.Device
		post("/api/v1/device/software", `{"version":"`+v+`"}`, &d)
		if d.Software.Version != v {
			t.Fatalf("software = %+v, want %s", d.Software, v)
		}
	}
	page := "<html><body><h1>Breaking news</h1></body></html>"

	// The failure: RIM's samples send X-RIM-Transcode-Content: */*.
	news := push("news", "*/*", page)
	o := open(news)
	if o.Error == nil || o.Error.Code != "transcoded" || o.Page != nil {
		t.Fatalf("6.0.0.141 opening a transcoded channel = %+v, want the transcoded error", o)
	}
	if ev := sim.WaitEvent(handset.EventOpenFailed); ev.Fields["software"] != "6.0.0.141" {
		t.Errorf("event = %+v", ev)
	}

	// A browser message fails the same way.
	send("Browser-Message", "alert", "*/*", page)
	msg := sim.WaitMessage("alert")
	var om controlapi.OpenedMessage
	post("/api/v1/messages/"+msg.ID+"/open", "", &om)
	if om.Error == nil || om.Error.Code != "transcoded" {
		t.Errorf("6.0.0.141 opening a transcoded browser message = %+v, want the transcoded error", om)
	}

	// Way out 1: other device software.
	for _, v := range []string{"6.0.0.203", "5.0.0", "7.1.0"} {
		software(v)
		if o := open(news); o.Error != nil || o.Page == nil || !strings.Contains(o.Page.Text, "Breaking news") {
			t.Errorf("%s opening the transcoded channel = %+v, want the page", v, o)
		}
	}
	software("6.0.0.141")

	// Way out 2: the initiator excludes HTML from transcoding.
	for i, v := range []string{"image/*", "none", "*/*, !text/html"} {
		c := push(fmt.Sprintf("plain%d", i), v, page)
		if o := open(c); o.Error != nil || o.Page == nil || o.Page.Transcoded || !strings.Contains(o.Page.Text, "Breaking news") {
			t.Errorf("X-RIM-Transcode-Content: %s: open = %+v, want the page", v, o)
		}
	}

	// Way out 3: push the URL only; the browser fetches the page in coverage...
	c := push("byurl", "*/*", "")
	if o := open(c); o.Error != nil || o.Page == nil || !strings.Contains(o.Page.Text, "Fetched /byurl") {
		t.Errorf("URL-only push opened in coverage = %+v, want the fetched page", o)
	}
	// ...and out of coverage it is not available offline.
	c = push("offline", "*/*", "")
	var d handset.Device
	post("/api/v1/coverage", `{"in":false}`, &d)
	if o := open(c); o.Error == nil || o.Error.Code != "offline" || !strings.Contains(o.Error.Text, "not available offline") {
		t.Errorf("URL-only push opened out of coverage = %+v, want not available offline", o)
	}
}
