package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMailEscapesNeverReachTerminal mails a subject carrying terminal escapes (retitle the
// window, clear the screen) to "bbsim run" in a real terminal, headless and with the TUI,
// and reads what the program wrote to the terminal (tmux pipe-pane) and the pane's title.
func TestMailEscapesNeverReachTerminal(t *testing.T) {
	const subject = "TUIESC\x1b]0;pwned-tui\x07\x1b[2J"
	for _, mode := range []string{"headless", "tui"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			sock := filepath.Join(dir, "tmux.sock")
			ports := freePorts(t, 8)
			names := []string{"imap", "pop3", "smtp", "webmail", "push", "dns", "listen", "api"}
			args := []string{bbsimBin, "run", "--data", filepath.Join(dir, "data")}
			if mode == "headless" {
				args = append(args, "--headless")
			}
			for i, n := range names {
				args = append(args, "--"+n, ports[i])
			}
			raw := filepath.Join(dir, "raw")
			tmux(t, sock, "new-session", "-d", "-x", "120", "-y", "32", "-s", "bbsim", "sh", "-c", strings.Join(args, " ")+"; sleep 60")
			t.Cleanup(func() { tmux(t, sock, "kill-server") })
			tmux(t, sock, "set-option", "-t", "bbsim", "-g", "allow-rename", "on")
			tmux(t, sock, "pipe-pane", "-o", "-t", "bbsim", "cat >> "+raw)
			waitAPI(t, "http://"+ports[7]+"/api/v1/device", `"state": "idling"`, 30*time.Second)
			if out, errOut, code := runBBSim(t, t.Context(), "send", "--smtp", ports[2], "--subject", subject); code != 0 {
				t.Fatalf("send: %s %s", out, errOut)
			}
			if mode == "tui" {
				tmux(t, sock, "send-keys", "-t", "bbsim", "m")
			}
			deadline := time.Now().Add(20 * time.Second)
			var screen string
			for {
				screen = tmux(t, sock, "capture-pane", "-p", "-t", "bbsim")
				if strings.Contains(screen, "TUIESC") {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("the subject is not on the screen (cleared?):\n%s", screen)
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			b, err := os.ReadFile(raw)
			if err != nil {
				t.Fatal(err)
			}
			for _, seq := range []string{"\x1b]0;pwned", "\x07", "TUIESC\x1b"} {
				if i := bytes.Index(b, []byte(seq)); i >= 0 {
					t.Errorf("the terminal received %q: %q", seq, b[max(i-40, 0):min(i+40, len(b))])
				}
			}
			if title := tmux(t, sock, "display-message", "-p", "-t", "bbsim", "#{pane_title}"); strings.Contains(title, "pwned") {
				t.Errorf("pane title = %q: the mail retitled the terminal", strings.TrimSpace(title))
			}
		})
	}
}
