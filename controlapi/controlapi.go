// Package controlapi serves a handset's control API (JSON over HTTP): what push
// applications' tests and QA scripts use to see what the device received and to act on it
// as the user would (open, delete, coverage, registration).
package controlapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/httpguard"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

// Options configure the API server.
type Options struct {
	// Logger receives request errors. Default: discard.
	Logger *slog.Logger
	// KeepAlive is how often an idle event stream sends a comment line. Default 15s.
	KeepAlive time.Duration
	// Token, when set, must come with every request as "Authorization: Bearer TOKEN".
	// Required when the API listens beyond loopback. Default: none.
	Token string
	// Hosts are further names (and their subdomains) a request's Host may carry besides
	// IP addresses, localhost and this machine's name. Default: none.
	Hosts []string
}

// Server serves the control API of one handset.
type Server struct {
	h    *handset.Handset
	opts Options
	log  *slog.Logger
	srv  *http.Server
}

// New returns the control API server for h.
func New(h *handset.Handset, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 15 * time.Second
	}
	s := &Server{h: h, opts: opts, log: opts.Logger.With("component", "controlapi")}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	return s
}

// Serve accepts API connections on ln.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Shutdown stops the server gracefully; open event streams end.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Close stops the server at once.
func (s *Server) Close() error { return s.srv.Close() }

// Handler returns the API routes behind the guard: a foreign Host (DNS rebinding), a
// browser's cross-origin POST or DELETE, and a missing token are refused.
func (s *Server) Handler() http.Handler {
	return httpguard.Wrap(s.routes(), httpguard.Options{Token: s.opts.Token, Hosts: s.opts.Hosts, Deny: writeError})
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/device", s.device)
	mux.HandleFunc("POST /api/v1/device/software", s.software)
	mux.HandleFunc("GET /api/v1/messages", s.messages)
	mux.HandleFunc("GET /api/v1/messages/{id}", s.message)
	mux.HandleFunc("GET /api/v1/messages/{id}/page", s.messagePage)
	mux.HandleFunc("POST /api/v1/messages/{id}/open", s.openMessage)
	mux.HandleFunc("GET /api/v1/channels", s.channels)
	mux.HandleFunc("GET /api/v1/channels/{id}", s.channel)
	mux.HandleFunc("GET /api/v1/channels/{id}/page", s.channelPage)
	mux.HandleFunc("POST /api/v1/channels/{id}/open", s.openChannel)
	mux.HandleFunc("DELETE /api/v1/channels/{id}", s.deleteChannel)
	mux.HandleFunc("GET /api/v1/browser/cache", s.cache)
	mux.HandleFunc("GET /api/v1/events", s.events)
	mux.HandleFunc("POST /api/v1/coverage", s.coverage)
	mux.HandleFunc("GET /api/v1/radio", s.radio)
	mux.HandleFunc("PUT /api/v1/radio", s.setRadio)
	mux.HandleFunc("POST /api/v1/reset", s.reset)
	mux.HandleFunc("GET /api/v1/apps", s.apps)
	mux.HandleFunc("GET /api/v1/apps/{id}", s.app)
	mux.HandleFunc("POST /api/v1/apps/{id}/register", s.requestApp(handset.WantRegistered))
	mux.HandleFunc("POST /api/v1/apps/{id}/deregister", s.requestApp(handset.WantDeregistered))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// MessageSummary is a message-list row.
type MessageSummary struct {
	ID         string              `json:"id"`
	Kind       handset.MessageKind `json:"kind"`
	From       string              `json:"from"`
	Subject    string              `json:"subject"`
	ReceivedAt time.Time           `json:"received_at"`
	Read       bool                `json:"read"`
	URL        string              `json:"url,omitempty"`
}

// ChannelView is a channel as the API shows it (icon bytes left out).
type ChannelView struct {
	ID               string    `json:"id"`
	ChannelID        string    `json:"channel_id"`
	Title            string    `json:"title"`
	URL              string    `json:"url"`
	Read             bool      `json:"read"`
	Priority         string    `json:"priority,omitempty"`
	UnreadIconURL    string    `json:"unread_icon_url"`
	ReadIconURL      string    `json:"read_icon_url"`
	IconsLoaded      bool      `json:"icons_loaded"`
	UnreadIconLoaded bool      `json:"unread_icon_loaded"`
	ReadIconLoaded   bool      `json:"read_icon_loaded"`
	DeleteURL        string    `json:"delete_url,omitempty"`
	UpdatedAt        time.Time `json:"updated_at"`
}

func channelView(c handset.Channel) ChannelView {
	return ChannelView{
		ID: c.ID, ChannelID: c.ChannelID, Title: c.Title, URL: c.URL, Read: c.Read, Priority: c.Priority,
		UnreadIconURL: c.UnreadIconURL, ReadIconURL: c.ReadIconURL, IconsLoaded: c.IconsLoaded,
		UnreadIconLoaded: c.UnreadIconLoaded, ReadIconLoaded: c.ReadIconLoaded, DeleteURL: c.DeleteURL,
		UpdatedAt: c.UpdatedAt,
	}
}

func (s *Server) device(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.h.Device())
}

