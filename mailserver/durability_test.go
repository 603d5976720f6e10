package mailserver

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-smtp"
)

// TestMain lets the test binary run a bare server as a child process, to be killed or
// measured.
func TestMain(m *testing.M) {
	for env, serve := range childServers {
		if dir := os.Getenv(env); dir != "" {
			serveChild(dir, serve)
		}
	}
	os.Exit(m.Run())
}

// childServers are the bare servers a test runs in a child process, by the environment
// variable that names the child's data directory.
var childServers = map[string]func(*Server, net.Listener) error{
	"BBSIM_MAILSERVER_CHILD":      (*Server).ServeSMTP,
	"BBSIM_MAILSERVER_IMAP_CHILD": (*Server).ServeIMAP,
}

// serveChild serves one protocol on dir, prints its address and never returns.
func serveChild(dir string, serve func(*Server, net.Listener) error) {
	s, err := New(Options{DataDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	serve(s, ln)
	os.Exit(0)
}

func TestSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	cmd, addr := startChild(t, dir)
	for i := range 5 {
		sendSMTP(t, addr, alice, fmt.Sprintf("durable %d", i))
	}
	// Kill right after the last 250.
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	s, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msgs := s.user(alice).inbox().Messages()
	if len(msgs) != 5 {
		t.Fatalf("%d messages after SIGKILL and restart, want 5", len(msgs))
	}
	for i, m := range msgs {
		body, _ := s.user(alice).inbox().Body(m.UID)
		if !strings.Contains(string(body), fmt.Sprintf("Subject: durable %d", i)) || m.UID != msgs[0].UID+uidOffset(i) {
			t.Errorf("message %d: uid %d %q", i, m.UID, body)
		}
	}
	// The next UID continues after the restart.
	if err := s.Deliver(context.Background(), "bob@example.test", []string{alice}, []byte("Subject: after\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	all := s.user(alice).inbox().Messages()
	if last := all[len(all)-1].UID; last != msgs[4].UID+1 {
		t.Fatalf("UID after restart %d, want %d", last, msgs[4].UID+1)
	}
}

func uidOffset(i int) imap.UID { return imap.UID(i) }

// startChild starts a bare server (SMTP only) on dir in a child process, to be killed.
func startChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	return startChildServer(t, "BBSIM_MAILSERVER_CHILD", dir)
}

// startChildServer starts the child server that env names (see childServers) on dir and
// returns it with its address; the test's end kills it.
func startChildServer(t *testing.T, env, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	return cmd, strings.TrimSpace(addr)
}

// TestSurvivesSIGKILLConcurrent: many senders at once on kept connections, so that their
// messages share group commits, and the server killed while they send. Every message
// answered 250 is there after the restart, none twice, in UID order.
func TestSurvivesSIGKILLConcurrent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd, addr := startChild(t, dir)
	const senders, killAfter = 24, 400
	var acked sync.Map // subject → true, once answered 250
	var nAcked atomic.Int64
	enough := make(chan struct{})
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			c, err := smtp.Dial(addr)
			if err != nil {
				return
			}
			defer c.Close()
			for j := 0; ; j++ {
				subject := fmt.Sprintf("s%02d-%04d", i, j)
				msg := "From: bob@example.test\r\nTo: " + alice + "\r\nSubject: " + subject + "\r\n\r\nDurable.\r\n"
				if err := c.SendMail("bob@example.test", []string{alice}, strings.NewReader(msg)); err != nil {
					return // the server is gone
				}
				acked.Store(subject, true)
				if nAcked.Add(1) == killAfter {
					close(enough)
				}
			}
		})
	}
	select {
	case <-enough:
	case <-time.After(60 * time.Second):
		t.Fatalf("only %d messages answered 250 in 60s", nAcked.Load())
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	wg.Wait()

	s, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	seen := map[string]int{}
	var last imap.UID
	for _, m := range s.user(alice).inbox().Messages() {
		if m.UID <= last {
			t.Errorf("UID %d after %d", m.UID, last)
		}
		last = m.UID
		body, _ := s.user(alice).inbox().Body(m.UID)
		_, rest, _ := strings.Cut(string(body), "Subject: ")
		subject, _, _ := strings.Cut(rest, "\r\n")
		seen[subject]++
	}
	missing := 0
	acked.Range(func(k, _ any) bool {
		if seen[k.(string)] == 0 {
			missing++
			t.Errorf("%s was answered 250 but is not in the store after SIGKILL", k)
		}
		return missing < 10
	})
	for subject, n := range seen {
		if n > 1 {
			t.Errorf("%s is in the store %d times", subject, n)
		}
	}
	t.Logf("%d messages answered 250 before SIGKILL, %d in the store after", nAcked.Load(), len(seen))
}
