package mailserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sync"

	"github.com/bbsim/bbsim/mailserver/internal/goimap/imapserver"
	"github.com/emersion/go-imap/v2"

	"github.com/bbsim/bbsim/mailserver/imapmem"
)

// IMAP response codes of RFC 5530 used by the locking policies.
const (
	codeInUse       imap.ResponseCode = "INUSE"
	codeUnavailable imap.ResponseCode = "UNAVAILABLE"
)

type slogPrintf struct{ l *slog.Logger }

func (p slogPrintf) Printf(format string, args ...any) { p.l.Debug(fmt.Sprintf(format, args...)) }

func (s *Server) newIMAP() *imapserver.Server {
	var tlsConf = s.tls
	if s.opts.NoIdle {
		// Without IDLE the capability lines are rewritten on the wire, which TLS would hide.
		tlsConf = nil
	}
	return imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &imapSession{srv: s, conn: c}, nil, nil
		},
		Caps: imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapNamespace: {}, imap.CapMove: {},
			imap.Cap(fmt.Sprintf("APPENDLIMIT=%d", s.appendLimit())): {}},
		TLSConfig:    tlsConf,
		InsecureAuth: true,
		Logger:       slogPrintf{s.log},
	})
}

// ServeIMAP serves IMAP on ln until Shutdown or Close.
func (s *Server) ServeIMAP(ln net.Listener) error {
	if !s.addCloser(ln.Close) {
		return ErrServerClosed
	}
	s.addCloser(s.imap.Close)
	if s.opts.NoIdle {
		ln = noIdleListener{ln}
	}
	err := s.imap.Serve(ln)
	if s.isClosed() {
		return ErrServerClosed
	}
	return err
}

// imapSession is one IMAP connection: the in-memory mailbox session plus its place in the
// store's locking.
type imapSession struct {
	*imapmem.UserSession // nil until LOGIN

	srv  *Server
	conn *imapserver.Conn
	acct *account
	ss   *session
}

var (
	_ imapserver.Session            = (*imapSession)(nil)
	_ imapserver.SessionAppendLimit = (*imapSession)(nil)
)

// appendLimit is the largest APPEND literal accepted (RFC 7889): the SMTP message limit,
// within what the library can announce.
func (s *Server) appendLimit() uint32 {
	return uint32(min(s.opts.MaxMessageBytes, math.MaxUint32))
}

// AppendLimit makes the library refuse an over-limit literal from its announced size with
// NO [TOOBIG], before the client is invited to send it.
func (c *imapSession) AppendLimit() uint32 { return c.srv.appendLimit() }

func (c *imapSession) Login(username, password string) error {
	a := c.srv.authenticate(username, password)
	if a == nil {
		c.srv.log.Info("imap login failed", "user", username)
		return imapserver.ErrAuthFailed
	}
	ss, err := c.srv.join(a, kindIMAP, func(text string) { c.conn.Bye(text) })
	if err != nil {
		c.srv.log.Info("imap login refused", "user", a.Email, "err", err)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: codeUnavailable, Text: err.Error()}
	}
	c.acct, c.ss = a, ss
	c.UserSession = imapmem.NewUserSession(a.mem)
	c.srv.log.Debug("imap login", "user", a.Email)
	return nil
}

// Append stores an APPEND literal as SMTP mail is stored: a large one waits for its commit
// in the spool and is never held whole in memory. A literal cut off by the end of the
// connection stores nothing.
func (c *imapSession) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	mbox, err := c.acct.mem.Mailbox(mailbox)
	if err != nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	msg, err := c.srv.spool(io.LimitReader(r, r.Size()), nil)
	if err != nil {
		return nil, fmt.Errorf("append: %w", err)
	}
	defer msg.remove()
	if msg.size != r.Size() {
		return nil, fmt.Errorf("append: literal cut off after %d of %d bytes", msg.size, r.Size())
	}
	if msg.path == "" {
		return mbox.Append(msg.buf, options)
	}
	return mbox.AppendFile(msg.path, msg.size, options)
}

func (c *imapSession) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	if c.srv.holds(c.acct, c.ss) {
		c.UserSession.Unselect()
		c.srv.release(c.acct, c.ss)
	}
	if err := c.srv.acquire(c.acct, c.ss); err != nil {
		var inUse errInUse
		if errors.As(err, &inUse) {
			return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: codeInUse, Text: err.Error()}
		}
		return nil, err
	}
	data, err := c.UserSession.Select(name, options)
	if err != nil {
		c.srv.release(c.acct, c.ss)
	}
	return data, err
}

func (c *imapSession) Unselect() error {
	err := c.UserSession.Unselect()
	c.srv.release(c.acct, c.ss)
	return err
}

func (c *imapSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if c.srv.opts.NoIdle {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "IDLE is disabled on this server"}
	}
	c.srv.setIdling(c.acct, c.ss, true)
	defer c.srv.setIdling(c.acct, c.ss, false)
	return c.UserSession.Idle(w, stop)
}

func (c *imapSession) Close() error {
	if c.UserSession != nil {
		c.UserSession.Close()
	}
	if c.acct != nil {
		c.srv.leave(c.acct, c.ss)
	}
	return nil
}

// noIdleListener hides IDLE from the capabilities its connections advertise.
type noIdleListener struct{ net.Listener }

func (l noIdleListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &noIdleConn{Conn: c}, nil
}

type noIdleConn struct {
	net.Conn
	mu sync.Mutex
}

var (
	capPrefix   = []byte("* CAPABILITY ")
	capCode     = []byte("[CAPABILITY ")
	idleToken   = []byte(" IDLE")
	idleTokenSP = []byte(" IDLE ")
)

// Write removes the IDLE token from capability lines. The server writes whole responses
// at a time, so a capability line never straddles two writes.
func (c *noIdleConn) Write(p []byte) (int, error) {
	if !bytes.Contains(p, capPrefix) && !bytes.Contains(p, capCode) {
		return c.Conn.Write(p)
	}
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(p, []byte("\r\n")) {
		if bytes.HasPrefix(line, capPrefix) || bytes.Contains(line, capCode) {
			line = bytes.ReplaceAll(line, idleTokenSP, []byte(" "))
			line = bytes.ReplaceAll(line, append(idleToken, '\r'), []byte("\r"))
			line = bytes.ReplaceAll(line, append(idleToken, ']'), []byte("]"))
		}
		out.Write(line)
	}
	if _, err := c.Conn.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}
