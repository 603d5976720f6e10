package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/childproc"
)

// runArgs are the arguments of a headless bbsim run on the given ports.
func runArgs(dir string, ports []string) []string {
	args := []string{"run", "--headless", "--data", dir}
	for i, n := range []string{"imap", "pop3", "smtp", "webmail", "push", "dns", "listen", "api"} {
		args = append(args, "--"+n, ports[i])
	}
	return args
}

// TestWaitAndReset drives bbsim wait and the reset endpoints from the shell, as a test
// suite in any language would: wait for a pushed channel and a sent mail, time out on what
// never comes, reset the handset and the mail store, and go on.
func TestWaitAndReset(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ports := freePorts(t, 8)
	api, webmail := ports[7], ports[3]
	run, runOut := startBBSim(t, runArgs(filepath.Join(dir, "data"), ports)...)
	waitAPI(t, "http://"+api+"/api/v1/device", `"attaches": 1`, 30*time.Second)
	waitAPI(t, "http://"+api+"/api/v1/device", `"state": "idling"`, 30*time.Second)

	// bbsim wait started before the push returns when it arrives.
	waiter := exec.Command(bbsimBin, "wait", "--api", api, "--channel", "News", "--timeout", "60s")
	var wout strings.Builder
	waiter.Stdout = &wout
	if err := waiter.Start(); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runBBSim(t, t.Context(), "push", "--gateway", "http://"+ports[4], "--to", "2100000A",
		"--type", "channel", "--title", "News", "--channel-id", "http://example.test/news", "--file", "-"); code != 0 {
		t.Fatalf("push: %s%s", out, errOut)
	}
	if err := waiter.Wait(); err != nil {
		t.Fatalf("bbsim wait --channel News: %v, %s", err, wout.String())
	}
	if got := wout.String(); !strings.Contains(got, `"title":"News"`) || strings.Count(got, "\n") != 1 {
		t.Fatalf("bbsim wait printed %q, want the channel as one JSON line", got)
	}

	if out, errOut, code := runBBSim(t, t.Context(), "send", "--smtp", ports[2], "--subject", "Hello"); code != 0 {
		t.Fatalf("send: %s%s", out, errOut)
	}
	sh := func(script string) (string, int) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), "sh", "-c", script)
		cmd.Env = append(cmd.Environ(), "BBSIM="+bbsimBin, "API="+api, "WEBMAIL="+webmail)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	for _, tt := range []struct {
		name, script string
		code         int
		want         string
	}{
		{"mail arrives", `$BBSIM wait --api $API --mail Hello --timeout 30s`, 0, `"subject":"Hello"`},
		{"timeout", `$BBSIM wait --api $API --mail Nope --timeout 300ms`, 1, `no mail matching "Nope"`},
		{"no selector", `$BBSIM wait --api $API`, 2, "exactly one of"},
		{"two selectors", `$BBSIM wait --api $API --mail a --channel b`, 2, "exactly one of"},
		{"bad api", `$BBSIM wait --api 127.0.0.1:1 --mail a`, 1, "connection refused"},
		{"reset the handset", `curl -sf -X POST http://$API/api/v1/reset`, 0, `"unread": 0`},
		{"reset the mail store", `curl -sf -X POST http://$WEBMAIL/api/v1/reset`, 0, `{"deleted":1}`},
		{"channel gone", `$BBSIM wait --api $API --channel News --timeout 300ms`, 1, `no channel matching "News"`},
		{"reset event", `$BBSIM wait --api $API --event reset --timeout 5s`, 0, `"kind":"reset"`},
		{"mail after reset", `$BBSIM send --smtp ` + ports[2] + ` --subject After >/dev/null && $BBSIM wait --api $API --mail After --timeout 30s`, 0, `"subject":"After"`},
		{"old mail not back", `curl -sf "http://$API/api/v1/messages?match=Hello"`, 0, `[]`},
	} {
		out, code := sh(tt.script)
		if code != tt.code || !strings.Contains(out, tt.want) {
			t.Fatalf("%s: %s: exit %d, want %d and %q\n%s", tt.name, tt.script, code, tt.code, tt.want, out)
		}
	}

	// SIGTERM: the handset detaches and logs out before the servers stop, so nothing warns.
	childproc.Stop(run, syscall.SIGTERM, 10*time.Second)
	logb, _ := os.ReadFile(filepath.Join(dir, "data", "bbsim.log"))
	if out := runOut.String(); strings.Contains(out, "WARN") || strings.Contains(out, "level=INFO") ||
		strings.Contains(string(logb), "WARN") || !strings.Contains(string(logb), "msg=detached component=browserpush") {
		t.Fatalf("bbsim run on SIGTERM: output (events only, no log lines):\n%s\nbbsim.log:\n%s", out, logb)
	}
}
