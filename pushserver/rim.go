package pushserver

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bbsim/bbsim/rim"
)

// rimRequest is a parsed RIM push request (query and headers; the body is separate).
type rimRequest struct {
	Destinations  []string
	Port          int
	RequestURI    string
	PushID        string
	NotifyURL     string
	Reliability   string
	DeliverAfter  time.Time
	DeliverBefore time.Time
	Headers       http.Header // content and browser headers forwarded to the device
}

// controlHeaders are RIM push delivery options: read by the server, not forwarded.
var controlHeaders = map[string]bool{
	rim.HeaderPushID: true, rim.HeaderNotifyURL: true, rim.HeaderReliabilityMode: true,
	rim.HeaderReliability: true, rim.HeaderDeliverAfter: true, rim.HeaderDeliverBefore: true,
	rim.HeaderDestPort: true, rim.HeaderRequestURI: true, "User-Agent": true,
	rim.HeaderPacket: true, rim.HeaderPushLength: true, "X-Bbsim-Link-Token": true,
}

// parseRIM parses the query and headers of a RIM push. Header names are matched
// case-insensitively (net/http canonicalizes them).
func parseRIM(query url.Values, h http.Header) (*rimRequest, error) {
	rr := &rimRequest{Headers: make(http.Header, len(h))}
	for k, v := range query {
		if strings.EqualFold(k, "DESTINATION") {
			for _, d := range v {
				d = strings.TrimSpace(d)
				if d == "" {
					return nil, errors.New("empty DESTINATION")
				}
				rr.Destinations = append(rr.Destinations, d)
			}
		}
	}
	if len(rr.Destinations) == 0 {
		return nil, errors.New("missing DESTINATION")
	}
	rr.Port = 7874
	for k, v := range query {
		switch {
		case strings.EqualFold(k, "PORT"):
			p, err := strconv.Atoi(strings.TrimSpace(v[0]))
			if err != nil || p <= 0 || p > 65535 {
				return nil, fmt.Errorf("bad PORT %q", v[0])
			}
			rr.Port = p
		case strings.EqualFold(k, "REQUESTURI"):
			rr.RequestURI = v[0]
		}
	}
	rr.PushID = strings.TrimSpace(h.Get(rim.HeaderPushID))
	if len(rr.PushID) > 256 {
		return nil, errors.New("X-RIM-Push-ID longer than 256 bytes")
	}
	if n := strings.TrimSpace(h.Get(rim.HeaderNotifyURL)); n != "" {
		if !isHTTPURL(n) {
			return nil, fmt.Errorf("bad X-RIM-Push-NotifyURL %q", n)
		}
		rr.NotifyURL = n
	}
	var err error
	if rr.Reliability, err = rim.ParseReliability(rim.ReliabilityHeader(h.Get)); err != nil {
		return nil, err
	}
	for _, d := range []struct {
		name string
		t    *time.Time
	}{{rim.HeaderDeliverAfter, &rr.DeliverAfter}, {rim.HeaderDeliverBefore, &rr.DeliverBefore}} {
		if v := strings.TrimSpace(h.Get(d.name)); v != "" {
			t, err := http.ParseTime(v)
			if err != nil {
				return nil, fmt.Errorf("bad %s %q: want an HTTP date", d.name, v)
			}
			*d.t = t.UTC()
		}
	}
	pushType := ""
	if t := h.Get(rim.HeaderPushType); t != "" {
		canon, ok := rim.PushType(t)
		if !ok {
			return nil, fmt.Errorf("unknown X-RIM-Push-Type %q", t)
		}
		pushType = canon
	}
	if p := h.Get(rim.HeaderPriority); p != "" && !rim.Priority(p) {
		return nil, fmt.Errorf("bad X-RIM-Push-Priority %q", p)
	}
	for k, v := range h {
		if hopHeaders[k] || controlHeaders[k] {
			continue
		}
		rr.Headers[k] = v
	}
	if pushType != "" && (len(h[rim.HeaderPushType]) != 1 || h[rim.HeaderPushType][0] != pushType) {
		rr.Headers[rim.HeaderPushType] = []string{pushType} // in its canonical spelling, once
	}
	return rr, nil
}

// part is one part of a multipart push body.
type part = rim.Part

// splitMultipart splits a multipart body into its parts; a non-multipart body is one part.
func splitMultipart(contentType string, body []byte) ([]part, error) {
	if contentType == "" {
		return []part{{Header: textproto.MIMEHeader{}, Body: body}}, nil
	}
	mt, _, err := rim.ParseMediaType(contentType)
	if err != nil {
		return nil, fmt.Errorf("bad Content-Type %q: %w", contentType, err)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		return []part{{Header: textproto.MIMEHeader{"Content-Type": {contentType}}, Body: body}}, nil
	}
	return rim.SplitMultipart(contentType, body, 64)
}

