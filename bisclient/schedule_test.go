package bisclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bbsim/bbsim/dnsserver"
	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/mailserver"
)

func TestBackoffSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := aliceHandset(t)
		log := newDialLog(func(_ int, n string) (net.Conn, error) {
			return nil, &net.OpError{Op: "dial", Net: n, Err: errors.New("connection refused")}
		})
		stop := runClient(t, Options{Handset: h, Server: "mail.test:143", Protocol: "imap", Password: pass,
			Rand: func() float64 { return 0.5 }, // no jitter
			Dial: log.dial})
		time.Sleep(200 * time.Second)
		stop()
		want := []time.Duration{0}
		d, at := 250*time.Millisecond, time.Duration(0)
		for at+d <= 200*time.Second {
			at += d
			want = append(want, at)
			d = min(2*d, 60*time.Second)
		}
		if dials := log.times(); fmt.Sprint(dials) != fmt.Sprint(want) {
			t.Fatalf("dials at %v\nwant      %v", dials, want)
		}
		if st := h.MailStatus(); st.Reconnects != len(want)-1 {
			t.Fatalf("reconnects %d, want %d", st.Reconnects, len(want)-1)
		}
	})
}

func TestJitterBounds(t *testing.T) {
	h, _ := handset.New(handset.Options{})
	defer h.Close()
	for _, r := range []float64{0, 0.999999} {
		c, _ := New(Options{Handset: h, Rand: func() float64 { return r }})
		got := c.delay(0)
		lo, hi := 200*time.Millisecond, 300*time.Millisecond
		if got < lo || got > hi {
			t.Errorf("rand %v: delay %v outside [%v, %v]", r, got, lo, hi)
		}
		if d := c.delay(20); d > 72*time.Second {
			t.Errorf("capped delay %v", d)
		}
	}
}

// scriptedIMAP answers just enough IMAP to reach IDLE, then stays silent.
func scriptedIMAP(conn net.Conn) { scriptedIMAPWith(conn, "", nil) }

// scriptedIMAPWith is scriptedIMAP that answers SELECT with refuse when it is not empty
// ("NO [INUSE] …"), and runs idling, when not nil, once IDLE has been answered.
func scriptedIMAPWith(conn net.Conn, refuse string, idling func()) {
	defer conn.Close()
	// Capabilities up front, as real servers send them: the client then never asks for
	// them in the background while IDLE holds the connection.
	fmt.Fprintf(conn, "* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n")
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		tag, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		cmd, _, _ := strings.Cut(strings.ToUpper(rest), " ")
		switch cmd {
		case "CAPABILITY":
			fmt.Fprintf(conn, "* CAPABILITY IMAP4rev1 IDLE\r\n%s OK done\r\n", tag)
		case "SELECT":
			if refuse != "" {
				fmt.Fprintf(conn, "%s %s\r\n", tag, refuse)
				continue
			}
			fmt.Fprintf(conn, "* 0 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 1] n\r\n%s OK [READ-WRITE] done\r\n", tag)
		case "IDLE":
			fmt.Fprintf(conn, "+ idling\r\n")
			if idling != nil {
				idling()
				return
			}
			// Silence from here on: the connection is dead.
		case "":
		case "LOGIN":
			fmt.Fprintf(conn, "%s OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n", tag)
		default:
			if strings.ToUpper(tag) == "DONE" {
				continue // never answered
			}
			fmt.Fprintf(conn, "%s OK done\r\n", tag)
		}
	}
}

func TestDeadConnectionReplaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := aliceHandset(t)
		log := newDialLog(func(int, string) (net.Conn, error) { return piped(scriptedIMAP) })
		stop := runClient(t, Options{Handset: h, Server: "mail.test:143", Protocol: "imap", Password: pass,
			Rand: func() float64 { return 0.5 },
			Dial: log.dial})
		time.Sleep(time.Second)
		synctest.Wait()
		if st := h.MailStatus(); st.State != handset.MailIdling {
			t.Fatalf("state %s, want idling", st.State)
		}
		time.Sleep(155 * time.Second)
		stop()
		// Silence is noticed at the 30 s check that finds 2 minutes without data; DONE
		// then goes unanswered for 30 s; the next connection follows after 250 ms.
		want := []time.Duration{0, 120*time.Second + 30*time.Second + 250*time.Millisecond}
		if dials := log.times(); fmt.Sprint(dials) != fmt.Sprint(want) {
			t.Fatalf("dials at %v, want %v", dials, want)
		}
		if d := h.MailStatus().LastDisconnect; d == nil || !strings.Contains(d.Reason, "DONE") && !strings.Contains(d.Reason, "dead") {
			t.Fatalf("last disconnect %+v", d)
		}
	})
}