// software changes the device software at run time: {"version":"6.0.0.141"}. It answers
// with the device.
func (s *Server) software(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Version string `json:"version"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if _, err := handset.ParseSoftware(req.Version); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, err := s.h.SetSoftware(req.Version); err != nil {
		s.reply(w, nil, err) // the journal's failure, not the request's
		return
	}
	writeJSON(w, http.StatusOK, s.h.Device())
}

// messages lists the messages; ?match= keeps those whose subject, sender or URL contains
// the text, ?kind= those of a kind, and ?wait= waits that long for one to be there.
func (s *Server) messages(w http.ResponseWriter, r *http.Request) {
	wait, err := waitParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	q, kind := r.URL.Query().Get("match"), r.URL.Query().Get("kind")
	writeJSON(w, http.StatusOK, until(r.Context(), s.h, wait, func() []MessageSummary {
		var out []MessageSummary
		for _, m := range s.h.Messages() {
			if (kind == "" || string(m.Kind) == kind) && matches(q, m.Subject, m.From, m.URL) {
				out = append(out, MessageSummary{ID: m.ID, Kind: m.Kind, From: m.From, Subject: m.Subject, ReceivedAt: m.ReceivedAt, Read: m.Read, URL: m.URL})
			}
		}
		return out
	}))
}

func (s *Server) message(w http.ResponseWriter, r *http.Request) {
	m, err := s.h.Message(r.PathValue("id"))
	s.reply(w, m, err)
}

// OpenedMessage is the answer to opening a message: the message and, for a browser message
// the browser could not display, the error it showed.
type OpenedMessage struct {
	handset.Message
	// Browser is the browser that displayed a browser message: WebKit from device
	// software 6.0, else the BlackBerry Browser.
	Browser string        `json:"browser,omitempty"`
	Error   *BrowserError `json:"error,omitempty"`
}

func (s *Server) openMessage(w http.ResponseWriter, r *http.Request) {
	m, err := s.h.OpenMessage(r.PathValue("id"))
	out := OpenedMessage{Message: m}
	if m.Kind == handset.KindBrowser {
		out.Browser = s.h.Software().Browser()
	}
	out.Error, err = browserError(m.ID != "", err)
	s.reply(w, out, err)
}

// channels lists the browser channels; ?match= keeps those whose title, channel id or URL
// contains the text, and ?wait= waits that long for one to be there.
func (s *Server) channels(w http.ResponseWriter, r *http.Request) {
	wait, err := waitParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	q := r.URL.Query().Get("match")
	writeJSON(w, http.StatusOK, until(r.Context(), s.h, wait, func() []ChannelView {
		var out []ChannelView
		for _, c := range s.h.Channels() {
			if matches(q, c.Title, c.ChannelID, c.URL) {
				out = append(out, channelView(c))
			}
		}
		return out
	}))
}

// channelPage serves a channel's cached page without opening the channel (it stays
// unread): ?format=html the page as pushed, ?format=text as the handset renders it, else
// the cache entry as JSON.
func (s *Server) channelPage(w http.ResponseWriter, r *http.Request) {
	c, err := s.h.Channel(r.PathValue("id"))
	if err != nil {
		s.reply(w, nil, err)
		return
	}
	page, ok := s.h.CachedPage(c.URL)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("channel %s: no page for %s in the browser cache", c.ID, c.URL))
		return
	}
	s.page(w, r, page.ContentType, page.Body, page.Text, page)
}

// messagePage serves a message's content without opening it (it stays unread), in the
// formats of channelPage. A browser message's HTML is its cached page.
func (s *Server) messagePage(w http.ResponseWriter, r *http.Request) {
	m, err := s.h.Message(r.PathValue("id"))
	if err != nil {
		s.reply(w, nil, err)
		return
	}
	var body []byte
	ctype := m.ContentType
	if page, ok := s.h.CachedPage(m.URL); ok && m.URL != "" {
		body, ctype = page.Body, page.ContentType
	}
	s.page(w, r, ctype, body, m.Text, m)
}

func (s *Server) page(w http.ResponseWriter, r *http.Request, ctype string, body []byte, text string, v any) {
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
		writeJSON(w, http.StatusOK, v)
	case "text":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, text)
	case "html":
		if body == nil {
			writeError(w, http.StatusNotFound, "no HTML kept for this item; ?format=text has its text")
			return
		}
		if ctype == "" {
			ctype = "text/html"
		}
		w.Header().Set("Content-Type", ctype)
		w.Write(body)
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("format=%q: want json, html or text", f))
	}
}

// reset clears messages, channels, cache and events (handset.Reset) and answers with the
// device.
func (s *Server) reset(w http.ResponseWriter, r *http.Request) {
	if err := s.h.Reset(); err != nil {
		s.reply(w, nil, err)
		return
	}
	writeJSON(w, http.StatusOK, s.h.Device())
}

func (s *Server) channel(w http.ResponseWriter, r *http.Request) {
	c, err := s.h.Channel(r.PathValue("id"))
	s.reply(w, channelView(c), err)
}

// OpenedChannel is the answer to opening a channel: the channel and its cached page.
type OpenedChannel struct {
	Channel ChannelView         `json:"channel"`
	Page    *handset.CacheEntry `json:"page"`
	// Browser is the browser that displayed the page: WebKit from device software 6.0,
	// else the BlackBerry Browser.
	Browser string        `json:"browser"`
	Error   *BrowserError `json:"error,omitempty"`
}

func (s *Server) openChannel(w http.ResponseWriter, r *http.Request) {
	c, page, err := s.h.OpenChannel(r.PathValue("id"))
	out := OpenedChannel{Channel: channelView(c), Browser: s.h.Software().Browser()}
	if page.URL != "" {
		out.Page = &page
	}
	out.Error, err = browserError(c.ID != "", err)
	s.reply(w, out, err)
}

// BrowserError is what the browser showed instead of a page: code is "transcoded" (the
// BlackBerry 6.0 failure), "offline" (a page that was not pushed, out of coverage) or
// "fetch" (the page's server could not be reached).
type BrowserError struct {
	Code string `json:"code"`
	Text string `json:"text"`
}

// browserError sorts what opening gave: an error once the message or channel opened is
// the browser's, shown instead of the page and answered with it; any other is the
// request's.
func browserError(opened bool, err error) (*BrowserError, error) {
	if err == nil || !opened {
		return nil, err
	}
	return &BrowserError{Code: handset.BrowserErrorCode(err), Text: err.Error()}, nil
}

func (s *Server) deleteChannel(w http.ResponseWriter, r *http.Request) {
	c, err := s.h.DeleteChannel(r.PathValue("id"), true)
	s.reply(w, channelView(c), err)
}

func (s *Server) cache(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.h.Cache())
}

// radio shows the radio conditions: profile, figures, schedule, seed, drops.
func (s *Server) radio(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.h.Radio())
}

// setRadio changes the radio profile: {"profile":"gprs"} (or NAME,KEY=VALUE...). A process
// started without --radio shapes nothing and answers 409.
func (s *Server) setRadio(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Profile *string `json:"profile"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.Profile == nil {
		writeError(w, http.StatusBadRequest, `body must be {"profile":"NAME"}, e.g. {"profile":"gprs"}`)
		return
	}
	st, err := s.h.SetRadioProfile(*req.Profile)
	switch {
	case errors.Is(err, handset.ErrRadioOff):
		writeError(w, http.StatusConflict, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) coverage(w http.ResponseWriter, r *http.Request) {
	var req struct {
		In *bool `json:"in"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.In == nil {
		writeError(w, http.StatusBadRequest, `body must be {"in":true} or {"in":false}`)
		return
	}
	s.h.SetCoverage(*req.In)
	if !*req.In {
		// Answer with the connections closed, not as they were a moment before.
		settle(r.Context(), s.h, func() bool {
			d := s.h.Device()
			switch d.Mail.State {
			case handset.MailIdling, handset.MailPolling, handset.MailConnecting:
				return false
			}
			return d.Gateway.State != handset.LinkAttached
		})
	}
	writeJSON(w, http.StatusOK, s.h.Device())
}

// apps lists the push applications; ?match= keeps those whose id contains the text, and
// ?wait= waits that long for one to be there.
func (s *Server) apps(w http.ResponseWriter, r *http.Request) {
	wait, err := waitParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	q := r.URL.Query().Get("match")
	writeJSON(w, http.StatusOK, until(r.Context(), s.h, wait, func() []handset.App {
		var out []handset.App
		for _, a := range s.h.Apps() {
			if matches(q, a.ID) {
				out = append(out, a)
			}
		}
		return out
	}))
}

func (s *Server) app(w http.ResponseWriter, r *http.Request) {
	a, err := s.h.App(r.PathValue("id"))
	s.reply(w, a, err)
}

func (s *Server) requestApp(want string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := s.h.RequestApp(id, want); err != nil {
			s.reply(w, nil, err)
			return
		}
		// Answer with the registration agent's outcome; 202 with the state so far when it
		// takes longer than settleTimeout (a slow or unreachable push service).
		status := http.StatusAccepted
		if settle(r.Context(), s.h, func() bool {
			a, err := s.h.App(id)
			return err != nil || a.State == handset.AppFailed ||
				a.State == handset.AppActive && want == handset.WantRegistered ||
				a.State == handset.AppNotRegistered && want == handset.WantDeregistered
		}) {
			status = http.StatusOK
		}
		a, err := s.h.App(id)
		s.replyStatus(w, status, a, err)
	}
}

// events streams the handset's events as server-sent events, starting after the sequence
// number in ?after= or Last-Event-ID (default: the whole kept history). With ?format=json it
// answers at once with a JSON array instead of streaming.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	after, err := afterParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if r.URL.Query().Get("format") == "json" {
		wait, err := waitParam(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		kind, q := r.URL.Query().Get("kind"), r.URL.Query().Get("match")
		writeJSON(w, http.StatusOK, until(r.Context(), s.h, wait, func() []handset.Event {
			var out []handset.Event
			for _, e := range s.h.Events(after) {
				if kindMatches(e.Kind, kind) && matches(q, e.Text) {
					out = append(out, e)
				}
			}
			return out
		}))
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	ctx := r.Context()
	for {
		wctx, cancel := context.WithTimeout(ctx, s.opts.KeepAlive)
		ev, err := s.h.WaitEvents(wctx, after)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil { // keep-alive tick
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
			flusher.Flush()
			continue
		}
		for _, e := range ev {
			b, _ := json.Marshal(e)
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Kind, b); err != nil {
				return
			}
			after = e.Seq
		}
		flusher.Flush()
	}
}

func afterParam(r *http.Request) (uint64, error) {
	v := r.URL.Query().Get("after")
	if v == "" {
		v = r.Header.Get("Last-Event-ID")
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("after=%q is not an event sequence number", v)
	}
	return n, nil
}

func (s *Server) reply(w http.ResponseWriter, v any, err error) {
	s.replyStatus(w, http.StatusOK, v, err)
}

func (s *Server) replyStatus(w http.ResponseWriter, status int, v any, err error) {
	switch {
	case err == nil:
		writeJSON(w, status, v)
	case errors.Is(err, handset.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	default:
		s.log.Error("control api", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// errNotJSON is answered 415: a browser can send a cross-origin text/plain POST without
// asking first, never an application/json one.
var errNotJSON = errors.New("Content-Type must be application/json")

// readJSON decodes the request's JSON body into v, or answers 415 (not JSON) or 400 (bad
// JSON) and reports false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	err := decodeJSON(r, v)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, errNotJSON) {
			status = http.StatusUnsupportedMediaType
		}
		writeError(w, status, err.Error())
	}
	return err == nil
}

func decodeJSON(r *http.Request, v any) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return errNotJSON
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad JSON body: %v", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
