package bisclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/bbsim/bbsim/handset"
)

// byeConn watches what the server sends: the text of an untagged BYE (which imapclient
// drops) and when data last arrived.
type byeConn struct {
	net.Conn
	mu   sync.Mutex
	bye  string
	line []byte // the start of the current line, up to 512 bytes
	last atomic.Int64
}

func newByeConn(c net.Conn) *byeConn {
	b := &byeConn{Conn: c}
	b.last.Store(time.Now().UnixNano())
	return b
}

func (b *byeConn) Read(p []byte) (int, error) {
	n, err := b.Conn.Read(p)
	if n > 0 {
		b.last.Store(time.Now().UnixNano())
		b.scan(p[:n])
	}
	return n, err
}

func (b *byeConn) scan(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := 512 - len(b.line); room > 0 {
			b.line = append(b.line, chunk[:min(room, len(chunk))]...)
		}
		if i < 0 {
			return
		}
		line := strings.TrimRight(string(b.line), "\r")
		if rest, ok := strings.CutPrefix(line, "* BYE"); ok {
			b.bye = strings.TrimSpace(rest)
			if b.bye == "" {
				b.bye = "BYE"
			}
		}
		b.line = b.line[:0]
		p = p[i+1:]
	}
}

// Bye returns the text of the server's BYE, "" if none came.
func (b *byeConn) Bye() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bye
}

func (b *byeConn) silentFor() time.Duration {
	return time.Since(time.Unix(0, b.last.Load()))
}

// dial connects with the configured security; the returned byeConn sees plaintext.
func (c *Client) dial(ctx context.Context, addr string, implicitTLS bool) (net.Conn, error) {
	conn, err := c.opts.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if implicitTLS {
		tc, err := c.handshake(ctx, conn, addr)
		if err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}
	return conn, nil
}

// handshake starts TLS as the client on conn, verifying the server's certificate for
// addr's host.
func (c *Client) handshake(ctx context.Context, conn net.Conn, addr string) (*tls.Conn, error) {
	host, _, _ := net.SplitHostPort(addr)
	tc := tls.Client(conn, c.tlsConfig(host))
	if err := tc.HandshakeContext(ctx); err != nil {
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			return nil, fmt.Errorf("tls %s: %w (trust its certificate with --mail-ca-file, or skip the check with --mail-insecure)", addr, err)
		}
		return nil, fmt.Errorf("tls %s: %w", addr, err)
	}
	return tc, nil
}

func (c *Client) tlsConfig(host string) *tls.Config {
	cfg := c.opts.TLSConfig.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	return cfg
}

// connectIMAP opens an IMAP connection with the configured security. The byeConn it
// returns reads what the server says in plaintext, above TLS, whether TLS is implicit or
// started with STARTTLS.
func (c *Client) connectIMAP(ctx context.Context, addr string, opts *imapclient.Options) (*byeConn, *imapclient.Client, error) {
	implicit := c.opts.Security == "tls" || c.imapTLS
	conn, err := c.dial(ctx, addr, implicit)
	if err != nil {
		return nil, nil, err
	}
	if c.opts.Security == "starttls" && !implicit {
		up, err := c.startTLS(ctx, conn, addr)
		if err != nil {
			conn.Close()
			return nil, nil, err
		}
		conn = up
	}
	bc := newByeConn(conn)
	return bc, imapclient.New(bc, opts), nil
}

