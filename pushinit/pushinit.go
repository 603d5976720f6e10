// Package pushinit is a push initiator: it sends RIM push, PAP and BIS push API requests the
// way real push applications do, one at a time or in bulk, and reads the answers into
// per-recipient results with the protocol's codes.
package pushinit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bbsim/bbsim/rim"
	"github.com/bbsim/bbsim/rim/pap"
)

// Protocol selects how a push is sent.
type Protocol string

// The protocols a push can be sent with.
const (
	RIM Protocol = "rim" // POST /push?DESTINATION=…&PORT=…&REQUESTURI=…
	PAP Protocol = "pap" // POST /pap, PAP 2.0 multipart/related
	BIS Protocol = "bis" // POST /mss/PD_pushRequest, PAP 2.1 with HTTP Basic APPID:PASSWORD
)

// Browser push types accepted by Push.Type.
var pushTypes = map[string]string{
	"channel": rim.TypeChannel,
	"message": rim.TypeMessage,
	"content": rim.TypeContent,
	"delete":  rim.TypeChannelDelete,
}

// Push is one push request.
type Push struct {
	// Protocol is how to send it. Default RIM.
	Protocol Protocol
	// Gateway is the push server's base URL, e.g. http://127.0.0.1:8080. Required.
	Gateway string
	// To are the recipients: PINs, e-mail addresses or $group names (RIM push), PINs or
	// push_all (BIS). Required.
	To []string
	// Port is the device port. Default 7874, the browser's push listener.
	Port int
	// RequestURI is the URI handed to the device. Default "/".
	RequestURI string
	// Type is channel, message, content or delete; empty sends an application push (no
	// X-RIM-Push-Type header).
	Type string
	// Title, ChannelID, ReadIcon, UnreadIcon, Priority and DeleteURL become the browser push
	// headers of the same names. ChannelID defaults to ContentLocation.
	Title, ChannelID, ReadIcon, UnreadIcon, Priority, DeleteURL string
	// Reliability is transport, application or application-preferred (RIM push), or a PAP
	// delivery-method (confirmed, unconfirmed, …). Default: none sent.
	Reliability string
	// ContentType of Body. Default text/html for browser pushes, else text/plain.
	ContentType string
	// ContentLocation is the page's URL. Default: ChannelID.
	ContentLocation string
	// Body is the content pushed.
	Body []byte
	// Header holds more headers of the content (X-RIM-Transcode-Content, say), set after
	// the ones above; with PAP they go in the content part.
	Header http.Header
	// ID is the push ID. Default: a random one.
	ID string
	// NotifyURL asks for result notifications.
	NotifyURL string
	// Username and Password authenticate the initiator (HTTP Basic). For BIS, the
	// application ID and its password.
	Username, Password string
}

// Result is the outcome of one request.
type Result struct {
	// ID is the push ID.
	ID string `json:"id"`
	// To are the recipients of the request.
	To []string `json:"to"`
	// HTTPStatus is the HTTP status of the answer.
	HTTPStatus int `json:"http_status"`
	// Code is the PAP code of the answer (0 for RIM push).
	Code int `json:"code,omitempty"`
	// Desc is the answer's description: the PAP desc or the HTTP body's first line.
	Desc string `json:"desc,omitempty"`
	// Attempts counts the requests sent, retries included.
	Attempts int `json:"attempts"`
	// Err is set when the push was not accepted.
	Err error `json:"-"`
}

// OK reports whether the push was accepted.
func (r Result) OK() bool { return r.Err == nil }

// Error is a refusal by the push server.
type Error struct {
	HTTPStatus int
	Code       int
	Desc       string
	// RetryAfter is how long the server asked to be left alone (its Retry-After header,
	// in seconds or as an HTTP date), or zero.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Code != 0 {
		m := CodeMeaning(e.Code)
		if e.Desc != "" && !strings.EqualFold(e.Desc, m) {
			m += ": " + e.Desc
		}
		return fmt.Sprintf("HTTP %d, PAP code %d (%s)", e.HTTPStatus, e.Code, m)
	}
	msg := http.StatusText(e.HTTPStatus)
	switch e.HTTPStatus {
	case http.StatusProxyAuthRequired:
		msg = "proxy authentication required: put the credentials in the proxy URL, e.g. HTTP_PROXY=http://user:password@proxy:3128"
	case http.StatusUnauthorized:
		msg = "the push server requires push authentication: give --username and --password"
	case http.StatusForbidden:
		msg = "forbidden: unknown recipient or initiator not allowed"
	case http.StatusServiceUnavailable:
		msg = "push server busy"
	case http.StatusRequestHeaderFieldsTooLarge, http.StatusRequestURITooLong:
		msg = "request too large for RIM push: use PAP (--protocol pap)"
	}
	if e.Desc != "" && !strings.Contains(msg, e.Desc) {
		msg += ": " + e.Desc
	}
	return fmt.Sprintf("HTTP %d, %s", e.HTTPStatus, msg)
}

