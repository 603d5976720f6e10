package registration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbsim/bbsim/browserpush"
	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/pushserver"
	"github.com/bbsim/bbsim/pushserver/bis"
)

const appID, appPass, appPort = "com.example.chat", "s3cret", 33333

func TestClassify(t *testing.T) {
	tests := []struct {
		rc     int
		action string
	}{
		{200, ActionSuccess}, {10003, ActionSuccess},
		{10008, ActionRetry}, {10009, ActionRetry},
		{10001, ActionFinal}, {10002, ActionFinal}, {10004, ActionFinal}, {10007, ActionFinal},
		{10010, ActionFinal}, {10011, ActionFinal}, {10012, ActionFinal}, {12345, ActionFinal},
	}
	for _, tt := range tests {
		action, meaning := Classify(tt.rc)
		if action != tt.action || meaning == "" {
			t.Errorf("rc %d: %s %q, want %s", tt.rc, action, meaning, tt.action)
		}
	}
}

type rig struct {
	ps      *pushserver.Server
	svc     *bis.Service
	gateway string
	now     *clock
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func startRig(t *testing.T, maxSubs int) *rig {
	t.Helper()
	r := &rig{now: &clock{t: time.Now()}}
	var svc *bis.Service
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { svc.Handler().ServeHTTP(w, req) })
	ps, err := pushserver.Open(t.Context(), pushserver.Options{DataDir: t.TempDir(), Mount: map[string]http.Handler{"/mss/": h, "/cp/": h},
		OnResult: func(res pushserver.Result) { svc.HandleResult(res) }})
	if err != nil {
		t.Fatal(err)
	}
	svc, err = bis.New(bis.Options{DataDir: t.TempDir(), Gateway: ps, Now: r.now.Now,
		Apps: []bis.App{{ID: appID, Password: appPass, Port: appPort, MaxSubscribers: maxSubs}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ps.Serve(ln)
	t.Cleanup(func() { ps.Close(); svc.Close() })
	r.ps, r.svc, r.gateway = ps, svc, "http://"+ln.Addr().String()
	return r
}

// device is a handset with its receiver attached to the gateway and its agent running.
func (r *rig) device(t *testing.T, pin string, agent bool) *handset.Handset {
	return r.deviceApp(t, pin, agent, true)
}

func (r *rig) deviceApp(t *testing.T, pin string, agent, app bool) *handset.Handset {
	t.Helper()
	h, err := handset.New(handset.Options{PIN: pin, Email: strings.ToLower(pin) + "@bbsim.test"})
	if err != nil {
		t.Fatal(err)
	}
	if app {
		h.DeclareApp(appID, appPort, "")
	}
	rx, err := browserpush.New(browserpush.Options{Handset: h, Gateway: r.gateway})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go rx.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); rx.Run(ctx) }()
	if agent {
		ag, err := New(Options{Handset: h, Gateway: r.gateway, Backoff: struct{ First, Max time.Duration }{50 * time.Millisecond, time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); ag.Run(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait(); rx.Close(); h.Close() })
	waitFor(t, "attached", func() bool { return h.LinkToken() != "" })
	return h
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func appState(h *handset.Handset) handset.App {
	a, _ := h.App(appID)
	return a
}

// papPush sends a PAP 2.1 push to /mss/PD_pushRequest the way a plain HTTP client does.
func (r *rig) papPush(t *testing.T, user, pass, id string, addrs ...string) (int, string) {
	t.Helper()
	var ad strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&ad, "<address address-value=\"%s\"/>\r\n", a)
	}
	body := "--b0undary\r\nContent-Type: application/xml; charset=UTF-8\r\n\r\n" +
		"<?xml version=\"1.0\"?>\r\n<!DOCTYPE pap PUBLIC \"-//WAPFORUM//DTD PAP 2.1//EN\" \"http://www.openmobilealliance.org/tech/DTD/pap_2.1.dtd\">\r\n" +
		"<pap>\r\n<push-message push-id=\"" + id + "\" source-reference=\"" + appID + "\" deliver-before-timestamp=\"2099-01-01T00:00:00Z\">\r\n" +
		ad.String() + "<quality-of-service delivery-method=\"unconfirmed\"/>\r\n</push-message>\r\n</pap>\r\n" +
		"--b0undary\r\nContent-Type: text/plain\r\nPush-Message-ID: " + id + "\r\n\r\nhello " + id + "\r\n--b0undary--\r\n"
	req, _ := http.NewRequest("POST", r.gateway+"/mss/PD_pushRequest", strings.NewReader(body))
	req.Header.Set("Content-Type", `multipart/related; type="application/xml"; boundary=b0undary`)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func pushes(h *handset.Handset) int { return len(appState(h).Pushes) }

func TestEndToEnd(t *testing.T) {
	r := startRig(t, 0)
	a := r.device(t, "2100000A", true)
	b := r.device(t, "2100000B", true)
	waitFor(t, "both apps active", func() bool {
		return appState(a).State == handset.AppActive && appState(b).State == handset.AppActive
	})

	code, body := r.papPush(t, appID, appPass, "p1", "2100000A")
	if code != 200 || !strings.Contains(body, `code="1001"`) {
		t.Fatalf("push: %d %s", code, body)
	}
	waitFor(t, "the push on the app", func() bool { return pushes(a) == 1 })
	if p := appState(a).Pushes[0]; !strings.Contains(p.Body, "hello p1") {
		t.Fatalf("push %+v", p)
	}

	if code, _ := r.papPush(t, appID, "wrong", "p2", "2100000A"); code != http.StatusForbidden {
		t.Fatalf("wrong password: %d", code)
	}
	if code, _ := r.papPush(t, "", "", "p2", "2100000A"); code != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d", code)
	}
	if _, body := r.papPush(t, appID, appPass, "p3", "2100FFFF"); !strings.Contains(body, `code="2002"`) {
		t.Fatalf("non-subscriber: %s", body)
	}

	r.papPush(t, appID, appPass, "all1", "push_all")
	waitFor(t, "push_all on both", func() bool { return pushes(a) == 2 && pushes(b) == 1 })

	// Suspended: nothing; resumed: pushes again.
	admin := func(path string) string {
		req, _ := http.NewRequest("GET", r.gateway+path, nil)
		req.SetBasicAuth(appID, appPass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := admin("/mss/PD_cpSub?cpAction=suspend&pin=2100000B"); got != "rc=21000" {
		t.Fatalf("suspend: %s", got)
	}
	if q := admin("/mss/PD_cpSubQuery"); !strings.Contains(q, `pin="2100000B" status="suspended"`) || !strings.Contains(q, `pin="2100000A" status="active"`) {
		t.Fatalf("query: %s", q)
	}
	r.papPush(t, appID, appPass, "all2", "push_all")
	waitFor(t, "push_all on A", func() bool { return pushes(a) == 3 })
	// Once the push is final for all its recipients, B's share would have arrived.
	waitFor(t, "all2 delivered to all its recipients", func() bool {
		_, status := r.call(t, "POST", "/mss/PD_pushRequest", "application/xml", `<pap><statusquery-message push-id="all2"/></pap>`, true)
		return strings.Contains(status, `message-state="delivered"`)
	})
	if pushes(b) != 1 {
		t.Fatal("a suspended subscriber got a push")
	}
	admin("/mss/PD_cpSub?cpAction=resume&pin=2100000B")
	r.papPush(t, appID, appPass, "all3", "push_all")
	waitFor(t, "resumed B gets pushes", func() bool { return pushes(b) == 2 })

	// Deregistration on the device stops delivery.
	a.RequestApp(appID, handset.WantDeregistered)
	waitFor(t, "deregistered", func() bool { return appState(a).State == handset.AppNotRegistered })
	if _, body := r.papPush(t, appID, appPass, "p4", "2100000A"); !strings.Contains(body, `code="2002"`) {
		t.Fatalf("push after deregistration: %s", body)
	}
}

func TestTokenAttacks(t *testing.T) {
	r := startRig(t, 0)
	a := r.device(t, "2100000A", false)
	b := r.device(t, "2100000B", false)
	get := func(h *handset.Handset, suffix string) string {
		req, _ := http.NewRequest("GET", r.gateway+"/mss/PD_subReg?"+url.Values{"serviceid": {appID}, "osversion": {"7.1"}, "model": {"9900"}}.Encode()+suffix, nil)
		if h != nil {
			req.Header.Set("X-Bbsim-Link-Token", h.LinkToken())
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	tok := get(a, "")
	if len(tok) < 32 || strings.HasPrefix(tok, "rc=") {
		t.Fatalf("token %q: want at least 128 bits", tok)
	}
	if tok2 := get(a, ""); tok2 == tok {
		t.Fatal("two tokens alike")
	}
	tests := []struct {
		name string
		h    *handset.Handset
		tok  string
		want string
	}{
		{"guessed", a, "00112233445566778899aabbccddeeff", "rc=10009"},
		{"another device's", b, tok, "rc=10009"},
		{"no device link", nil, tok, "rc=10001"},
		{"the real one", a, tok, "rc=200"},
		{"reused", a, tok, "rc=10009"},
	}
	for _, tt := range tests {
		if got := get(tt.h, "&"+tt.tok); got != tt.want {
			t.Errorf("%s token: %s, want %s", tt.name, got, tt.want)
		}
	}
	old := get(b, "")
	r.now.Advance(6 * time.Minute)
	if got := get(b, "&"+old); got != "rc=10008" {
		t.Errorf("expired token: %s", got)
	}
	if got := get(a, "&"+get(a, "")); got != "rc=10003" {
		t.Errorf("already subscribed: %s", got)
	}
}

func TestRCCodes(t *testing.T) {
	r := startRig(t, 1)
	a := r.device(t, "2100000A", false)
	b := r.device(t, "2100000B", false)
	call := func(h *handset.Handset, path string, q url.Values) string {
		get := func(suffix string) string {
			req, _ := http.NewRequest("GET", r.gateway+path+"?"+q.Encode()+suffix, nil)
			req.Header.Set("X-Bbsim-Link-Token", h.LinkToken())
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return string(body)
		}
		tok := get("")
		if strings.HasPrefix(tok, "rc=") {
			return tok
		}
		return get("&" + tok)
	}
	reg := url.Values{"serviceid": {appID}, "osversion": {"7.1"}, "model": {"9900"}}
	tests := []struct {
		name string
		h    *handset.Handset
		path string
		q    url.Values
		want string
	}{
		{"unknown app", a, "/mss/PD_subReg", url.Values{"serviceid": {"nope"}, "osversion": {"7"}, "model": {"x"}}, "rc=10002"},
		{"no model", a, "/mss/PD_subReg", url.Values{"serviceid": {appID}, "osversion": {"7"}}, "rc=10011"},
		{"dereg unknown", a, "/mss/PD_subDereg", url.Values{"serviceid": {appID}}, "rc=10007"},
		{"register", a, "/mss/PD_subReg", reg, "rc=200"},
		{"over the limit", b, "/mss/PD_subReg", reg, "rc=10010"},
		{"again", a, "/mss/PD_subReg", reg, "rc=10003"},
		{"dereg", a, "/mss/PD_subDereg", url.Values{"serviceid": {appID}}, "rc=200"},
		{"dereg twice", a, "/mss/PD_subDereg", url.Values{"serviceid": {appID}}, "rc=10004"},
	}
	for _, tt := range tests {
		if got := call(tt.h, tt.path, tt.q); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestAgentStopsOnRejection(t *testing.T) {
	r := startRig(t, 0)
	h, err := handset.New(handset.Options{PIN: "2100000C"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.DeclareApp("unknown.app", 4000, "")
	rx, _ := browserpush.New(browserpush.Options{Handset: h, Gateway: r.gateway})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go rx.Serve(ln)
	defer rx.Close()
	ag, _ := New(Options{Handset: h, Gateway: r.gateway})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rx.Run(ctx); close(done) }()
	go ag.Run(ctx)
	defer func() { cancel(); <-done }()
	waitFor(t, "failed", func() bool { a, _ := h.App("unknown.app"); return a.State == handset.AppFailed })
	a, _ := h.App("unknown.app")
	if a.LastRC != 10002 || !strings.Contains(a.Reason, "invalid application ID") {
		t.Fatalf("app %+v", a)
	}
}

// A push that finds no application listening ends with 4502 and drops the subscription.
func TestNoAppListeningDropsSubscription(t *testing.T) {
	r := startRig(t, 0)
	h := r.deviceApp(t, "2100000D", false, false)
	get := func(suffix string) string {
		req, _ := http.NewRequest("GET", r.gateway+"/mss/PD_subReg?"+url.Values{"serviceid": {appID}, "osversion": {"7.1"}, "model": {"9900"}}.Encode()+suffix, nil)
		req.Header.Set("X-Bbsim-Link-Token", h.LinkToken())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := get("&" + get("")); got != "rc=200" {
		t.Fatalf("register: %s", got)
	}
	if _, body := r.papPush(t, appID, appPass, "lost", "2100000D"); !strings.Contains(body, `code="1001"`) {
		t.Fatalf("push: %s", body)
	}
	waitFor(t, "the subscription dropped", func() bool {
		return len(r.svc.Subscribers(appID, bis.StateActive)) == 0
	})
	st, err := r.ps.PushState("lost")
	if err != nil || len(st.Recipients) != 1 || st.Recipients[0].Code != 4502 {
		t.Fatalf("push state %+v %v", st, err)
	}
}
