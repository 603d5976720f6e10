package bis

import (
	"context"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/pushserver"
)

// noGateway is a gateway that is never reached: the requests here stop at authentication.
type noGateway struct{}

func (noGateway) Enqueue(context.Context, pushserver.Submission) error { return nil }
func (noGateway) PushStateOf(string, string) (pushserver.PushStatus, error) {
	return pushserver.PushStatus{}, nil
}
func (noGateway) CancelOf(string, string) error   { return nil }
func (noGateway) LinkedPIN(string) (string, bool) { return "", false }

// TestWrongAppPasswordCostsTime guesses a push application's password with curl, as a
// push initiator would send it (HTTP Basic): each 403 comes after the delay.
func TestWrongAppPasswordCostsTime(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	svc, err := New(Options{DataDir: t.TempDir(), Gateway: noGateway{}, AuthFailureDelay: delay,
		Apps: []App{{ID: "com.example.chat", Password: "right", Port: 33333}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	for i := range 3 {
		start := time.Now()
		out, err := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", "com.example.chat:guess",
			"-X", "POST", "--data", "x", srv.URL+"/mss/PD_pushRequest").Output()
		took := time.Since(start)
		if err != nil || strings.TrimSpace(string(out)) != "403" {
			t.Fatalf("guess %d: %v HTTP %s, want 403", i, err, out)
		}
		if took < delay {
			t.Errorf("guess %d refused after %v, want at least %v", i, took, delay)
		}
	}
}