// Retryable reports whether the refusal is temporary: HTTP 503 or PAP 4001.
func (e *Error) Retryable() bool {
	return e.HTTPStatus == http.StatusServiceUnavailable || e.Code == 4001
}

// CodeMeaning is the meaning of a PAP or BIS result code.
func CodeMeaning(code int) string {
	if !rim.Known(code) {
		return "unknown code"
	}
	return rim.Desc(code)
}

// NewID returns a random push ID.
func NewID() string {
	var b [12]byte
	rand.Read(b[:])
	return "bbsim-" + hex.EncodeToString(b[:])
}

func (p *Push) defaults() error {
	if p.Protocol == "" {
		p.Protocol = RIM
	}
	switch p.Protocol {
	case RIM, PAP, BIS:
	default:
		return fmt.Errorf("unknown protocol %q (want rim, pap or bis)", p.Protocol)
	}
	if p.Gateway == "" {
		return errors.New("no push server URL")
	}
	u, err := url.Parse(p.Gateway)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("push server %q: want an http:// or https:// URL", p.Gateway)
	}
	if len(p.To) == 0 {
		return errors.New("no recipient (--to)")
	}
	if p.Port == 0 {
		p.Port = 7874
	}
	if p.Port < 1 || p.Port > 65535 {
		return fmt.Errorf("port %d out of range", p.Port)
	}
	if p.RequestURI == "" {
		p.RequestURI = "/"
	}
	if p.Type != "" {
		if _, ok := pushTypes[strings.ToLower(p.Type)]; !ok {
			return fmt.Errorf("unknown push type %q (want channel, message, content or delete)", p.Type)
		}
	}
	if p.ContentType == "" {
		if p.Type != "" {
			p.ContentType = "text/html"
		} else {
			p.ContentType = "text/plain"
		}
	}
	if p.ContentLocation == "" {
		p.ContentLocation = p.ChannelID
	}
	if p.ChannelID == "" {
		p.ChannelID = p.ContentLocation
	}
	if p.ID == "" {
		p.ID = NewID()
	}
	if p.Protocol == BIS && p.Username == "" {
		return errors.New("BIS push needs the application ID and password (--username, --password)")
	}
	return nil
}

// browserHeaders are the push headers of the content, as RIM's samples set them.
func (p *Push) browserHeaders(h http.Header) {
	h.Set("Content-Type", p.ContentType)
	if p.Type != "" {
		h.Set(rim.HeaderPushType, pushTypes[strings.ToLower(p.Type)])
	}
	set := func(k, v string) {
		if v != "" {
			h.Set(k, v)
		}
	}
	set(rim.HeaderTitle, p.Title)
	set(rim.HeaderChannelID, p.ChannelID)
	set("Content-Location", p.ContentLocation)
	set(rim.HeaderReadIconURL, p.ReadIcon)
	set(rim.HeaderUnreadIconURL, p.UnreadIcon)
	set(rim.HeaderPriority, p.Priority)
	set(rim.HeaderDeleteURL, p.DeleteURL)
	for k, vs := range p.Header {
		h[http.CanonicalHeaderKey(k)] = vs
	}
}

// Request builds the HTTP request for p.
func (p Push) Request(ctx context.Context) (*http.Request, error) {
	if err := p.defaults(); err != nil {
		return nil, err
	}
	base := strings.TrimRight(p.Gateway, "/")
	var req *http.Request
	var err error
	switch p.Protocol {
	case RIM:
		q := url.Values{}
		for _, to := range p.To {
			q.Add("DESTINATION", to)
		}
		q.Set("PORT", strconv.Itoa(p.Port))
		q.Set("REQUESTURI", p.RequestURI)
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, base+"/push?"+q.Encode(), bytes.NewReader(p.Body))
		if err != nil {
			return nil, err
		}
		p.browserHeaders(req.Header)
		req.Header.Set(rim.HeaderPushID, p.ID)
		if p.NotifyURL != "" {
			req.Header.Set(rim.HeaderNotifyURL, p.NotifyURL)
		}
		if p.Reliability != "" {
			req.Header.Set(rim.HeaderReliabilityMode, p.Reliability)
		}
	case PAP, BIS:
		body, ctype, err := p.papBody()
		if err != nil {
			return nil, err
		}
		path := "/pap"
		if p.Protocol == BIS {
			path = "/mss/PD_pushRequest"
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", ctype)
	}
	if p.Username != "" {
		req.SetBasicAuth(p.Username, p.Password)
	}
	req.Header.Set("User-Agent", "bbsim-push/1")
	return req, nil
}

// papAddress is the address-value for one recipient.
func (p *Push) papAddress(to string) string {
	if p.Protocol == BIS || strings.HasPrefix(to, "WAPPUSH=") {
		return to
	}
	return rim.FormatAddress(to, p.Port)
}

