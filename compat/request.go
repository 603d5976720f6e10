package compat

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/bbsim/bbsim/rim"
	"github.com/bbsim/bbsim/rim/pap"
)

// Request is one push as its initiator sends it: a RIM push (POST /push?DESTINATION=…) or
// a PAP push (POST /pap). The report sends it once to each handset, with the recipient,
// the push id and the notify URL made the handset's.
type Request struct {
	// Path is /push (RIM push) or /pap.
	Path string
	// Query is the RIM push's query (PORT, REQUESTURI; DESTINATION is replaced).
	Query url.Values
	// Header holds the push headers (for PAP, the request's Content-Type).
	Header http.Header
	// Body is the content (for PAP, the whole multipart/related body).
	Body []byte
}

// ParseRequest reads a push request as an HTTP/1.1 request, the way the initiator sends it:
// a request line (POST /push?… or POST /pap; an absolute URL is taken too), headers, an
// empty line, the body. Lines may end in CRLF or LF. Without Content-Length the body is the
// rest of the file.
func ParseRequest(b []byte) (*Request, error) {
	head, body, ok := cutBlankLine(b)
	if !ok {
		return nil, errors.New("push request: no empty line after the headers (want an HTTP request: POST /push?DESTINATION=…&PORT=7874 HTTP/1.1, headers, an empty line, the body)")
	}
	req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(bytes.NewReader(head), strings.NewReader("\r\n\r\n"))))
	if err != nil {
		return nil, fmt.Errorf("push request: %w", err)
	}
	if req.Method != http.MethodPost {
		return nil, fmt.Errorf("push request: method %s: a push is a POST", req.Method)
	}
	if n := req.ContentLength; n >= 0 && req.Header.Get("Content-Length") != "" {
		if n > int64(len(body)) {
			return nil, fmt.Errorf("push request: Content-Length %d but only %d bytes follow the headers", n, len(body))
		}
		body = body[:n]
	}
	return newRequest(req.URL, req.Header, body)
}

// FromHTTP takes a push from a built *http.Request (pushinit.Push.Request, say).
func FromHTTP(req *http.Request) (*Request, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
	}
	return newRequest(req.URL, req.Header, body)
}

func newRequest(u *url.URL, h http.Header, body []byte) (*Request, error) {
	r := &Request{Path: u.Path, Query: u.Query(), Header: h.Clone(), Body: body}
	for _, k := range []string{"Host", "Content-Length", "Connection", "Transfer-Encoding", "Expect"} {
		r.Header.Del(k)
	}
	switch r.Path {
	case "/push":
		if r.Query.Get("PORT") == "" {
			r.Query.Set("PORT", strconv.Itoa(rim.BrowserPort))
		}
	case "/pap":
		if !pushMessage.Match(body) {
			return nil, errors.New("push request: a PAP push needs a <push-message> in its control entity")
		}
	default:
		return nil, fmt.Errorf("push request: path %q: want /push (RIM push) or /pap", r.Path)
	}
	return r, nil
}

// cutBlankLine splits an HTTP message at the first empty line (CRLF or LF).
func cutBlankLine(b []byte) (head, body []byte, ok bool) {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			return bytes.TrimSuffix(b[:i], []byte("\r")), b[i+2:], true
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			return bytes.TrimSuffix(b[:i], []byte("\r")), b[i+3:], true
		}
	}
	return nil, nil, false
}

var (
	pushMessage = regexp.MustCompile(`<push-message\b[^>]*>`)
	attrPushID  = regexp.MustCompile(`\spush-id\s*=\s*("[^"]*"|'[^']*')`)
	attrNotify  = regexp.MustCompile(`\sppg-notify-requested-to\s*=\s*("[^"]*"|'[^']*')`)
	address     = regexp.MustCompile(`(<address\s+address-value\s*=\s*)("[^"]*"|'[^']*')`)
	papPort     = regexp.MustCompile(`%3[Aa](\d+)/`)
)

// Port is the device port the push goes to.
func (r *Request) Port() int {
	if r.Path == "/pap" {
		if m := address.FindSubmatch(r.Body); m != nil {
			if p := papPort.FindSubmatch(m[2]); p != nil {
				n, _ := strconv.Atoi(string(p[1]))
				return n
			}
		}
		return rim.BrowserPort
	}
	n, _ := strconv.Atoi(r.Query.Get("PORT"))
	return n
}

// forDevice builds the request to gateway for one handset: its PIN as the only recipient,
// id as the push id, notify as the notify URL (replacing the initiator's, so that the
// report sees the result).
func (r *Request) forDevice(ctx context.Context, gateway, pin, id, notify string) (*http.Request, error) {
	h := r.Header.Clone()
	body := r.Body
	u := strings.TrimRight(gateway, "/") + r.Path
	if r.Path == "/push" {
		q := url.Values{}
		for k, v := range r.Query {
			q[k] = v
		}
		q.Set("DESTINATION", pin)
		u += "?" + q.Encode()
		h.Set(rim.HeaderPushID, id)
		h.Set(rim.HeaderNotifyURL, notify)
	} else {
		port := r.Port()
		body = pushMessage.ReplaceAllFunc(body, func(tag []byte) []byte {
			tag = attrPushID.ReplaceAll(tag, nil)
			tag = attrNotify.ReplaceAll(tag, nil)
			rest := bytes.TrimPrefix(tag, []byte("<push-message"))
			return fmt.Appendf(nil, `<push-message push-id="%s" ppg-notify-requested-to="%s"%s`, pap.Escape(id), pap.Escape(notify), rest)
		})
		body = address.ReplaceAll(body, fmt.Appendf(nil, `${1}"%s"`, rim.FormatAddress(pin, port)))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = h
	return req, nil
}
