package browserpush

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbsim/bbsim/controlapi"
	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/pushserver"
	"github.com/bbsim/bbsim/rim"
)

const e2ePIN = "2100000A"

// e2e is the bundled push server, a handset with its receiver and agent, and a web site
// for icons and delete URLs, all on loopback.
type e2e struct {
	gw      string
	h       *handset.Handset
	r       *Receiver
	results chan pushserver.Result
	site    *httptest.Server
	hits    chan string
	png     []byte
	gif     []byte
}

func startE2E(t *testing.T) *e2e {
	t.Helper()
	e := &e2e{results: make(chan pushserver.Result, 64), hits: make(chan string, 64)}
	e.png, e.gif = icons(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/unread.png", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(e.png) })
	mux.HandleFunc("/read.gif", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(e.gif) })
	mux.HandleFunc("/broken.png", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("\x89PNG\r\n\x1a\nbroken")) })
	mux.HandleFunc("/bye/", func(w http.ResponseWriter, req *http.Request) { e.hits <- req.Method + " " + req.URL.Path })
	e.site = httptest.NewServer(mux)
	t.Cleanup(e.site.Close)

	ps, err := pushserver.Open(t.Context(), pushserver.Options{
		DataDir:    t.TempDir(),
		Devices:    []pushserver.Device{{PIN: e2ePIN, Email: "alice@bbsim.test"}},
		PacketSize: 2048,
		OnResult:   func(r pushserver.Result) { e.results <- r },
	})
	if err != nil {
		t.Fatal(err)
	}
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gdone := make(chan error, 1)
	go func() { gdone <- ps.Serve(gln) }()
	e.gw = "http://" + gln.Addr().String()

	e.h, err = handset.New(handset.Options{PIN: e2ePIN, Email: "alice@bbsim.test"})
	if err != nil {
		t.Fatal(err)
	}
	e.r, _, _ = startReceiver(t, Options{Handset: e.h, Gateway: e.gw})
	// Cleanups run last-registered first: the agent stops (and detaches) while the
	// gateway still runs, then the gateway stops, then the receiver.
	t.Cleanup(func() {
		// Spare connections clients dialled but never used would hold the gateway's
		// Shutdown for 5 s (net/http counts a connection without a request as busy).
		e.r.client.CloseIdleConnections()
		http.DefaultClient.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ps.Shutdown(ctx); err != nil {
			t.Errorf("pushserver Shutdown: %v", err)
		}
		<-gdone
	})
	runAgent(t, e.r)
	waitFor(t, func() bool { return e.h.LinkToken() != "" }, "attach")
	return e
}

// push sends a RIM push with curl and waits for the gateway's final result.
func (e *e2e) push(t *testing.T, id string, port int, headers []string, body []byte) pushserver.Result {
	t.Helper()
	url := fmt.Sprintf("%s/push?DESTINATION=%s&PORT=%d&REQUESTURI=/", e.gw, e2ePIN, port)
	code, _ := curlPush(t, url, append([]string{"X-RIM-Push-ID: " + id}, headers...), body)
	if code != 200 {
		t.Fatalf("push %s: gateway answered %d", id, code)
	}
	return e.result(t, id)
}

func (e *e2e) result(t *testing.T, id string) pushserver.Result {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case r := <-e.results:
			if r.PushID == id {
				return r
			}
			t.Logf("result of another push: %+v", r)
		case <-timeout:
			t.Fatalf("push %s: no result from the gateway", id)
		}
	}
}

