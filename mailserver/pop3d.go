package mailserver

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
)

// maxPOP3Line bounds a command line (RFC 2449 allows 255 octets; we take a little more).
const maxPOP3Line = 512

// pop3IdleTimeout ends a silent POP3 session (RFC 1939 asks for at least 10 minutes).
const pop3IdleTimeout = 10 * time.Minute

// ServePOP3 serves POP3 on ln until Shutdown or Close.
func (s *Server) ServePOP3(ln net.Listener) error {
	if !s.addCloser(ln.Close) {
		return ErrServerClosed
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			p := &pop3Conn{srv: s, conn: c}
			p.serve()
		}()
	}
}

// pop3Cmd is a parsed POP3 command.
type pop3Cmd struct {
	Name string   // upper case
	Args []string // at most 2 are used by any command
}

// errLineTooLong is a command line over maxPOP3Line.
var errLineTooLong = errors.New("line too long")

// parsePOP3 parses a command line (without its CRLF): a keyword of 3 or 4 letters and up
// to two arguments separated by single spaces (RFC 1939 §3); PASS takes the rest of the
// line as its argument, since passwords may contain spaces.
func parsePOP3(line string) (pop3Cmd, error) {
	if len(line) > maxPOP3Line {
		return pop3Cmd{}, errLineTooLong
	}
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return pop3Cmd{}, errors.New("control characters in the command")
		}
	}
	name, rest, _ := strings.Cut(line, " ")
	if len(name) < 3 || len(name) > 4 {
		return pop3Cmd{}, fmt.Errorf("unknown command %.20s", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return pop3Cmd{}, fmt.Errorf("unknown command %.20s", name)
		}
	}
	cmd := pop3Cmd{Name: strings.ToUpper(name)}
	if cmd.Name == "PASS" {
		if rest != "" {
			cmd.Args = []string{rest}
		}
		return cmd, nil
	}
	if rest != "" {
		cmd.Args = strings.Fields(rest)
		if len(cmd.Args) > 2 {
			return pop3Cmd{}, errors.New("too many arguments")
		}
	}
	return cmd, nil
}

type pop3Conn struct {
	srv  *Server
	conn net.Conn
	r    *bufio.Reader
	w    *textproto.Writer
	bw   *bufio.Writer

	user string
	acct *account
	ss   *session
	tls  bool

	msgs    []pop3Msg // the maildrop, fixed at login
	deleted map[int]bool
}

type pop3Msg struct {
	uid  imap.UID
	size int
}

func (p *pop3Conn) setup(c net.Conn) {
	p.conn = c
	p.r = bufio.NewReaderSize(c, 1024)
	p.bw = bufio.NewWriter(c)
	p.w = textproto.NewWriter(p.bw)
}

func (p *pop3Conn) reply(format string, args ...any) error {
	if err := p.w.PrintfLine(format, args...); err != nil {
		return err
	}
	return nil
}

// readLine reads one command line. An over-long line is consumed to its end and reported
// as errLineTooLong, so the session can go on.
func (p *pop3Conn) readLine() (string, error) {
	var line []byte
	for {
		chunk, isPrefix, err := p.r.ReadLine()
		if err != nil {
			return "", err
		}
		if len(line)+len(chunk) > maxPOP3Line {
			for isPrefix {
				if _, isPrefix, err = p.r.ReadLine(); err != nil {
					return "", err
				}
			}
			return "", errLineTooLong
		}
		line = append(line, chunk...)
		if !isPrefix {
			return string(line), nil
		}
	}
}

