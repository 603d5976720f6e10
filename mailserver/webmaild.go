package mailserver

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"html/template"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/mail"

	"github.com/bbsim/bbsim/internal/httpguard"
)

const (
	webmailCookie = "bbsim_webmail"
	// csrfCookie carries the sign-in form's token: a page on another site can neither read
	// it nor send it (SameSite=Strict), so its forged form lacks the matching field.
	csrfCookie = "bbsim_csrf"
)

// ServeWebmail serves the webmail on ln until Shutdown or Close. A webmail login is a
// session on the store, like POP3: it holds the store until logout or WebmailIdle.
func (s *Server) ServeWebmail(ln net.Listener) error {
	srv := &http.Server{Handler: s.WebmailHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	if !s.addCloser(srv.Close) {
		return ErrServerClosed
	}
	err := srv.Serve(ln)
	if s.isClosed() || errors.Is(err, http.ErrServerClosed) {
		return ErrServerClosed
	}
	return err
}

// webSession is a logged-in webmail user.
type webSession struct {
	acct  *account
	ss    *session
	timer *time.Timer
	csrf  string // the token the session's forms carry
}

type webmail struct {
	s        *Server
	mu       sync.Mutex
	sessions map[string]*webSession
}

// WebmailHandler returns the webmail's HTTP handler.
func (s *Server) WebmailHandler() http.Handler {
	wm := &webmail{s: s, sessions: map[string]*webSession{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", wm.home)
	mux.HandleFunc("POST /login", wm.login)
	mux.HandleFunc("POST /logout", wm.logout)
	mux.HandleFunc("GET /inbox", wm.inbox)
	mux.HandleFunc("GET /message/{uid}", wm.message)
	mux.HandleFunc("POST /api/v1/reset", wm.handleReset)
	return httpguard.Wrap(mux, httpguard.Options{Hosts: []string{s.opts.Domain}})
}

func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// sameToken reports whether the form's csrf field is want (and want is not empty).
func sameToken(r *http.Request, want string) bool {
	got := r.PostFormValue("csrf")
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// loginPage renders the sign-in form with a fresh form token in the form and in a cookie.
func loginPage(w http.ResponseWriter, status int, d pageData) {
	d.CSRF = newToken()
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: d.CSRF, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	if d.Title == "" {
		d.Title = "bbsim webmail: sign in"
	}
	render(w, status, "login", d)
}

var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}td{padding:.2em .6em}.unread{font-weight:bold}</style>
</head><body><h1>{{.Title}}</h1>{{end}}
{{define "login"}}{{template "head" .}}
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login"><input type="hidden" name="csrf" value="{{.CSRF}}">
<p><label>E-mail <input name="email" value="{{.Email}}" autocomplete="username"></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password"></label></p>
<p><button>Sign in</button></p></form></body></html>{{end}}
{{define "refused"}}{{template "head" .}}<p role="alert">{{.Error}}</p>
<p>Close the other mail program, or wait for it to let go of the mailbox, and <a href="/">try again</a>.</p></body></html>{{end}}
{{define "inbox"}}{{template "head" .}}
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{{.CSRF}}"><button>Sign out</button></form>
<p>{{len .Rows}} messages</p>
<table>{{range .Rows}}<tr{{if not .Seen}} class="unread"{{end}}><td>{{.From}}</td><td><a href="/message/{{.UID}}">{{.Subject}}</a></td><td>{{.Date}}</td></tr>{{end}}</table>
</body></html>{{end}}
{{define "message"}}{{template "head" .}}
<p><a href="/inbox">Inbox</a></p>
<table><tr><td>From</td><td>{{.From}}</td></tr><tr><td>To</td><td>{{.To}}</td></tr><tr><td>Date</td><td>{{.Date}}</td></tr></table>
<pre>{{.Body}}</pre></body></html>{{end}}
`))

type pageData struct {
	Title, Error, Email string
	CSRF                string
	Rows                []rowData
	From, To, Date      string
	Body                string
}

type rowData struct {
	UID                 imap.UID
	From, Subject, Date string
	Seen                bool
}

func render(w http.ResponseWriter, status int, name string, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	pages.ExecuteTemplate(w, name, d)
}

// current returns the request's session, restarting its idle timer.
func (wm *webmail) current(r *http.Request) (string, *webSession) {
	c, err := r.Cookie(webmailCookie)
	if err != nil {
		return "", nil
	}
	wm.mu.Lock()
	defer wm.mu.Unlock()
	ws := wm.sessions[c.Value]
	if ws != nil {
		ws.timer.Reset(wm.s.opts.WebmailIdle)
	}
	return c.Value, ws
}

func (wm *webmail) end(id string) {
	wm.mu.Lock()
	ws := wm.sessions[id]
	delete(wm.sessions, id)
	wm.mu.Unlock()
	if ws != nil {
		ws.timer.Stop()
		wm.s.release(ws.acct, ws.ss)
		wm.s.leave(ws.acct, ws.ss)
	}
}

func (wm *webmail) home(w http.ResponseWriter, r *http.Request) {
	if _, ws := wm.current(r); ws != nil {
		http.Redirect(w, r, "/inbox", http.StatusSeeOther)
		return
	}
	loginPage(w, http.StatusOK, pageData{})
}

func (wm *webmail) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		loginPage(w, http.StatusBadRequest, pageData{Error: "The form could not be read."})
		return
	}
	email, pass := r.PostFormValue("email"), r.PostFormValue("password")
	if c, err := r.Cookie(csrfCookie); err != nil || !sameToken(r, c.Value) {
		loginPage(w, http.StatusForbidden, pageData{Email: email, Error: "The sign-in form was not this page's (missing or stale form token): sign in again."})
		return
	}
	a := wm.s.authenticate(email, pass)
	if a == nil {
		loginPage(w, http.StatusUnauthorized, pageData{Email: email, Error: "Wrong e-mail address or password."})
		return
	}
	if id, ws := wm.current(r); ws != nil && ws.acct == a {
		_ = id
		http.Redirect(w, r, "/inbox", http.StatusSeeOther)
		return
	}
	ss, err := wm.s.join(a, kindWebmail, nil)
	if err != nil {
		render(w, http.StatusServiceUnavailable, "refused", pageData{Title: "Mailbox unavailable", Error: err.Error()})
		return
	}
	if err := wm.s.acquire(a, ss); err != nil {
		wm.s.leave(a, ss)
		render(w, http.StatusLocked, "refused", pageData{Title: "Mailbox in use",
			Error: "The mailbox of " + a.Email + " is in use: " + err.Error() + "."})
		return
	}
	id := newToken()
	ws := &webSession{acct: a, ss: ss, csrf: newToken()}
	ws.timer = time.AfterFunc(wm.s.opts.WebmailIdle, func() { wm.end(id) })
	wm.mu.Lock()
	wm.sessions[id] = ws
	wm.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: webmailCookie, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: "", Path: "/", MaxAge: -1})
	http.Redirect(w, r, "/inbox", http.StatusSeeOther)
}

func (wm *webmail) logout(w http.ResponseWriter, r *http.Request) {
	if id, ws := wm.current(r); ws != nil {
		if !sameToken(r, ws.csrf) {
			render(w, http.StatusForbidden, "refused", pageData{Title: "Not signed out", Error: "The sign-out form was not this page's (missing or stale form token)."})
			return
		}
		wm.end(id)
	}
	http.SetCookie(w, &http.Cookie{Name: webmailCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (wm *webmail) inbox(w http.ResponseWriter, r *http.Request) {
	_, ws := wm.current(r)
	if ws == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	mb := ws.acct.inbox()
	infos := mb.Messages()
	d := pageData{Title: "Inbox of " + ws.acct.Email, CSRF: ws.csrf}
	for i := len(infos) - 1; i >= 0; i-- {
		m := infos[i]
		body, _ := mb.Body(m.UID)
		h := readHeader(body)
		row := rowData{UID: m.UID, From: h.from, Subject: h.subject, Date: m.Time.Format("2006-01-02 15:04")}
		for _, f := range m.Flags {
			if f == imap.FlagSeen {
				row.Seen = true
			}
		}
		d.Rows = append(d.Rows, row)
	}
	render(w, http.StatusOK, "inbox", d)
}

func (wm *webmail) message(w http.ResponseWriter, r *http.Request) {
	_, ws := wm.current(r)
	if ws == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	uid, err := strconv.ParseUint(r.PathValue("uid"), 10, 32)
	if err != nil || uid == 0 {
		render(w, http.StatusBadRequest, "refused", pageData{Title: "No such message", Error: "A message number is a positive integer."})
		return
	}
	mb := ws.acct.inbox()
	body, ok := mb.Body(imap.UID(uid))
	if !ok {
		render(w, http.StatusNotFound, "refused", pageData{Title: "No such message", Error: "Message " + strconv.FormatUint(uid, 10) + " is not in the inbox."})
		return
	}
	mb.AddFlag(imap.UID(uid), imap.FlagSeen)
	h := readHeader(body)
	if h.date == "" {
		// No (readable) Date header: show when the message arrived.
		for _, m := range mb.Messages() {
			if m.UID == imap.UID(uid) {
				h.date = m.Time.Format(time.RFC1123Z) + " (received)"
			}
		}
	}
	render(w, http.StatusOK, "message", pageData{Title: h.subject, From: h.from, To: h.to, Date: h.date, Body: textBody(body)})
}

type header struct{ from, to, subject, date string }

// readHeader reads the fields shown in the webmail; a broken header shows as is.
func readHeader(body []byte) header {
	var h header
	mr, err := mail.CreateReader(bytes.NewReader(body))
	if err != nil && mr == nil {
		h.subject = "(unreadable message)"
		return h
	}
	defer mr.Close()
	if v, err := mr.Header.Text("From"); err == nil {
		h.from = v
	}
	if v, err := mr.Header.Text("To"); err == nil {
		h.to = v
	}
	if v, err := mr.Header.Subject(); err == nil {
		h.subject = v
	}
	if h.subject == "" {
		h.subject = "(no subject)"
	}
	if d, err := mr.Header.Date(); err == nil && !d.IsZero() {
		h.date = d.Format(time.RFC1123Z)
	}
	return h
}

// textBody returns the first text part of a message, or a note of what it holds.
func textBody(body []byte) string {
	mr, err := mail.CreateReader(bytes.NewReader(body))
	if err != nil && mr == nil {
		return string(body)
	}
	defer mr.Close()
	for {
		p, err := mr.NextPart()
		if err != nil {
			return "(no text part)"
		}
		if ih, ok := p.Header.(*mail.InlineHeader); ok {
			ct, _, _ := ih.ContentType()
			if ct == "" || strings.HasPrefix(ct, "text/") {
				b, _ := io.ReadAll(io.LimitReader(p.Body, 1<<20))
				return string(b)
			}
		}
	}
}
