package mailserver

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procKB reads a field of /proc/PID/status in KiB.
func procKB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// 80 connections that have not logged in each send a SEARCH of 12,400 nested NOTs (once
// 86 MB of server memory each); the server stays small and a LOGIN alongside is answered.
func TestIMAPPreLoginMemory(t *testing.T) {
	cmd, addr := startChildServer(t, "BBSIM_MAILSERVER_IMAP_CHILD", t.TempDir())
	pid := cmd.Process.Pid
	before := procKB(t, pid, "VmRSS")

	const conns = 80
	attack := "a1 SEARCH " + strings.Repeat("NOT ", 12400) + "ALL\r\n"
	answers := make(chan string, conns)
	for range conns {
		go func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				answers <- "dial: " + err.Error()
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			br := bufio.NewReader(c)
			br.ReadString('\n') // greeting
			c.Write([]byte(attack))
			// The server reads 8 KiB of the line, says BYE and closes; the unread rest
			// may turn the close into a reset that loses the BYE.
			l, err := br.ReadString('\n')
			if err != nil {
				answers <- "closed: " + err.Error()
				return
			}
			answers <- strings.TrimRight(l, "\r\n")
		}()
	}
	// A LOGIN alongside gets its greeting and its answer.
	start := time.Now()
	ic := dialIMAPRaw(t, addr)
	ic.login()
	login := time.Since(start)
	for range conns {
		a := <-answers
		if a != "* BYE [TOOBIG] Command line too long (at most 8192 bytes before login)" &&
			!strings.HasPrefix(a, "closed: ") {
			t.Errorf("answer to a pre-login SEARCH of 12,400 NOTs: %q", a)
		}
	}
	peak := procKB(t, pid, "VmHWM")
	t.Logf("server RSS %d KiB before, peak %d KiB with %d pre-login SEARCHes of 12,400 NOTs; a LOGIN alongside took %v",
		before, peak, conns, login)
	if peak > 200<<10 {
		t.Errorf("server peak RSS %d KiB, want under 200 MiB", peak)
	}
}
