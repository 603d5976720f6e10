package lockout

import (
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/radio"
)

// TestUnderRadio runs a scenario with the handset's mail connection under a radio profile:
// the scenario still behaves as it should, and a test mail takes the profile's round
// trips to reach the handset (EXISTS in, DONE out, the fetch in: three exchanges).
func TestUnderRadio(t *testing.T) {
	t.Parallel()
	p, err := radio.Parse("3g,latency=60ms,jitter=0s,loss=0")
	if err != nil {
		t.Fatal(err)
	}
	var shared []Scenario
	for _, sc := range Scenarios() {
		if sc.Name == "shared" {
			shared = append(shared, sc)
		}
	}
	rows, err := Run(t.Context(), Options{Dir: t.TempDir(), Scenarios: shared, Radio: radio.Conditions{Profile: p, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || !rows[0].OK() {
		t.Fatalf("rows = %+v", rows)
	}
	if d := rows[0].MailDelay; d < 3*60*time.Millisecond {
		t.Errorf("mail delay under 60 ms each way = %v, want at least 180ms", d)
	}
}
