package bbsimtest

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSimsAreIsolated runs two Sims at once: a push to one never reaches the other, and a
// helper that waits in vain fails its test with what it waited for.
func TestSimsAreIsolated(t *testing.T) {
	t.Parallel()
	a, b := Start(t, nil), Start(t, &Options{Timeout: 300 * time.Millisecond})
	if a.PushURL == b.PushURL || a.APIURL == b.APIURL {
		t.Fatalf("two Sims share a port: %s %s", a.PushURL, b.PushURL)
	}
	req, _ := http.NewRequest(http.MethodPost, a.RIMPushURL(7874), strings.NewReader("<p>hi</p>"))
	req.Header.Set("X-RIM-Push-Type", "Browser-Message")
	req.Header.Set("X-RIM-Push-Title", "Only for a")
	req.Header.Set("Content-Location", "http://example.test/a")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("push = %s", resp.Status)
	}
	if m := a.WaitMessage("Only for a"); m.Read {
		t.Errorf("message read before anyone opened it: %+v", m)
	}
	err = Run(func(rt TB) {
		b.t = rt // the same Sim, failing into Run instead of this test
		b.WaitMessage("Only for a")
	})
	if err == nil || !strings.Contains(err.Error(), `no a message matching "Only for a" within 300ms`) {
		t.Fatalf("waiting on the other Sim: %v", err)
	}
	a.Reset()
	if n := len(a.Handset.Messages()); n != 0 {
		t.Fatalf("%d messages after Reset", n)
	}
}
