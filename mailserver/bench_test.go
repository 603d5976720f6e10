package mailserver

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func quantileMS(ds []time.Duration, q float64) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := min(int(q*float64(len(s))), len(s)-1)
	return float64(s[i]) / float64(time.Millisecond)
}

// BenchmarkSMTPToExists measures SMTP 250 → "* N EXISTS" at an idling IMAP client.
func BenchmarkSMTPToExists(b *testing.B) {
	r := startServer(b, Options{})
	id := startIdler(b, r.imap)
	c, err := smtp.Dial(r.smtp)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := "From: bob@example.test\r\nTo: alice@bbsim.test\r\nSubject: bench\r\n\r\nHello.\r\n"
	waitIdling(b, r.s, 1)
	// The server commits, tells the idlers, then answers 250, so EXISTS usually reaches
	// the idler before the 250 reaches the sender: the figure is from the start of the
	// submission (MAIL FROM … DATA … 250) to EXISTS, an upper bound of 250 → EXISTS.
	// The inbox starts empty, so the i-th message's EXISTS says i: an EXISTS that says
	// less is an earlier message's, late, and one that says more is a later one's.
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if err := c.SendMail("bob@example.test", []string{alice}, strings.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
		select {
		case n := <-id.exists:
			lat = append(lat, time.Since(t0))
			if n != uint32(i+1) {
				b.Fatalf("message %d announced as EXISTS %d", i+1, n)
			}
		case <-time.After(5 * time.Second):
			b.Fatalf("no EXISTS for message %d", i+1)
		}
	}
	b.StopTimer()
	select {
	case n := <-id.exists:
		b.Fatalf("EXISTS %d after the last of %d messages", n, b.N)
	default:
	}
	b.ReportMetric(quantileMS(lat, 0.5), "p50-ms")
	b.ReportMetric(quantileMS(lat, 0.99), "p99-ms")
}

// BenchmarkPoliteHandover measures POP3 PASS → +OK while an idler holds the store.
func BenchmarkPoliteHandover(b *testing.B) {
	r := startServer(b, Options{PoliteDisconnect: true})
	lat := make([]time.Duration, 0, b.N)
	for range b.N {
		b.StopTimer()
		rc := rawIdlerB(b, r.imap)
		waitIdling(b, r.s, 1)
		p := dialPOP3B(b, r.pop3)
		p.cmd("USER " + alice)
		b.StartTimer()
		t0 := time.Now()
		got := p.cmd("PASS " + pass)
		lat = append(lat, time.Since(t0))
		b.StopTimer()
		if !strings.HasPrefix(got, "+OK") {
			b.Fatalf("PASS: %q", got)
		}
		p.cmd("QUIT")
		p.c.Close()
		rc.c.Close()
		b.StartTimer()
	}
	b.ReportMetric(quantileMS(lat, 0.5), "p50-ms")
	b.ReportMetric(quantileMS(lat, 0.99), "p99-ms")
}

// BenchmarkIdleConnMemory measures the server's heap per idling IMAP connection.
func BenchmarkIdleConnMemory(b *testing.B) {
	n := 5000
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < uint64(2*n+100) {
		rl.Cur = min(rl.Max, uint64(2*n+100))
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		n = int(rl.Cur-100) / 2
	}
	// One measurement whatever b.N: opening thousands of connections is the work.
	for i := 0; i < 1; i++ {
		r := startServer(b, Options{Locking: LockShared})
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		conns := make([]net.Conn, 0, n)
		for range n {
			c, err := net.Dial("tcp", r.imap)
			if err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(c, "a LOGIN %s %s\r\nb SELECT INBOX\r\nc IDLE\r\n", alice, pass)
			conns = append(conns, c)
		}
		// Wait until every session is idling: dividing by n with fewer would understate
		// the cost of one.
		deadline := time.Now().Add(60 * time.Second)
		for idling := r.s.IdleSessions(alice); idling < n; idling = r.s.IdleSessions(alice) {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d sessions idling after 60 s", idling, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		// Client and server share the process: the client side holds only the sockets.
		per := float64(after.HeapInuse+after.StackInuse-before.HeapInuse-before.StackInuse) / float64(n)
		b.ReportMetric(per/1024, "KiB/conn")
		b.ReportMetric(float64(n), "conns")
		for _, c := range conns {
			c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r.s.Shutdown(ctx)
		cancel()
	}
}
