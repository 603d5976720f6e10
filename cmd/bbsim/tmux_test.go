package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/freeport"
)

// freePorts returns n loopback addresses free at the time of the call, each for TCP and
// UDP alike (any of them may be given to --dns), and drawn where nothing takes them by
// chance before bbsim binds them (internal/freeport).
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	addrs, err := freeport.Addrs(n)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// waitPane waits until what shows in the tmux pane target, and returns the pane's text.
func waitPane(t *testing.T, sock, target, what string, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		s := tmux(t, sock, "capture-pane", "-p", "-t", target)
		if strings.Contains(s, what) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q never on screen:\n%s", what, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tmux(t *testing.T, sock string, args ...string) string {
	t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", sock}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestRunInTmux runs "bbsim run" in a real terminal (tmux), pushes and mails to it from
// outside, reads the screen, quits with q, and checks that nothing is left behind.
func TestRunInTmux(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is required (make test-deps installs it)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "tmux.sock")
	ports := freePorts(t, 8)
	names := []string{"imap", "pop3", "smtp", "webmail", "push", "dns", "listen", "api"}
	args := []string{bbsimBin, "run", "--data", filepath.Join(dir, "data")}
	for i, n := range names {
		args = append(args, "--"+n, ports[i])
	}
	status := filepath.Join(dir, "status")
	script := fmt.Sprintf("%s; echo $? > %s", strings.Join(args, " "), status)
	tmux(t, sock, "new-session", "-d", "-x", "100", "-y", "32", "-s", "bbsim", "sh", "-c", script)
	t.Cleanup(func() { exec.Command("tmux", "-S", sock, "kill-server").Run() })

	screen := func() string { return tmux(t, sock, "capture-pane", "-p", "-t", "bbsim") }
	waitScreen := func(what string, d time.Duration) string {
		t.Helper()
		return waitPane(t, sock, "bbsim", what, d)
	}
	waitScreen("Messages", 30*time.Second)

	api := "http://" + ports[7]
	waitAPI(t, api+"/api/v1/device", `"state": "idling"`, 30*time.Second)

	// A push and a mail from outside.
	out, errOut, code := runBBSim(t, t.Context(), "push", "--gateway", "http://"+ports[4], "--to", "2100000A",
		"--type", "channel", "--title", "TmuxNews", "--channel-id", "http://example.test/news", "--file", "-")
	if code != 0 {
		t.Fatalf("push: %s %s", out, errOut)
	}
	out, errOut, code = runBBSim(t, t.Context(), "send", "--smtp", ports[2], "--subject", "TmuxMail")
	if code != 0 {
		t.Fatalf("send: %s %s", out, errOut)
	}
	waitScreen("TmuxNews", 15*time.Second)
	tmux(t, sock, "send-keys", "-t", "bbsim", "m")
	waitScreen("TmuxMail", 15*time.Second)
	tmux(t, sock, "send-keys", "-t", "bbsim", "e")
	waitScreen("push.channel", 15*time.Second)

	tmux(t, sock, "send-keys", "-t", "bbsim", "q")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(status)
		if err == nil {
			if s := strings.TrimSpace(string(b)); s != "0" {
				t.Fatalf("bbsim run exited with %s", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bbsim run did not exit after q:\n%s", screen())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Every port is free again.
	for i, p := range ports {
		ln, err := net.Listen("tcp", p)
		if err != nil {
			t.Errorf("--%s %s still taken after exit: %v", names[i], p, err)
			continue
		}
		ln.Close()
	}
}

func waitAPI(t *testing.T, url, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		out, _ := exec.Command("curl", "-s", url).CombinedOutput()
		if strings.Contains(string(out), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %s: %s", url, want, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
