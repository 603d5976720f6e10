package pushserver

import (
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/rim"
)

// TestReliabilityBySoftware: application-level reliability needs device software 4.0 or
// later. application-preferred falls back to transport before it; application is refused
// as MDS refused it ("The specified delivery method is not possible"), at submission when
// the device's software is known, and when delivered when it was learnt later.
func TestReliabilityBySoftware(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	results := make(chan Result, 10)
	s, base := startServer(t, Options{Devices: seedDevices(), OnResult: func(r Result) { results <- r }})
	result := func(id string) Result {
		t.Helper()
		select {
		case r := <-results:
			if r.PushID != id {
				t.Fatalf("result for %s, want one for %s: %+v", r.PushID, id, r)
			}
			return r
		case <-time.After(20 * time.Second):
			t.Fatalf("no result for %s", id)
		}
		return Result{}
	}
	if _, err := attachSoftware(base, rc, pinA, "3.8.0"); err != nil {
		t.Fatal(err)
	}
	if _, err := attachSoftware(base, rc, pinB, "4.0.0"); err != nil {
		t.Fatal(err)
	}

	// application-preferred: transport on 3.8 (delivered without an acknowledgement),
	// application on 4.0 (pending until the device acknowledges).
	for _, tc := range []struct {
		pin, mode string
		state     rim.State
	}{
		{pinA, "transport", "delivered"},
		{pinB, "application", "pending"},
	} {
		id := "pref-" + tc.pin
		if code, body, _ := rimPush(t, base, "DESTINATION="+tc.pin+"&PORT=100", map[string]string{"X-RIM-Push-ID": id,
			"X-RIM-Push-Reliability-Mode": "application-preferred"}, []byte("x")); code != 200 {
			t.Fatalf("push %s = %d %s", id, code, body)
		}
		if d := rc.wait(t, 1)[0]; d.PushID != id || d.Header.Get("X-RIM-Push-Reliability-Mode") != tc.mode {
			t.Fatalf("%s: delivered %s with reliability %q, want %q", tc.pin, d.PushID, d.Header.Get("X-RIM-Push-Reliability-Mode"), tc.mode)
		}
		waitState(t, s, id, tc.pin, tc.state)
	}
	if r := result("pref-" + pinA); r.State != rim.StateDelivered || r.Code != 1000 {
		t.Fatalf("3.8 application-preferred result = %+v, want delivered 1000", r)
	}

	// application to 3.8: refused at submission, by RIM push and by PAP.
	code, body, _ := rimPush(t, base, "DESTINATION="+pinA+"&PORT=100", map[string]string{"X-RIM-Push-ID": "app-38",
		"X-RIM-Push-Reliability": "application"}, []byte("x"))
	if code != 400 || !strings.Contains(body, "the specified delivery method is not possible: 2100000A: device software 3.8.0") {
		t.Fatalf("application push to 3.8 = %d %q, want 400 with the delivery method refusal", code, body)
	}
	pb, ctype := papMultipart(mdsDoctype, `<push-message push-id="pap-38"><address address-value="WAPPUSH=2100000A%3A100/TYPE=USER@rim.net"/><quality-of-service delivery-method="confirmed"/></push-message>`,
		"Content-Type: text/plain\r\n", "x")
	code, ans := rawPOST(t, base, "/pap", ctype, pb)
	if code != 202 || !strings.Contains(ans, `code="3007"`) {
		t.Fatalf("PAP confirmed push to 3.8 = %d %s, want 202 with code 3007", code, ans)
	}

	// A push queued while the device's software was not known fails with 3007 once it
	// attaches with 3.8; the same push to 4.0 goes through.
	detach(t, base, rc, pinA)
	s.mu.Lock()
	s.devices[pinA].software = rim.Software{} // forgotten, as by a restarted gateway
	s.mu.Unlock()
	if code, body, _ := rimPush(t, base, "DESTINATION="+pinA+"&PORT=100", map[string]string{"X-RIM-Push-ID": "app-later",
		"X-RIM-Push-Reliability": "application"}, []byte("x")); code != 200 {
		t.Fatalf("push to an unknown software = %d %s", code, body)
	}
	if _, err := attachSoftware(base, rc, pinA, "3.8.0"); err != nil {
		t.Fatal(err)
	}
	if r := result("app-later"); r.State != rim.StateFailed || r.Code != 3007 {
		t.Fatalf("queued application push delivered to 3.8 = %+v, want failed 3007", r)
	}

	// A bad version is refused on attach.
	if _, err := attachSoftware(base, rc, pinC, "10.2"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("attach with software 10.2 = %v, want 400", err)
	}
}
