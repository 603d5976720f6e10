// Package pap reads and writes the Push Access Protocol documents of BlackBerry push: the
// control entity an initiator sends (push, status query, cancel) and the answers and result
// notifications a push server sends back, in PAP 1.x, 2.0 and 2.1.
package pap

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// PAP versions, as DOCTYPEs name them.
const (
	Version10 = "1.0"
	Version20 = "2.0"
	Version21 = "2.1"
)

// TimeLayout is the layout of PAP timestamps (UTC).
const TimeLayout = "2006-01-02T15:04:05Z"

// MaxControlBytes bounds a control entity.
const MaxControlBytes = 1 << 20

// Message is a parsed control entity: exactly one of Push, StatusQuery and Cancel is set.
type Message struct {
	XMLName     xml.Name     `xml:"pap"`
	Push        *PushMessage `xml:"push-message"`
	StatusQuery *Query       `xml:"statusquery-message"`
	Cancel      *Query       `xml:"cancel-message"`
	// Version is the PAP version of the DOCTYPE: "1.0", "2.0" (also without a DOCTYPE) or
	// "2.1". Answers are written in the same version.
	Version string `xml:"-"`
}

// PushMessage is a push-message.
type PushMessage struct {
	PushID          string        `xml:"push-id,attr"`
	DeliverBefore   string        `xml:"deliver-before-timestamp,attr"`
	DeliverAfter    string        `xml:"deliver-after-timestamp,attr"`
	SourceReference string        `xml:"source-reference,attr"`
	NotifyTo        string        `xml:"ppg-notify-requested-to,attr"`
	ReplacePushID   string        `xml:"replace-push-id,attr"`
	ReplaceMethod   string        `xml:"replace-method,attr"`
	ProgressNotes   string        `xml:"progress-notes-requested,attr"`
	Addresses       []AddressElem `xml:"address"`
	QoS             *QoS          `xml:"quality-of-service"`
}

// QoS is a push-message's quality-of-service.
type QoS struct {
	Priority       string `xml:"priority,attr"`
	DeliveryMethod string `xml:"delivery-method,attr"`
}

// Query is a statusquery-message or a cancel-message; no address means every recipient.
type Query struct {
	PushID    string        `xml:"push-id,attr"`
	Addresses []AddressElem `xml:"address"`
}

// AddressElem is an <address> element.
type AddressElem struct {
	Value string `xml:"address-value,attr"`
}

// Parse reads a control entity strictly: well-formed XML, one <pap> root holding one
// message, a PAP DOCTYPE at most, no entity declarations; no DTD is ever fetched.
func Parse(b []byte) (*Message, error) {
	if len(b) > MaxControlBytes {
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
	doc := &Message{Version: Version20}
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
			v, err := doctypeVersion(s)
			if err != nil {
				return nil, err
			}
			doc.Version = v
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

// doctypeVersion reads the PAP version a DOCTYPE names. PAP 1.0's public identifier is
// written both "-//WAPFORUM//DTD PAP 1.0//EN" and, in Kannel's samples, "-//WAPFORUM//DTD
// PAP//EN" with the pap_1.0.dtd system identifier; any 1.x is read as 1.0.
func doctypeVersion(s string) (string, error) {
	switch {
	case strings.Contains(s, "PAP 2.1") || strings.Contains(s, "pap_2.1.dtd"):
		return Version21, nil
	case strings.Contains(s, "PAP 2.0") || strings.Contains(s, "pap_2.0.dtd"):
		return Version20, nil
	case strings.Contains(s, "PAP 1.") || strings.Contains(s, "pap_1."):
		return Version10, nil
	}
	return "", errors.New("DOCTYPE is not PAP 1.x, 2.0 or 2.1")
}

// ParseTime reads a PAP timestamp; empty is the zero time. name is the attribute's, for
// the error.
func ParseTime(name, v string) (time.Time, error) {
	if strings.TrimSpace(v) == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(TimeLayout, strings.TrimSpace(v))
	if err != nil {
		return time.Time{}, fmt.Errorf("bad %s %q: want YYYY-MM-DDThh:mm:ssZ", name, v)
	}
	return t, nil
}

// FormatTime writes a PAP timestamp.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// DeliveryMethod maps a quality-of-service delivery-method to a reliability: "transport"
// for unconfirmed, preferconfirmed and notspecified (or none), "application" for confirmed
// and the application-level RIM's own sample sends.
func DeliveryMethod(m string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(m)) {
	case "", "unconfirmed", "preferconfirmed", "notspecified":
		return "transport", nil
	case "confirmed", "application-level":
		return "application", nil
	}
	return "", fmt.Errorf("unknown delivery-method %q", m)
}

// Doctype is the DOCTYPE answers in a PAP version carry.
func Doctype(version string) string {
	switch version {
	case Version21:
		return `<!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 2.1//EN" "http://www.openmobilealliance.org/tech/DTD/pap_2.1.dtd">`
	case Version10:
		return `<!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 1.0//EN" "http://www.wapforum.org/DTD/pap_1.0.dtd">`
	}
	return `<!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 2.0//EN" "http://www.wapforum.org/DTD/pap_2.0.dtd">`
}

// Escape escapes s for an XML attribute value.
func Escape(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(strings.ToValidUTF8(s, "?")))
	return strings.ReplaceAll(b.String(), `"`, "&#34;")
}

// Sender names the server in answers (sender-address, sender-name).
type Sender struct {
	Address, Name string
}

// Result is one recipient's outcome in a statusquery-result, cancel-result or
// resultnotification-message.
type Result struct {
	Code    int
	Desc    string
	State   string    // message-state; empty in a cancel-result
	At      time.Time // event-time; zero: none
	Address string    // the address-value as the initiator wrote it
}

