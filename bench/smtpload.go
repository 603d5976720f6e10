package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// SMTPLoad is a mail-in load: Conns SMTP connections, kept open, that send N messages of
// Msg between them, each one MAIL, RCPT and DATA, as an application's mail library does.
type SMTPLoad struct {
	Addr  string // the SMTP server
	Conns int
	N     int
	From  string
	To    string
	Msg   []byte
}

// TestMessage returns a plain-text message of about size bytes from from to to.
func TestMessage(from, to string, size int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: load\r\nMessage-ID: <load@bbsim.test>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", from, to)
	const line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	b.WriteString(strings.Repeat("x", max(0, size-b.Len()-2)) + "\r\n")
	return []byte(b.String())
}

// Run dials every connection and says EHLO, then sends the N messages as fast as the
// server takes them, and returns how long the sending took (dialling excluded).
func (l SMTPLoad) Run(ctx context.Context) (time.Duration, error) {
	clients := make([]*smtp.Client, 0, l.Conns)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range l.Conns {
		c, err := smtp.Dial(l.Addr)
		if err != nil {
			return 0, fmt.Errorf("dial smtp %s: %w", l.Addr, err)
		}
		clients = append(clients, c)
		if err := c.Hello("load.bbsim.test"); err != nil {
			return 0, fmt.Errorf("smtp ehlo: %w", err)
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, len(clients))
	start := time.Now()
	for i, c := range clients {
		wg.Go(func() {
			for ctx.Err() == nil && next.Add(1) <= int64(l.N) {
				if err := send(c, l.From, l.To, l.Msg); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return took, err
		}
	}
	return took, ctx.Err()
}

// send sends one message on a kept connection.
func send(c *smtp.Client, from, to string, msg []byte) error {
	if err := c.Mail(from, nil); err != nil {
		return fmt.Errorf("smtp mail: %w", err)
	}
	if err := c.Rcpt(to, nil); err != nil {
		return fmt.Errorf("smtp rcpt: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp data: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("smtp data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp data: %w", err)
	}
	return nil
}
