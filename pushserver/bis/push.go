package bis

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/bbsim/bbsim/pushserver"
	"github.com/bbsim/bbsim/rim"
	"github.com/bbsim/bbsim/rim/pap"
)

// MaxPayload is the largest content of a BIS push.
const MaxPayload = 8 << 10

// bisSender names the BIS push service in its answers.
var bisSender = pap.Sender{Address: "bbsim", Name: "bbsim BIS push"}

// writePAP answers in PAP 2.1, as BIS did, with HTTP 200 unless the status says otherwise.
func writePAP(w http.ResponseWriter, status int, doc []byte) {
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.WriteHeader(status)
	w.Write(doc)
}

func badMessage(w http.ResponseWriter, code int, desc string) {
	writePAP(w, http.StatusBadRequest, pap.BadMessage(pap.Version21, code, desc, nil))
}

func pushResponse(w http.ResponseWriter, status int, id string, code int, desc string) {
	writePAP(w, status, pap.PushResponse(pap.Version21, bisSender, id, time.Now(), code, desc))
}

func (s *Service) pushRequest(w http.ResponseWriter, r *http.Request) {
	app := s.initiator(w, r)
	if app == nil {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4*MaxPayload+64<<10))
	if err != nil {
		badMessage(w, 2000, "cannot read the request")
		return
	}
	mt, _, err := rim.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		badMessage(w, 2000, "bad Content-Type: "+err.Error())
		return
	}
	var control []byte
	var content []byte
	var contentHdr textproto.MIMEHeader
	switch mt {
	case "multipart/related":
		parts, err := rim.SplitMultipart(r.Header.Get("Content-Type"), body, 0)
		if err != nil {
			badMessage(w, 2000, err.Error())
			return
		}
		control = parts[0].Body
		if len(parts) < 2 {
			badMessage(w, 2000, "no content part after the control entity")
			return
		}
		content, contentHdr = parts[1].Body, parts[1].Header
	case "application/xml", "text/xml":
		control = body
	default:
		badMessage(w, 2000, "want multipart/related (push) or application/xml (status query, cancel), not "+mt)
		return
	}
	doc, err := pap.Parse(control)
	if err != nil {
		badMessage(w, 2000, "malformed PAP: "+err.Error())
		return
	}
	switch {
	case doc.StatusQuery != nil:
		s.statusQuery(w, app.ID, doc.StatusQuery.PushID)
		return
	case doc.Cancel != nil:
		s.cancel(w, app.ID, doc.Cancel.PushID)
		return
	}
	pm := doc.Push
	if content == nil {
		badMessage(w, 2000, "a push needs multipart/related with a content part")
		return
	}
	if len(content) > MaxPayload {
		pushResponse(w, http.StatusOK, pm.PushID, 2000, fmt.Sprintf("payload over %d bytes", MaxPayload))
		return
	}
	if pm.PushID == "" {
		badMessage(w, 2000, "push-id is required")
		return
	}
	if pm.SourceReference != app.ID {
		pushResponse(w, http.StatusOK, pm.PushID, 2001, fmt.Sprintf("source-reference %q does not match the credentials of %s", pm.SourceReference, app.ID))
		return
	}
	var pins, refused []string
	for _, a := range pm.Addresses {
		v := strings.TrimSpace(a.Value)
		if strings.EqualFold(v, "push_all") {
			pins = append(pins, s.Subscribers(app.ID, StateActive)...)
			continue
		}
		pin, ok := rim.NormalizePIN(v)
		if !ok || s.state(app.ID, pin) != StateActive {
			refused = append(refused, v)
			continue
		}
		pins = append(pins, pin)
	}
	slices.Sort(pins)
	pins = slices.Compact(pins)
	if len(refused) > 0 || len(pins) == 0 {
		desc := "no active subscriber to push to"
		if len(refused) > 0 {
			desc = "not active subscribers of " + app.ID + ": " + strings.Join(refused, ", ")
		}
		pushResponse(w, http.StatusOK, pm.PushID, 2002, desc)
		return
	}
	body, decoded, err := rim.DecodeBody(contentHdr, content)
	if err != nil {
		pushResponse(w, http.StatusOK, pm.PushID, 2000, err.Error())
		return
	}
	hdr := http.Header(contentHdr)
	if decoded {
		hdr = hdr.Clone()
		hdr.Del("Content-Transfer-Encoding")
		hdr.Del("Content-Encoding")
	}
	sub := pushserver.Submission{PushID: pm.PushID, Source: app.ID, PINs: pins, Port: app.Port,
		Headers: hdr, Body: body}
	if pm.QoS != nil {
		switch strings.ToLower(pm.QoS.DeliveryMethod) {
		case "confirmed", "application-level":
			sub.Reliability = rim.ReliabilityConfirmed
		case "preferconfirmed":
			sub.Reliability = rim.ReliabilityApplication
		}
	}
	if t, err := pap.ParseTime("deliver-before-timestamp", pm.DeliverBefore); err == nil {
		sub.DeliverBefore = t
	}
	if t, err := pap.ParseTime("deliver-after-timestamp", pm.DeliverAfter); err == nil {
		sub.DeliverAfter = t
	}
	switch err := s.opts.Gateway.Enqueue(r.Context(), sub); {
	case errors.Is(err, pushserver.ErrDuplicate):
		pushResponse(w, http.StatusOK, pm.PushID, 2007, "duplicate push-id")
	case errors.Is(err, pushserver.ErrBusy):
		pushResponse(w, http.StatusServiceUnavailable, pm.PushID, 4001, "server busy")
	case errors.Is(err, pushserver.ErrDeliveryMethod):
		pushResponse(w, http.StatusOK, pm.PushID, rim.CodeDeliveryMethod, strings.TrimPrefix(err.Error(), "pushserver: "))
	case err != nil:
		pushResponse(w, http.StatusInternalServerError, pm.PushID, 3000, err.Error())
	default:
		s.log.Info("push accepted", "app", app.ID, "push_id", pm.PushID, "recipients", len(pins))
		pushResponse(w, http.StatusOK, pm.PushID, 1001, "Accepted for processing")
	}
}

