package bis

import (
	"bytes"
	"encoding/xml"
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
)

// MaxPayload is the largest content of a BIS push.
const MaxPayload = 8 << 10

type papAddress struct {
	Value string `xml:"address-value,attr"`
}

type papDoc struct {
	XMLName xml.Name `xml:"pap"`
	Push    *struct {
		PushID        string       `xml:"push-id,attr"`
		SourceRef     string       `xml:"source-reference,attr"`
		DeliverBefore string       `xml:"deliver-before-timestamp,attr"`
		DeliverAfter  string       `xml:"deliver-after-timestamp,attr"`
		Addresses     []papAddress `xml:"address"`
		QoS           struct {
			Method string `xml:"delivery-method,attr"`
		} `xml:"quality-of-service"`
	} `xml:"push-message"`
	Status *struct {
		PushID string `xml:"push-id,attr"`
	} `xml:"statusquery-message"`
	Cancel *struct {
		PushID string `xml:"push-id,attr"`
	} `xml:"cancel-message"`
}

const papHead = `<?xml version="1.0"?>
<!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 2.1//EN" "http://www.openmobilealliance.org/tech/DTD/pap_2.1.dtd">
<pap>`

func esc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return strings.ReplaceAll(b.String(), `"`, "&#34;")
}

func writePAP(w http.ResponseWriter, status int, inner string) {
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "%s\n%s\n</pap>\n", papHead, inner)
}

func badMessage(w http.ResponseWriter, code int, desc string) {
	writePAP(w, http.StatusBadRequest, fmt.Sprintf(`<badmessage-response code="%d" desc="%s"/>`, code, esc(desc)))
}

func pushResponse(w http.ResponseWriter, status int, id string, code int, desc string) {
	writePAP(w, status, fmt.Sprintf(`<push-response push-id="%s" reply-time="%s" sender-address="bbsim" sender-name="bbsim BIS push">
<response-result code="%d" desc="%s"/>
</push-response>`, esc(id), time.Now().UTC().Format("2006-01-02T15:04:05Z"), code, esc(desc)))
}

// parseControl decodes a PAP control entity strictly: no DTD is fetched and no entity
// expanded; a document declaring entities is refused.
func parseControl(b []byte) (*papDoc, error) {
	if bytes.Contains(b, []byte("<!ENTITY")) {
		return nil, errors.New("entity declarations are not accepted")
	}
	var doc papDoc
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	if err := d.Decode(&doc); err != nil {
		return nil, err
	}
	if doc.Push == nil && doc.Status == nil && doc.Cancel == nil {
		return nil, errors.New("no push-message, statusquery-message or cancel-message")
	}
	return &doc, nil
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
	doc, err := parseControl(control)
	if err != nil {
		badMessage(w, 2000, "malformed PAP: "+err.Error())
		return
	}
	switch {
	case doc.Status != nil:
		s.statusQuery(w, doc.Status.PushID)
		return
	case doc.Cancel != nil:
		s.cancel(w, doc.Cancel.PushID)
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
	if pm.SourceRef != app.ID {
		pushResponse(w, http.StatusOK, pm.PushID, 2001, fmt.Sprintf("source-reference %q does not match the credentials of %s", pm.SourceRef, app.ID))
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
	sub := pushserver.Submission{PushID: pm.PushID, Source: app.ID, PINs: pins, Port: app.Port,
		Headers: http.Header(contentHdr), Body: content}
	switch strings.ToLower(pm.QoS.Method) {
	case "confirmed", "application-level":
		sub.Reliability = "confirmed"
	case "preferconfirmed":
		sub.Reliability = "application"
	}
	if t, err := time.Parse("2006-01-02T15:04:05Z", pm.DeliverBefore); err == nil {
		sub.DeliverBefore = t
	}
	if t, err := time.Parse("2006-01-02T15:04:05Z", pm.DeliverAfter); err == nil {
		sub.DeliverAfter = t
	}
	switch err := s.opts.Gateway.Enqueue(r.Context(), sub); {
	case errors.Is(err, pushserver.ErrDuplicate):
		pushResponse(w, http.StatusOK, pm.PushID, 2007, "duplicate push-id")
	case errors.Is(err, pushserver.ErrBusy):
		pushResponse(w, http.StatusServiceUnavailable, pm.PushID, 4001, "server busy")
	case err != nil:
		pushResponse(w, http.StatusInternalServerError, pm.PushID, 3000, err.Error())
	default:
		s.log.Info("push accepted", "app", app.ID, "push_id", pm.PushID, "recipients", len(pins))
		pushResponse(w, http.StatusOK, pm.PushID, 1001, "Accepted for processing")
	}
}

// papState maps a recipient's state to a PAP message-state.
func papState(st string) string {
	switch st {
	case "queued", "pending":
		return "pending"
	case "delivered", "expired", "cancelled", "timeout":
		return st
	case "failed":
		return "undeliverable"
	}
	return "unknown"
}

func (s *Service) statusQuery(w http.ResponseWriter, id string) {
	st, err := s.opts.Gateway.PushState(id)
	if err != nil {
		writePAP(w, http.StatusOK, fmt.Sprintf(`<statusquery-response push-id="%s"><statusquery-result code="2004" desc="push-id not found" message-state="unknown"/></statusquery-response>`, esc(id)))
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<statusquery-response push-id="%s">`, esc(id))
	for _, r := range st.Recipients {
		code := 1000
		if r.Code != 0 && r.Code != 200 {
			code = r.Code
		}
		fmt.Fprintf(&b, "\n<statusquery-result code=\"%d\" desc=\"%s\" message-state=\"%s\"><address address-value=\"%s\"/></statusquery-result>",
			code, esc(r.State), papState(r.State), esc(r.PIN))
	}
	b.WriteString("\n</statusquery-response>")
	writePAP(w, http.StatusOK, b.String())
}

func (s *Service) cancel(w http.ResponseWriter, id string) {
	code, desc := 1000, "cancelled"
	switch err := s.opts.Gateway.Cancel(id); {
	case errors.Is(err, pushserver.ErrNotFound):
		code, desc = 2004, "push-id not found"
	case err != nil:
		code, desc = 2008, "cancellation not possible: "+err.Error()
	}
	writePAP(w, http.StatusOK, fmt.Sprintf(`<cancel-response push-id="%s"><cancel-result code="%d" desc="%s"/></cancel-response>`, esc(id), code, esc(desc)))
}
