package mailserver

import (
	"errors"
	"io"
	"net"
	"strings"
	"time"

	smtp "github.com/bbsim/bbsim/mailserver/internal/gosmtp"
	"github.com/emersion/go-sasl"
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
	// AUTH (for clients set up for submission) is offered once the session is under TLS,
	// and without TLS only when the server has none.
	srv.AllowInsecureAuth = s.tls == nil
	srv.TLSConfig = s.tls
	srv.EnableSMTPUTF8 = true
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
	user *account // after AUTH
}

var _ smtp.AuthSession = (*smtpSession)(nil)

// AuthMechanisms offers PLAIN (RFC 4616) and LOGIN, the two that mail clients set up for
// submission use; the accounts are the server's users.
func (ss *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

// Auth checks the credentials of one AUTH exchange.
func (ss *smtpSession) Auth(mech string) (sasl.Server, error) {
	check := func(username, password string) error {
		a := ss.s.authenticate(username, password)
		if a == nil {
			ss.s.log.Info("smtp auth failed", "user", username)
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		ss.user = a
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && !strings.EqualFold(identity, username) {
				return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Cannot act as another user"}
			}
			return check(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// loginServer is the server side of the LOGIN mechanism (draft-murchison-sasl-login):
// it asks for the user name, then the password.
type loginServer struct {
	check    func(username, password string) error
	username string
	step     int
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	l.step++
	switch l.step {
	case 1:
		if len(response) > 0 { // the name sent with the AUTH command
			l.username = string(response)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 2:
		l.username = string(response)
		return []byte("Password:"), false, nil
	case 3:
		return nil, true, l.check(l.username, string(response))
	}
	return nil, true, errors.New("sasl: unexpected response in LOGIN")
}

func (ss *smtpSession) Mail(from string, opts *smtp.MailOptions) error {
	ss.from = from
	if opts != nil && opts.Size > ss.s.opts.MaxMessageBytes {
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message size exceeds the limit"}
	}
	return nil
}

func (ss *smtpSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	a := ss.s.rcptAccount(to)
	if a == nil {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here: " + to}
	}
	// A mailbox named twice in one transaction (in any letter case, or as postmaster and
	// as itself) gets the message once.
	for _, have := range ss.to {
		if have == a {
			return nil
		}
	}
	ss.to = append(ss.to, a)
	return nil
}

func (ss *smtpSession) Data(r io.Reader) error {
	if len(ss.to) == 0 {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
	}
	msg, err := ss.s.spool(r, []byte("Return-Path: <"+strings.ReplaceAll(ss.from, "\r\n", "")+">\r\n"))
	if err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message size exceeds the limit"}
		}
		return err
	}
	defer msg.remove()
	if err := ss.s.deliverTo(ss.to, msg); err != nil {
		ss.s.log.Error("smtp delivery failed", "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Cannot store the message now, try again"}
	}
	ss.s.log.Debug("smtp delivered", "from", ss.from, "recipients", len(ss.to), "bytes", msg.size, "spilled", msg.path != "")
	return nil
}

func (ss *smtpSession) Reset() {
	ss.from = ""
	ss.to = nil
}

func (ss *smtpSession) Logout() error { return nil }
