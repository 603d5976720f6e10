package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/childproc"
)

// intrude is another program on the machine attaching a listener of its own for pin, with
// curl; it returns the HTTP status and the gateway's words.
func intrude(t *testing.T, push, pin string) (string, string) {
	t.Helper()
	out, err := exec.Command("curl", "-sS", "-H", "Content-Type: application/json", "-w", "\n%{http_code}",
		"--data-binary", `{"pin":"`+pin+`","receiver_url":"http://127.0.0.1:41999/"}`, "http://"+push+"/device/attach").Output()
	if err != nil {
		t.Fatalf("curl attach %s: %v", pin, err)
	}
	i := strings.LastIndexByte(string(out), '\n')
	body, code := string(out[:i]), string(out[i+1:])
	var m map[string]string
	json.Unmarshal([]byte(body), &m)
	return code, m["error"]
}

// TestDeviceSecretAcrossRestarts runs a bbsim server, a bbsim handset whose PIN has no
// --user account, and a bbsim fleet, and restarts all three on their data: the handsets
// keep the device secrets the gateway issued at their first attach (the handset in its
// journal, the fleet in its file, both 0600) and attach again with them, while another
// listener attaching for their PINs is refused before and after. A handset with fresh
// state is refused too, with words naming --reset-device, until the server is restarted
// with it.
func TestDeviceSecretAcrossRestarts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ports := freePorts(t, 9)
	push, api, fl := ports[4], "http://"+ports[7], "http://"+ports[8]
	args := append(serverArgs(filepath.Join(dir, "server"), ports),
		"--user", "alice@bbsim.test:blackberry:2100000A", "--user", "bob@bbsim.test:bobpw")
	handsetArgs := func(data string) []string {
		return []string{"handset", "--headless", "--data", data, "--pin", "2B00000B", "--email", "bob@bbsim.test",
			"--password", "bobpw", "--mail-server", ports[0], "--gateway", "http://" + push, "--listen", ports[6],
			"--api", ports[7], "--gateway-check", "1s"}
	}
	fleetArgs := []string{"fleet", "--count", "2", "--first-pin", "2A000000", "--data", filepath.Join(dir, "fleet-state"),
		"--gateway", "http://" + push, "--listen", ports[8], "--gateway-check", "1s", "--report", "0"}
	fleetAttached := func() {
		t.Helper()
		waitFor(t, 30*time.Second, "every handset of the fleet attached", func() bool {
			out, _ := exec.Command("curl", "-s", fl+"/api/v1/fleet").CombinedOutput()
			return strings.Count(string(out), `"attached":true`) == 2
		})
	}
	refused := func(when string) {
		t.Helper()
		for _, pin := range []string{"2B00000B", "2A000001"} {
			if code, msg := intrude(t, push, pin); code != "401" || !strings.Contains(msg, "--reset-device "+pin) {
				t.Errorf("%s: another listener's attach for %s = %s %q, want 401 naming --reset-device", when, pin, code, msg)
			}
		}
	}

	srv, _ := startBBSim(t, args...)
	waitAPI(t, "http://"+push+"/api/v1/devices", "[", 30*time.Second)
	hs, _ := startBBSim(t, handsetArgs(filepath.Join(dir, "handset"))...)
	waitAPI(t, api+"/api/v1/device", `"attaches": 1`, 30*time.Second)
	fleet, _ := startBBSim(t, fleetArgs...)
	fleetAttached()
	refused("before the restarts")
	for f, want := range map[string]string{
		filepath.Join(dir, "handset", "handset", "2B00000B", "handset.journal"): `"op":"device-secret"`,
		filepath.Join(dir, "fleet-state", "fleet", "device-secrets"):            "2A000001 ",
	} {
		if b, err := os.ReadFile(f); err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s holds no device secret (%q): %v", f, want, err)
		}
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", f, err)
		}
	}

	// Everything restarts on its data: the server killed, the handsets stopped.
	childproc.Stop(hs, syscall.SIGTERM, 10*time.Second)
	childproc.Stop(fleet, syscall.SIGTERM, 10*time.Second)
	restartServer(t, srv, syscall.SIGKILL, args, push)
	refused("after the server's restart")
	startBBSim(t, handsetArgs(filepath.Join(dir, "handset"))...)
	waitAPI(t, api+"/api/v1/device", `"attaches": 1`, 30*time.Second)
	startBBSim(t, fleetArgs...)
	fleetAttached()
	for _, pin := range []string{"2B00000B", "2A000001"} {
		pushMessage(t, push, pin, "AfterRestarts"+pin)
	}
	waitAPI(t, api+"/api/v1/messages", "AfterRestarts2B00000B", 30*time.Second)
	waitAPI(t, fl+"/h/2A000001/api/v1/messages", "AfterRestarts2A000001", 30*time.Second)

	// A handset for a fleet PIN without the fleet's state is refused, and told how to reset.
	ports2 := freePorts(t, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	out, errOut, code := runBBSim(t, ctx, "handset", "--headless", "--data", filepath.Join(dir, "lost"), "--pin", "2A000001",
		"--email", "bob@bbsim.test", "--password", "bobpw", "--mail-server", ports[0], "--gateway", "http://"+push,
		"--listen", ports2[0], "--api", ports2[1])
	if code == 0 || !strings.Contains(out+errOut, "--reset-device 2A000001") {
		t.Errorf("a handset with fresh state for 2A000001: exit %d, want refused naming --reset-device:\n%s%s", code, out, errOut)
	}
}

// TestFleetDataInUse: a second bbsim fleet on the --data of a running one exits at once
// with an error naming the directory, instead of appending to the same device-secrets file.
func TestFleetDataInUse(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	ports := freePorts(t, 2)
	fleetArgs := func(listen string) []string {
		return []string{"fleet", "--count", "2", "--gateway", "", "--data", data, "--listen", listen, "--report", "0"}
	}
	startBBSim(t, fleetArgs(ports[0])...)
	waitAPI(t, "http://"+ports[0]+"/api/v1/fleet", `"pin":"2A000001"`, 30*time.Second)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a fleet that starts runs until killed
	defer cancel()
	out, errOut, code := runBBSim(t, ctx, fleetArgs(ports[1])...)
	dir := filepath.Join(data, "fleet")
	if code == 0 || !strings.Contains(errOut, dir+" is locked by another bbsim process") || !strings.Contains(errOut, "another --data") {
		t.Errorf("a second fleet on the same --data: exit %d, want refused naming %s:\n%s%s", code, dir, out, errOut)
	}
}