func delivered(t *testing.T, r pushserver.Result) {
	t.Helper()
	if r.State != rim.StateDelivered || r.Code != 1000 {
		t.Fatalf("result = %+v, want delivered 1000", r)
	}
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	e := startE2E(t)
	h := e.h
	page := "http://news.example/today"

	t.Run("channel create with icons", func(t *testing.T) {
		delivered(t, e.push(t, "ch-1", 7874, []string{"X-RIM-Push-Type: Browser-Channel", "X-RIM-Push-Title: News",
			"X-RIM-Push-Channel-ID: " + page, "Content-Location: " + page, "Content-Type: text/html",
			"X-RIM-Push-Unread-Icon-URL: " + e.site.URL + "/unread.png", "X-RIM-Push-Read-Icon-URL: " + e.site.URL + "/read.gif",
			"X-Rim-Push-Delete-Url: " + e.site.URL + "/bye/news", "X-RIM-Push-Priority: high"},
			[]byte("<h1>Today</h1><p>first edition</p>")))
		ch, err := h.Channel(page)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Title != "News" || ch.Read || !ch.IconsLoaded || !bytes.Equal(ch.UnreadIcon, e.png) || !bytes.Equal(ch.ReadIcon, e.gif) {
			t.Fatalf("channel = %+v", ch)
		}
		if !hasEvent(h, handset.EventPushAlert, "title", "News") {
			t.Fatal("no alert for a high-priority channel")
		}
	})
	t.Run("channel replace with a broken icon", func(t *testing.T) {
		delivered(t, e.push(t, "ch-2", 7874, []string{"X-RIM-Push-Type: Browser-Channel", "X-RIM-Push-Title: News (late)",
			"X-RIM-Push-Channel-ID: " + page, "Content-Type: text/html",
			"X-RIM-Push-Unread-Icon-URL: " + e.site.URL + "/broken.png", "X-RIM-Push-Read-Icon-URL: " + e.site.URL + "/read.gif",
			"X-Rim-Push-Delete-Url: " + e.site.URL + "/bye/news"},
			[]byte("<h1>Today</h1><p>late edition</p>")))
		chs := h.Channels()
		if len(chs) != 1 || chs[0].Title != "News (late)" || chs[0].Read || chs[0].UnreadIconLoaded || chs[0].IconsLoaded || !chs[0].ReadIconLoaded {
			t.Fatalf("Channels() = %+v, want one unread channel with a fallback unread icon", chs)
		}
	})
	t.Run("open marks read", func(t *testing.T) {
		ch, pg, err := h.OpenChannel(handset.ChannelKey(page))
		if err != nil || !ch.Read || !strings.Contains(pg.Text, "late edition") {
			t.Fatalf("OpenChannel = %+v, %q, %v", ch, pg.Text, err)
		}
	})
	t.Run("user delete fetches the delete URL", func(t *testing.T) {
		if _, err := h.DeleteChannel(handset.ChannelKey(page), true); err != nil {
			t.Fatal(err)
		}
		select {
		case hit := <-e.hits:
			if hit != "GET /bye/news" {
				t.Fatalf("site got %q", hit)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("delete URL not fetched")
		}
	})
	t.Run("message in several packets", func(t *testing.T) {
		body := "<p>" + strings.Repeat("long story ", 1000) + "the end</p>"
		delivered(t, e.push(t, "msg-1", 7874, []string{"X-RIM-Push-Type: Browser-Message", "X-RIM-Push-Title: Story",
			"Content-Location: http://news.example/story", "Content-Type: text/html"}, []byte(body)))
		ms := h.Messages()
		if len(ms) != 1 || ms[0].Subject != "Story" || ms[0].Size != len(body) || !strings.HasSuffix(ms[0].Text, "the end") {
			t.Fatalf("Messages() = %+v", ms)
		}
	})
	t.Run("silent content", func(t *testing.T) {
		before := len(h.Events(0))
		delivered(t, e.push(t, "ct-1", 7874, []string{"X-RIM-Push-Type: Browser-Content",
			"Content-Location: http://news.example/sport", "Content-Type: text/plain"}, []byte("2-1")))
		if pg, ok := h.CachedPage("http://news.example/sport"); !ok || pg.Text != "2-1" {
			t.Fatalf("CachedPage = %+v, %v", pg, ok)
		}
		if len(h.Messages()) != 1 || len(h.Channels()) != 0 {
			t.Fatal("content push added a message or channel")
		}
		for _, ev := range h.Events(0)[before:] {
			if ev.Kind == handset.EventPushAlert || ev.Kind == handset.EventPushMessage || ev.Kind == handset.EventPushChannel {
				t.Fatalf("content push notified: %+v", ev)
			}
		}
	})
	t.Run("multipart", func(t *testing.T) {
		body, ct := multipartBody(t, []partSpec{
			{hdr: map[string]string{"X-RIM-Push-Type": "Browser-Content", "Content-Location": "http://mp/page", "Content-Type": "text/html"},
				body: "<p>part one</p>"},
			{hdr: map[string]string{"X-RIM-Push-Type": "Browser-Channel", "X-RIM-Push-Channel-ID": "http://mp/chan",
				"X-RIM-Push-Title": "MP", "Content-Type": "text/html"}, body: "<p>part two</p>"},
		})
		delivered(t, e.push(t, "mp-1", 7874, []string{"Content-Type: " + ct}, body))
		if pg, ok := h.CachedPage("http://mp/page"); !ok || pg.Text != "part one" {
			t.Fatalf("CachedPage(part one) = %+v, %v", pg, ok)
		}
		if ch, err := h.Channel("http://mp/chan"); err != nil || ch.Title != "MP" {
			t.Fatalf("Channel(MP) = %+v, %v", ch, err)
		}
	})
	t.Run("channel delete push", func(t *testing.T) {
		delivered(t, e.push(t, "del-1", 7874, []string{"X-RIM-Push-Type: Browser-Channel-Delete",
			"X-RIM-Push-Channel-ID: http://mp/chan"}, nil))
		if chs := h.Channels(); len(chs) != 0 {
			t.Fatalf("Channels() = %+v after delete", chs)
		}
	})
	t.Run("application reliability acknowledged", func(t *testing.T) {
		delivered(t, e.push(t, "app-1", 7874, []string{"X-RIM-Push-Type: Browser-Message", "X-RIM-Push-Title: Acked",
			"X-RIM-Push-Reliability: application"}, []byte("ack me")))
	})
	t.Run("no application on the port", func(t *testing.T) {
		r := e.push(t, "port-1", 3101, []string{"Content-Type: text/plain"}, []byte("anyone?"))
		if r.State != rim.StateFailed || r.Code != 4502 {
			t.Fatalf("result = %+v, want failed 4502", r)
		}
	})
	t.Run("application on the port", func(t *testing.T) {
		if _, err := h.DeclareApp("scores", 3102, ""); err != nil {
			t.Fatal(err)
		}
		delivered(t, e.push(t, "port-2", 3102, []string{"Content-Type: text/plain", "X-RIM-Push-Reliability: application",
			"Push-Message-ID: m-1"}, []byte("1-0")))
		a, err := h.App("scores")
		if err != nil || len(a.Pushes) != 1 || a.Pushes[0].Body != "1-0" || a.Pushes[0].ID != "port-2" {
			t.Fatalf("App = %+v, %v", a, err)
		}
	})
	t.Run("out of coverage then back", func(t *testing.T) {
		seq := lastSeq(h)
		h.SetCoverage(false)
		waitEvent(t, h, seq, handset.EventGateway, "state", "detached")
		// Sent with net/http this time.
		code, _ := post(t, nil, e.gw+"/push?DESTINATION="+e2ePIN+"&PORT=7874",
			map[string]string{"X-RIM-Push-ID": "late-1", "X-RIM-Push-Type": "Browser-Message", "X-RIM-Push-Title": "While away"},
			[]byte("queued"))
		if code != 200 {
			t.Fatalf("push = %d", code)
		}
		select {
		case r := <-e.results:
			t.Fatalf("result while out of coverage: %+v", r)
		case <-time.After(300 * time.Millisecond):
		}
		for _, m := range h.Messages() {
			if m.Subject == "While away" {
				t.Fatal("message arrived while out of coverage")
			}
		}
		h.SetCoverage(true)
		delivered(t, e.result(t, "late-1"))
		found := false
		for _, m := range h.Messages() {
			found = found || m.Subject == "While away"
		}
		if !found {
			t.Fatal("queued message not on the handset after return")
		}
	})
}

func lastSeq(h *handset.Handset) uint64 {
	ev := h.Events(0)
	if len(ev) == 0 {
		return 0
	}
	return ev[len(ev)-1].Seq
}

func hasEvent(h *handset.Handset, kind, key, value string) bool {
	for _, e := range h.Events(0) {
		if e.Kind == kind && e.Fields[key] == value {
			return true
		}
	}
	return false
}

// waitEvent waits for an event after seq with that kind and field.
func waitEvent(t *testing.T, h *handset.Handset, seq uint64, kind, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		evs, err := h.WaitEvents(ctx, seq)
		if err != nil {
			t.Fatalf("no %s event with %s=%s: %v", kind, key, value, err)
		}
		for _, e := range evs {
			seq = e.Seq
			if e.Kind == kind && e.Fields[key] == value {
				return
			}
		}
	}
}

