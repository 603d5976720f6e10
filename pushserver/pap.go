package pushserver

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/bbsim/bbsim/rim"
	"github.com/bbsim/bbsim/rim/pap"
)

// PAP codes used in answers.
const (
	papOK             = rim.CodeOK
	papAccepted       = rim.CodeAccepted
	papBadRequest     = rim.CodeBadRequest
	papForbidden      = rim.CodeForbidden
	papAddressError   = rim.CodeAddressError
	papNotFound       = rim.CodeNotFound
	papDuplicate      = rim.CodeDuplicate
	papNotCancellable = rim.CodeNotCancellable
	papInternal       = rim.CodeInternal
	papBusy           = rim.CodeBusy
)

// papSender names this server in PAP answers and notifications.
var papSender = pap.Sender{Address: "/pap", Name: "bbsim push server"}

// papStatus is the HTTP status of a PAP answer. MDS answered 202 to every PAP request it
// handled (push, replace, status query, cancel), with the outcome in the XML codes, and
// RIM's PAP sample throws on any other status; only a busy server (503, to be retried),
// an initiator refused access (403, as RIM push answers it), an internal error (500) and
// a badmessage-response (400, see papBad) differ.
func papStatus(code int) int {
	switch {
	case code == papForbidden:
		return http.StatusForbidden
	case code == papBusy:
		return http.StatusServiceUnavailable
	case code == rim.CodeDeliveryMethod:
		// A push MDS handled and refused for the device: the outcome is in the code.
		return http.StatusAccepted
	case code/1000 == 3:
		return http.StatusInternalServerError
	}
	return http.StatusAccepted
}

func (s *Server) writePAP(w http.ResponseWriter, status int, doc []byte) {
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.WriteHeader(status)
	w.Write(doc)
}

// papBad answers a request that is not a PAP message bbsim can read: 400 with a
// badmessage-response.
func (s *Server) papBad(w http.ResponseWriter, version string, code int, desc string, fragment []byte) {
	s.m.rejected.Add(1)
	status := http.StatusBadRequest
	if code == papForbidden {
		status = http.StatusForbidden
	}
	s.writePAP(w, status, pap.BadMessage(version, code, desc, fragment))
}

func (s *Server) papPushResponse(w http.ResponseWriter, version, pushID string, code int, desc string) {
	if code != papAccepted {
		s.m.rejected.Add(1)
	}
	s.writePAP(w, papStatus(code), pap.PushResponse(version, papSender, pushID, s.now(), code, desc))
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
			s.writePAP(w, http.StatusRequestEntityTooLarge, pap.BadMessage(pap.Version20, papBadRequest, fmt.Sprintf("body over the %d-byte limit", s.opts.MaxBodyBytes), nil))
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
	doc, err := pap.Parse(control)
	if err != nil {
		s.papBad(w, "2.0", papBadRequest, err.Error(), control)
		return
	}
	switch {
	case doc.Push != nil:
		s.papPush(w, r, ini, doc, content, control)
	case doc.StatusQuery != nil:
		s.papStatusQuery(w, ini, doc)
	case doc.Cancel != nil:
		s.papCancel(w, ini, doc)
	}
}