func (p *pop3Conn) serve() {
	p.setup(p.conn)
	defer func() {
		if p.acct != nil {
			p.srv.leave(p.acct, p.ss)
		}
		p.conn.Close()
	}()
	if !p.srv.track(p.conn) {
		return
	}
	defer p.srv.untrack(p.conn)
	p.reply("+OK bbsim POP3 server ready")
	for {
		p.conn.SetReadDeadline(time.Now().Add(pop3IdleTimeout))
		line, err := p.readLine()
		switch {
		case errors.Is(err, errLineTooLong):
			p.reply("-ERR Line too long (at most %d octets)", maxPOP3Line)
			continue
		case err != nil:
			return
		}
		cmd, err := parsePOP3(line)
		if err != nil {
			p.reply("-ERR %s", capitalize(err.Error()))
			continue
		}
		if quit := p.handle(cmd); quit {
			return
		}
	}
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// handle runs one command and reports whether the session ends.
func (p *pop3Conn) handle(cmd pop3Cmd) (quit bool) {
	authed := p.acct != nil
	switch cmd.Name {
	case "CAPA":
		p.capa()
	case "NOOP":
		if !authed {
			return p.wrongState()
		}
		p.reply("+OK")
	case "QUIT":
		p.quit()
		return true
	case "USER":
		if authed {
			return p.wrongState()
		}
		if len(cmd.Args) != 1 {
			p.reply("-ERR USER takes one argument")
			return false
		}
		p.user = cmd.Args[0]
		p.reply("+OK")
	case "PASS":
		if authed {
			return p.wrongState()
		}
		if p.user == "" {
			p.reply("-ERR USER first")
			return false
		}
		if len(cmd.Args) != 1 {
			p.reply("-ERR PASS takes one argument")
			return false
		}
		p.login(p.user, cmd.Args[0])
	case "STLS":
		if authed || p.tls || p.srv.tls == nil {
			return p.wrongState()
		}
		p.reply("+OK Begin TLS negotiation")
		p.bw.Flush()
		tc := tls.Server(p.conn, p.srv.tls)
		if err := tc.Handshake(); err != nil {
			return true
		}
		p.tls = true
		p.setup(tc)
		return false
	case "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET":
		if !authed {
			return p.wrongState()
		}
		p.transaction(cmd)
	default:
		p.reply("-ERR Unknown command %s", cmd.Name)
	}
	p.bw.Flush()
	return false
}

func (p *pop3Conn) wrongState() bool {
	p.reply("-ERR Command not allowed in this state")
	p.bw.Flush()
	return false
}

func (p *pop3Conn) capa() {
	p.reply("+OK Capability list follows")
	lines := []string{"TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
	if p.srv.tls != nil && !p.tls && p.acct == nil {
		lines = append(lines, "STLS")
	}
	lines = append(lines, "IMPLEMENTATION bbsim")
	for _, l := range lines {
		p.reply("%s", l)
	}
	p.reply(".")
}

func (p *pop3Conn) login(user, pass string) {
	a := p.srv.authenticate(user, pass)
	if a == nil {
		p.srv.log.Info("pop3 login failed", "user", user)
		p.reply("-ERR [AUTH] Authentication failed")
		return
	}
	ss, err := p.srv.join(a, kindPOP3, nil)
	if err != nil {
		p.reply("-ERR [IN-USE] %s", err.Error())
		return
	}
	if err := p.srv.acquire(a, ss); err != nil {
		p.srv.leave(a, ss)
		p.reply("-ERR [IN-USE] %s", err.Error())
		return
	}
	p.acct, p.ss = a, ss
	p.deleted = map[int]bool{}
	var total int
	inbox := a.inbox()
	for _, m := range inbox.Messages() {
		body, _ := inbox.Body(m.UID)
		size := crlfLen(body)
		p.msgs = append(p.msgs, pop3Msg{uid: m.UID, size: size})
		total += size
	}
	p.srv.log.Debug("pop3 login", "user", a.Email, "messages", len(p.msgs))
	p.reply("+OK Logged in, %d messages (%d octets)", len(p.msgs), total)
}

// msgArg resolves a message-number argument.
func (p *pop3Conn) msgArg(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > len(p.msgs) {
		p.reply("-ERR No such message")
		return 0, false
	}
	if p.deleted[n] {
		p.reply("-ERR Message %d already deleted", n)
		return 0, false
	}
	return n, true
}

func (p *pop3Conn) uidl(n int) string {
	return fmt.Sprintf("%d.%d", p.acct.inbox().UIDValidity(), p.msgs[n-1].uid)
}

func (p *pop3Conn) transaction(cmd pop3Cmd) {
	switch cmd.Name {
	case "STAT":
		count, size := 0, 0
		for i, m := range p.msgs {
			if !p.deleted[i+1] {
				count++
				size += m.size
			}
		}
		p.reply("+OK %d %d", count, size)
	case "LIST", "UIDL":
		one := func(n int) string {
			if cmd.Name == "LIST" {
				return strconv.Itoa(p.msgs[n-1].size)
			}
			return p.uidl(n)
		}
		if len(cmd.Args) == 1 {
			if n, ok := p.msgArg(cmd.Args[0]); ok {
				p.reply("+OK %d %s", n, one(n))
			}
			return
		}
		if len(cmd.Args) > 1 {
			p.reply("-ERR %s takes at most one argument", cmd.Name)
			return
		}
		p.reply("+OK %d messages", len(p.msgs)-len(p.deleted))
		for i := range p.msgs {
			if !p.deleted[i+1] {
				p.reply("%d %s", i+1, one(i+1))
			}
		}
		p.reply(".")
	case "RETR", "TOP":
		want := 1
		if cmd.Name == "TOP" {
			want = 2
		}
		if len(cmd.Args) != want {
			p.reply("-ERR %s takes %d argument(s)", cmd.Name, want)
			return
		}
		n, ok := p.msgArg(cmd.Args[0])
		if !ok {
			return
		}
		lines := -1
		if cmd.Name == "TOP" {
			l, err := strconv.Atoi(cmd.Args[1])
			if err != nil || l < 0 {
				p.reply("-ERR Bad line count")
				return
			}
			lines = l
		}
		body, ok := p.acct.inbox().Body(p.msgs[n-1].uid)
		if !ok {
			p.reply("-ERR [SYS/TEMP] Message %d is no longer available", n)
			return
		}
		body = toCRLF(body)
		if lines >= 0 {
			body = topLines(body, lines)
		}
		p.reply("+OK %d octets", len(body))
		dw := p.w.DotWriter()
		dw.Write(body)
		dw.Close()
	case "DELE":
		if len(cmd.Args) != 1 {
			p.reply("-ERR DELE takes one argument")
			return
		}
		if n, ok := p.msgArg(cmd.Args[0]); ok {
			p.deleted[n] = true
			p.reply("+OK Message %d deleted", n)
		}
	case "RSET":
		p.deleted = map[int]bool{}
		p.reply("+OK")
	}
}

// crlfLen is the length of msg with every line ending in CRLF: what RETR sends, before
// byte-stuffing, which RFC 1939's octet counts of LIST, STAT and RETR describe.
func crlfLen(msg []byte) int {
	n := len(msg)
	for i, b := range msg {
		if b == '\n' && (i == 0 || msg[i-1] != '\r') {
			n++
		}
	}
	if len(msg) > 0 && msg[len(msg)-1] != '\n' {
		n += 2 // the last line is ended too
	}
	return n
}

// toCRLF ends every line of msg in CRLF, the last one included (a message stored with bare
// LFs is sent as lines of RFC 5322).
func toCRLF(msg []byte) []byte {
	if crlfLen(msg) == len(msg) {
		return msg
	}
	out := make([]byte, 0, crlfLen(msg))
	for i, b := range msg {
		if b == '\n' && (i == 0 || msg[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, b)
	}
	if len(msg) > 0 && msg[len(msg)-1] != '\n' {
		out = append(out, '\r', '\n')
	}
	return out
}

// topLines returns the header and the first n lines of the body.
func topLines(msg []byte, n int) []byte {
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	sep := 4
	if j := bytes.Index(msg, []byte("\n\n")); i < 0 || (j >= 0 && j < i) {
		i, sep = j, 2
	}
	if i < 0 {
		return msg
	}
	end := i + sep
	rest := msg[end:]
	for k := 0; k < n && len(rest) > 0; k++ {
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			end += len(rest)
			break
		}
		end += nl + 1
		rest = rest[nl+1:]
	}
	return msg[:end]
}

// quit ends the session; in the TRANSACTION state it removes the deleted messages first
// (the UPDATE state of RFC 1939).
func (p *pop3Conn) quit() {
	defer p.bw.Flush()
	if p.acct == nil {
		p.reply("+OK Bye")
		return
	}
	var uids []imap.UID
	for n := range p.deleted {
		uids = append(uids, p.msgs[n-1].uid)
	}
	removed := 0
	if len(uids) > 0 {
		n, err := p.acct.inbox().Remove(uids)
		if err != nil {
			p.reply("-ERR [SYS/TEMP] Some deleted messages not removed: %v", err)
			return
		}
		removed = n
	}
	p.srv.release(p.acct, p.ss)
	p.reply("+OK Bye, %d messages deleted", removed)
}
