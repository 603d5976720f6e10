package pushinit

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bbsim/bbsim/rim"
	"github.com/bbsim/bbsim/rim/pap"
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

// NotifyHandler receives result notifications, both RIM push style (headers) and PAP
// resultnotification-message bodies, and passes each to f. PAP notifications are answered
// with a resultnotification-response, as initiators must.
func NotifyHandler(f func(Notification)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		n := Notification{At: time.Now()}
		if bytes.Contains(body, []byte("resultnotification-message")) {
			pn, err := pap.ParseNotification(body)
			if err != nil {
				http.Error(w, "bad result notification: "+err.Error(), http.StatusBadRequest)
				return
			}
			n.ID, n.State, n.Desc, n.Destination, n.Code = pn.PushID, pn.State, pn.Desc, pn.Address, pn.Code
			f(n)
			w.Header().Set("Content-Type", "application/xml")
			w.Write(pap.ResultNotificationResponse(pap.Version20, n.ID, rim.CodeOK))
			return
		}
		n.ID = r.Header.Get(rim.HeaderPushID)
		n.Destination = r.Header.Get(rim.HeaderDestination)
		n.Status, _ = strconv.Atoi(r.Header.Get(rim.HeaderStatus))
		// The body, when there is one, is the device's reason for refusing the push.
		n.Desc = strings.TrimSpace(string(body))
		if n.ID == "" {
			http.Error(w, "not a result notification: no X-RIM-Push-ID", http.StatusBadRequest)
			return
		}
		f(n)
		w.WriteHeader(http.StatusOK)
	})
}
