package mailserver

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestWebmailRefusesForgedSignIn posts the sign-in form with the public default
// credentials as a page on another site would (curl standing in for the browser): with its
// Origin, from a browser that sends no Origin, and under a rebound host name. None signs in,
// so POP3 still gets the mailbox.
func TestWebmailRefusesForgedSignIn(t *testing.T) {
	t.Parallel()
	r := startServer(t, Options{})
	jar := filepath.Join(t.TempDir(), "cookies")
	form, err := exec.Command("curl", "-s", "-c", jar, "http://"+r.webmail+"/").Output()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	token := formToken(t, string(form))
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"cross-origin", []string{"-H", "Origin: http://evil.example", "--data-urlencode", "csrf=" + token}, "403"},
		{"cross-site fetch", []string{"-H", "Sec-Fetch-Site: cross-site", "--data-urlencode", "csrf=" + token}, "403"},
		{"no form token", []string{"-b", jar}, "403"},
		{"wrong form token", []string{"-b", jar, "--data-urlencode", "csrf=00"}, "403"},
		{"rebound host", []string{"-b", jar, "-H", "Host: attacker.example", "--data-urlencode", "csrf=" + token}, "421"},
	}
	for _, tt := range tests {
		args := append([]string{"-s", "-o", "/dev/null", "-w", "%{http_code}",
			"--data-urlencode", "email=" + alice, "--data-urlencode", "password=" + pass}, tt.args...)
		out, err := exec.Command("curl", append(args, "http://"+r.webmail+"/login")...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: curl: %v %s", tt.name, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != tt.want {
			t.Errorf("%s: POST /login = HTTP %s, want %s", tt.name, got, tt.want)
		}
	}
	p := dialPOP3(t, r.pop3)
	p.cmd("USER " + alice)
	if got := p.cmd("PASS " + pass); !strings.HasPrefix(got, "+OK") {
		t.Errorf("POP3 after the forged sign-ins: %q, want +OK", got)
	}
	// The page's own form still signs in, and its cookies are SameSite.
	out, err := exec.Command("curl", "-s", "-D", "-", "-o", "/dev/null", "-b", jar, "http://"+r.webmail+"/").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "SameSite=Strict") {
		t.Errorf("sign-in page cookies are not SameSite=Strict:\n%s", out)
	}
}
