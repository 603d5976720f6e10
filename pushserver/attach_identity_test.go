package pushserver

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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
