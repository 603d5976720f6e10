// Package mailserver is bbsim's bundled mail server: a SQLite message store with IMAP
// (go-imap/v2 imapserver, IDLE included), POP3 (RFC 1939 with RFC 2449), SMTP (go-smtp)
// and a small webmail, whose store locking reproduces the BIS IDLE lockout and each of its
// resolutions: exclusive locking, the polite disconnect of idling IMAP sessions, shared
// access, IDLE turned off, and IMAP turned off.
package mailserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/bbsim/bbsim/mailserver/internal/goimap/imapserver"

	"github.com/bbsim/bbsim/internal/serveall"
	"github.com/bbsim/bbsim/internal/statedir"
	"github.com/bbsim/bbsim/mailserver/imapmem"
)

// ErrServerClosed is returned by the Serve methods after Shutdown or Close. Like every
// bbsim server's, it is http.ErrServerClosed, so one errors.Is test serves them all.
var ErrServerClosed = http.ErrServerClosed

// User is a mail account.
type User struct{ Email, Password, PIN string }

// DefaultDomain is the mail domain when Options.Domain is empty.
const DefaultDomain = "bbsim.test"

// DefaultAuthFailureDelay is Dovecot's auth_failure_delay default: guessing a password
// costs 2 s a try.
const DefaultAuthFailureDelay = 2 * time.Second

// DefaultUser exists when Options.Users is empty.
var DefaultUser = User{Email: "alice@bbsim.test", Password: "blackberry", PIN: "2100000A"}

// Locking is the store-locking policy.
type Locking string

// The store-locking policies.
const (
	// LockExclusive: an IMAP session with a mailbox selected holds the store; POP3,
	// webmail and other IMAP sessions that select are refused while it does.
	LockExclusive Locking = "exclusive"
	// LockShared: every session works at once.
	LockShared Locking = "shared"
)

// Options configure a Server. Zero values mean the defaults stated per field.
type Options struct {
	// DataDir holds the SQLite store mail.db and the self-signed TLS certificate made on
	// first start. Required.
	DataDir string
	// Domain is the mail domain. Default "bbsim.test".
	Domain string
	// Users are the accounts. Default: DefaultUser.
	Users []User
	// Locking is the store-locking policy. Default LockExclusive.
	Locking Locking
	// PoliteDisconnect sends "* BYE [UNAVAILABLE] …" to IMAP sessions idling on a store
	// when a POP3 or webmail session arrives for it, and hands the store over. Default off.
	PoliteDisconnect bool
	// NoIdle stops advertising (and refuses) IDLE. Default off.
	NoIdle bool
	// MaxConnectionsPerUser refuses logins over this many sessions of one protocol per
	// user, with Dovecot's wording. Default 0: unlimited.
	MaxConnectionsPerUser int
	// MaxMessageBytes bounds a message over SMTP and APPEND. Default 10 MiB.
	MaxMessageBytes int64
	// WebmailIdle ends a webmail session (and frees the store) after this long without a
	// request. Default 2 minutes.
	WebmailIdle time.Duration
	// AuthFailureDelay is how long a failed login (IMAP, POP3, SMTP AUTH, webmail) waits
	// before its answer, as Dovecot's auth_failure_delay. Default 2s; negative: none.
	AuthFailureDelay time.Duration
	// Logger. Default: discard.
	Logger *slog.Logger
}

// Server is the bundled mail server.
type Server struct {
	opts  Options
	log   *slog.Logger
	db    *db
	tls   *tls.Config
	users map[string]*account // by lower-case e-mail

	imap *imapserver.Server

	mu       sync.Mutex
	closed   bool
	closers  []func() error
	conns    map[net.Conn]struct{}
	shutdown chan struct{}
	wg       sync.WaitGroup
}

// account is a user with its mailboxes and the sessions on its store.
type account struct {
	User
	mem *imapmem.User

	mu       sync.Mutex
	sessions map[*session]struct{}
}

// sessionKind is the protocol of a session on a store.
type sessionKind string

const (
	kindIMAP    sessionKind = "IMAP"
	kindPOP3    sessionKind = "POP3"
	kindWebmail sessionKind = "webmail"
)

// session is one client's presence on a store.
type session struct {
	kind     sessionKind
	holds    bool // holds the store (IMAP: a mailbox selected; POP3 and webmail: logged in)
	idling   bool
	bye      func(text string) // ends the session politely (IMAP: untagged BYE)
	loggedIn time.Time
}

