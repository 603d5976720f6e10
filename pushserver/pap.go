package pushserver

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bbsim/bbsim/rim"
)

// PAP codes used in answers.
const (
	papOK              = 1000
	papAccepted        = 1001
	papBadRequest      = 2000
	papForbidden       = 2001
	papAddressError    = 2002
	papNotFound        = 2004
	papDuplicate       = 2007
	papNotCancellable  = 2008
	papInternal        = 3000
	papBusy            = 4001
	papExpired         = 4500
	papFailed          = 4501
	papTimeLayout      = "2006-01-02T15:04:05Z"
	papDoctype20       = `<!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 2.0//EN" "http://www.wapforum.org/DTD/pap_2.0.dtd">`
	papDoctype21       = `<!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 2.1//EN" "http://www.openmobilealliance.org/tech/DTD/pap_2.1.dtd">`
	papSenderName      = "bbsim push server"
	maxPAPControlBytes = 1 << 20
)

// papDoc is a parsed PAP control entity: exactly one of the messages is set.
type papDoc struct {
	XMLName     xml.Name        `xml:"pap"`
	Push        *papPushMessage `xml:"push-message"`
	StatusQuery *papQuery       `xml:"statusquery-message"`
	Cancel      *papQuery       `xml:"cancel-message"`
	Version     string          `xml:"-"` // "2.0" or "2.1", from the DOCTYPE (default 2.0)
}

type papPushMessage struct {
	PushID          string       `xml:"push-id,attr"`
	DeliverBefore   string       `xml:"deliver-before-timestamp,attr"`
	DeliverAfter    string       `xml:"deliver-after-timestamp,attr"`
	SourceReference string       `xml:"source-reference,attr"`
	NotifyTo        string       `xml:"ppg-notify-requested-to,attr"`
	ReplacePushID   string       `xml:"replace-push-id,attr"`
	ReplaceMethod   string       `xml:"replace-method,attr"`
	ProgressNotes   string       `xml:"progress-notes-requested,attr"`
	Addresses       []papAddress `xml:"address"`
	QoS             *struct {
		Priority       string `xml:"priority,attr"`
		DeliveryMethod string `xml:"delivery-method,attr"`
	} `xml:"quality-of-service"`
}

type papQuery struct {
	PushID    string       `xml:"push-id,attr"`
	Addresses []papAddress `xml:"address"`
}

type papAddress struct {
	Value string `xml:"address-value,attr"`
}

// parsePAP parses a PAP control entity strictly: well-formed XML, one <pap> root with one
// message, a PAP DOCTYPE at most, no entity declarations; no DTD is ever fetched.
func parsePAP(b []byte) (*papDoc, error) {
	if len(b) > maxPAPControlBytes {
		return nil, errors.New("control entity too large")
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	d.CharsetReader = func(charset string, in io.Reader) (io.Reader, error) {
		switch strings.ToLower(charset) {
		case "utf-8", "us-ascii", "ascii":
			return in, nil
		}
		return nil, fmt.Errorf("unsupported encoding %q", charset)
	}
	doc := &papDoc{Version: "2.0"}
	seenRoot := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("malformed XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			if seenRoot {
				return nil, errors.New("directive after the root element")
			}
			s := string(t)
			if !strings.HasPrefix(s, "DOCTYPE") {
				return nil, fmt.Errorf("unexpected directive <!%.20s", s)
			}
			if strings.Contains(strings.ToUpper(s), "<!ENTITY") {
				return nil, errors.New("entity declarations are refused")
			}
			switch {
			case strings.Contains(s, "PAP 2.1"):
				doc.Version = "2.1"
			case strings.Contains(s, "PAP 2.0"):
				doc.Version = "2.0"
			default:
				return nil, errors.New("DOCTYPE is not PAP 2.0 or 2.1")
			}
		case xml.StartElement:
			if seenRoot {
				return nil, errors.New("more than one root element")
			}
			seenRoot = true
			if t.Name.Local != "pap" {
				return nil, fmt.Errorf("root element <%s>, want <pap>", t.Name.Local)
			}
			if err := d.DecodeElement(doc, &t); err != nil {
				return nil, fmt.Errorf("malformed XML: %w", err)
			}
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, errors.New("text outside the root element")
			}
		}
	}
	if !seenRoot {
		return nil, errors.New("no <pap> element")
	}
	n := 0
	for _, set := range []bool{doc.Push != nil, doc.StatusQuery != nil, doc.Cancel != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("want exactly one of push-message, statusquery-message, cancel-message")
	}
	return doc, nil
}