// imapSession logs in, selects INBOX, fetches what is new, then idles (or polls) until
// the connection ends or ctx does.
func (c *Client) imapSession(ctx context.Context, addr string) error {
	c.setState(handset.MailConnecting, "imap", func(st *handset.MailStatus) { st.Server = addr })
	c.h.Emit(handset.EventMailConnecting, "connecting to "+addr+" (IMAP)", map[string]string{"server": addr})
	newMail := make(chan struct{}, 1)
	expunged := make(chan struct{}, 1)
	opts := &imapclient.Options{
		WordDecoder: wordDecoder,
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					select {
					case newMail <- struct{}{}:
					default:
					}
				}
			},
			Expunge: func(uint32) {
				select {
				case expunged <- struct{}{}:
				default:
				}
			},
		},
	}
	bc, cl, err := c.connectIMAP(ctx, addr, opts)
	if err != nil {
		return err
	}
	defer cl.Close()
	stop := context.AfterFunc(ctx, func() { cl.Close() })
	defer stop()
	ended := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if bye := bc.Bye(); bye != "" {
			c.h.Emit(handset.EventMailBye, "server said BYE: "+bye, map[string]string{"reason": bye})
			return &sessionError{kind: classify(bye), reason: bye}
		}
		var ie *imap.Error
		if errors.As(err, &ie) {
			text := fmt.Sprintf("%s [%s] %s", ie.Type, ie.Code, ie.Text)
			if ie.Code == "" {
				text = fmt.Sprintf("%s %s", ie.Type, ie.Text)
			}
			kind := classify(text)
			if ie.Code == imap.ResponseCodeAuthenticationFailed {
				kind = errAuth
			}
			return &sessionError{kind: kind, reason: text}
		}
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			return &sessionError{reason: "connection closed by the server"}
		}
		return &sessionError{reason: err.Error()}
	}

	if err := cl.WaitGreeting(); err != nil {
		return ended(err)
	}
	if err := cl.Login(c.opts.Username, c.opts.Password).Wait(); err != nil {
		return ended(err)
	}
	caps, err := cl.Capability().Wait()
	if err != nil {
		return ended(err)
	}
	sel, err := cl.Select("INBOX", nil).Wait()
	if err != nil {
		return ended(err)
	}
	c.h.Emit(handset.EventMailConnected, fmt.Sprintf("logged in to %s, INBOX has %d messages", addr, sel.NumMessages),
		map[string]string{"server": addr, "messages": fmt.Sprint(sel.NumMessages)})
	if err := c.fetchNew(cl, sel.UIDValidity); err != nil {
		return ended(err)
	}
	if !caps.Has(imap.CapIdle) {
		// Poll: the store is free between polls, as BIS left it.
		cl.Logout().Wait()
		return c.pollIMAP(ctx, addr)
	}
	for {
		c.setState(handset.MailIdling, "imap", nil)
		c.h.Emit(handset.EventMailIdle, "IDLE started", nil)
		idle, err := cl.Idle()
		if err != nil {
			return ended(err)
		}
		refresh := time.NewTimer(c.opts.IdleRefresh)
		check := time.NewTicker(min(c.opts.DeadAfter/4, 30*time.Second))
		fetch, dead := false, false
	wait:
		for {
			select {
			case <-ctx.Done():
				refresh.Stop()
				check.Stop()
				idle.Close()
				cl.Logout().Wait()
				return ctx.Err()
			case <-cl.Closed():
				refresh.Stop()
				check.Stop()
				return ended(nil)
			case <-newMail:
				fetch = true
				break wait
			case <-expunged:
			case <-refresh.C:
				break wait
			case <-check.C:
				if bc.silentFor() >= c.opts.DeadAfter {
					dead = true
					break wait
				}
			}
		}
		refresh.Stop()
		check.Stop()
		if err := c.endIdle(idle); err != nil {
			return ended(err)
		}
		if dead {
			if err := c.noop(cl); err != nil {
				return &sessionError{reason: fmt.Sprintf("connection dead: no answer to NOOP after %s of silence", c.opts.DeadAfter)}
			}
		}
		if fetch {
			c.h.Emit(handset.EventMailExists, "new mail (EXISTS)", nil)
			if err := c.fetchNew(cl, sel.UIDValidity); err != nil {
				return ended(err)
			}
		}
	}
}

