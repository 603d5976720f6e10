package pushserver

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestUpgradeFromLastRelease: this gateway starts on the push store that the last release
// before schema versions left (internal/store/testdata: pushes delivered, refused, cancelled
// and queued), answers for every push as that release did, and delivers the queued ones
// when their handsets attach.
func TestUpgradeFromLastRelease(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("internal", "store", "testdata", "push.db"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "push.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	// The fixture's queued pushes were accepted long ago: a century's flow-control timeout
	// keeps them queued.
	_, base := startServer(t, Options{DataDir: dir, Devices: seedDevices(), FlowControlTimeout: 100 * 365 * 24 * time.Hour})
	for _, tc := range []struct{ id, want string }{
		{"r1", "[2100000A delivered 1000 false]"},
		{"k1", "[2100000A failed 400 true]"},
		{"b1", "[2100000A delivered 1000 false]"},
		{"p1", "[2100000A delivered 1000 false 2100000B queued 0 false]"},
		{"c1", "[2100000B cancelled 0 false]"},
		{"q1", "[2100000A queued 0 false]"},
	} {
		var ps PushStatus
		if code := getJSON(t, base+"/api/v1/pushes/"+tc.id, &ps); code != 200 {
			t.Fatalf("GET /api/v1/pushes/%s = %d", tc.id, code)
		}
		var got []any
		for _, r := range ps.Recipients {
			got = append(got, r.PIN, r.State, r.Code, r.Reason != "")
		}
		if fmt.Sprint(got) != tc.want {
			t.Errorf("push %s: %v, want %s", tc.id, got, tc.want)
		}
	}
	rc := newReceiver(t)
	for pin, id := range map[string]string{pinA: "q1", pinB: "p1"} {
		attach(t, base, rc, pin)
		if d := rc.wait(t, 1)[0]; d.PushID != id || d.PIN != pin {
			t.Fatalf("delivered %s to %s, want %s to %s", d.PushID, d.PIN, id, pin)
		}
	}
}