// papAddr is one parsed PAP address.
type papAddr struct {
	Dest string // PIN or e-mail
	Port int    // 0 when the address names none
	All  bool   // push_all
}

// parsePAPAddress parses WAPPUSH=<escaped id>%3A<port>/TYPE=USER@rim.net (or
// @blackberry.com), a bare PIN, or push_all.
func parsePAPAddress(v string) (papAddr, error) {
	v = strings.TrimSpace(v)
	if strings.EqualFold(v, "push_all") {
		return papAddr{All: true}, nil
	}
	if len(v) >= 8 && strings.EqualFold(v[:8], "WAPPUSH=") {
		rest := v[8:]
		i := strings.LastIndex(strings.ToUpper(rest), "/TYPE=")
		if i < 0 {
			return papAddr{}, fmt.Errorf("address %q: no /TYPE=", v)
		}
		typ := strings.ToUpper(rest[i+6:])
		if typ != "USER@RIM.NET" && typ != "USER@BLACKBERRY.COM" {
			return papAddr{}, fmt.Errorf("address %q: type %q, want USER@rim.net", v, rest[i+6:])
		}
		id, err := url.PathUnescape(rest[:i])
		if err != nil {
			return papAddr{}, fmt.Errorf("address %q: %w", v, err)
		}
		a := papAddr{Dest: id}
		if j := strings.LastIndexByte(id, ':'); j >= 0 {
			p, err := strconv.Atoi(id[j+1:])
			if err != nil || p <= 0 || p > 65535 {
				return papAddr{}, fmt.Errorf("address %q: bad port", v)
			}
			a.Dest, a.Port = id[:j], p
		}
		if a.Dest == "" {
			return papAddr{}, fmt.Errorf("address %q: empty", v)
		}
		return a, nil
	}
	if v == "" {
		return papAddr{}, errors.New("empty address")
	}
	return papAddr{Dest: v}, nil
}

func parsePAPTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(papTimeLayout, strings.TrimSpace(v))
	if err != nil {
		return time.Time{}, fmt.Errorf("bad %s %q: want YYYY-MM-DDThh:mm:ssZ", name, v)
	}
	return t, nil
}

func xmlEsc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return strings.ReplaceAll(b.String(), `"`, "&#34;")
}

func papDoctype(version string) string {
	if version == "2.1" {
		return papDoctype21
	}
	return papDoctype20
}

var papDescs = map[int]string{
	papOK: "The request succeeded", papAccepted: "The request has been accepted for processing",
	papBadRequest: "Bad request", papForbidden: "Forbidden", papAddressError: "Address error",
	papNotFound: "Push-id not found", papDuplicate: "Duplicate push-id", papNotCancellable: "Cancellation not possible",
	papInternal: "Internal server error", papBusy: "Server busy", papExpired: "Expired", papFailed: "Delivery failed",
	4502: "No application listening on the device",
}

func papDesc(code int) string {
	if d, ok := papDescs[code]; ok {
		return d
	}
	return "Result code " + strconv.Itoa(code)
}

// papStatus maps a PAP result code to the HTTP status of the answer.
func papStatus(code int) int {
	switch {
	case code == papAccepted:
		return http.StatusAccepted
	case code == papForbidden:
		return http.StatusForbidden
	case code == papBusy:
		return http.StatusServiceUnavailable
	case code/1000 == 2:
		return http.StatusBadRequest
	case code/1000 == 3:
		return http.StatusInternalServerError
	}
	return http.StatusOK
}

func (s *Server) writePAP(w http.ResponseWriter, status int, version, inner string) {
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<?xml version=\"1.0\"?>\n%s\n<pap>\n%s</pap>\n", papDoctype(version), inner)
}

func (s *Server) papBad(w http.ResponseWriter, version string, code int, desc string, fragment []byte) {
	s.m.rejected.Add(1)
	if len(fragment) > 200 {
		fragment = fragment[:200]
	}
	s.writePAP(w, papStatus(code), version, fmt.Sprintf("<badmessage-response code=\"%d\" desc=\"%s\" bad-message-fragment=\"%s\"/>\n",
		code, xmlEsc(desc), xmlEsc(strings.ToValidUTF8(string(fragment), "?"))))
}

