package mailserver

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestMain lets the test binary run a bare server as a child process, to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("BBSIM_MAILSERVER_CHILD"); dir != "" {
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
		s.ServeSMTP(ln)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BBSIM_MAILSERVER_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	for i := range 5 {
		sendSMTP(t, strings.TrimSpace(addr), alice, fmt.Sprintf("durable %d", i))
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
