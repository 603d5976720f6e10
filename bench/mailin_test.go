package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/childproc"
	"github.com/bbsim/bbsim/internal/freeport"
	"github.com/bbsim/bbsim/internal/syncbuf"
)

// The mail-in load of the comparison: 32 kept connections, 3,000 messages of 2.3 KB.
const (
	mailInConns = 32
	mailInN     = 3000
	mailInSize  = 2300
)

// BenchmarkMailInVsMailpit sends the same SMTP load (SMTPLoad: 32 kept connections, 3,000
// messages of 2.3 KB, MAIL, RCPT and DATA each) to `bbsim server` and to Mailpit, the Go
// test mail server people pick, each a process of its own started afresh for every run,
// alternating the two BBSIM_BENCH_ROUNDS times (default 3). It reports each one's median
// messages/s, the median of the rounds' ratios, and how many messages bbsim's group commits
// carried on average. Mailpit is the one `make bench-deps` installs into bin/ (or the binary
// BBSIM_MAILPIT names); it runs with its defaults but for reverse DNS lookups, which it is
// spared. BBSIM_BIN runs another build of bbsim instead of this tree's.
func BenchmarkMailInVsMailpit(b *testing.B) {
	mailpit := os.Getenv("BBSIM_MAILPIT")
	if mailpit == "" {
		mailpit = filepath.Join("..", "bin", "mailpit")
	}
	if _, err := os.Stat(mailpit); err != nil {
		b.Fatalf("Mailpit is not installed (%v): run make bench-deps, or name the binary in BBSIM_MAILPIT", err)
	}
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("BBSIM_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	bbsim := os.Getenv("BBSIM_BIN") // another build, to compare
	if bbsim == "" {
		bbsim = filepath.Join(b.TempDir(), "bbsim")
		if out, err := exec.Command("go", "build", "-o", bbsim, "../cmd/bbsim").CombinedOutput(); err != nil {
			b.Fatalf("build bbsim: %v\n%s", err, out)
		}
	}
	msg := TestMessage("app@example.test", "alice@bbsim.test", mailInSize)
	run := func(addr string) float64 {
		ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
		defer cancel()
		took, err := SMTPLoad{Addr: addr, Conns: mailInConns, N: mailInN, From: "app@example.test", To: "alice@bbsim.test", Msg: msg}.Run(ctx)
		if err != nil {
			b.Fatal(err)
		}
		return float64(mailInN) / took.Seconds()
	}
	var ours, theirs, ratios, perCommit []float64
	for range b.N {
		for i := range rounds {
			srv := startBBSimServer(b, bbsim)
			o := run(srv.addr)
			commits, ops := srv.stop(b)
			mp := startMailpit(b, mailpit)
			m := run(mp.addr)
			mp.stop(b)
			b.Logf("round %d: bbsim server %.0f msg/s (%d operations in %d commits), Mailpit %.0f msg/s, ratio %.2f",
				i+1, o, ops, commits, m, o/m)
			ours, theirs, ratios = append(ours, o), append(theirs, m), append(ratios, o/m)
			perCommit = append(perCommit, float64(ops)/float64(max(commits, 1)))
		}
	}
	b.ReportMetric(median(ours), "bbsim-msg/s")
	b.ReportMetric(median(theirs), "mailpit-msg/s")
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(median(perCommit), "ops/commit")
	b.ReportMetric(0, "ns/op")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// peer is an SMTP server in a process of its own.
type peer struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncbuf.Buffer
}

// startBBSimServer starts `bbsim server` with SMTP only, on a free port it reports.
func startBBSimServer(b *testing.B, bin string) *peer {
	p := &peer{stderr: &syncbuf.Buffer{}}
	p.cmd = exec.Command(bin, "server", "--data", b.TempDir(), "--smtp", "127.0.0.1:0",
		"--imap", "", "--pop3", "", "--webmail", "", "--push", "", "--dns", "")
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { childproc.Stop(p.cmd, syscall.SIGKILL, time.Second) })
	p.addr = waitLine(b, out, p.stderr, "bbsim: smtp", func(line string) string { return strings.TrimSpace(strings.TrimPrefix(line, "bbsim: smtp")) })
	return p
}

var storeClosed = regexp.MustCompile(`msg="mail store closed".* commits=(\d+) operations=(\d+)`)

// stop ends bbsim server as a user does (SIGTERM) and returns what its mail store's log
// line says of the group commits.
func (p *peer) stop(b *testing.B) (commits, ops int64) {
	childproc.Stop(p.cmd, syscall.SIGTERM, 10*time.Second)
	m := storeClosed.FindStringSubmatch(p.stderr.String())
	if m == nil {
		return 0, 0 // Mailpit, or a server that did not say
	}
	commits, _ = strconv.ParseInt(m[1], 10, 64)
	ops, _ = strconv.ParseInt(m[2], 10, 64)
	return commits, ops
}

// startMailpit starts Mailpit on free ports, its store in a fresh directory, and waits until
// it says its SMTP server is listening.
func startMailpit(b *testing.B, bin string) *peer {
	dir := b.TempDir()
	smtpAddr, httpAddr := freeAddr(b), freeAddr(b)
	p := &peer{stderr: &syncbuf.Buffer{}, addr: smtpAddr}
	p.cmd = exec.Command(bin, "--smtp", smtpAddr, "--listen", httpAddr, "--database", filepath.Join(dir, "mailpit.db"),
		"--disable-version-check", "--smtp-disable-rdns")
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { childproc.Stop(p.cmd, syscall.SIGKILL, time.Second) })
	waitLine(b, out, p.stderr, "[smtpd] starting on", func(string) string { return "" })
	// Mailpit says so just before it binds: its greeting is the sign it listens.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", smtpAddr, time.Second)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if rerr == nil && strings.HasPrefix(line, "220") {
				return p
			}
			err = fmt.Errorf("greeting %q: %v", line, rerr)
		}
		if time.Now().After(deadline) {
			b.Fatalf("Mailpit on %s: %v\n%s", smtpAddr, err, p.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freeAddr returns a loopback address free a moment ago, for a peer that takes no
// listener and does not say which port it bound.
func freeAddr(b *testing.B) string {
	addrs, err := freeport.Addrs(1)
	if err != nil {
		b.Fatal(err)
	}
	return addrs[0]
}

// waitLine reads a peer's output until a line containing marker, returns what get makes
// of it, and copies the rest of the output to keep in the background.
func waitLine(b *testing.B, out io.Reader, keep io.Writer, marker string, get func(string) string) string {
	type found struct {
		v   string
		err error
	}
	ch := make(chan found, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(keep, line)
			if strings.Contains(line, marker) {
				ch <- found{v: get(line)}
				io.Copy(keep, out)
				return
			}
		}
		ch <- found{err: fmt.Errorf("output ended before %q", marker)}
	}()
	select {
	case f := <-ch:
		if f.err != nil {
			b.Fatalf("%v:\n%s", f.err, keep)
		}
		return f.v
	case <-time.After(30 * time.Second):
		b.Fatalf("no %q within 30s", marker)
		return ""
	}
}
