package pushserver

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/rim"
)

// TestAttachNeedsDeviceIdentity races two listeners for alice's PIN: her handset, which
// knows her password, and another program on the machine, which does not. The intruder's
// attach is refused and leaves her link alone, so her next push reaches her handset.
func TestAttachNeedsDeviceIdentity(t *testing.T) {
	t.Parallel()
	_, base := startServer(t, Options{Devices: []Device{{PIN: "2100000A", Email: "alice@bbsim.test", Password: "blackberry"}}})
	got := make(chan string, 4)
	listener := func(name string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got <- name + ": " + string(b)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	alice, intruder := listener("alice"), listener("intruder")
	attach := func(url, password string) (int, map[string]any) {
		body := map[string]any{"pin": "2100000A", "receiver_url": url + "/"}
		if password != "" {
			body["password"] = password
		}
		return postJSON(t, base+"/device/attach", body)
	}
	if code, out := attach(alice.URL, "blackberry"); code != 200 || out["link_token"] == "" {
		t.Fatalf("alice's attach: %d %v", code, out)
	}
	for _, pw := range []string{"", "guess"} {
		code, out := attach(intruder.URL, pw)
		if code != http.StatusUnauthorized || out["link_token"] != nil {
			t.Errorf("intruder's attach with password %q: %d %v, want 401 and no link token", pw, code, out)
		}
	}
	resp, err := http.Post(base+"/push?DESTINATION=2100000A&PORT=7874&REQUESTURI=/", "text/plain", strings.NewReader("for alice"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case g := <-got:
		if !strings.HasPrefix(g, "alice: ") {
			t.Errorf("the push went to %s", g)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the push reached no listener")
	}
}

// TestReadAPIsNeedPushAuth reads a push's status and the device list without credentials,
// with wrong ones and with an initiator's, under push authentication.
func TestReadAPIsNeedPushAuth(t *testing.T) {
	t.Parallel()
	_, base := startServer(t, Options{PushAuth: []Initiator{{Name: "app", Password: "pw"}}})
	for _, path := range []string{"/api/v1/devices", "/api/v1/pushes/nope"} {
		for _, tt := range []struct {
			user, pass string
			want       int
		}{{"", "", 401}, {"app", "wrong", 403}, {"app", "pw", 0}} {
			req, _ := http.NewRequest("GET", base+path, nil)
			if tt.user != "" {
				req.SetBasicAuth(tt.user, tt.pass)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if tt.want != 0 && resp.StatusCode != tt.want || tt.want == 0 && (resp.StatusCode == 401 || resp.StatusCode == 403) {
				t.Errorf("GET %s as %q: %d, want %d (0: allowed)", path, tt.user, resp.StatusCode, tt.want)
			}
		}
	}
}

// TestInitiatorsIsolated is one initiator going after another's pushes under push
// authentication, through curl: chat queries, cancels and replaces other's PAP push, and
// reads it at /api/v1/pushes/{id}; other reuses chat's RIM push id d1. Another initiator's
// push is as unknown as none (PAP 2004, HTTP 404), and a push id is the initiator's own.
func TestInitiatorsIsolated(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required (make test-deps installs it)")
	}
	// pinA is not attached: the pushes stay queued, which is what a cancel can reach.
	_, base := startServer(t, Options{Devices: seedDevices(),
		PushAuth: []Initiator{{Name: "chat", Password: "chatpw"}, {Name: "other", Password: "otherpw"}}})
	curl := func(creds string, args ...string) (int, string) {
		t.Helper()
		out, err := exec.CommandContext(t.Context(), "curl", append([]string{"-sS", "--max-time", "20", "-u", creds, "-w", "\n%{http_code}"}, args...)...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		text := string(out)
		i := strings.LastIndexByte(text, '\n')
		code, _ := strconv.Atoi(text[i+1:])
		return code, text[:i]
	}
	rimPush := func(creds, id string) int {
		t.Helper()
		code, _ := curl(creds, "-H", "X-Rim-Push-Id: "+id, "-H", "Content-Type: text/plain", "--data-binary", "x",
			base+"/push?DESTINATION="+pinA+"&PORT=7874")
		return code
	}
	papPush := func(creds, pushMsg string) string {
		t.Helper()
		b, ct := papMultipart(papDoctype21, pushMsg, "Content-Type: text/plain\r\n", "x")
		_, out := curl(creds, "-H", "Content-Type: "+ct, "--data-binary", b, base+"/pap")
		return out
	}
	control := func(creds, msg, id string) string {
		t.Helper()
		_, out := curl(creds, "-H", "Content-Type: application/xml", "--data-binary",
			papDoctype21+`<pap><`+msg+` push-id="`+id+`"/></pap>`, base+"/pap")
		return out
	}
	source := func(creds, id string) (int, string) {
		t.Helper()
		code, out := curl(creds, base+"/api/v1/pushes/"+id)
		var ps PushStatus
		json.Unmarshal([]byte(out), &ps)
		return code, ps.Source
	}
	const chat, other = "chat:chatpw", "other:otherpw"
	addr := `<address address-value="WAPPUSH=` + pinA + `/TYPE=USER@rim.net"/>`

	if code := rimPush(chat, "d1"); code != 200 {
		t.Fatalf("chat's push d1 = %d", code)
	}
	if got := papPush(other, `<push-message push-id="o1">`+addr+`</push-message>`); !strings.Contains(got, `code="1001"`) {
		t.Fatalf("other's push o1: %s", got)
	}
	if got := control(chat, "statusquery-message", "o1"); !strings.Contains(got, `code="2004"`) || strings.Contains(got, pinA) {
		t.Errorf("chat's status query of other's o1: %s; want 2004 without the PIN", got)
	}
	if got := control(chat, "cancel-message", "o1"); !strings.Contains(got, `code="2004"`) {
		t.Errorf("chat's cancel of other's o1: %s; want 2004", got)
	}
	if got := papPush(chat, `<push-message push-id="r1" replace-push-id="o1">`+addr+`</push-message>`); !strings.Contains(got, `code="2004"`) {
		t.Errorf("chat replacing other's o1: %s; want 2004", got)
	}
	if code, src := source(chat, "o1"); code != 404 {
		t.Errorf("chat's GET /api/v1/pushes/o1 = %d (source %q), want 404", code, src)
	}
	if code, src := source(other, "o1"); code != 200 || src != "other" {
		t.Errorf("other's GET /api/v1/pushes/o1 = %d (source %q), want 200 from other", code, src)
	}
	if got := control(other, "statusquery-message", "o1"); !strings.Contains(got, `message-state="pending"`) {
		t.Errorf("other's status query of its o1 after chat's cancel and replace: %s; want still pending", got)
	}
	// other reuses chat's id: its own push, not a duplicate; each sees its own d1.
	if code := rimPush(other, "d1"); code != 200 {
		t.Fatalf("other's push d1 = %d, want 200", code)
	}
	if code := rimPush(other, "d1"); code != 400 {
		t.Errorf("other's second push d1 = %d, want 400 (duplicate)", code)
	}
	for _, c := range []struct{ creds, want string }{{chat, "chat"}, {other, "other"}} {
		if code, src := source(c.creds, "d1"); code != 200 || src != c.want {
			t.Errorf("GET /api/v1/pushes/d1 as %s = %d, source %q", c.want, code, src)
		}
	}
	if got := control(other, "cancel-message", "d1"); !strings.Contains(got, `code="1000"`) {
		t.Errorf("other's cancel of its d1: %s; want 1000", got)
	}
	if got := control(chat, "statusquery-message", "d1"); !strings.Contains(got, `message-state="pending"`) {
		t.Errorf("chat's d1 after other cancelled its own: %s; want still pending", got)
	}
}

// TestDetachAndAckNeedDeviceIdentity is another program on the machine, with curl, trying
// to acknowledge alice's push for her and to detach her handset: without the link token her
// attach returned, or her password, both are refused (401) and change nothing.
func TestDetachAndAckNeedDeviceIdentity(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	s, base := startServer(t, Options{Devices: []Device{{PIN: pinA, Email: "alice@bbsim.test", Password: "blackberry"}}})
	code, out := postJSON(t, base+"/device/attach", map[string]any{"pin": pinA, "receiver_url": rc.url(pinA), "password": "blackberry"})
	token, _ := out["link_token"].(string)
	if code != 200 || token == "" {
		t.Fatalf("alice's attach: %d %v", code, out)
	}
	rimPush(t, base, "DESTINATION="+pinA+"&PORT=100", map[string]string{"X-RIM-Push-ID": "app1", "X-RIM-Push-Reliability-Mode": "Application-Preferred"}, []byte("x"))
	rc.wait(t, 1)
	waitState(t, s, "app1", pinA, rim.StatePending)

	for _, proof := range []map[string]any{{}, {"link_token": "guess"}, {"password": "guess"}} {
		ack := map[string]any{"pin": pinA, "push_id": "app1", "code": 2000}
		det := map[string]any{"pin": pinA}
		for k, v := range proof {
			ack[k], det[k] = v, v
		}
		if code, out := curlJSON(t, base+"/device/ack", ack); code != http.StatusUnauthorized {
			t.Errorf("ack with %v: %d %v, want 401", proof, code, out)
		}
		if code, out := curlJSON(t, base+"/device/detach", det); code != http.StatusUnauthorized {
			t.Errorf("detach with %v: %d %v, want 401", proof, code, out)
		}
	}
	if ps, err := s.PushState("app1"); err != nil || ps.Recipients[0].State != rim.StatePending {
		t.Errorf("alice's push after the refused acks: %+v, %v; want still pending", ps, err)
	}
	if code, out := curlJSON(t, base+"/device/check", map[string]any{"pin": pinA, "link_token": token}); code != 200 || out["attached"] != true {
		t.Errorf("alice's link after the refused detaches: %d %v, want still attached", code, out)
	}
	// Her handset proves itself with the link token.
	if code, out := curlJSON(t, base+"/device/ack", map[string]any{"pin": pinA, "push_id": "app1", "code": 1000, "link_token": token}); code != 200 {
		t.Errorf("alice's ack: %d %v", code, out)
	}
	waitState(t, s, "app1", pinA, rim.StateDelivered)
	if code, out := curlJSON(t, base+"/device/detach", map[string]any{"pin": pinA, "link_token": token}); code != 200 {
		t.Errorf("alice's detach: %d %v", code, out)
	}
}
