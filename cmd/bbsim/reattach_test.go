package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/childproc"
	"github.com/bbsim/bbsim/internal/syncbuf"
)

// startBBSim starts a long-running bbsim command; the test's cleanup ends it. Its output
// (stdout and stderr together) is in the returned buffer.
func startBBSim(t *testing.T, args ...string) (*exec.Cmd, *syncbuf.Buffer) {
	t.Helper()
	cmd := exec.Command(bbsimBin, args...)
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bbsim %v: %v", args, err)
	}
	t.Cleanup(func() {
		childproc.Stop(cmd, syscall.SIGTERM, 10*time.Second)
		if t.Failed() {
			t.Logf("bbsim %s output:\n%s", args[0], out.String())
		}
	})
	return cmd, out
}

// serverArgs are the arguments of a bbsim server on the given ports, sharing dir. The DNS
// zone stays off: a TCP port found free says nothing of the same UDP port, and a server
// restarted on its ports could find that one taken by another test's socket.
func serverArgs(dir string, ports []string) []string {
	args := []string{"server", "--data", dir}
	for i, n := range []string{"imap", "pop3", "smtp", "webmail", "push"} {
		args = append(args, "--"+n, ports[i])
	}
	return append(args, "--dns", "")
}

// restartServer ends a bbsim server with sig and starts it again on the same ports and data.
func restartServer(t *testing.T, srv *exec.Cmd, sig syscall.Signal, args []string, push string) *exec.Cmd {
	t.Helper()
	childproc.Stop(srv, sig, 10*time.Second)
	srv, _ = startBBSim(t, args...)
	waitAPI(t, "http://"+push+"/api/v1/devices", "[", 30*time.Second)
	return srv
}

func pushMessage(t *testing.T, gateway, pin, title string) {
	t.Helper()
	out, errOut, code := runBBSim(t, t.Context(), "push", "--gateway", "http://"+gateway, "--to", pin,
		"--type", "message", "--title", title, "--file", "-")
	if code != 0 {
		t.Fatalf("push %s: exit %d\n%s%s", title, code, out, errOut)
	}
}

// TestHandsetReattachesAfterServerRestart restarts a bbsim server process, killed or
// stopped, under a bbsim handset process: the push sent after the restart reaches the
// handset without any change of coverage, and the device reports the second attachment.
func TestHandsetReattachesAfterServerRestart(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ports := freePorts(t, 8)
			push, api := ports[4], "http://"+ports[7]
			args := serverArgs(filepath.Join(dir, "server"), ports)
			srv, _ := startBBSim(t, args...)
			waitAPI(t, "http://"+push+"/api/v1/devices", "[", 30*time.Second)
			startBBSim(t, "handset", "--headless", "--data", filepath.Join(dir, "handset"), "--mail-server", ports[0],
				"--gateway", "http://"+push, "--listen", ports[6], "--api", ports[7], "--gateway-check", "1s")
			waitAPI(t, api+"/api/v1/device", `"attaches": 1`, 30*time.Second)
			pushMessage(t, push, "2100000A", "BeforeRestart")
			waitAPI(t, api+"/api/v1/messages", "BeforeRestart", 30*time.Second)

			restartServer(t, srv, sig, args, push)
			pushMessage(t, push, "2100000A", "AfterRestart")
			waitAPI(t, api+"/api/v1/messages", "AfterRestart", 30*time.Second)
			waitAPI(t, api+"/api/v1/device", `"attaches": 2`, 10*time.Second)
			waitAPI(t, api+"/api/v1/device", `"coverage": "in"`, time.Second)
		})
	}
}

// TestFleetReattachesAfterServerRestart does the same for every handset of a bbsim fleet.
func TestFleetReattachesAfterServerRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ports := freePorts(t, 7)
	push, fl := ports[4], "http://"+ports[6]
	args := serverArgs(filepath.Join(dir, "server"), ports)
	srv, _ := startBBSim(t, args...)
	waitAPI(t, "http://"+push+"/api/v1/devices", "[", 30*time.Second)
	_, fout := startBBSim(t, "fleet", "--count", "3", "--gateway", "http://"+push, "--listen", ports[6], "--gateway-check", "1s",
		"--report", "100ms", "--data", filepath.Join(dir, "fleet"))
	waitFor(t, 30*time.Second, "every handset of the fleet attached", func() bool {
		out, _ := exec.Command("curl", "-s", fl+"/api/v1/fleet").CombinedOutput()
		return bytes.Count(out, []byte(`"attached":true`)) == 3
	})
	restartServer(t, srv, syscall.SIGKILL, args, push)
	pins := []string{"2A000000", "2A000001", "2A000002"}
	for _, pin := range pins {
		pushMessage(t, push, pin, "AfterRestart"+pin)
	}
	for _, pin := range pins {
		waitAPI(t, fl+"/h/"+pin+"/api/v1/messages", "AfterRestart"+pin, 30*time.Second)
	}
	out, _ := exec.Command("curl", "-s", fl+"/h/2A000002/api/v1/device").CombinedOutput()
	if !bytes.Contains(out, []byte(`"attaches": 2`)) {
		t.Fatalf("device after the restart: %s", out)
	}
	// The counters are printed when they change, not every period.
	prev := ""
	for _, l := range strings.Split(fout.String(), "\n") {
		if !strings.HasPrefix(l, "fleet: ") || strings.Contains(l, "handsets from PIN") {
			continue
		}
		if l == prev {
			t.Fatalf("fleet printed the same counters twice in a row:\n%s", fout.String())
		}
		prev = l
	}
	if !strings.Contains(fout.String(), "fleet: 3/3 attached, 3 messages, 0 channels") {
		t.Fatalf("fleet output:\n%s", fout.String())
	}
}