func TestDiscovery(t *testing.T) {
	r := startMail(t, mailserver.Options{}, true)
	zone, err := dnsserver.New(dnsserver.Options{Domain: "bbsim.test", Addrs: map[string]string{"imap": r.imap, "pop3": r.pop3}})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go zone.ServeUDP(pc)
	defer zone.Close()
	d, err := Discover(t.Context(), pc.LocalAddr().String(), "bbsim.test")
	if err != nil || d.IMAP != r.imap || d.POP3 != r.pop3 {
		t.Fatalf("discovered %+v, %v; want %s %s", d, err, r.imap, r.pop3)
	}
	h := newHandset(t)
	r.deliver(t, "found by DNS")
	runClient(t, Options{Handset: h, DNS: pc.LocalAddr().String(), Password: pass})
	waitFor(t, "mail through a discovered server", 10*time.Second, func() bool { return count(h, "found by DNS") == 1 })
	if _, err := Discover(t.Context(), pc.LocalAddr().String(), "nowhere.test"); err == nil {
		t.Fatal("discovery of an unknown domain succeeded")
	}
}

// lockingIMAP is a server that disconnects the client politely once it idles, then refuses
// SELECT with NO [INUSE] refusals more times, then lets it idle: a POP3 user holding the
// store for a while, as on a server with polite disconnect and exclusive locking.
type lockingIMAP struct {
	refuse  int           // SELECT refusals after the BYE
	byeWait time.Duration // from "+ idling" to the BYE
}

func (s *lockingIMAP) answer(i int, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	switch {
	case i == 0:
		go scriptedIMAPWith(server, "", func() {
			time.Sleep(s.byeWait)
			fmt.Fprintf(server, "* BYE [UNAVAILABLE] Disconnected for a POP3 session on this mailbox\r\n")
			server.Close()
		})
	case i <= s.refuse:
		go scriptedIMAPWith(server, "NO [INUSE] Mailbox is locked by a POP3 session", nil)
	default:
		go scriptedIMAP(server)
	}
	return client, nil
}

// TestBackoffAfterBye: a BYE [UNAVAILABLE] and the NO [INUSE] refusals that follow it are
// waited out on the backoff schedule, the first retry after First, then doubling, never at
// once; the handset shows it is locked out, with the server's words and the retry time.
func TestBackoffAfterBye(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := aliceHandset(t)
		srv := &lockingIMAP{refuse: 2, byeWait: time.Second}
		log := newDialLog(srv.answer)
		stop := runClient(t, Options{Handset: h, Server: "mail.test:143", Protocol: "imap", Password: pass,
			Rand: func() float64 { return 0.5 }, // no jitter
			Dial: log.dial})

		// Just after the BYE (at 1 s): locked out, retrying First (250 ms) later.
		time.Sleep(time.Second + 100*time.Millisecond)
		synctest.Wait()
		st := h.MailStatus()
		if st.State != handset.MailLockedOut || st.LastDisconnect == nil ||
			!strings.HasPrefix(st.LastDisconnect.Reason, "[UNAVAILABLE] Disconnected for a POP3 session") {
			t.Fatalf("after the BYE: state %s, last disconnect %+v; want locked-out by the BYE", st.State, st.LastDisconnect)
		}
		if got := st.RetryAt.Sub(st.LastDisconnect.At); got != 250*time.Millisecond {
			t.Fatalf("after the BYE: retry in %v, want 250ms", got)
		}

		// The second refusal (at 1.75 s) is waited out for 1 s.
		time.Sleep(700 * time.Millisecond)
		synctest.Wait()
		st = h.MailStatus()
		if st.State != handset.MailLockedOut || st.LastDisconnect == nil || st.LastDisconnect.Reason != "NO [INUSE] Mailbox is locked by a POP3 session" {
			t.Fatalf("after NO [INUSE]: state %s, last disconnect %+v", st.State, st.LastDisconnect)
		}
		if got := st.RetryAt.Sub(st.LastDisconnect.At); got != time.Second {
			t.Fatalf("after the second NO [INUSE]: retry in %v, want 1s", got)
		}

		time.Sleep(10 * time.Second)
		synctest.Wait()
		if st := h.MailStatus(); st.State != handset.MailIdling || st.Reconnects != 3 {
			t.Fatalf("at the end: state %s, %d reconnects; want idling after 3", st.State, st.Reconnects)
		}
		stop()
		// BYE at 1 s; +250 ms; NO [INUSE]: +500 ms; NO [INUSE]: +1 s, then it idles.
		want := []time.Duration{0, 1250 * time.Millisecond, 1750 * time.Millisecond, 2750 * time.Millisecond}
		if dials := log.times(); fmt.Sprint(dials) != fmt.Sprint(want) {
			t.Fatalf("dials at %v, want %v", dials, want)
		}
	})
}