// Document wraps inner (one or more elements) in a PAP document of version.
func Document(version, inner string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "<?xml version=\"1.0\"?>\n%s\n<pap>\n%s</pap>\n", Doctype(version), inner)
	return b.Bytes()
}

// BadMessage is a badmessage-response.
func BadMessage(version string, code int, desc string, fragment []byte) []byte {
	if len(fragment) > 200 {
		fragment = fragment[:200]
	}
	return Document(version, fmt.Sprintf("<badmessage-response code=\"%d\" desc=\"%s\" bad-message-fragment=\"%s\"/>\n",
		code, Escape(desc), Escape(string(fragment))))
}

// PushResponse is a push-response.
func PushResponse(version string, from Sender, pushID string, at time.Time, code int, desc string) []byte {
	return Document(version, fmt.Sprintf("<push-response push-id=\"%s\" sender-address=\"%s\" sender-name=\"%s\" reply-time=\"%s\">\n<response-result code=\"%d\" desc=\"%s\"/>\n</push-response>\n",
		Escape(pushID), Escape(from.Address), Escape(from.Name), FormatTime(at), code, Escape(desc)))
}

func writeResult(b *strings.Builder, elem string, r Result) {
	fmt.Fprintf(b, "<%s code=\"%d\" desc=\"%s\"", elem, r.Code, Escape(r.Desc))
	if r.State != "" {
		fmt.Fprintf(b, " message-state=\"%s\"", Escape(r.State))
	}
	if !r.At.IsZero() {
		fmt.Fprintf(b, " event-time=\"%s\"", FormatTime(r.At))
	}
	if r.Address == "" {
		b.WriteString("/>\n")
		return
	}
	fmt.Fprintf(b, ">\n<address address-value=\"%s\"/>\n</%s>\n", Escape(r.Address), elem)
}

// StatusQueryResponse is a statusquery-response with one statusquery-result per result.
func StatusQueryResponse(version string, from Sender, pushID string, at time.Time, rs []Result) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "<statusquery-response push-id=\"%s\" sender-address=\"%s\" sender-name=\"%s\" reply-time=\"%s\">\n",
		Escape(pushID), Escape(from.Address), Escape(from.Name), FormatTime(at))
	for _, r := range rs {
		writeResult(&b, "statusquery-result", r)
	}
	b.WriteString("</statusquery-response>\n")
	return Document(version, b.String())
}

// CancelResponse is a cancel-response with one cancel-result per result.
func CancelResponse(version string, pushID string, rs []Result) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "<cancel-response push-id=\"%s\">\n", Escape(pushID))
	for _, r := range rs {
		r.State = ""
		writeResult(&b, "cancel-result", r)
	}
	b.WriteString("</cancel-response>\n")
	return Document(version, b.String())
}

// ResultNotification is a resultnotification-message for one recipient.
func ResultNotification(version string, from Sender, pushID string, received time.Time, r Result) []byte {
	return Document(version, fmt.Sprintf("<resultnotification-message push-id=\"%s\" sender-address=\"%s\" sender-name=\"%s\" received-time=\"%s\" event-time=\"%s\" message-state=\"%s\" code=\"%d\" desc=\"%s\">\n<address address-value=\"%s\"/>\n</resultnotification-message>\n",
		Escape(pushID), Escape(from.Address), Escape(from.Name), FormatTime(received), FormatTime(r.At), Escape(r.State), r.Code, Escape(r.Desc), Escape(r.Address)))
}

// ResultNotificationResponse is the initiator's answer to a result notification.
func ResultNotificationResponse(version, pushID string, code int) []byte {
	return Document(version, fmt.Sprintf("<resultnotification-response push-id=\"%s\" code=\"%d\"/>\n", Escape(pushID), code))
}

// Notification is a received resultnotification-message.
type Notification struct {
	PushID  string
	State   string
	Code    int
	Desc    string
	Address string
}

// ParseNotification reads a resultnotification-message. It is lenient (a notification is
// read by an initiator, which takes what it gets) but expands no entity.
func ParseNotification(b []byte) (Notification, error) {
	var doc struct {
		Msg *struct {
			PushID  string      `xml:"push-id,attr"`
			State   string      `xml:"message-state,attr"`
			Code    string      `xml:"code,attr"`
			Desc    string      `xml:"desc,attr"`
			Address AddressElem `xml:"address"`
		} `xml:"resultnotification-message"`
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = false
	d.Entity = map[string]string{}
	if err := d.Decode(&doc); err != nil {
		return Notification{}, err
	}
	if doc.Msg == nil {
		return Notification{}, errors.New("no resultnotification-message")
	}
	n := Notification{PushID: doc.Msg.PushID, State: doc.Msg.State, Desc: doc.Msg.Desc, Address: doc.Msg.Address.Value}
	n.Code, _ = strconv.Atoi(doc.Msg.Code)
	return n, nil
}

// AnswerCode reads the code and desc of a PAP answer: the first element with a code
// attribute (response-result, badmessage-response, statusquery-result...). It returns 0
// when the body has none.
func AnswerCode(body []byte) (int, string) {
	if !bytes.Contains(body, []byte("code=")) {
		return 0, ""
	}
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = false
	d.Entity = map[string]string{}
	for {
		tok, err := d.Token()
		if err != nil {
			return 0, ""
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		var code, desc string
		for _, a := range se.Attr {
			switch a.Name.Local {
			case "code":
				code = a.Value
			case "desc":
				desc = a.Value
			}
		}
		if n, err := strconv.Atoi(code); err == nil {
			return n, desc
		}
	}
}