// handleRIM answers POST /push.
func (s *Server) handleRIM(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		s.rimError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	if !s.checkSize(w, r, "RIM push") {
		return
	}
	ini, ok := s.authenticate(w, r)
	if !ok {
		s.m.rejected.Add(1)
		return
	}
	rr, err := parseRIM(r.URL.Query(), r.Header)
	if err != nil {
		s.rimError(w, http.StatusBadRequest, err.Error())
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	// A multipart body is checked here (the receiver splits it again); others pass as is.
	var parts []part
	if ct := r.Header.Get("Content-Type"); rim.IsMultipart(ct) {
		if parts, err = splitMultipart(ct, body); err != nil {
			s.rimError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	markTranscoded(rr.Headers, rr.Port, body, parts)
	var pins []string
	for _, d := range rr.Destinations {
		ps, status, err := s.resolve(d, ini)
		if err != nil {
			s.rimError(w, status, err.Error())
			return
		}
		pins = append(pins, ps...)
	}
	src := ""
	if ini != nil {
		src = ini.Name
	}
	p, err := s.enqueue(r.Context(), Submission{
		PushID: rr.PushID, Source: src, PINs: pins, Port: rr.Port, Headers: rr.Headers, Body: body,
		Reliability: rr.Reliability, DeliverBefore: rr.DeliverBefore, DeliverAfter: rr.DeliverAfter,
		NotifyURL: rr.NotifyURL, requestURI: rr.RequestURI,
	})
	switch {
	case errors.Is(err, ErrBusy):
		w.Header().Set("Retry-After", "1")
		s.rimError(w, http.StatusServiceUnavailable, "server busy: too many pending pushes, retry later")
		return
	case errors.Is(err, ErrDuplicate):
		s.rimError(w, http.StatusBadRequest, fmt.Sprintf("duplicate push id %q", rr.PushID))
		return
	case errors.Is(err, ErrBadSubmission):
		s.rimError(w, http.StatusBadRequest, err.Error())
		return
	case errors.Is(err, ErrDeliveryMethod):
		// MDS: 400, "The specified delivery method is not possible".
		s.rimError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), "pushserver: "))
		return
	case err != nil:
		s.log.Error("store push", "err", err)
		s.rimError(w, http.StatusInternalServerError, "internal error")
		return
	}
	h := w.Header()
	h[rim.HeaderPushID] = []string{p.id}
	h["Content-Type"] = plainText
	w.WriteHeader(http.StatusOK)
	msg := make([]byte, 0, 48+len(p.id))
	msg = append(msg, "push "...)
	msg = append(msg, p.id...)
	msg = append(msg, " accepted for "...)
	msg = strconv.AppendInt(msg, int64(p.recipients), 10)
	w.Write(append(msg, " recipient(s)\n"...))
}

var plainText = []string{"text/plain; charset=utf-8"}

func (s *Server) rimError(w http.ResponseWriter, status int, msg string) {
	s.m.rejected.Add(1)
	http.Error(w, msg, status)
}

// resolve turns a destination (PIN, e-mail or $group) into PINs, checking the initiator's
// authorization. The status is 403 for unknown or forbidden recipients.
func (s *Server) resolve(dest string, ini *Initiator) ([]string, int, error) {
	if strings.HasPrefix(dest, "$") {
		name := dest[1:]
		pins, ok := s.opts.Groups[name]
		if !ok {
			return nil, http.StatusForbidden, fmt.Errorf("unknown group %q", dest)
		}
		// With push authentication on, a group is reachable only when the initiator's
		// allowed list names it.
		if ini != nil && (len(ini.Allowed) == 0 || !allows(ini.Allowed, dest)) {
			return nil, http.StatusForbidden, fmt.Errorf("initiator %s may not push to group %s", ini.Name, dest)
		}
		out := make([]string, 0, len(pins))
		for _, p := range pins {
			pin, _ := rim.NormalizePIN(p)
			out = append(out, pin)
		}
		return out, 0, nil
	}
	pin, ok := rim.NormalizePIN(dest)
	s.mu.Lock()
	if ok {
		if _, known := s.devices[pin]; !known {
			ok = false
		}
	} else {
		pin, ok = s.emails[lower(dest)]
	}
	s.mu.Unlock()
	if !ok {
		return nil, http.StatusForbidden, fmt.Errorf("unknown recipient %q", dest)
	}
	if ini != nil && len(ini.Allowed) > 0 && !allows(ini.Allowed, pin) && !s.inAllowedGroup(ini.Allowed, pin) {
		return nil, http.StatusForbidden, fmt.Errorf("initiator %s may not push to %s", ini.Name, dest)
	}
	return []string{pin}, 0, nil
}

func allows(list []string, item string) bool {
	if len(list) == 0 {
		return true
	}
	for _, a := range list {
		if strings.EqualFold(a, item) {
			return true
		}
	}
	return false
}

func (s *Server) inAllowedGroup(list []string, pin string) bool {
	for _, a := range list {
		if !strings.HasPrefix(a, "$") {
			continue
		}
		for _, p := range s.opts.Groups[a[1:]] {
			if strings.EqualFold(p, pin) {
				return true
			}
		}
	}
	return false
}

// isHTTPURL reports whether s is an absolute http or https URL, as notify URLs must be.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
