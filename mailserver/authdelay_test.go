package mailserver

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFailedLoginsCostTime guesses passwords several times on one connection of each
// protocol (and through the webmail's form) and times each refusal: every one waits the
// configured delay before its answer.
func TestFailedLoginsCostTime(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	const tries = 3
	r := startServer(t, Options{AuthFailureDelay: delay})
	line := func(br *bufio.Reader) string {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return strings.TrimRight(l, "\r\n")
	}
	dial := func(addr string) (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		line(br) // greeting
		return c, br
	}
	tests := []struct {
		name  string
		addr  string
		setup []string // commands before each guess, answers read
		guess func(i int) string
		want  string // prefix of the refusal
	}{
		{"IMAP LOGIN", r.imap, nil, func(i int) string { return fmt.Sprintf("a%d LOGIN %s wrong%d", i, alice, i) }, "a"},
		{"POP3 USER/PASS", r.pop3, []string{"USER " + alice}, func(i int) string { return fmt.Sprintf("PASS wrong%d", i) }, "-ERR [AUTH]"},
	}
	for _, tt := range tests {
		c, br := dial(tt.addr)
		for i := range tries {
			for _, s := range tt.setup {
				fmt.Fprintf(c, "%s\r\n", s)
				line(br)
			}
			start := time.Now()
			fmt.Fprintf(c, "%s\r\n", tt.guess(i))
			got := line(br)
			took := time.Since(start)
			if !strings.HasPrefix(got, tt.want) || strings.Contains(got, " OK") {
				t.Fatalf("%s: guess %d answered %q, want a refusal", tt.name, i, got)
			}
			if took < delay {
				t.Errorf("%s: guess %d refused after %v, want at least %v", tt.name, i, took, delay)
			}
		}
	}
	// SMTP AUTH after STARTTLS, with swaks.
	need(t, "swaks")
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		start := time.Now()
		out, err := swaks(t, r.smtp, "--to", alice, "--tls", "--auth", mech, "--auth-user", alice, "--auth-password", "wrong")
		took := time.Since(start)
		if err == nil || !strings.Contains(out, "535") {
			t.Fatalf("swaks AUTH %s, wrong password: %v\n%s", mech, err, out)
		}
		if took < delay {
			t.Errorf("SMTP AUTH %s refused after %v, want at least %v", mech, took, delay)
		}
	}
	// The webmail's form, with its token, as a browser would send it.
	jar := filepath.Join(t.TempDir(), "cookies")
	for i := range tries {
		form, err := exec.Command("curl", "-s", "-c", jar, "-b", jar, "http://"+r.webmail+"/").Output()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		out, err := exec.Command("curl", "-s", "-b", jar, "-o", "/dev/null", "-w", "%{http_code}",
			"--data", "csrf="+formToken(t, string(form))+"&email="+url.QueryEscape(alice)+"&password=wrong",
			"http://"+r.webmail+"/login").Output()
		took := time.Since(start)
		if err != nil || strings.TrimSpace(string(out)) != "401" {
			t.Fatalf("webmail guess %d: %v HTTP %s, want 401", i, err, out)
		}
		if took < delay {
			t.Errorf("webmail: guess %d refused after %v, want at least %v", i, took, delay)
		}
	}
}

func TestAuthFailureDelayDefault(t *testing.T) {
	t.Parallel()
	s, err := New(Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.opts.AuthFailureDelay != 2*time.Second {
		t.Errorf("default AuthFailureDelay = %v, want 2s (Dovecot's auth_failure_delay)", s.opts.AuthFailureDelay)
	}
}