// New opens the store (creating it and the users on first start) and builds the server.
func New(opts Options) (*Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("mailserver: Options.DataDir is required")
	}
	if opts.Domain == "" {
		opts.Domain = DefaultDomain
	}
	if len(opts.Users) == 0 {
		opts.Users = []User{DefaultUser}
	}
	switch opts.Locking {
	case "":
		opts.Locking = LockExclusive
	case LockExclusive, LockShared:
	default:
		return nil, fmt.Errorf("mailserver: store locking %q: want exclusive or shared", opts.Locking)
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 10 << 20
	}
	if opts.AuthFailureDelay == 0 {
		opts.AuthFailureDelay = DefaultAuthFailureDelay
	}
	if opts.WebmailIdle <= 0 {
		opts.WebmailIdle = 2 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := statedir.Mkdir(opts.DataDir); err != nil {
		return nil, fmt.Errorf("mailserver: %w", err)
	}
	if err := os.RemoveAll(spoolDir(opts.DataDir)); err != nil {
		return nil, fmt.Errorf("mailserver: %w", err)
	}
	if err := os.MkdirAll(spoolDir(opts.DataDir), 0o700); err != nil {
		return nil, fmt.Errorf("mailserver: %w", err)
	}
	d, err := openDB(filepath.Join(opts.DataDir, "mail.db"))
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, log: opts.Logger.With("component", "mailserver"), db: d, users: map[string]*account{},
		shutdown: make(chan struct{})}
	for _, u := range opts.Users {
		key := strings.ToLower(u.Email)
		if _, dup := s.users[key]; dup {
			d.close()
			return nil, fmt.Errorf("mailserver: user %s given twice", u.Email)
		}
		if err := d.ensureUser(u); err != nil {
			d.close()
			return nil, fmt.Errorf("mailserver: user %s: %w", u.Email, err)
		}
		a := &account{User: u, sessions: map[*session]struct{}{}}
		a.mem = imapmem.NewStoredUser(u.Email, u.Password, userStore{d: d, user: u.Email})
		if err := d.load(u.Email, a.mem); err != nil {
			d.close()
			return nil, fmt.Errorf("mailserver: load %s: %w", u.Email, err)
		}
		s.users[key] = a
	}
	s.tls, err = loadOrMakeCert(opts.DataDir, opts.Domain)
	if err != nil {
		d.close()
		return nil, err
	}
	s.imap = s.newIMAP()
	return s, nil
}

// user finds an account by login (the e-mail address, any case).
func (s *Server) user(login string) *account {
	return s.users[strings.ToLower(strings.TrimSpace(login))]
}

// rcptAccount finds the account a recipient address reaches. The reserved mailbox
// postmaster (RFC 5321 §4.5.1), bare or at the server's domain, reaches the first
// configured user.
func (s *Server) rcptAccount(addr string) *account {
	if a := s.user(addr); a != nil {
		return a
	}
	local, domain, hasDomain := strings.Cut(strings.TrimSpace(addr), "@")
	if strings.EqualFold(local, "postmaster") && (!hasDomain || strings.EqualFold(domain, s.opts.Domain)) {
		return s.user(s.opts.Users[0].Email)
	}
	return nil
}

// authenticate checks a login and password.
func (s *Server) authenticate(login, password string) *account {
	a := s.user(login)
	if a == nil || a.mem.Login(a.Email, password) != nil {
		s.failedAuth()
		return nil
	}
	return a
}

// failedAuth makes a failed login wait AuthFailureDelay (less when the server stops), so
// that guessing passwords costs time on every protocol alike.
func (s *Server) failedAuth() {
	if s.opts.AuthFailureDelay <= 0 {
		return
	}
	t := time.NewTimer(s.opts.AuthFailureDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.shutdown:
	}
}

// errInUse is a refusal because another session holds the store.
type errInUse struct{ holder sessionKind }

func (e errInUse) Error() string {
	return fmt.Sprintf("Mailbox is locked by another %s session", e.holder)
}

// errLimit is a refusal over the per-user connection limit (Dovecot's wording).
type errLimit struct{ n int }

func (e errLimit) Error() string {
	return fmt.Sprintf("Maximum number of connections from user+IP exceeded (mail_max_userip_connections=%d)", e.n)
}

// join registers a new session of kind on the account, checking the connection limit.
func (s *Server) join(a *account, kind sessionKind, bye func(string)) (*session, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := s.opts.MaxConnectionsPerUser; n > 0 {
		count := 0
		for o := range a.sessions {
			if o.kind == kind {
				count++
			}
		}
		if count >= n {
			return nil, errLimit{n}
		}
	}
	ss := &session{kind: kind, bye: bye, loggedIn: time.Now()}
	a.sessions[ss] = struct{}{}
	return ss, nil
}

// leave removes a session and whatever it held.
func (s *Server) leave(a *account, ss *session) {
	if ss == nil {
		return
	}
	a.mu.Lock()
	delete(a.sessions, ss)
	a.mu.Unlock()
}