// statusQuery answers an application's status query about one of its pushes; another
// application's push with the same id is as unknown as none.
func (s *Service) statusQuery(w http.ResponseWriter, appID, id string) {
	st, err := s.opts.Gateway.PushStateOf(appID, id)
	var rs []pap.Result
	if err != nil {
		rs = append(rs, pap.Result{Code: rim.CodeNotFound, Desc: rim.Desc(rim.CodeNotFound), State: "unknown"})
	}
	for _, r := range st.Recipients {
		state, code := rim.MessageState(r.State, r.Code)
		desc := rim.Desc(code)
		if r.Reason != "" {
			desc += ": " + r.Reason
		}
		rs = append(rs, pap.Result{Code: code, Desc: desc, State: state, At: r.UpdatedAt, Address: r.PIN})
	}
	writePAP(w, http.StatusOK, pap.StatusQueryResponse(pap.Version21, bisSender, id, time.Now(), rs))
}

// cancel cancels an application's push; another application's push with the same id is
// not found.
func (s *Service) cancel(w http.ResponseWriter, appID, id string) {
	code, desc := rim.CodeOK, "cancelled"
	switch err := s.opts.Gateway.CancelOf(appID, id); {
	case errors.Is(err, pushserver.ErrNotFound):
		code, desc = rim.CodeNotFound, rim.Desc(rim.CodeNotFound)
	case err != nil:
		code, desc = rim.CodeNotCancellable, rim.Desc(rim.CodeNotCancellable)+": "+err.Error()
	}
	writePAP(w, http.StatusOK, pap.CancelResponse(pap.Version21, id, []pap.Result{{Code: code, Desc: desc}}))
}
