package bench

import (
	"strings"
	"testing"

	"github.com/bbsim/bbsim/internal/radio"
)

// TestQuickRunUnderRadio runs the push measurement with the handsets' device links under a
// profile of 30 ms each way: a push's latency to the handset's list includes the packet's
// way in, and the report names the profile.
func TestQuickRunUnderRadio(t *testing.T) {
	p, err := radio.Parse("wifi,latency=30ms")
	if err != nil {
		t.Fatal(err)
	}
	r := Run(t.Context(), Options{Dir: t.TempDir(), Quick: true, Only: []string{"push"}, Radio: radio.Conditions{Profile: p, Seed: 1}})
	latency := 0.0
	for _, f := range r.Figures {
		if f.Err != "" {
			t.Errorf("figure %+v", f)
		}
		latency = max(latency, f.Median)
	}
	if latency < 30 {
		t.Errorf("median push latency under 30 ms each way = %.1f ms, want at least 30: figures %+v", latency, r.Figures)
	}
	if tb := r.Table(); !strings.Contains(tb, "handsets under radio wifi,latency=30ms") {
		t.Errorf("table does not name the radio profile:\n%s", tb)
	}
}
