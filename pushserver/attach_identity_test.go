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
