package bisclient

import (
	"context"
	"fmt"
	"io"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/bbsim/bbsim/handset"
)

// pop3Loop integrates over POP3 as BIS did: every PollInterval it logs in, lists UIDLs,
// downloads the new messages and leaves them on the server.
func (c *Client) pop3Loop(ctx context.Context, addr string) error {
	c.setState(handset.MailConnecting, "pop3", func(st *handset.MailStatus) { st.Server = addr })
	for {
		if err := c.pop3Poll(ctx, addr); err != nil {
			return err
		}
		c.setState(handset.MailPolling, "pop3", func(st *handset.MailStatus) { st.Server = addr })
		t := time.NewTimer(c.opts.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

type pop3Client struct {
	tp *textproto.Conn
}

func (p *pop3Client) cmd(format string, args ...any) (string, error) {
	if format != "" {
		if err := p.tp.PrintfLine(format, args...); err != nil {
			return "", err
		}
	}
	line, err := p.tp.ReadLine()
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(line, "+OK") {
		return "", &sessionError{kind: classify(line), reason: line}
	}
	return line, nil
}

func (c *Client) pop3Poll(ctx context.Context, addr string) error {
	conn, err := c.dial(ctx, addr, c.opts.Security == "tls" || c.pop3TLS)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	p := &pop3Client{tp: textproto.NewConn(conn)}
	if _, err := p.cmd(""); err != nil {
		return err
	}
	if c.opts.Security == "starttls" {
		if _, err := p.cmd("STLS"); err != nil {
			return err
		}
		tc, err := c.handshake(ctx, conn, addr)
		if err != nil {
			return fmt.Errorf("stls: %w", err)
		}
		p.tp = textproto.NewConn(tc)
	}
	if _, err := p.cmd("USER %s", c.opts.Username); err != nil {
		return err
	}
	if _, err := p.cmd("PASS %s", c.opts.Password); err != nil {
		return err
	}
	if _, err := p.cmd("UIDL"); err != nil {
		return err
	}
	lines, err := p.tp.ReadDotLines()
	if err != nil {
		return err
	}
	sync := c.h.MailSync()
	seen := map[string]bool{}
	for _, u := range sync.POP3Seen {
		seen[u] = true
	}
	var onServer []string
	c.h.Emit(handset.EventMailPoll, fmt.Sprintf("POP3 poll of %s: %d messages", addr, len(lines)), nil)
	for _, l := range lines {
		num, uidl, ok := strings.Cut(strings.TrimSpace(l), " ")
		if !ok {
			continue
		}
		onServer = append(onServer, uidl)
		if seen[uidl] {
			continue
		}
		if _, err := p.cmd("RETR %s", num); err != nil {
			return err
		}
		raw, err := io.ReadAll(p.tp.DotReader())
		if err != nil {
			return err
		}
		msg := handset.Message{Kind: handset.KindEmail, Key: "pop3:" + uidl, Size: len(raw)}
		if mr, err := mail.CreateReader(strings.NewReader(string(raw))); mr != nil {
			msg.Subject, _ = mr.Header.Subject()
			if from, err := mr.Header.AddressList("From"); err == nil && len(from) > 0 {
				msg.From = from[0].Address
			}
			mr.Close()
			_ = err
		}
		msg.ContentType, msg.Text, msg.Attachments = renderMail(raw)
		// The handset announces a new message itself (mail.new).
		if _, _, err := c.h.AddMessage(msg); err != nil {
			return err
		}
		seen[uidl] = true
		sync.POP3Seen = append(sync.POP3Seen, uidl)
		if err := c.h.SetMailSync(sync); err != nil {
			return err
		}
	}
	// Forget UIDLs no longer on the server, so the list does not grow without end.
	kept := sync.POP3Seen[:0]
	for _, u := range sync.POP3Seen {
		if slices.Contains(onServer, u) {
			kept = append(kept, u)
		}
	}
	sync.POP3Seen = kept
	c.h.SetMailSync(sync)
	p.cmd("QUIT")
	return nil
}
