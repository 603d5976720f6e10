package registration

import (
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bbsim/bbsim/browserpush"
	"github.com/bbsim/bbsim/handset"
)

func (r *rig) call(t *testing.T, method, path, ctype, body string, auth bool) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, r.gateway+path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if auth {
		req.SetBasicAuth(appID, appPass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func papBody(id, addr, content string) string {
	return "--b\r\nContent-Type: application/xml\r\n\r\n<?xml version=\"1.0\"?><pap><push-message push-id=\"" + id +
		"\" source-reference=\"" + appID + "\"><address address-value=\"" + addr + "\"/></push-message></pap>\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\n" + content + "\r\n--b--\r\n"
}

const related = `multipart/related; type="application/xml"; boundary=b`

func TestPushServiceAPI(t *testing.T) {
	r := startRig(t, 0)
	a := r.device(t, "2100000A", true)
	waitFor(t, "active", func() bool { return appState(a).State == handset.AppActive })

	// The 8 KB payload limit.
	if _, body := r.call(t, "POST", "/mss/PD_pushRequest", related, papBody("big", "2100000A", strings.Repeat("x", 8<<10+1)), true); !strings.Contains(body, `code="2000"`) {
		t.Fatalf("over 8 KB: %s", body)
	}
	if _, body := r.call(t, "POST", "/mss/PD_pushRequest", related, papBody("fits", "2100000A", strings.Repeat("x", 8<<10)), true); !strings.Contains(body, `code="1001"`) {
		t.Fatalf("8 KB exactly: %s", body)
	}
	// source-reference must be the authenticated application.
	wrongSrc := strings.Replace(papBody("src", "2100000A", "x"), `source-reference="`+appID, `source-reference="other.app`, 1)
	if _, body := r.call(t, "POST", "/mss/PD_pushRequest", related, wrongSrc, true); !strings.Contains(body, `code="2001"`) {
		t.Fatalf("wrong source-reference: %s", body)
	}
	// Malformed XML and entities are refused with 2000.
	if code, body := r.call(t, "POST", "/mss/PD_pushRequest", "application/xml", `<!DOCTYPE pap [<!ENTITY x "y">]><pap><cancel-message push-id="&x;"/></pap>`, true); code != 400 || !strings.Contains(body, `code="2000"`) {
		t.Fatalf("entity: %d %s", code, body)
	}
	// Status query and cancel go to the same URL.
	waitFor(t, "the push delivered", func() bool { return pushes(a) == 1 })
	// The app has the push a moment before the gateway has the receiver's 200.
	var status string
	waitFor(t, "status delivered", func() bool {
		_, status = r.call(t, "POST", "/mss/PD_pushRequest", "application/xml", `<pap><statusquery-message push-id="fits"/></pap>`, true)
		return strings.Contains(status, `message-state="delivered"`)
	})
	if !strings.Contains(status, `address-value="2100000A"`) || !strings.Contains(status, `code="1000"`) {
		t.Fatalf("status query: %s", status)
	}
	if _, body := r.call(t, "POST", "/mss/PD_pushRequest", "application/xml", `<pap><statusquery-message push-id="nope"/></pap>`, true); !strings.Contains(body, `code="2004"`) {
		t.Fatalf("status of unknown push: %s", body)
	}
	if _, body := r.call(t, "POST", "/mss/PD_pushRequest", "application/xml", `<pap><cancel-message push-id="fits"/></pap>`, true); !strings.Contains(body, `<cancel-result code="2008"`) {
		t.Fatalf("cancel of a delivered push: %s", body)
	}
	// PD_cpDeregUser ends the subscription.
	if _, body := r.call(t, "GET", "/mss/PD_cpDeregUser?pin=2100000A", "", "", true); body != "rc=21000" {
		t.Fatalf("cpDeregUser: %s", body)
	}
	if _, body := r.call(t, "GET", "/mss/PD_cpDeregUser?pin=2100000A", "", "", true); body != "rc=22003" {
		t.Fatalf("cpDeregUser twice: %s", body)
	}
	if _, body := r.call(t, "GET", "/mss/PD_cpSub?cpAction=suspend&pin=2100FFFF", "", "", true); body != "rc=22003" {
		t.Fatalf("suspend of an unknown PIN: %s", body)
	}
	if _, body := r.call(t, "GET", "/mss/PD_cpSub?cpAction=explode&pin=2100000A", "", "", true); body != "rc=22000" {
		t.Fatalf("bad action: %s", body)
	}
}

func TestSubscriptionQueryRateLimit(t *testing.T) {
	r := startRig(t, 0)
	for i := range 100 {
		if _, body := r.call(t, "GET", "/mss/PD_cpSubQuery", "", "", true); !strings.Contains(body, `code="21000"`) {
			t.Fatalf("query %d: %s", i, body)
		}
	}
	if _, body := r.call(t, "GET", "/mss/PD_cpSubQuery", "", "", true); !strings.Contains(body, `code="22005"`) {
		t.Fatalf("query 101: %s", body)
	}
	r.now.Advance(11 * 60e9)
	if _, body := r.call(t, "GET", "/mss/PD_cpSubQuery", "", "", true); !strings.Contains(body, `code="21000"`) {
		t.Fatalf("after the window: %s", body)
	}
}

func TestBundledContentProvider(t *testing.T) {
	r := startRig(t, 0)
	cp := func(action, q string) string {
		_, body := r.call(t, "GET", "/cp/"+action+"?appid="+appID+"&address=2100000A&"+q, "", "", false)
		return body
	}
	tests := []struct{ action, q, want string }{
		{"subscribe", "username=&password=", "rc=10022"},
		{"unsubscribe", "username=u&password=p", "rc=10007"},
		{"subscribe", "username=u&password=p", "rc=10011"},
		{"subscribe", "username=u&password=p&osversion=7&model=9900", "rc=200"},
		{"subscribe", "username=mallory&password=p&osversion=7&model=9900", "rc=10025"},
		{"resume", "username=u&password=p", "rc=10021"},
		{"suspend", "username=u&password=p", "rc=200"},
		{"resume", "username=u&password=p", "rc=200"},
		{"unsubscribe", "username=u&password=p", "rc=200"},
	}
	for _, tt := range tests {
		if got := cp(tt.action, tt.q); got != tt.want {
			t.Errorf("/cp/%s?%s: %s, want %s", tt.action, tt.q, got, tt.want)
		}
	}
	if _, body := r.call(t, "GET", "/cp/subscribe?appid=nope&address=2100000A&username=u&password=p", "", "", false); body != "rc=10002" {
		t.Errorf("unknown app: %s", body)
	}
	if _, body := r.call(t, "GET", "/cp/subscribe?appid="+appID+"&address=zz&username=u&password=p", "", "", false); body != "rc=10001" {
		t.Errorf("bad address: %s", body)
	}
}

type countingTransport struct {
	mu    sync.Mutex
	paths map[string]int
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.paths[req.URL.Path]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (c *countingTransport) count(p string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paths[p]
}

// A restarted handset keeps its active registration and does not register again.
func TestNoReRegistrationAfterRestart(t *testing.T) {
	r := startRig(t, 0)
	dir := t.TempDir()
	ct := &countingTransport{paths: map[string]int{}}
	boot := func() (*handset.Handset, func()) {
		h, err := handset.New(handset.Options{PIN: "2100000E", Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		h.DeclareApp(appID, appPort, "")
		rx, _ := browserpush.New(browserpush.Options{Handset: h, Gateway: r.gateway})
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		go rx.Serve(ln)
		ag, _ := New(Options{Handset: h, Gateway: r.gateway, Client: &http.Client{Transport: ct}})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); rx.Run(ctx) }()
		go func() { defer wg.Done(); ag.Run(ctx) }()
		return h, func() { cancel(); wg.Wait(); rx.Close(); h.Close() }
	}
	h, stop := boot()
	waitFor(t, "active", func() bool { return appState(h).State == handset.AppActive })
	stop()
	regs := ct.count("/mss/PD_subReg")
	if regs != 2 {
		t.Fatalf("%d PD_subReg requests for one registration, want 2 (token, then rc)", regs)
	}
	h, stop = boot()
	defer stop()
	waitFor(t, "attached again", func() bool { return h.LinkToken() != "" })
	// A push through the kept subscription reaches the restarted handset; by then the
	// agent has long decided whether to register again.
	if _, body := r.papPush(t, appID, appPass, "after-restart", "2100000E"); !strings.Contains(body, `code="1001"`) {
		t.Fatalf("push after restart: %s", body)
	}
	waitFor(t, "the push", func() bool { return pushes(h) >= 1 })
	if appState(h).State != handset.AppActive || ct.count("/mss/PD_subReg") != regs {
		t.Fatalf("after restart: %+v, %d PD_subReg requests", appState(h), ct.count("/mss/PD_subReg"))
	}
}

// TestPushServiceCurl drives the BIS push API with curl, as a content provider's shell
// script would: a PAP 2.1 push with HTTP Basic, a status query, a bad password, and the
// subscription calls.
func TestPushServiceCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required (make test-deps installs it)")
	}
	r := startRig(t, 0)
	a := r.device(t, "2100000A", true)
	waitFor(t, "active", func() bool { return appState(a).State == handset.AppActive })
	curl := func(user, ctype, body, path string) (int, string) {
		t.Helper()
		args := []string{"-sS", "--max-time", "20", "-u", user, "-w", "\n%{http_code}"}
		if body != "" {
			args = append(args, "-H", "Content-Type: "+ctype, "--data-binary", body)
		}
		out, err := exec.CommandContext(t.Context(), "curl", append(args, r.gateway+path)...).Output()
		if err != nil {
			t.Fatalf("curl %s: %v", path, err)
		}
		text := string(out)
		i := strings.LastIndexByte(text, '\n')
		code, _ := strconv.Atoi(text[i+1:])
		return code, text[:i]
	}
	creds := appID + ":" + appPass
	if code, body := curl(creds, related, papBody("curl1", "2100000A", "from curl"), "/mss/PD_pushRequest"); code != 200 || !strings.Contains(body, `code="1001"`) {
		t.Fatalf("push = %d %s, want 1001", code, body)
	}
	waitFor(t, "the push at the app", func() bool { return pushes(a) == 1 })
	if got := appState(a).Pushes[0].Body; got != "from curl" {
		t.Fatalf("the app got %q", got)
	}
	waitFor(t, "status delivered", func() bool {
		_, body := curl(creds, "application/xml", `<pap><statusquery-message push-id="curl1"/></pap>`, "/mss/PD_pushRequest")
		return strings.Contains(body, `message-state="delivered"`)
	})
	if code, body := curl(appID+":wrong", related, papBody("curl2", "2100000A", "x"), "/mss/PD_pushRequest"); code != 403 || !strings.Contains(body, "wrong application ID or password") {
		t.Fatalf("wrong password = %d %s, want 403 naming the credentials", code, body)
	}
	if _, body := curl(creds, "", "", "/mss/PD_cpSub?cpAction=suspend&pin=2100000A"); body != "rc=21000" {
		t.Fatalf("suspend: %s", body)
	}
	if _, body := curl(creds, "", "", "/mss/PD_cpDeregUser?pin=2100000A"); body != "rc=21000" {
		t.Fatalf("cpDeregUser: %s", body)
	}
}