func (s *Server) papPushResponse(w http.ResponseWriter, version, pushID string, code int, desc string) {
	if code != papAccepted {
		s.m.rejected.Add(1)
	}
	s.writePAP(w, papStatus(code), version, fmt.Sprintf("<push-response push-id=\"%s\" sender-address=\"%s\" sender-name=\"%s\" reply-time=\"%s\">\n<response-result code=\"%d\" desc=\"%s\"/>\n</push-response>\n",
		xmlEsc(pushID), "/pap", papSenderName, papTime(s.now()), code, xmlEsc(desc)))
}

// handlePAP answers POST /pap: push (and replace), status query and cancel.
func (s *Server) handlePAP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		s.rimError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	if !s.checkSize(w, r, "PAP") {
		return
	}
	ini, ok := s.authenticate(w, r)
	if !ok {
		s.m.rejected.Add(1)
		return
	}
	body, err := s.readAll(w, r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.writePAP(w, http.StatusRequestEntityTooLarge, "2.0", fmt.Sprintf("<badmessage-response code=\"%d\" desc=\"body over the %d-byte limit\" bad-message-fragment=\"\"/>\n", papBadRequest, s.opts.MaxBodyBytes))
			s.m.rejected.Add(1)
			return
		}
		s.papBad(w, "2.0", papBadRequest, "read body: "+err.Error(), nil)
		return
	}
	ctype := r.Header.Get("Content-Type")
	mt, _, err := rim.ParseMediaType(ctype)
	if err != nil {
		s.papBad(w, "2.0", papBadRequest, "bad Content-Type: "+err.Error(), body)
		return
	}
	control := body
	var content *part
	switch {
	case mt == "multipart/related" || strings.HasPrefix(mt, "multipart/"):
		parts, err := splitMultipart(ctype, body)
		if err != nil {
			s.papBad(w, "2.0", papBadRequest, err.Error(), body)
			return
		}
		control = parts[0].Body
		if len(parts) > 1 {
			content = &parts[1]
		}
	case mt == "application/xml" || mt == "text/xml":
	default:
		s.papBad(w, "2.0", papBadRequest, "Content-Type must be multipart/related or application/xml, not "+mt, body)
		return
	}
	doc, err := parsePAP(control)
	if err != nil {
		s.papBad(w, "2.0", papBadRequest, err.Error(), control)
		return
	}
	switch {
	case doc.Push != nil:
		s.papPush(w, r, ini, doc, content, control)
	case doc.StatusQuery != nil:
		s.papStatusQuery(w, doc)
	case doc.Cancel != nil:
		s.papCancel(w, doc)
	}
}

