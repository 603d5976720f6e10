package bbsimtest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/bbsimtest"
	"github.com/bbsim/bbsim/config"
)

// TestReliabilityByDeviceSoftware: a handset on device software 3.8 reports it when it
// attaches, and the gateway delivers by it: application is refused as MDS refused it,
// application-preferred falls back to transport (delivered without an acknowledgement);
// after an upgrade to 7.1 through the control API the handset attaches again and the same
// application push is delivered and acknowledged.
func TestReliabilityByDeviceSoftware(t *testing.T) {
	t.Parallel()
	sim := bbsimtest.Start(t, &bbsimtest.Options{Configure: func(c *config.Config) { c.Handset.Software = "3.8.0" }})
	notes := make(chan string, 10)
	notify := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		notes <- r.Header.Get("X-RIM-Push-ID") + " " + r.Header.Get("X-RIM-Push-Status")
	}))
	t.Cleanup(notify.Close)
	push := func(id, reliability string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, sim.RIMPushURL(7874), strings.NewReader("<p>"+id+"</p>"))
		req.Header.Set("X-RIM-Push-Type", "Browser-Message")
		req.Header.Set("X-RIM-Push-Title", id)
		req.Header.Set("Content-Location", "http://example.test/"+id)
		req.Header.Set("Content-Type", "text/html")
		req.Header.Set("X-RIM-Push-ID", id)
		req.Header.Set("X-RIM-Push-NotifyURL", notify.URL)
		req.Header.Set("X-Rim-Push-Reliability", reliability)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	notified := func(want string) {
		t.Helper()
		select {
		case got := <-notes:
			if got != want {
				t.Fatalf("notification %q, want %q", got, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no notification %q", want)
		}
	}

	if code, body := push("app-38", "application"); code != 400 || !strings.Contains(body, "the specified delivery method is not possible") {
		t.Fatalf("application push to 3.8.0 = %d %q, want 400, delivery method not possible", code, body)
	}
	if code, body := push("pref-38", "application-preferred"); code != 200 {
		t.Fatalf("application-preferred push to 3.8.0 = %d %q", code, body)
	}
	sim.WaitMessage("pref-38")
	notified("pref-38 200")

	h := sim.Handset
	before := h.LinkStatus().Attaches
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, sim.APIURL+"/api/v1/device/software", strings.NewReader(`{"version":"7.1.0"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The gateway learns the new version from the handset's new attachment.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var seq uint64
	for h.LinkStatus().Attaches == before {
		ev, err := h.WaitEvents(ctx, seq)
		if err != nil {
			t.Fatalf("no new attachment after the upgrade: %v", err)
		}
		seq = ev[len(ev)-1].Seq
	}
	var devs []struct{ PIN, Software string }
	r, err := http.Get(sim.PushURL + "/api/v1/devices")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(r.Body).Decode(&devs)
	r.Body.Close()
	if len(devs) != 1 || devs[0].Software != "7.1.0" {
		t.Fatalf("gateway devices = %+v, want software 7.1.0", devs)
	}
	if code, body := push("app-71", "application"); code != 200 {
		t.Fatalf("application push to 7.1.0 = %d %q", code, body)
	}
	sim.WaitMessage("app-71")
	notified("app-71 200")
}
