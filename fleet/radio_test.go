package fleet

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/radio"
)

// TestFleetRadio runs a fleet under a radio profile and a coverage schedule: the schedule
// moves every handset out and back in, and a profile change through one handset's control
// API is the fleet's, shown by all.
func TestFleetRadio(t *testing.T) {
	t.Parallel()
	p, err := radio.Parse("3g,latency=1ms")
	if err != nil {
		t.Fatal(err)
	}
	s, err := radio.ParseSchedule("out 100ms")
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(Options{Count: 3, Radio: radio.Conditions{Profile: p, Schedule: s, Seed: 5}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	base := serveFleet(t, f)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	for _, m := range f.Members() {
		h := m.Handset
		// The schedule's one step out, then back in for good.
		for _, want := range []string{"out", "in"} {
			waitCoverageEvent(t, h, want)
		}
		if r := h.Radio(); r.Profile != "3g,latency=1ms" || r.Network != "3G" || r.Schedule != "out 100ms" || r.Seed != 5 {
			t.Errorf("%s radio = %+v", h.PIN(), r)
		}
	}

	req, _ := http.NewRequest(http.MethodPut, base+"/h/2A000001/api/v1/radio", strings.NewReader(`{"profile":"gprs"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT radio: %s", resp.Status)
	}
	for _, m := range f.Members() {
		if r := m.Handset.Radio(); r.Profile != "gprs" || r.Bars != 2 || r.Schedule != "out 100ms" {
			t.Errorf("%s radio after PUT gprs on 2A000001 = %+v", m.Handset.PIN(), r)
		}
	}
}

// waitCoverageEvent waits for the schedule's event moving h in or out.
func waitCoverageEvent(t *testing.T, h *handset.Handset, state string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	var after uint64
	for {
		for _, e := range h.Events(after) {
			after = e.Seq
			if e.Kind == handset.EventRadio && e.Fields["by"] == "schedule" && e.Fields["coverage"] == state {
				return
			}
		}
		if _, err := h.WaitEvents(ctx, after); err != nil {
			t.Fatalf("%s: no schedule event %q", h.PIN(), state)
		}
	}
}