// papBody builds the multipart/related PAP push: the control entity, then the content.
func (p *Push) papBody() ([]byte, string, error) {
	var ctl strings.Builder
	ctl.WriteString("<?xml version=\"1.0\"?>\r\n")
	if p.Protocol == BIS {
		ctl.WriteString(pap.Doctype(pap.Version21) + "\r\n")
	} else {
		ctl.WriteString(pap.Doctype(pap.Version20) + "\r\n")
	}
	ctl.WriteString("<pap>\r\n<push-message push-id=\"" + pap.Escape(p.ID) + "\"")
	if p.Protocol == BIS {
		ctl.WriteString(" source-reference=\"" + pap.Escape(p.Username) + "\"")
	}
	deadline := pap.FormatTime(time.Now().Add(24 * time.Hour))
	ctl.WriteString(" deliver-before-timestamp=\"" + deadline + "\"")
	if p.NotifyURL != "" {
		ctl.WriteString(" ppg-notify-requested-to=\"" + pap.Escape(p.NotifyURL) + "\"")
	}
	ctl.WriteString(">\r\n")
	for _, to := range p.To {
		ctl.WriteString("<address address-value=\"" + pap.Escape(p.papAddress(to)) + "\"/>\r\n")
	}
	method := p.Reliability
	switch strings.ToLower(method) {
	case "", "transport":
		method = "unconfirmed"
	case "application":
		method = "confirmed"
	case "application-preferred":
		method = "preferconfirmed"
	}
	ctl.WriteString("<quality-of-service delivery-method=\"" + pap.Escape(method) + "\"/>\r\n")
	ctl.WriteString("</push-message>\r\n</pap>\r\n")

	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", "application/xml; charset=UTF-8")
	w, err := mw.CreatePart(h)
	if err != nil {
		return nil, "", err
	}
	io.WriteString(w, ctl.String())
	ch := http.Header{}
	p.browserHeaders(ch)
	if p.Protocol == BIS {
		ch.Set("Push-Message-ID", p.ID)
	}
	w, err = mw.CreatePart(textproto.MIMEHeader(ch))
	if err != nil {
		return nil, "", err
	}
	w.Write(p.Body)
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	ctype := fmt.Sprintf("multipart/related; type=\"application/xml\"; boundary=%s", mw.Boundary())
	return buf.Bytes(), ctype, nil
}

// Client sends pushes.
type Client struct {
	// HTTP is the client used. Default: proxies from the environment, 30 s timeout.
	HTTP *http.Client
	// Retries is how many times a 503 or 4001 is retried. Default 5; negative: never.
	Retries int
	// Backoff is the first retry delay, doubled each time up to 5 s. Default 100 ms. A
	// Retry-After from the server lengthens a delay up to it, and to 30 s at most.
	Backoff time.Duration
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

var defaultHTTP = &http.Client{
	Timeout: 30 * time.Second,
	Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
	},
}

// Send sends p, retrying while the server is busy, and returns the result.
func (c *Client) Send(ctx context.Context, p Push) Result {
	if err := p.defaults(); err != nil {
		return Result{To: p.To, Err: err}
	}
	retries := c.Retries
	if retries == 0 {
		retries = 5
	}
	delay := c.Backoff
	if delay == 0 {
		delay = 100 * time.Millisecond
	}
	var r Result
	for attempt := 1; ; attempt++ {
		r = c.sendOnce(ctx, p)
		r.Attempts = attempt
		var pe *Error
		if !errors.As(r.Err, &pe) || !pe.Retryable() || attempt > retries {
			return r
		}
		wait := delay
		if pe.RetryAfter > wait {
			wait = min(pe.RetryAfter, maxRetryAfter)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			r.Err = fmt.Errorf("%w (gave up: %v)", r.Err, ctx.Err())
			return r
		case <-t.C:
		}
		delay = min(delay*2, 5*time.Second)
	}
}

func (c *Client) sendOnce(ctx context.Context, p Push) Result {
	r := Result{ID: p.ID, To: p.To}
	req, err := p.Request(ctx)
	if err != nil {
		r.Err = err
		return r
	}
	resp, err := c.http().Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		r.Err = fmt.Errorf("push to %s: %w", req.URL.Host, err)
		if errors.Is(err, syscall.ECONNREFUSED) {
			r.Err = fmt.Errorf("push to %s: connection refused: is the push server running there? (--gateway): %w", req.URL.Host, err)
		}
		return r
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	r.HTTPStatus = resp.StatusCode
	code, desc := pap.AnswerCode(body)
	r.Code, r.Desc = code, desc
	if r.Desc == "" {
		r.Desc = firstLine(body)
	}
	accepted := resp.StatusCode/100 == 2 && (code == 0 || code/1000 == 1)
	if !accepted {
		r.Err = &Error{HTTPStatus: resp.StatusCode, Code: code, Desc: r.Desc, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	return r
}

// maxRetryAfter bounds how long one Retry-After holds a push back.
const maxRetryAfter = 30 * time.Second

// retryAfter reads a Retry-After header (RFC 9110, 10.2.3): delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(min(n, int(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	if strings.HasPrefix(s, "<") {
		return ""
	}
	return strings.TrimSpace(s)
}
