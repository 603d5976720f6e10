package pushinit

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Notification is one result notification received from the push server.
type Notification struct {
	ID          string    `json:"id"`
	Destination string    `json:"destination"`
	Status      int       `json:"status,omitempty"` // RIM push: X-RIM-Push-Status
	Code        int       `json:"code,omitempty"`   // PAP: resultnotification-message code
	State       string    `json:"state,omitempty"`  // PAP: message-state
	Desc        string    `json:"desc,omitempty"`
	At          time.Time `json:"at"`
}

func (n Notification) String() string {
	switch {
	case n.Code != 0:
		return fmt.Sprintf("push %s to %s: %s, code %d (%s)", n.ID, n.Destination, n.State, n.Code, CodeMeaning(n.Code))
	default:
		return fmt.Sprintf("push %s to %s: status %d", n.ID, n.Destination, n.Status)
	}
}

type papNotification struct {
	XMLName xml.Name `xml:"pap"`
	Msg     struct {
		PushID  string `xml:"push-id,attr"`
		State   string `xml:"message-state,attr"`
		Code    string `xml:"code,attr"`
		Desc    string `xml:"desc,attr"`
		Address struct {
			Value string `xml:"address-value,attr"`
		} `xml:"address"`
	} `xml:"resultnotification-message"`
}

// NotifyHandler receives result notifications, both RIM push style (headers) and PAP
// resultnotification-message bodies, and passes each to f. PAP notifications are answered
// with a resultnotification-response, as initiators must.
func NotifyHandler(f func(Notification)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		n := Notification{At: time.Now()}
		if bytes.Contains(body, []byte("resultnotification-message")) {
			var pn papNotification
			d := xml.NewDecoder(bytes.NewReader(body))
			d.Strict = false
			d.Entity = map[string]string{}
			if err := d.Decode(&pn); err != nil {
				http.Error(w, "bad result notification: "+err.Error(), http.StatusBadRequest)
				return
			}
			n.ID, n.State, n.Desc = pn.Msg.PushID, pn.Msg.State, pn.Msg.Desc
			n.Destination = pn.Msg.Address.Value
			n.Code, _ = strconv.Atoi(pn.Msg.Code)
			f(n)
			w.Header().Set("Content-Type", "application/xml")
			fmt.Fprintf(w, "<?xml version=\"1.0\"?>\n<!DOCTYPE pap PUBLIC \"-//WAPFORUM//DTD PAP 2.0//EN\" \"http://www.wapforum.org/DTD/pap_2.0.dtd\">\n<pap><resultnotification-response push-id=\"%s\" code=\"1000\"/></pap>\n", xmlAttr(n.ID))
			return
		}
		n.ID = r.Header.Get("X-RIM-Push-ID")
		n.Destination = r.Header.Get("X-RIM-Push-Destination")
		n.Status, _ = strconv.Atoi(r.Header.Get("X-RIM-Push-Status"))
		if n.ID == "" {
			http.Error(w, "not a result notification: no X-RIM-Push-ID", http.StatusBadRequest)
			return
		}
		f(n)
		w.WriteHeader(http.StatusOK)
	})
}