// endIdle sends DONE and waits for the server's answer, bounded by NoopTimeout.
func (c *Client) endIdle(idle *imapclient.IdleCommand) error {
	done := make(chan error, 1)
	go func() {
		if err := idle.Close(); err != nil {
			done <- err
			return
		}
		done <- idle.Wait()
	}()
	t := time.NewTimer(c.opts.NoopTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return errors.New("no answer to DONE")
	}
}

func (c *Client) noop(cl *imapclient.Client) error {
	done := make(chan error, 1)
	go func() { done <- cl.Noop().Wait() }()
	t := time.NewTimer(c.opts.NoopTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		cl.Close()
		return errors.New("NOOP timed out")
	}
}

// pollIMAP checks the mailbox every PollInterval over a fresh connection.
func (c *Client) pollIMAP(ctx context.Context, addr string) error {
	for {
		c.setState(handset.MailPolling, "imap", func(st *handset.MailStatus) { st.Server = addr })
		c.h.Emit(handset.EventMailPoll, fmt.Sprintf("no IDLE on %s: polling every %s", addr, c.opts.PollInterval), nil)
		t := time.NewTimer(c.opts.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if err := c.pollOnce(ctx, addr); err != nil {
			return err
		}
	}
}

func (c *Client) pollOnce(ctx context.Context, addr string) error {
	bc, cl, err := c.connectIMAP(ctx, addr, &imapclient.Options{WordDecoder: wordDecoder})
	if err != nil {
		return err
	}
	defer cl.Close()
	stop := context.AfterFunc(ctx, func() { cl.Close() })
	defer stop()
	refusal := func(err error) error {
		text := err.Error()
		if bye := bc.Bye(); bye != "" {
			text = bye
		}
		return &sessionError{kind: classify(text), reason: text}
	}
	if err := cl.Login(c.opts.Username, c.opts.Password).Wait(); err != nil {
		return refusal(err)
	}
	sel, err := cl.Select("INBOX", nil).Wait()
	if err != nil {
		return refusal(err)
	}
	if err := c.fetchNew(cl, sel.UIDValidity); err != nil {
		return refusal(err)
	}
	cl.Logout().Wait()
	return nil
}

// fetchNew fetches every message newer than the last UID seen (all of them when
// UIDVALIDITY changed) into the handset, then records the new position.
func (c *Client) fetchNew(cl *imapclient.Client, validity uint32) error {
	sync := c.h.MailSync()
	if sync.UIDValidity != validity {
		if sync.UIDValidity != 0 {
			c.log.Info("UIDVALIDITY changed, full resync", "old", sync.UIDValidity, "new", validity)
		}
		sync.UIDValidity, sync.LastUID = validity, 0
	}
	set := imap.UIDSet{imap.UIDRange{Start: imap.UID(sync.LastUID + 1), Stop: 0}}
	cmd := cl.Fetch(set, &imap.FetchOptions{
		UID: true, RFC822Size: true, Envelope: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	})
	msgs, err := cmd.Collect()
	if err != nil {
		return err
	}
	last := sync.LastUID
	for _, m := range msgs {
		if uint32(m.UID) <= sync.LastUID {
			continue // "n:*" answers the last message when nothing is newer
		}
		var raw []byte
		for _, b := range m.BodySection {
			raw = b.Bytes
		}
		msg := handset.Message{
			Kind: handset.KindEmail,
			Key:  fmt.Sprintf("imap:%d:%d", validity, m.UID),
			Size: int(m.RFC822Size),
		}
		if e := m.Envelope; e != nil {
			msg.Subject = e.Subject
			if len(e.From) > 0 {
				msg.From = e.From[0].Addr()
				if e.From[0].Name != "" {
					msg.From = e.From[0].Name + " <" + msg.From + ">"
				}
			}
		}
		msg.ContentType, msg.Text, msg.Attachments = renderMail(raw)
		// The handset announces a new message itself (mail.new).
		if _, _, err := c.h.AddMessage(msg); err != nil {
			return err
		}
		last = max(last, uint32(m.UID))
	}
	sync.LastUID = last
	return c.h.SetMailSync(sync)
}
