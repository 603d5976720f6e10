package bis

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/bbsim/bbsim/rim"
	"github.com/bbsim/bbsim/rim/pap"
)

// cpDeregUser ends a subscriber's subscription: GET /mss/PD_cpDeregUser?pin=.
func (s *Service) cpDeregUser(w http.ResponseWriter, r *http.Request) {
	app := s.initiator(w, r)
	if app == nil {
		return
	}
	pin, ok := rim.NormalizePIN(r.URL.Query().Get("pin"))
	if !ok || s.state(app.ID, pin) == "" {
		rc(w, BISInvalidPIN)
		return
	}
	if s.state(app.ID, pin) == StateDeregistered {
		rc(w, BISIncorrectStatus)
		return
	}
	s.setState(app.ID, pin, StateDeregistered)
	rc(w, BISDone)
}

// cpSub suspends or resumes a subscriber: /mss/PD_cpSub?cpAction=suspend|resume&pin=.
func (s *Service) cpSub(w http.ResponseWriter, r *http.Request) {
	app := s.initiator(w, r)
	if app == nil {
		return
	}
	q := r.URL.Query()
	pin, ok := rim.NormalizePIN(q.Get("pin"))
	if !ok {
		rc(w, BISInvalidPIN)
		return
	}
	st := s.state(app.ID, pin)
	switch q.Get("cpAction") {
	case "suspend":
		if st != StateActive {
			rc(w, BISIncorrectStatus)
			return
		}
		s.setState(app.ID, pin, StateSuspended)
	case "resume":
		if st != StateSuspended {
			rc(w, BISIncorrectStatus)
			return
		}
		s.setState(app.ID, pin, StateActive)
	default:
		rc(w, BISMalformed)
		return
	}
	rc(w, BISDone)
}

// cpSubQuery answers the subscription query with a <bpds> document, at most QueryLimit
// calls per QueryWindow per application.
func (s *Service) cpSubQuery(w http.ResponseWriter, r *http.Request) {
	app := s.initiator(w, r)
	if app == nil {
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	recent := s.queries[app.ID][:0]
	for _, t := range s.queries[app.ID] {
		if now.Sub(t) < s.opts.QueryWindow {
			recent = append(recent, t)
		}
	}
	limited := len(recent) >= s.opts.QueryLimit
	if !limited {
		recent = append(recent, now)
	}
	s.queries[app.ID] = recent
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	if limited {
		fmt.Fprintf(w, "<?xml version=\"1.0\"?>\n<bpds><response code=\"%d\" desc=\"call-rate limit: %d calls per %s\"/></bpds>\n", BISCallRate, s.opts.QueryLimit, s.opts.QueryWindow)
		return
	}
	r.ParseForm()
	var pins []string
	for _, v := range r.Form["pin"] {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				pins = append(pins, p)
			}
		}
	}
	if len(pins) == 0 {
		pins = s.Subscribers(app.ID, "")
	}
	if len(pins) > 10000 {
		fmt.Fprintf(w, "<?xml version=\"1.0\"?>\n<bpds><response code=\"%d\" desc=\"at most 10,000 PINs per call\"/></bpds>\n", BISMalformed)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<?xml version=\"1.0\"?>\n<bpds>\n<response code=\"%d\" desc=\"done\"/>\n", BISDone)
	for _, p := range pins {
		st := "unknown"
		if pin, ok := rim.NormalizePIN(p); ok {
			if x := s.state(app.ID, pin); x != "" {
				st = x
			}
			p = pin
		}
		fmt.Fprintf(&b, "<subscriber pin=\"%s\" status=\"%s\"/>\n", pap.Escape(p), st)
	}
	b.WriteString("</bpds>\n")
	fmt.Fprint(w, b.String())
}

// contentProvider is the bundled content provider of the Push SDK convention:
// /cp/subscribe, /cp/unsubscribe, /cp/suspend and /cp/resume with username, password,
// appid, address (the PIN), osversion and model, answering rc=.
func (s *Service) contentProvider(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	app := s.apps[q.Get("appid")]
	if app == nil {
		rc(w, RCInvalidApp)
		return
	}
	pin, ok := rim.NormalizePIN(q.Get("address"))
	if !ok {
		rc(w, RCInvalidPIN)
		return
	}
	user, pass := q.Get("username"), q.Get("password")
	if user == "" || pass == "" {
		rc(w, RCCPEmptyCreds)
		return
	}
	var st, owner string
	s.db.QueryRow(`SELECT state, username FROM cp_subscribers WHERE app = ? AND pin = ?`, app.ID, pin).Scan(&st, &owner)
	set := func(state string) {
		s.db.Exec(`INSERT INTO cp_subscribers(app, pin, state, username) VALUES(?, ?, ?, ?)
			ON CONFLICT(app, pin) DO UPDATE SET state = excluded.state, username = excluded.username`, app.ID, pin, state, user)
	}
	if owner != "" && owner != user {
		rc(w, RCCPAuthFailed)
		return
	}
	switch r.PathValue("action") {
	case "subscribe":
		if q.Get("osversion") == "" || q.Get("model") == "" {
			rc(w, RCBadOSOrModel)
			return
		}
		set(StateActive)
	case "unsubscribe":
		if st == "" {
			rc(w, RCNotFound)
			return
		}
		set(StateDeregistered)
	case "suspend", "resume":
		want, to := StateActive, StateSuspended
		if r.PathValue("action") == "resume" {
			want, to = StateSuspended, StateActive
		}
		if st != want {
			rc(w, RCCPInactive)
			return
		}
		set(to)
	default:
		http.NotFound(w, r)
		return
	}
	rc(w, RCOK)
}
