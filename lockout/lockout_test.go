package lockout

import (
	"strings"
	"testing"
)

func TestBundledScenarios(t *testing.T) {
	rows, err := Run(t.Context(), Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", Table(rows))
	if len(rows) != len(Scenarios()) {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		if !r.OK() {
			t.Errorf("%s: %s %v", r.Scenario, r.Err, r.Problems)
		}
	}
	byName := map[string]Row{}
	for _, r := range rows {
		byName[r.Scenario] = r
	}
	if r := byName["exclusive"]; !strings.HasPrefix(r.POP3, "-ERR [IN-USE]") || !strings.Contains(r.IMAP, "INUSE") {
		t.Errorf("exclusive: %+v", r)
	}
	if r := byName["polite-disconnect"]; !strings.Contains(r.Bye, "[UNAVAILABLE]") || r.BackIn == 0 {
		t.Errorf("polite: %+v", r)
	}
}
