package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTmuxHintsWork runs bbsim run on ports that are not the defaults in a real terminal,
// reads each command the empty screens suggest, types it into a shell as printed, and checks
// that the handset gets what the command sends.
func TestTmuxHintsWork(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is required (make test-deps installs it)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "tmux.sock")
	ports := freePorts(t, 8)
	args := append([]string{bbsimBin}, runArgs(filepath.Join(dir, "data"), ports)...)
	args = append(args[:2], args[3:]...) // drawn, not --headless
	tmux(t, sock, "new-session", "-d", "-x", "80", "-y", "24", "-s", "bbsim", strings.Join(args, " "))
	t.Cleanup(func() { exec.Command("tmux", "-S", sock, "kill-server").Run() })
	// The shell the hints are typed into finds bbsim on its PATH, as after make install.
	tmux(t, sock, "new-window", "-d", "-t", "bbsim:9", "env", "PATH="+filepath.Dir(bbsimBin)+":"+os.Getenv("PATH"), "PS1=$ ", "sh")

	waitScreen := func(what string) string {
		t.Helper()
		return waitPane(t, sock, "bbsim:0", what, 30*time.Second)
	}
	api := "http://" + ports[7]
	waitScreen("Messages (0)")
	waitAPI(t, api+"/api/v1/device", `"state": "idling"`, 30*time.Second)
	waitAPI(t, api+"/api/v1/device", `"attaches": 1`, 30*time.Second)

	for _, tt := range []struct{ key, intro, api, want string }{
		{"m", "Send one from a shell:", "/api/v1/messages", `"subject": "Hello"`},
		{"b", "Push one from a shell:", "/api/v1/channels", `"title": "News"`},
	} {
		tmux(t, sock, "send-keys", "-t", "bbsim:0", tt.key)
		hint := hintLines(t, waitScreen(tt.intro), tt.intro)
		for _, l := range hint {
			tmux(t, sock, "send-keys", "-t", "bbsim:9", "-l", l)
			tmux(t, sock, "send-keys", "-t", "bbsim:9", "Enter")
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, _ := exec.Command("curl", "-s", api+tt.api).CombinedOutput()
			if strings.Contains(string(out), tt.want) {
				break
			}
			if time.Now().After(deadline) {
				shell := tmux(t, sock, "capture-pane", "-p", "-t", "bbsim:9")
				t.Fatalf("typed %q: the handset has no %s\nshell:\n%s", hint, tt.want, shell)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(strings.Join(hint, " "), ports[2]) && !strings.Contains(strings.Join(hint, " "), ports[4]) {
			t.Errorf("hint %q names neither this run's SMTP (%s) nor its gateway (%s)", hint, ports[2], ports[4])
		}
	}
}

// hintLines returns the command printed after intro on the screen: its lines as shown,
// without the handset's frame.
func hintLines(t *testing.T, screen, intro string) []string {
	t.Helper()
	var out []string
	started := false
	for _, l := range strings.Split(screen, "\n") {
		// Inside the frame; a continuation line keeps its indent.
		l = strings.TrimRight(strings.Trim(strings.TrimSpace(l), "│"), " ")
		switch {
		case strings.Contains(l, intro):
			started = true
		case started && l == "" && len(out) == 0:
		case started && (len(out) == 0 || strings.HasSuffix(out[len(out)-1], `\`)):
			out = append(out, l)
		}
	}
	if len(out) == 0 || !strings.HasPrefix(out[0], "bbsim ") {
		t.Fatalf("no command after %q on screen:\n%s", intro, screen)
	}
	return out
}