func (s *Server) papPush(w http.ResponseWriter, r *http.Request, ini *Initiator, doc *papDoc, content *part, control []byte) {
	pm := doc.Push
	v := doc.Version
	if strings.TrimSpace(pm.PushID) == "" {
		s.papBad(w, v, papBadRequest, "push-message without push-id", control)
		return
	}
	if content == nil {
		s.papBad(w, v, papBadRequest, "push without a content part (want multipart/related)", control)
		return
	}
	if len(pm.Addresses) == 0 {
		s.papPushResponse(w, v, pm.PushID, papAddressError, "push-message without address")
		return
	}
	before, err := parsePAPTime("deliver-before-timestamp", pm.DeliverBefore)
	if err != nil {
		s.papBad(w, v, papBadRequest, err.Error(), control)
		return
	}
	after, err := parsePAPTime("deliver-after-timestamp", pm.DeliverAfter)
	if err != nil {
		s.papBad(w, v, papBadRequest, err.Error(), control)
		return
	}
	rel := "transport"
	if pm.QoS != nil {
		switch lower(pm.QoS.DeliveryMethod) {
		case "", "unconfirmed", "preferconfirmed", "notspecified":
		case "confirmed", "application-level":
			rel = "application"
		default:
			s.papBad(w, v, papBadRequest, "unknown delivery-method "+pm.QoS.DeliveryMethod, control)
			return
		}
	}
	if pm.NotifyTo != "" {
		u, err := url.Parse(pm.NotifyTo)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			s.papBad(w, v, papBadRequest, "bad ppg-notify-requested-to", control)
			return
		}
	}
	if m := lower(pm.ReplaceMethod); m != "" && m != "all" && m != "pending-only" {
		s.papBad(w, v, papBadRequest, "unknown replace-method "+pm.ReplaceMethod, control)
		return
	}
	var pins []string
	var ports []int
	for _, a := range pm.Addresses {
		pa, err := parsePAPAddress(a.Value)
		if err != nil {
			s.papPushResponse(w, v, pm.PushID, papAddressError, err.Error())
			return
		}
		var ps []string
		if pa.All {
			if ini != nil && len(ini.Allowed) > 0 {
				s.papPushResponse(w, v, pm.PushID, papForbidden, "push_all is not allowed for this initiator")
				return
			}
			s.mu.Lock()
			for pin := range s.devices {
				ps = append(ps, pin)
			}
			s.mu.Unlock()
			sort.Strings(ps)
		} else {
			var status int
			ps, status, err = s.resolve(pa.Dest, ini)
			if err != nil {
				code := papAddressError
				if status == http.StatusForbidden && strings.Contains(err.Error(), "may not") {
					code = papForbidden
				}
				s.papPushResponse(w, v, pm.PushID, code, err.Error())
				return
			}
		}
		for _, p := range ps {
			pins = append(pins, p)
			ports = append(ports, pa.Port)
		}
	}
	if len(pins) == 0 {
		s.papPushResponse(w, v, pm.PushID, papAddressError, "no recipients")
		return
	}
	h := http.Header{}
	for k, vs := range content.Header {
		ck := http.CanonicalHeaderKey(k)
		if hopHeaders[ck] || controlHeaders[ck] {
			continue
		}
		h[ck] = vs
	}
	if t := h.Get("X-RIM-Push-Type"); t != "" {
		if canon, ok := pushTypes[lower(t)]; ok {
			h.Set("X-RIM-Push-Type", canon)
		}
	}
	src := pm.SourceReference
	if ini != nil {
		src = ini.Name
	}
	if pm.ReplacePushID != "" {
		if pm.ReplacePushID == pm.PushID {
			s.papBad(w, v, papBadRequest, "replace-push-id names the push itself", control)
			return
		}
		ok, err := s.st.pushExists(r.Context(), pm.ReplacePushID)
		if err != nil {
			s.log.Error("replace push", "err", err)
			s.papPushResponse(w, v, pm.PushID, papInternal, "internal error")
			return
		}
		if !ok {
			s.papPushResponse(w, v, pm.PushID, papNotFound, "replace-push-id "+pm.ReplacePushID+" not found")
			return
		}
	}
	_, err = s.enqueue(r.Context(), Submission{
		PushID: pm.PushID, Source: src, PINs: pins, Port: 7874, Headers: h, Body: content.Body,
		Reliability: rel, DeliverBefore: before, DeliverAfter: after, NotifyURL: pm.NotifyTo,
		notifyPAP: true, papVersion: v, ports: ports,
	})
	switch {
	case errors.Is(err, ErrBusy):
		w.Header().Set("Retry-After", "1")
		s.papPushResponse(w, v, pm.PushID, papBusy, "server busy: too many pending pushes, retry later")
	case errors.Is(err, ErrDuplicate):
		s.papPushResponse(w, v, pm.PushID, papDuplicate, "duplicate push-id "+pm.PushID)
	case errors.Is(err, ErrBadSubmission):
		s.papBad(w, v, papBadRequest, err.Error(), control)
	case err != nil:
		s.log.Error("store push", "err", err)
		s.papPushResponse(w, v, pm.PushID, papInternal, "internal error")
	default:
		if pm.ReplacePushID != "" {
			// The replacement is stored first, so a refused replacement leaves the original
			// untouched; then what is left of the original is cancelled.
			if _, err := s.cancel1(pm.ReplacePushID); err != nil && !errors.Is(err, ErrNotFound) {
				s.log.Warn("cancel replaced push", "push_id", pm.ReplacePushID, "err", err)
			}
		}
		s.papPushResponse(w, v, pm.PushID, papAccepted, papDesc(papAccepted))
	}
}

