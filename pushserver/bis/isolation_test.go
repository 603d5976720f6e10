package bis

import (
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/bbsim/bbsim/pushserver"
	"github.com/bbsim/bbsim/rim"
)

// TestAppsIsolated is one push application going after another's pushes with its own
// credentials, through curl: com.example.chat cancels and queries com.example.other's push,
// and other reuses chat's push id d1. Another application's push is as unknown as none
// (2004), and a push id is the application's own.
func TestAppsIsolated(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required (make test-deps installs it)")
	}
	var svc *Service
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { svc.Handler().ServeHTTP(w, r) })
	ps, err := pushserver.Open(t.Context(), pushserver.Options{DataDir: t.TempDir(), Mount: map[string]http.Handler{"/mss/": h}})
	if err != nil {
		t.Fatal(err)
	}
	svc, err = New(Options{DataDir: t.TempDir(), Gateway: ps, Apps: []App{
		{ID: "com.example.chat", Password: "chatpw", Port: 33333},
		{ID: "com.example.other", Password: "otherpw", Port: 33334}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ps.Serve(ln)
	t.Cleanup(func() { ps.Close(); svc.Close() })
	base := "http://" + ln.Addr().String() + "/mss/PD_pushRequest"
	// Both applications have the device as a subscriber; it is not attached, so their
	// pushes stay queued, which is what a cancel can reach.
	const pin = "2100000A"
	for _, app := range []string{"com.example.chat", "com.example.other"} {
		if err := svc.setState(app, pin, StateActive); err != nil {
			t.Fatal(err)
		}
	}

	curl := func(creds, ctype, body string) string {
		t.Helper()
		out, err := exec.CommandContext(t.Context(), "curl", "-sS", "--max-time", "20", "-u", creds,
			"-H", "Content-Type: "+ctype, "--data-binary", body, base).Output()
		if err != nil {
			t.Fatalf("curl: %v", err)
		}
		return string(out)
	}
	push := func(creds, app, id string) string {
		t.Helper()
		return curl(creds, `multipart/related; type="application/xml"; boundary=b`,
			"--b\r\nContent-Type: application/xml\r\n\r\n<?xml version=\"1.0\"?><pap><push-message push-id=\""+id+
				"\" source-reference=\""+app+"\"><address address-value=\""+pin+"\"/></push-message></pap>\r\n"+
				"--b\r\nContent-Type: text/plain\r\n\r\nfrom "+app+"\r\n--b--\r\n")
	}
	control := func(creds, msg, id string) string {
		t.Helper()
		return curl(creds, "application/xml", `<pap><`+msg+` push-id="`+id+`"/></pap>`)
	}
	const chat, other = "com.example.chat:chatpw", "com.example.other:otherpw"

	if got := push(chat, "com.example.chat", "d1"); !strings.Contains(got, `code="1001"`) {
		t.Fatalf("chat's push d1: %s", got)
	}
	if got := push(other, "com.example.other", "o1"); !strings.Contains(got, `code="1001"`) {
		t.Fatalf("other's push o1: %s", got)
	}
	// chat asks about other's push, and cancels it: no such push, for chat.
	if got := control(chat, "statusquery-message", "o1"); !strings.Contains(got, `code="2004"`) || strings.Contains(got, pin) || strings.Contains(got, `message-state="pending"`) {
		t.Errorf("chat's status query of other's push o1: %s; want 2004 and neither state nor PIN", got)
	}
	if got := control(chat, "cancel-message", "o1"); !strings.Contains(got, `code="2004"`) {
		t.Errorf("chat's cancel of other's push o1: %s; want 2004", got)
	}
	if st, err := ps.PushStateOf("com.example.other", "o1"); err != nil || st.Recipients[0].State != rim.StateQueued {
		t.Errorf("other's push o1 after chat's cancel: %+v, %v; want still queued", st, err)
	}
	// other reuses chat's id: its own push, not a duplicate, and chat's d1 stays chat's.
	if got := push(other, "com.example.other", "d1"); !strings.Contains(got, `code="1001"`) {
		t.Fatalf("other's push d1: %s", got)
	}
	if got := push(other, "com.example.other", "d1"); !strings.Contains(got, `code="2007"`) {
		t.Errorf("other's second push d1: %s; want 2007 duplicate", got)
	}
	if got := control(other, "cancel-message", "d1"); !strings.Contains(got, `code="1000"`) {
		t.Errorf("other's cancel of its d1: %s; want 1000", got)
	}
	if got := control(chat, "statusquery-message", "d1"); !strings.Contains(got, `code="1001"`) || !strings.Contains(got, pin) {
		t.Errorf("chat's status query of its d1 after other cancelled its own d1: %s; want still queued (1001) at %s", got, pin)
	}
	if got := control(chat, "cancel-message", "d1"); !strings.Contains(got, `code="1000"`) {
		t.Errorf("chat's cancel of its d1: %s; want 1000", got)
	}
}