// refusingIMAP refuses every command, LOGIN included, as for a wrong password.
func refusingIMAP(conn net.Conn) {
	defer conn.Close()
	fmt.Fprintf(conn, "* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n")
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		tag, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		fmt.Fprintf(conn, "%s NO [AUTHENTICATIONFAILED] Invalid credentials\r\n", tag)
	}
}

// TestAuthFailureWaitsForCoverage: a refused login is final: no retry in an hour, and one
// more try when the handset comes back into coverage.
func TestAuthFailureWaitsForCoverage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := aliceHandset(t)
		log := newDialLog(func(int, string) (net.Conn, error) { return piped(refusingIMAP) })
		stop := runClient(t, Options{Handset: h, Server: "mail.test:143", Protocol: "imap", Password: "wrong",
			Backoff: Backoff{First: time.Millisecond},
			Dial:    log.dial})
		time.Sleep(time.Hour)
		synctest.Wait()
		if st := h.MailStatus(); st.State != handset.MailAuthFailed || st.LastDisconnect == nil ||
			st.LastDisconnect.Reason != "NO [AUTHENTICATIONFAILED] Invalid credentials" {
			t.Fatalf("after an hour: state %s, last disconnect %+v; want auth-failed with the server's words", st.State, st.LastDisconnect)
		}
		h.SetCoverage(false)
		h.SetCoverage(true)
		synctest.Wait()
		stop()
		if want, dials := []time.Duration{0, time.Hour}, log.times(); fmt.Sprint(dials) != fmt.Sprint(want) {
			t.Fatalf("dials at %v, want %v", dials, want)
		}
	})
}

// aliceHandset is a handset for alice, closed when the test ends.
func aliceHandset(t *testing.T) *handset.Handset {
	t.Helper()
	h, err := handset.New(handset.Options{PIN: "2100000A", Email: alice})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// dialLog records when a client dialled, from the log's making, and answers dial i (from
// 0) with answer.
type dialLog struct {
	mu     sync.Mutex
	start  time.Time
	at     []time.Duration
	answer func(i int, network string) (net.Conn, error)
}

func newDialLog(answer func(i int, network string) (net.Conn, error)) *dialLog {
	return &dialLog{start: time.Now(), answer: answer}
}

func (l *dialLog) dial(_ context.Context, network, _ string) (net.Conn, error) {
	l.mu.Lock()
	i := len(l.at)
	l.at = append(l.at, time.Since(l.start))
	l.mu.Unlock()
	return l.answer(i, network)
}

// times is when the dials came.
func (l *dialLog) times() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Duration(nil), l.at...)
}

// piped answers a dial with one end of a pipe whose other end serve serves.
func piped(serve func(net.Conn)) (net.Conn, error) {
	client, server := net.Pipe()
	go serve(server)
	return client, nil
}
