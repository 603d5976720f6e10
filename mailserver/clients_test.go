package mailserver

import (
	"net"
	"os/exec"
	"strings"
	"testing"
)

// need fails the test when a client it drives is missing: make test-deps installs them.
func need(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s is required (make test-deps installs it)", b)
		}
	}
}

// swaks sends one message with swaks and returns its transcript.
func swaks(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	base := []string{"--server", host, "--port", port, "--from", "bob@example.test", "--helo", "client.example.test",
		"--timeout", "20", "--header", "Subject: via swaks"}
	out, err := exec.CommandContext(t.Context(), "swaks", append(base, args...)...).CombinedOutput()
	return string(out), err
}

func TestSwaks(t *testing.T) {
	t.Parallel()
	need(t, "swaks")
	r := startServer(t, Options{MaxMessageBytes: 4000})
	inbox := func() int { return len(r.s.user(alice).inbox().Messages()) }

	// EHLO offers SIZE with the limit and SMTPUTF8; AUTH only after STARTTLS.
	out, err := swaks(t, r.smtp, "--to", alice, "--quit-after", "EHLO")
	if err != nil {
		t.Fatalf("swaks EHLO: %v\n%s", err, out)
	}
	for _, want := range []string{"250-SIZE 4000", "SMTPUTF8", "STARTTLS"} {
		if !strings.Contains(out, want) {
			t.Errorf("EHLO: no %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "AUTH") {
		t.Errorf("EHLO offers AUTH before STARTTLS:\n%s", out)
	}

	// The same mailbox named three ways in one transaction gets one copy.
	out, err = swaks(t, r.smtp, "--to", alice+",ALICE@BBSIM.TEST,postmaster@bbsim.test")
	if err != nil {
		t.Fatalf("swaks duplicate recipients: %v\n%s", err, out)
	}
	if n := inbox(); n != 1 {
		t.Fatalf("%d copies stored for one mailbox named three times, want 1\n%s", n, out)
	}

	// postmaster (RFC 5321 §4.5.1) reaches the first user.
	out, err = swaks(t, r.smtp, "--to", "Postmaster@bbsim.test")
	if err != nil || inbox() != 2 {
		t.Fatalf("swaks to postmaster: %v, %d messages\n%s", err, inbox(), out)
	}

	// AUTH PLAIN and LOGIN over STARTTLS with a --user account; a wrong password is 535.
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		out, err = swaks(t, r.smtp, "--to", alice, "--tls", "--auth", mech, "--auth-user", alice, "--auth-password", pass)
		if err != nil || !strings.Contains(out, "235 2.0.0 Authentication succeeded") {
			t.Errorf("swaks AUTH %s: %v\n%s", mech, err, out)
		}
		out, err = swaks(t, r.smtp, "--to", alice, "--tls", "--auth", mech, "--auth-user", alice, "--auth-password", "wrong")
		if err == nil || !strings.Contains(out, "535 5.7.8 Authentication credentials invalid") {
			t.Errorf("swaks AUTH %s, wrong password: %v\n%s", mech, err, out)
		}
	}
	if n := inbox(); n != 4 {
		t.Errorf("%d messages after two authenticated sends, want 4", n)
	}

	// A UTF-8 message, and one over the size limit (552, nothing stored).
	out, err = swaks(t, r.smtp, "--to", alice, "--body", "Café ouvert, 東京")
	if err != nil || inbox() != 5 {
		t.Errorf("swaks UTF-8 body: %v\n%s", err, out)
	}
	out, err = swaks(t, r.smtp, "--to", alice, "--body", strings.Repeat("too long\n", 500))
	if err == nil || !strings.Contains(out, "552 5.3.4") || inbox() != 5 {
		t.Errorf("swaks over the size limit: %v, %d messages\n%s", err, inbox(), out)
	}
}
