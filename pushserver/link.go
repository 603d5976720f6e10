package pushserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http/httpguts"

	"github.com/bbsim/bbsim/rim"
)

// linkWindow is how many packets may be unacknowledged on a device link at once.
const linkWindow = 5

const (
	linkDialTimeout   = 5 * time.Second
	linkAnswerTimeout = 30 * time.Second
)

// link is a device's data channel to its receiver: the receiver's URL, and an HTTP/1.1
// connection to its address for one push at a time, taken from the server's pool
// (linkpool.go) and given back after the push, on which the push's packets are pipelined
// with at most linkWindow unacknowledged. It is used only by the goroutine that holds the
// device's sending lock.
//
// Answers are read by fasthttp's response parser (answer). Owning the connection (instead of going
// through an http.Transport) saves the transport's two goroutines and their hand-offs on
// every packet, which is most of a delivery's cost when a thousand devices are attached.
type link struct {
	target     string // the receiver URL
	path       string // its request URI
	hostHeader string // its host, as the Host header names it
	host       string // host:port to dial, the pool's key
	pool       *linkPool
	c          *linkConn       // the connection of the exchange in progress; nil between them
	ctx        context.Context // the server's lifetime
}

// linkFor returns d's link to the receiver at target, a new one when the target changed,
// or nil when the push goes through the server's HTTP client instead: a client given in
// Options, or a receiver URL that is not plain http. Called with d.sending held.
func (s *Server) linkFor(d *device, target string) *link {
	if d.link != nil && d.link.target == target {
		return d.link
	}
	s.dropLink(d)
	if s.opts.Client != nil {
		return nil
	}
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil {
		return nil
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	d.link = &link{target: target, path: u.RequestURI(), hostHeader: u.Host, host: host, pool: &s.links, ctx: s.ctx}
	s.links.use(host)
	return d.link
}

// dropLink ends d's link, if any. Called with d.sending held.
func (s *Server) dropLink(d *device) {
	if d.link != nil {
		s.links.unuse(d.link.host)
		d.link = nil
	}
}

// writePacket writes packet i of n of r's push as an HTTP/1.1 request into the link's
// buffer, with the headers linkHeaders gives, written straight from the push. Header names
// that are not HTTP tokens are left out and line breaks in values become spaces, as
// net/http's Request.Write does.
func (l *link) writePacket(r *recip, i, n int, chunk []byte) {
	bw := l.c.bw
	p := r.p
	bw.WriteString("POST ")
	bw.WriteString(l.path)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(l.hostHeader)
	bw.WriteString("\r\nUser-Agent: bbsim-push-gateway\r\n")
	for k, vs := range p.headers {
		if linkOwn[k] && (k != rim.HeaderRequestURI || p.requestURI != "") || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vs {
			l.field(k, v)
		}
	}
	var num [20]byte
	l.field(rim.HeaderPushID, p.id)
	bw.WriteString("X-Rim-Push-Dest-Port: ")
	bw.Write(strconv.AppendInt(num[:0], int64(r.port), 10))
	bw.WriteString("\r\n")
	if p.requestURI != "" {
		l.field(rim.HeaderRequestURI, p.requestURI)
	}
	l.field(rim.HeaderReliabilityMode, r.mode)
	l.field(rim.HeaderPushSource, p.source)
	bw.WriteString("X-Bbsim-Push-Length: ")
	bw.Write(strconv.AppendInt(num[:0], int64(len(p.body)), 10))
	bw.WriteString("\r\nX-Bbsim-Packet: ")
	bw.Write(strconv.AppendInt(num[:0], int64(i), 10))
	bw.WriteByte('/')
	bw.Write(strconv.AppendInt(num[:0], int64(n), 10))
	bw.WriteString("\r\nContent-Length: ")
	bw.Write(strconv.AppendInt(num[:0], int64(len(chunk)), 10))
	bw.WriteString("\r\n\r\n")
	bw.Write(chunk)
}

// linkOwn are the headers the link sets itself (see linkHeaders); a push's own copies are
// left out, except X-Rim-Push-Request-Uri when the push names no request URI.
var linkOwn = map[string]bool{
	rim.HeaderPushID: true, rim.HeaderDestPort: true, rim.HeaderRequestURI: true,
	rim.HeaderReliabilityMode: true, rim.HeaderPushLength: true, rim.HeaderPacket: true, rim.HeaderPushSource: true,
}

// field writes one header line, its value trimmed and on one line.
func (l *link) field(k, v string) {
	bw := l.c.bw
	bw.WriteString(k)
	bw.WriteString(": ")
	if strings.ContainsAny(v, "\r\n") {
		v = newlineToSpace.Replace(v)
	}
	bw.WriteString(strings.TrimSpace(v))
	bw.WriteString("\r\n")
}

var newlineToSpace = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ")

// drop closes the exchange's connection, which must not carry another.
func (l *link) drop() {
	if l.c != nil {
		l.c.close()
		l.c = nil
	}
}

// dial opens a new connection for the exchange.
func (l *link) dial() error {
	c, err := dialLink(l.ctx, l.host)
	if err != nil {
		return err
	}
	l.c = c
	return nil
}

// errStale is a failure on a reused connection before the receiver answered anything:
// the receiver closed the idle connection, and the packets are sent again on a new one.
var errStale = errors.New("link: idle connection closed by the receiver")

// exchange sends the packets on a connection to the receiver (an idle one from the pool,
// or a new one), pipelined with at most linkWindow unanswered, and returns the result of
// the first packet that failed or else of the last one. The connection goes back to the
// pool when it may carry the next exchange.
func (l *link) exchange(r *recip, chunks [][]byte) sendResult {
	l.c = l.pool.get(l.host)
	for attempt := 0; ; attempt++ {
		res, err := l.try(r, chunks)
		if errors.Is(err, errStale) && attempt == 0 {
			continue // on a new connection: the next idle one may be as stale
		}
		if l.c != nil {
			l.pool.put(l.c)
			l.c = nil
		}
		return res
	}
}

func (l *link) try(r *recip, chunks [][]byte) (sendResult, error) {
	if l.c == nil {
		if err := l.dial(); err != nil {
			return sendResult{retry: true, err: fmt.Errorf("dial receiver %s: %w", l.host, err)}, err
		}
	}
	c := l.c
	stale := c.reused
	c.reused = true
	written, answered := 0, 0
	fail := func(err error) (sendResult, error) {
		l.drop()
		if stale && answered == 0 && l.ctx.Err() == nil {
			return sendResult{retry: true, err: err}, errStale
		}
		return sendResult{retry: true, err: fmt.Errorf("receiver %s: %w", l.host, err)}, err
	}
	n := len(chunks)
	for answered < n {
		for written < n && written-answered < linkWindow {
			l.writePacket(r, written, n, chunks[written])
			written++
		}
		// A receiver that stops reading or answering must not hold the device's queue.
		c.conn.SetDeadline(time.Now().Add(linkAnswerTimeout))
		if err := l.ctx.Err(); err != nil { // shutdown's deadline may have just been overridden
			return fail(err)
		}
		if err := c.bw.Flush(); err != nil {
			return fail(err)
		}
		res, keep, err := c.answer()
		if err != nil {
			return fail(err)
		}
		answered++
		if !keep {
			l.drop()
		}
		if !res.ok || answered == n {
			if !res.ok && written > answered {
				// Answers to packets already sent would be out of step with the next push.
				l.drop()
			}
			return res, nil
		}
		if !keep {
			// A receiver that closes after each answer (Connection: close) gets the rest
			// of the push on a new connection, from the first packet it did not answer.
			if err := l.dial(); err != nil {
				return sendResult{retry: true, err: fmt.Errorf("dial receiver %s after packet %d of %d: %w", l.host, answered, n, err)}, err
			}
			c = l.c
			c.reused = true
			written = answered
		}
	}
	return sendResult{ok: true}, nil
}

// maxAnswer is the most of an answer's body the link reads; a longer one is cut off there,
// and its connection closed.
const maxAnswer = 64 << 10

// answer reads the receiver's answer to the next packet and classifies it. keep reports
// whether the connection may carry the next packet; err is set only when no answer's
// status and header could be read. The answer is read with fasthttp's parser, which
// reads it in place where net/http's ReadResponse allocates a Response, a header map and
// its strings: a tenth of the gateway's CPU per push. Its status line and header must fit
// in the link's 4 KiB read buffer.
func (c *linkConn) answer() (res sendResult, keep bool, err error) {
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	// The status and header first (with any 100 Continue before them), then the body.
	resp.SkipBody = true
	if err := resp.ReadLimitBody(c.br, 0); err != nil {
		return sendResult{}, false, err
	}
	resp.SkipBody = false
	status := resp.StatusCode()
	var berr error
	if bodyless := status < 200 || status == http.StatusNoContent || status == http.StatusNotModified; !bodyless {
		if berr = resp.ReadBody(c.br, maxAnswer); berr == nil && resp.Header.ContentLength() == -1 {
			berr = resp.Header.ReadTrailer(c.br) // what follows the last chunk
		}
	}
	if status/100 == 2 {
		res = sendResult{ok: true}
	} else {
		res = classify(status, fmt.Sprintf("%d %s", status, resp.Header.StatusMessage()), string(resp.Header.Peek(rim.HeaderStatus)), resp.Body())
	}
	return res, berr == nil && !resp.ConnectionClose(), nil
}

// classify turns a receiver's answer to a packet (its status, status line, and
// X-RIM-Push-Status header) into a delivery result; a refusal keeps the first line of the
// answer's body, the device's reason.
func classify(status int, statusLine, pushStatus string, body []byte) sendResult {
	if status/100 == 2 {
		return sendResult{ok: true}
	}
	code, _ := strconv.Atoi(pushStatus)
	if code == 0 || code == 234 || code == 237 {
		// Unreachable, busy or "refused, retry allowed": keep trying until the deadline.
		return sendResult{retry: true, code: code, err: fmt.Errorf("receiver answered %s", statusLine)}
	}
	return sendResult{code: code, reason: deviceReason(body), err: fmt.Errorf("receiver answered %s", statusLine)}
}

// deviceReason is the first line of a receiver's refusal, at most 200 bytes of valid UTF-8.
func deviceReason(body []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	line = strings.TrimSpace(line)
	if len(line) > 200 {
		line = line[:200]
	}
	return strings.ToValidUTF8(line, "")
}
