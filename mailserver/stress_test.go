package mailserver

import (
	"fmt"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// pop3Visit logs in over POP3 (a refusal is no error: the store may be held), deletes the
// first message when dele is set, and quits; it reports whether a message went. It runs on
// goroutines other than the test's, so it returns its errors.
func pop3Visit(addr string, dele bool) (deleted bool, err error) {
	c, err := textproto.Dial("tcp", addr)
	if err != nil {
		return false, err
	}
	defer c.Close()
	cmd := func(format string, args ...any) (string, error) {
		if format != "" {
			if err := c.PrintfLine(format, args...); err != nil {
				return "", err
			}
		}
		l, err := c.ReadLine()
		if err != nil {
			return "", fmt.Errorf("pop3 %q: %w", fmt.Sprintf(format, args...), err)
		}
		return l, nil
	}
	if g, err := cmd(""); err != nil || !strings.HasPrefix(g, "+OK") {
		return false, fmt.Errorf("pop3 greeting %q: %v", g, err)
	}
	if _, err := cmd("USER %s", alice); err != nil {
		return false, err
	}
	got, err := cmd("PASS %s", pass)
	if err != nil {
		return false, err
	}
	if strings.HasPrefix(got, "+OK") && dele {
		if got, err = cmd("DELE 1"); err != nil {
			return false, err
		}
		if strings.HasPrefix(got, "+OK") {
			got, err := cmd("QUIT")
			return strings.HasPrefix(got, "+OK Bye, 1"), err
		}
	}
	_, err = cmd("QUIT")
	return false, err
}

// TestStress runs POP3 and IMAP sessions against SMTP deliveries on one store under each
// policy: no message is lost or duplicated, UIDs only increase, and POP3 deletions leave.
func TestStress(t *testing.T) {
	for _, opts := range []Options{{}, {PoliteDisconnect: true}, {Locking: LockShared}} {
		name := string(opts.Locking)
		if name == "" {
			name = "exclusive"
		}
		if opts.PoliteDisconnect {
			name = "polite"
		}
		t.Run(name, func(t *testing.T) {
			r := startServer(t, opts)
			const total = 120
			var sent sync.WaitGroup
			var next atomic.Int32
			for range 6 {
				sent.Add(1)
				go func() {
					defer sent.Done()
					for {
						i := next.Add(1) - 1
						if i >= total {
							return
						}
						if err := sendSMTPErr(r.smtp, alice, fmt.Sprintf("s%03d", i)); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			done := make(chan struct{})
			var deleted atomic.Int32
			var workers sync.WaitGroup
			for range 3 {
				workers.Add(1)
				go func() {
					defer workers.Done()
					for n := 0; ; n++ {
						select {
						case <-done:
							return
						default:
						}
						gone, err := pop3Visit(r.pop3, n%3 == 0)
						if err != nil {
							t.Error(err)
							return
						}
						if gone {
							deleted.Add(1)
						}
					}
				}()
			}
			for range 2 {
				workers.Add(1)
				go func() {
					defer workers.Done()
					for {
						select {
						case <-done:
							return
						default:
						}
						c, err := imapclient.DialInsecure(r.imap, nil)
						if err != nil {
							t.Error(err)
							return
						}
						if c.Login(alice, pass).Wait() == nil {
							if _, err := c.Select("INBOX", nil).Wait(); err == nil {
								msgs, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
								if err == nil {
									for i := 1; i < len(msgs); i++ {
										if msgs[i].UID <= msgs[i-1].UID {
											t.Errorf("UIDs not increasing: %d then %d", msgs[i-1].UID, msgs[i].UID)
										}
									}
								}
							}
							c.Logout().Wait()
						}
						c.Close()
					}
				}()
			}
			sent.Wait()
			close(done)
			workers.Wait()

			c, err := imapclient.DialInsecure(r.imap, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Login(alice, pass).Wait(); err != nil {
				t.Fatal(err)
			}
			// The workers' sessions end asynchronously: wait for the store to be free.
			for deadline := time.Now().Add(5 * time.Second); ; {
				_, err := c.Select("INBOX", nil).Wait()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Millisecond)
			}
			msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{Envelope: true}).Collect()
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, m := range msgs {
				if seen[m.Envelope.Subject] {
					t.Errorf("message %s twice", m.Envelope.Subject)
				}
				seen[m.Envelope.Subject] = true
			}
			if got := len(msgs) + int(deleted.Load()); got != total {
				t.Fatalf("%d left + %d deleted by POP3 = %d, want %d", len(msgs), deleted.Load(), got, total)
			}
			t.Logf("%d delivered, %d deleted over POP3", total, deleted.Load())
		})
	}
}