// TestEndToEndManyPushes sends many pushes at once through the gateway and checks every
// one reaches the handset exactly once.
func TestEndToEndManyPushes(t *testing.T) {
	t.Parallel()
	e := startE2E(t)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost,
				e.gw+"/push?DESTINATION="+e2ePIN+"&PORT=7874", strings.NewReader(fmt.Sprintf("body %d", i)))
			req.Header.Set("X-RIM-Push-ID", fmt.Sprintf("many-%d", i))
			req.Header.Set("X-RIM-Push-Type", "Browser-Message")
			req.Header.Set("X-RIM-Push-Title", fmt.Sprintf("m%d", i))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			drain(resp.Body)
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("push %d = %d", i, resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if err := errors.Join(all...); err != nil {
		t.Fatal(err)
	}
	for range n {
		select {
		case r := <-e.results:
			delivered(t, r)
		case <-time.After(20 * time.Second):
			t.Fatal("missing results")
		}
	}
	seen := map[string]int{}
	for _, m := range e.h.Messages() {
		seen[m.Subject]++
	}
	for i := range n {
		if c := seen[fmt.Sprintf("m%d", i)]; c != 1 {
			t.Errorf("message m%d listed %d times, want once", i, c)
		}
	}
}

// TestEndToEndCurlScript runs a shell script of curl pushes against the bundled gateway.
func TestEndToEndCurlScript(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed for this test (apt-get install curl)")
	}
	e := startE2E(t)
	cmd := exec.CommandContext(t.Context(), "sh", "testdata/push.sh")
	cmd.Env = append(os.Environ(), "GW="+e.gw, "PIN="+e2ePIN, "SITE="+e.site.URL)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("push.sh: %v\n%s", err, out)
	}
	for _, id := range []string{"script-channel", "script-message", "script-content"} {
		delivered(t, e.result(t, id))
	}
	ch, err := e.h.Channel("http://weather.example/")
	if err != nil || ch.Title != "Weather" || !ch.IconsLoaded {
		t.Fatalf("Channel = %+v, %v", ch, err)
	}
	pg, ok := e.h.CachedPage("http://weather.example/")
	if !ok || !strings.Contains(pg.Text, "Sunny, more[1]") || len(pg.Links) != 1 || pg.Links[0] != "http://weather.example/more" {
		t.Fatalf("channel page = %q %q, %v", pg.Text, pg.Links, ok)
	}
	ms := e.h.Messages()
	if len(ms) != 1 || ms[0].Subject != "Storm warning" || ms[0].Text != "Wind from the west." || ms[0].From != "weather.example" {
		t.Fatalf("Messages() = %+v", ms)
	}
	if pg, ok := e.h.CachedPage("http://weather.example/radar"); !ok || pg.Text != "Radar: clear" || pg.ExpiresAt.Year() != 2099 {
		t.Fatalf("radar page = %+v, %v", pg, ok)
	}
}

