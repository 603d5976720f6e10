package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBeyondLoopback listens on every interface as a user might by mistake: a server
// warns for each such listener, a handset refuses to open its control API or receiver
// there without a token, and with tokens they work for whoever has them, and only for them.
func TestBeyondLoopback(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ports := freePorts(t, 8)
	anyPort := func(addr string) string { _, p, _ := strings.Cut(addr, ":"); return "0.0.0.0:" + p }

	// Without a token the handset does not start.
	for _, flag := range []string{"--api", "--listen"} {
		args := []string{"handset", "--headless", "--data", filepath.Join(dir, "refused"), "--mail-server", ports[0],
			"--listen", ports[6], "--api", ports[7]}
		args = append(args, flag, anyPort(ports[7]))
		_, errOut, code := runBBSim(t, t.Context(), args...)
		if code == 0 || !strings.Contains(errOut, flag+" 0.0.0.0:") || !strings.Contains(errOut, flag+"-token") {
			t.Errorf("handset %s on every interface without a token: exit %d, stderr %q", flag, code, errOut)
		}
	}

	// A server with its webmail on every interface says so.
	args := serverArgs(filepath.Join(dir, "server"), ports)
	for i, a := range args {
		if a == ports[3] {
			args[i] = anyPort(ports[3])
		}
	}
	_, out := startBBSim(t, args...)
	push := ports[4]
	waitAPI(t, "http://"+push+"/api/v1/devices", "[", 30*time.Second)
	waitFor(t, 10*time.Second, "the warning", func() bool {
		return strings.Contains(out.String(), "listening beyond loopback") && strings.Contains(out.String(), "listener=--webmail")
	})
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, "listening beyond loopback") && !strings.Contains(l, "--webmail") {
			t.Errorf("warning for a loopback listener: %s", l)
		}
	}

	// With tokens: pushes through the gateway arrive, the API answers the token's holder.
	listen, api := anyPort(ports[6]), anyPort(ports[7])
	startBBSim(t, "handset", "--headless", "--data", filepath.Join(dir, "handset"), "--mail-server", ports[0],
		"--gateway", "http://"+push, "--listen", listen, "--listen-token", "rx-secret",
		"--api", api, "--api-token", "api-secret")
	auth := []string{"-H", "Authorization: Bearer api-secret"}
	waitFor(t, 30*time.Second, "the handset attached", func() bool {
		b, _ := exec.Command("curl", append(auth, "-s", "http://"+ports[7]+"/api/v1/device")...).Output()
		return strings.Contains(string(b), `"attaches": 1`)
	})
	pushMessage(t, push, "2100000A", "ThroughTheToken")
	waitFor(t, 30*time.Second, "the push on the handset", func() bool {
		b, _ := exec.Command("curl", append(auth, "-s", "http://"+ports[7]+"/api/v1/messages")...).Output()
		return strings.Contains(string(b), "ThroughTheToken")
	})
	code := func(args ...string) string {
		b, _ := exec.Command("curl", append([]string{"-s", "-o", "/dev/null", "-w", "%{http_code}"}, args...)...).Output()
		return string(b)
	}
	if got := code("http://" + ports[7] + "/api/v1/messages"); got != "401" {
		t.Errorf("control API without the token: HTTP %s, want 401", got)
	}
	if got := code("-X", "POST", "-H", "Content-Type: text/plain", "--data", "hi", "http://"+ports[6]+"/"); got != "401" {
		t.Errorf("push straight to the receiver without the token: HTTP %s, want 401", got)
	}
	if got := code("-X", "POST", "-H", "Authorization: Bearer rx-secret", "-H", "Content-Type: text/plain",
		"-H", "X-RIM-Push-Type: Browser-Message", "-H", "X-RIM-Push-Title: Direct", "--data", "hi", "http://"+ports[6]+"/"); got != "200" {
		t.Errorf("push straight to the receiver with the token: HTTP %s, want 200", got)
	}
	b, _ := exec.Command("curl", "-s", "http://"+push+"/api/v1/devices").Output()
	if strings.Contains(string(b), "rx-secret") {
		t.Errorf("the gateway shows the receiver's token: %s", b)
	}
}
