package main

import (
	"database/sql"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/pgtest"
	"github.com/bbsim/bbsim/rim"
)

// TestServerPushDB: `bbsim server --push-db postgres://…` keeps what curl pushes in that
// PostgreSQL database; a second server on it under the same name is refused with the
// reason, and one under another name (--push-instance) shares it: a handset attaching to
// that one gets the push the first one held.
func TestServerPushDB(t *testing.T) {
	t.Parallel()
	db := pgtest.Start(t).NewDatabase(t)
	ports := freePorts(t, 4) // the two servers' push ports, the handset's API and its receiver
	addr := ports[0]
	srv := exec.Command(bbsimBin, "server", "--data", t.TempDir(), "--push-db", db, "--push", addr,
		"--imap", "", "--pop3", "", "--smtp", "", "--webmail", "", "--dns", "")
	var stderr strings.Builder
	srv.Stderr = &stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	waitFor(t, 30*time.Second, "the push server listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	out, err := exec.Command("curl", "-s", "-X", "POST", "-H", "X-RIM-Push-ID: from-curl", "-H", "Content-Type: text/plain",
		"-H", "X-RIM-Push-Type: Browser-Message", "-H", "X-RIM-Push-Title: Held by the first gateway",
		"--data", "hello postgres", "http://"+addr+"/push?DESTINATION=2100000A&PORT=7874").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "accepted") {
		t.Fatalf("curl push: %v %s", err, out)
	}
	conn, err := sql.Open("pgx", db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var state rim.State
	var body string
	err = conn.QueryRow(`SELECT r.state, convert_from(p.body, 'UTF8') FROM pushes p JOIN recipients r ON r.pid = p.id WHERE p.push_id = 'from-curl'`).Scan(&state, &body)
	if err != nil || state != rim.StateQueued || body != "hello postgres" {
		t.Fatalf("row in PostgreSQL: %q %q %v, want queued (the handset is away) and the body", state, body, err)
	}
	addr2 := ports[1]
	_, errOut, code := runBBSim(t, t.Context(), "server", "--data", t.TempDir(), "--push-db", db, "--push", addr2,
		"--imap", "", "--pop3", "", "--smtp", "", "--webmail", "", "--dns", "")
	if code == 0 || !strings.Contains(errOut, "in use by another bbsim gateway") {
		t.Fatalf("second server on the database: exit %d, stderr %q", code, errOut)
	}
	// Under a name of its own, a second server shares the database: it answers for the
	// first one's push.
	east := exec.Command(bbsimBin, "server", "--data", t.TempDir(), "--push-db", db, "--push-instance", "east", "--push", addr2,
		"--imap", "", "--pop3", "", "--smtp", "", "--webmail", "", "--dns", "")
	if err := east.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { east.Process.Kill(); east.Wait() })
	var status string
	waitFor(t, 30*time.Second, "the second server answering", func() bool {
		out, err := exec.Command("curl", "-s", "http://"+addr2+"/api/v1/pushes/from-curl").Output()
		status = string(out)
		return err == nil && strings.Contains(status, `"state":"queued"`)
	})
	// The handset attaches to the second server, which takes the push over from the first.
	apiAddr, recvAddr := ports[2], ports[3]
	hs := exec.Command(bbsimBin, "handset", "--headless", "--data", t.TempDir(), "--pin", "2100000A",
		"--gateway", "http://"+addr2, "--listen", recvAddr, "--api", apiAddr, "--mail-server", "127.0.0.1:1")
	if err := hs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Process.Kill(); hs.Wait() })
	waitFor(t, 30*time.Second, "the held push on the handset", func() bool {
		out, err := exec.Command("curl", "-s", "http://"+apiAddr+"/api/v1/messages").Output()
		return err == nil && strings.Contains(string(out), `"subject": "Held by the first gateway"`)
	})
	waitFor(t, 30*time.Second, "the push delivered", func() bool {
		out, err := exec.Command("curl", "-s", "http://"+addr+"/api/v1/pushes/from-curl").Output()
		return err == nil && strings.Contains(string(out), `"state":"delivered"`)
	})
	srv.Process.Signal(syscall.SIGTERM)
	if err := srv.Wait(); err != nil {
		t.Fatalf("server after SIGTERM: %v\n%s", err, stderr.String())
	}
}