// TestEndToEndControlAPI checks what a push application's tests see through the handset's
// control API: the channel with its icons, open -> read with the page, the browser cache,
// and a user delete (DELETE) that fetches the delete URL.
func TestEndToEndControlAPI(t *testing.T) {
	t.Parallel()
	e := startE2E(t)
	api := httptest.NewServer(controlapi.New(e.h, controlapi.Options{}).Handler())
	defer api.Close()
	getJSON := func(method, path string, out any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, api.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer drain(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s = %d", method, path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	delivered(t, e.push(t, "api-1", 7874, []string{"X-RIM-Push-Type: Browser-Channel", "X-RIM-Push-Title: Deals",
		"X-RIM-Push-Channel-ID: http://shop.example/deals", "Content-Type: text/html",
		"X-RIM-Push-Unread-Icon-URL: " + e.site.URL + "/unread.png", "X-RIM-Push-Read-Icon-URL: " + e.site.URL + "/read.gif",
		"X-Rim-Push-Delete-Url: " + e.site.URL + "/bye/deals"}, []byte("<ul><li>Shoes</li><li>Hats</li></ul>")))

	var chs []controlapi.ChannelView
	getJSON("GET", "/api/v1/channels", &chs)
	if len(chs) != 1 || chs[0].Title != "Deals" || chs[0].Read || !chs[0].IconsLoaded || chs[0].URL != "http://shop.example/deals" {
		t.Fatalf("GET /api/v1/channels = %+v", chs)
	}
	var opened controlapi.OpenedChannel
	getJSON("POST", "/api/v1/channels/"+chs[0].ID+"/open", &opened)
	if !opened.Channel.Read || opened.Page == nil || opened.Page.Text != "* Shoes\n* Hats" {
		t.Fatalf("open = %+v, page %+v", opened.Channel, opened.Page)
	}
	var cache []handset.CacheEntry
	getJSON("GET", "/api/v1/browser/cache", &cache)
	if len(cache) != 1 || cache[0].URL != "http://shop.example/deals" {
		t.Fatalf("GET /api/v1/browser/cache = %+v", cache)
	}
	var deleted controlapi.ChannelView
	getJSON("DELETE", "/api/v1/channels/"+chs[0].ID, &deleted)
	select {
	case hit := <-e.hits:
		if hit != "GET /bye/deals" {
			t.Fatalf("site got %q", hit)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("delete URL not fetched after DELETE /api/v1/channels/{id}")
	}
}
