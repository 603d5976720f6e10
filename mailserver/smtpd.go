package mailserver

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// ServeSMTP serves SMTP on ln until Shutdown or Close. It accepts mail for local users
// only and answers 250 once the message is committed to the store.
func (s *Server) ServeSMTP(ln net.Listener) error {
	srv := smtp.NewServer(smtpBackend{s})
	srv.Domain = "mail." + s.opts.Domain
	srv.MaxMessageBytes = s.opts.MaxMessageBytes
	srv.MaxRecipients = 100
	srv.ReadTimeout = 5 * time.Minute
	srv.WriteTimeout = time.Minute
	srv.AllowInsecureAuth = true
	srv.TLSConfig = s.tls
	if !s.addCloser(srv.Close) {
		return ErrServerClosed
	}
	err := srv.Serve(ln)
	if s.isClosed() || errors.Is(err, smtp.ErrServerClosed) {
		return ErrServerClosed
	}
	return err
}

type smtpBackend struct{ s *Server }

func (b smtpBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &smtpSession{s: b.s}, nil
}

type smtpSession struct {
	s    *Server
	from string
	to   []*account
}

func (ss *smtpSession) Mail(from string, opts *smtp.MailOptions) error {
	ss.from = from
	if opts != nil && opts.Size > ss.s.opts.MaxMessageBytes {
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message size exceeds the limit"}
	}
	return nil
}

func (ss *smtpSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	a := ss.s.user(to)
	if a == nil {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here: " + to}
	}
	ss.to = append(ss.to, a)
	return nil
}

func (ss *smtpSession) Data(r io.Reader) error {
	if len(ss.to) == 0 {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message size exceeds the limit"}
		}
		return err
	}
	msg := buf.Bytes()
	if !bytes.HasPrefix(msg, []byte("Return-Path:")) {
		msg = append([]byte("Return-Path: <"+strings.ReplaceAll(ss.from, "\r\n", "")+">\r\n"), msg...)
	}
	for _, a := range ss.to {
		if _, err := a.inbox().Append(msg, nil); err != nil {
			ss.s.log.Error("smtp delivery failed", "user", a.Email, "err", err)
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Cannot store the message now, try again"}
		}
	}
	ss.s.log.Debug("smtp delivered", "from", ss.from, "recipients", len(ss.to), "bytes", len(msg))
	return nil
}

func (ss *smtpSession) Reset() {
	ss.from = ""
	ss.to = nil
}

func (ss *smtpSession) Logout() error { return nil }