// acquire makes ss hold the store under the locking policy. A POP3 or webmail newcomer
// on a store held only by idling IMAP sessions disconnects them politely when that is on.
func (s *Server) acquire(a *account, ss *session) error {
	a.mu.Lock()
	if s.opts.Locking == LockShared {
		ss.holds = true
		a.mu.Unlock()
		return nil
	}
	var holders []*session
	for o := range a.sessions {
		if o != ss && o.holds {
			holders = append(holders, o)
		}
	}
	if len(holders) == 0 {
		ss.holds = true
		a.mu.Unlock()
		return nil
	}
	polite := s.opts.PoliteDisconnect && ss.kind != kindIMAP
	for _, o := range holders {
		if !polite || o.kind != kindIMAP || !o.idling {
			kind, idling := o.kind, o.idling
			a.mu.Unlock()
			s.log.Info("store locked", "user", a.Email, "newcomer", ss.kind, "holder", kind, "idling", idling)
			return errInUse{kind}
		}
	}
	// Every holder is an idling IMAP session: disconnect them and take the store.
	for _, o := range holders {
		o.holds = false
		delete(a.sessions, o)
	}
	ss.holds = true
	a.mu.Unlock()
	reason := fmt.Sprintf("[UNAVAILABLE] Disconnected for a %s session on this mailbox", ss.kind)
	for _, o := range holders {
		s.log.Info("polite disconnect", "user", a.Email, "newcomer", ss.kind)
		o.bye(reason)
	}
	return nil
}

// release stops ss holding the store.
func (s *Server) release(a *account, ss *session) {
	if ss == nil {
		return
	}
	a.mu.Lock()
	ss.holds = false
	ss.idling = false
	a.mu.Unlock()
}

func (s *Server) holds(a *account, ss *session) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return ss.holds
}

func (s *Server) setIdling(a *account, ss *session, idling bool) {
	a.mu.Lock()
	ss.idling = idling
	a.mu.Unlock()
}

// inbox returns the account's INBOX.
func (a *account) inbox() *imapmem.Mailbox {
	mb, err := a.mem.Mailbox("INBOX")
	if err != nil {
		// INBOX is created with the user and cannot be deleted.
		panic("mailserver: INBOX missing for " + a.Email)
	}
	return mb
}

// Deliver stores msg in each recipient's INBOX; it returns once the store has committed
// it. Idling IMAP sessions get EXISTS at once.
func (s *Server) Deliver(ctx context.Context, from string, to []string, msg []byte) error {
	var accts []*account
	for _, rcpt := range to {
		a := s.user(rcpt)
		if a == nil {
			return fmt.Errorf("mailserver: no such user %s", rcpt)
		}
		accts = append(accts, a)
	}
	if int64(len(msg)) > s.opts.MaxMessageBytes {
		return fmt.Errorf("mailserver: message of %d bytes over the %d-byte limit", len(msg), s.opts.MaxMessageBytes)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.deliverTo(accts, spooled{buf: msg, size: int64(len(msg))})
}

// deliverTo appends msg to each account's INBOX at once, so that the copies share a
// group commit, and returns once every copy is committed or has failed.
func (s *Server) deliverTo(accts []*account, msg spooled) error {
	add := func(a *account) error {
		var err error
		if msg.path != "" {
			_, err = a.inbox().AppendFile(msg.path, msg.size, nil)
		} else {
			_, err = a.inbox().Append(msg.buf, nil)
		}
		if err != nil {
			return fmt.Errorf("mailserver: deliver to %s: %w", a.Email, err)
		}
		return nil
	}
	if len(accts) == 1 {
		return add(accts[0])
	}
	errs := make([]error, len(accts))
	var wg sync.WaitGroup
	for i, a := range accts {
		wg.Go(func() { errs[i] = add(a) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track registers a live connection, closed at shutdown; false once closed.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) addCloser(f func() error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.closers = append(s.closers, f)
	return true
}

// Listeners are the mail server's listeners, one per protocol; a nil one is off.
type Listeners struct{ IMAP, POP3, SMTP, Webmail net.Listener }

// Serve serves every listener in l until Shutdown or Close, then returns ErrServerClosed.
// When one protocol's listener fails, Serve closes the server and returns that failure.
func (s *Server) Serve(l Listeners) error {
	var serves []func() error
	for _, p := range []struct {
		ln    net.Listener
		serve func(net.Listener) error
	}{{l.IMAP, s.ServeIMAP}, {l.POP3, s.ServePOP3}, {l.SMTP, s.ServeSMTP}, {l.Webmail, s.ServeWebmail}} {
		if p.ln != nil {
			serves = append(serves, func() error { return p.serve(p.ln) })
		}
	}
	return serveall.Run(s.Close, serves...)
}

// Shutdown says BYE to IMAP sessions, stops accepting, and waits for sessions to end
// until ctx does, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.shutdown)
	closers := s.closers
	s.mu.Unlock()
	for _, a := range s.users {
		a.mu.Lock()
		var byes []func(string)
		for ss := range a.sessions {
			if ss.kind == kindIMAP && ss.bye != nil {
				byes = append(byes, ss.bye)
			}
		}
		a.mu.Unlock()
		for _, b := range byes {
			b("Server shutting down")
		}
	}
	var errs []error
	// The IMAP library's Close closes the listener ServeIMAP's own closer closed first:
	// a listener already closed is what stopping wants, not a failure.
	for _, c := range closers {
		if err := c(); err != nil && !errors.Is(err, ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	if err := s.db.close(); err != nil {
		errs = append(errs, err)
	}
	// How well concurrent changes shared their commits, for whoever tunes a load test.
	commits, ops := s.db.stats()
	s.log.Info("mail store closed", "commits", commits, "operations", ops)
	return errors.Join(errs...)
}

// Close stops everything at once.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