// papState maps a recipient state to PAP message-state and code.
func papState(state string, code int) (string, int) {
	switch state {
	case "queued", "pending":
		return "pending", papAccepted
	case "delivered":
		return "delivered", papOK
	case "expired":
		return "expired", papExpired
	case "timeout":
		return "timeout", papExpired
	case "cancelled":
		return "cancelled", papFailed
	case "failed":
		if code == 0 {
			code = papFailed
		}
		return "undeliverable", code
	}
	return "unknown", papFailed
}

func wantedAddress(filter []papAddress, pin string) bool {
	if len(filter) == 0 {
		return true
	}
	for _, a := range filter {
		if pa, err := parsePAPAddress(a.Value); err == nil && (strings.EqualFold(pa.Dest, pin) || pa.All) {
			return true
		}
	}
	return false
}

func (s *Server) papStatusQuery(w http.ResponseWriter, doc *papDoc) {
	q := doc.StatusQuery
	ps, err := s.PushState(q.PushID)
	var b strings.Builder
	fmt.Fprintf(&b, "<statusquery-response push-id=\"%s\" sender-address=\"/pap\" sender-name=\"%s\" reply-time=\"%s\">\n", xmlEsc(q.PushID), papSenderName, papTime(s.now()))
	switch {
	case errors.Is(err, ErrNotFound):
		fmt.Fprintf(&b, "<statusquery-result code=\"%d\" desc=\"%s\" message-state=\"unknown\"/>\n", papNotFound, papDesc(papNotFound))
	case err != nil:
		s.log.Error("status query", "err", err)
		fmt.Fprintf(&b, "<statusquery-result code=\"%d\" desc=\"%s\" message-state=\"unknown\"/>\n", papInternal, papDesc(papInternal))
	default:
		for _, rs := range ps.Recipients {
			if !wantedAddress(q.Addresses, rs.PIN) {
				continue
			}
			st, code := papState(rs.State, rs.Code)
			fmt.Fprintf(&b, "<statusquery-result code=\"%d\" desc=\"%s\" message-state=\"%s\" event-time=\"%s\">\n<address address-value=\"%s\"/>\n</statusquery-result>\n",
				code, xmlEsc(papDesc(code)), st, papTime(rs.UpdatedAt), rs.PIN)
		}
	}
	b.WriteString("</statusquery-response>\n")
	s.writePAP(w, http.StatusOK, doc.Version, b.String())
}

func (s *Server) papCancel(w http.ResponseWriter, doc *papDoc) {
	q := doc.Cancel
	n, err := s.cancel1(q.PushID)
	var b strings.Builder
	fmt.Fprintf(&b, "<cancel-response push-id=\"%s\">\n", xmlEsc(q.PushID))
	code := papOK
	switch {
	case errors.Is(err, ErrNotFound):
		code = papNotFound
	case err != nil:
		s.log.Error("cancel", "err", err)
		code = papInternal
	case n == 0:
		code = papNotCancellable
	}
	fmt.Fprintf(&b, "<cancel-result code=\"%d\" desc=\"%s\">\n", code, xmlEsc(papDesc(code)))
	if code == papOK {
		if ps, err := s.PushState(q.PushID); err == nil {
			for _, rs := range ps.Recipients {
				if rs.State == "cancelled" {
					fmt.Fprintf(&b, "<address address-value=\"%s\"/>\n", rs.PIN)
				}
			}
		}
	}
	b.WriteString("</cancel-result>\n</cancel-response>\n")
	s.writePAP(w, http.StatusOK, doc.Version, b.String())
}

// papResultNotification renders the resultnotification-message for one recipient.
func papResultNotification(p *push, pin, state string, code int, at time.Time) []byte {
	st, c := papState(state, code)
	var b bytes.Buffer
	fmt.Fprintf(&b, "<?xml version=\"1.0\"?>\n%s\n<pap>\n<resultnotification-message push-id=\"%s\" sender-address=\"/pap\" sender-name=\"%s\" received-time=\"%s\" event-time=\"%s\" message-state=\"%s\" code=\"%d\" desc=\"%s\">\n<address address-value=\"%s\"/>\n</resultnotification-message>\n</pap>\n",
		papDoctype(p.papVersion), xmlEsc(p.id), papSenderName, papTime(p.acceptedAt), papTime(at), st, c, xmlEsc(papDesc(c)), pin)
	return b.Bytes()
}