func (s *Server) papPush(w http.ResponseWriter, r *http.Request, ini *Initiator, doc *pap.Message, content *part, control []byte) {
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
	before, err := pap.ParseTime("deliver-before-timestamp", pm.DeliverBefore)
	if err != nil {
		s.papBad(w, v, papBadRequest, err.Error(), control)
		return
	}
	after, err := pap.ParseTime("deliver-after-timestamp", pm.DeliverAfter)
	if err != nil {
		s.papBad(w, v, papBadRequest, err.Error(), control)
		return
	}
	rel := rim.ReliabilityTransport
	if pm.QoS != nil {
		rel, err = pap.DeliveryMethod(pm.QoS.DeliveryMethod)
		if err != nil {
			s.papBad(w, v, papBadRequest, err.Error(), control)
			return
		}
	}
	// RIM's PAP sample asks for its notification and reliability with the content part's
	// X-RIM-Push-* headers, as MDS honoured them; the control entity wins when both say.
	notifyTo := strings.TrimSpace(pm.NotifyTo)
	if notifyTo != "" && !isHTTPURL(notifyTo) {
		s.papBad(w, v, papBadRequest, "bad ppg-notify-requested-to", control)
		return
	}
	if n := strings.TrimSpace(content.Header.Get(rim.HeaderNotifyURL)); notifyTo == "" && n != "" {
		if !isHTTPURL(n) {
			s.papBad(w, v, papBadRequest, fmt.Sprintf("bad X-RIM-Push-NotifyURL %q in the content part", n), control)
			return
		}
		notifyTo = n
	}
	if pm.QoS == nil || strings.TrimSpace(pm.QoS.DeliveryMethod) == "" {
		if rel, err = rim.ParseReliability(rim.ReliabilityHeader(content.Header.Get)); err != nil {
			s.papBad(w, v, papBadRequest, err.Error()+" in the content part", control)
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
		pa, err := rim.ParseAddress(a.Value)
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
	if t := h.Get(rim.HeaderPushType); t != "" {
		if canon, ok := rim.PushType(t); ok {
			h.Set(rim.HeaderPushType, canon)
		}
	}
	body, decoded, err := rim.DecodeBody(content.Header, content.Body)
	if err != nil {
		s.papBad(w, v, papBadRequest, err.Error(), control)
		return
	}
	if decoded {
		// The device gets the content itself, as MDS delivered it.
		h.Del("Content-Transfer-Encoding")
		h.Del("Content-Encoding")
	}
	markTranscoded(h, rim.BrowserPort, body, nil)
	src := pm.SourceReference
	if ini != nil {
		src = ini.Name
	}
	if pm.ReplacePushID != "" {
		if pm.ReplacePushID == pm.PushID {
			s.papBad(w, v, papBadRequest, "replace-push-id names the push itself", control)
			return
		}
		ok, err := s.st.PushExists(r.Context(), scopeOf(ini), pm.ReplacePushID)
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
		PushID: pm.PushID, Source: src, PINs: pins, Port: 7874, Headers: h, Body: body,
		Reliability: rel, DeliverBefore: before, DeliverAfter: after, NotifyURL: notifyTo,
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
	case errors.Is(err, ErrDeliveryMethod):
		s.papPushResponse(w, v, pm.PushID, rim.CodeDeliveryMethod, strings.TrimPrefix(err.Error(), "pushserver: "))
	case err != nil:
		s.log.Error("store push", "err", err)
		s.papPushResponse(w, v, pm.PushID, papInternal, "internal error")
	default:
		if pm.ReplacePushID != "" {
			// The replacement is stored first, so a refused replacement leaves the original
			// untouched; then what is left of the original is cancelled.
			if _, err := s.cancel1(scopeOf(ini), pm.ReplacePushID); err != nil && !errors.Is(err, ErrNotFound) {
				s.log.Warn("cancel replaced push", "push_id", pm.ReplacePushID, "err", err)
			}
		}
		s.papPushResponse(w, v, pm.PushID, papAccepted, rim.Desc(papAccepted))
	}
}

// papTarget is one address of a status query or cancel, resolved the way a push resolves
// it.
type papTarget struct {
	written string          // the address-value as the initiator wrote it
	pins    map[string]bool // nil: every recipient (push_all)
	err     error
}

// papTargets resolves the addresses of a status query or cancel. No address means every
// recipient, each named by its PIN.
func (s *Server) papTargets(addrs []pap.AddressElem, ps PushStatus) []papTarget {
	if len(addrs) == 0 {
		ts := make([]papTarget, 0, len(ps.Recipients))
		for _, rs := range ps.Recipients {
			ts = append(ts, papTarget{written: rs.PIN, pins: map[string]bool{rs.PIN: true}})
		}
		return ts
	}
	ts := make([]papTarget, 0, len(addrs))
	for _, a := range addrs {
		t := papTarget{written: a.Value}
		pa, err := rim.ParseAddress(a.Value)
		switch {
		case err != nil:
			t.err = err
		case pa.All:
		default:
			// The initiator may query its own pushes whatever its push rights are now.
			pins, _, err := s.resolve(pa.Dest, nil)
			if err != nil {
				t.err = err
				break
			}
			t.pins = map[string]bool{}
			for _, p := range pins {
				t.pins[p] = true
			}
		}
		ts = append(ts, t)
	}
	return ts
}

// recipientsOf returns the recipients of ps an address names.
func (t papTarget) recipientsOf(ps PushStatus) []RecipientStatus {
	var out []RecipientStatus
	for _, rs := range ps.Recipients {
		if t.pins == nil || t.pins[rs.PIN] {
			out = append(out, rs)
		}
	}
	return out
}

// papResult is the PAP result of one address's recipients: the recipient's own, or for a
// group the least advanced of them (a pending recipient makes the group pending), with the
// time of the latest change.
func papResult(address string, rss []RecipientStatus) pap.Result {
	best := -1
	rank := func(rs RecipientStatus) int {
		switch rs.State {
		case rim.StateQueued, rim.StatePending:
			return 0
		case rim.StateDelivered:
			return 2
		}
		return 1
	}
	var at time.Time
	for i, rs := range rss {
		if best < 0 || rank(rs) < rank(rss[best]) {
			best = i
		}
		if rs.UpdatedAt.After(at) {
			at = rs.UpdatedAt
		}
	}
	rs := rss[best]
	st, code := rim.MessageState(rs.State, rs.Code)
	desc := rim.Desc(code)
	if rs.Reason != "" {
		desc += ": " + rs.Reason
	}
	return pap.Result{Code: code, Desc: desc, State: st, At: at, Address: address}
}

func (s *Server) papStatusQuery(w http.ResponseWriter, ini *Initiator, doc *pap.Message) {
	q := doc.StatusQuery
	ps, err := s.st.pushStatus(s.ctx, scopeOf(ini), q.PushID)
	var rs []pap.Result
	switch {
	case errors.Is(err, ErrNotFound):
		rs = append(rs, pap.Result{Code: papNotFound, Desc: rim.Desc(papNotFound), State: "unknown"})
	case err != nil:
		s.log.Error("status query", "err", err)
		rs = append(rs, pap.Result{Code: papInternal, Desc: rim.Desc(papInternal), State: "unknown"})
	default:
		for _, t := range s.papTargets(q.Addresses, ps) {
			rss := t.recipientsOf(ps)
			if t.err != nil || len(rss) == 0 {
				desc := "no recipient of push " + q.PushID + " at this address"
				if t.err != nil {
					desc = t.err.Error()
				}
				rs = append(rs, pap.Result{Code: papAddressError, Desc: desc, State: "unknown", Address: t.written})
				continue
			}
			rs = append(rs, papResult(t.written, rss))
		}
	}
	s.writePAP(w, http.StatusAccepted, pap.StatusQueryResponse(doc.Version, papSender, q.PushID, s.now(), rs))
}

func (s *Server) papCancel(w http.ResponseWriter, ini *Initiator, doc *pap.Message) {
	q := doc.Cancel
	var rs []pap.Result
	ps, err := s.st.pushStatus(s.ctx, scopeOf(ini), q.PushID)
	var targets []papTarget
	var cancelled []string
	n := 0
	if err == nil {
		targets = s.papTargets(q.Addresses, ps)
		var only map[string]bool
		if len(q.Addresses) > 0 {
			only = map[string]bool{}
			for _, t := range targets {
				if t.err == nil && t.pins == nil {
					only = nil // push_all
					break
				}
				for p := range t.pins {
					only[p] = true
				}
			}
		}
		cancelled, n, err = s.cancelPINs(scopeOf(ini), q.PushID, only)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		rs = append(rs, pap.Result{Code: papNotFound, Desc: rim.Desc(papNotFound)})
	case err != nil:
		s.log.Error("cancel", "err", err)
		rs = append(rs, pap.Result{Code: papInternal, Desc: rim.Desc(papInternal)})
	default:
		for _, t := range targets {
			rss := t.recipientsOf(ps)
			if t.err != nil || len(rss) == 0 {
				desc := "no recipient of push " + q.PushID + " at this address"
				if t.err != nil {
					desc = t.err.Error()
				}
				rs = append(rs, pap.Result{Code: papAddressError, Desc: desc, Address: t.written})
				continue
			}
			r := pap.Result{Code: papNotCancellable, Desc: rim.Desc(papNotCancellable), Address: t.written}
			for _, rc := range rss {
				if (cancelled == nil && n > 0) || slices.Contains(cancelled, rc.PIN) {
					r = pap.Result{Code: papOK, Desc: "Cancelled", Address: t.written}
					break
				}
				st, _ := rim.MessageState(rc.State, rc.Code)
				r.Desc = rim.Desc(papNotCancellable) + ": " + st
			}
			rs = append(rs, r)
		}
	}
	s.writePAP(w, http.StatusAccepted, pap.CancelResponse(doc.Version, q.PushID, rs))
}
