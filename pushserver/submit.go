package pushserver

// Submission: a push checked, committed to the store and queued for its recipients.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/bbsim/bbsim/rim"
)

// Enqueue stores a push and queues it for each recipient; it returns once the push is
// committed. It returns ErrDuplicate when the source already used the push id and ErrBusy
// when MaxActive pushes are pending.
func (s *Server) Enqueue(ctx context.Context, sub Submission) error {
	_, err := s.enqueue(ctx, sub)
	return err
}

func (s *Server) enqueue(ctx context.Context, sub Submission) (*push, error) {
	if len(sub.PINs) == 0 {
		return nil, fmt.Errorf("%w: no recipients", ErrBadSubmission)
	}
	if sub.PushID == "" {
		sub.PushID = newPushID()
	}
	if sub.Port == 0 {
		sub.Port = 7874
	}
	if sub.Port < 0 || sub.Port > 65535 {
		return nil, fmt.Errorf("%w: port %d", ErrBadSubmission, sub.Port)
	}
	if !sub.DeliverBefore.IsZero() && !sub.DeliverAfter.IsZero() && !sub.DeliverAfter.Before(sub.DeliverBefore) {
		return nil, fmt.Errorf("%w: deliver-after is not before deliver-before", ErrBadSubmission)
	}
	rel := rim.ReliabilityTransport
	switch lower(sub.Reliability) {
	case "", "transport", "unconfirmed", "preferconfirmed", "notspecified":
	case "application", "confirmed", "application-level":
		rel = rim.ReliabilityApplication
	case "application-preferred":
		// Decided per device when delivered: application where it acknowledges.
		rel = rim.ReliabilityApplicationPreferred
	default:
		return nil, fmt.Errorf("%w: reliability %q", ErrBadSubmission, sub.Reliability)
	}
	now := s.now().UTC()
	p := &push{
		id: sub.PushID, source: sub.Source, headers: sub.Headers, body: sub.Body,
		requestURI: sub.requestURI, reliability: rel, deliverBefore: sub.DeliverBefore.UTC(),
		deliverAfter: sub.DeliverAfter.UTC(), notifyURL: sub.NotifyURL, notifyPAP: sub.notifyPAP,
		papVersion: sub.papVersion, acceptedAt: now,
	}
	if p.headers == nil {
		p.headers = http.Header{}
	}
	if p.body == nil {
		p.body = []byte{}
	}
	if !p.deliverBefore.IsZero() && !p.deliverBefore.After(now) {
		return nil, fmt.Errorf("%w: deliver-before is in the past", ErrBadSubmission)
	}
	seen := map[string]bool{}
	rs := make([]*recip, 0, len(sub.PINs))
	for i, raw := range sub.PINs {
		pin, ok := rim.NormalizePIN(raw)
		if !ok {
			return nil, fmt.Errorf("%w: bad PIN %q", ErrBadSubmission, raw)
		}
		port := sub.Port
		if i < len(sub.ports) && sub.ports[i] != 0 {
			port = sub.ports[i]
		}
		if seen[pin] {
			continue
		}
		seen[pin] = true
		rs = append(rs, &recip{p: p, pin: pin, port: port, state: rim.StateQueued})
	}
	p.open = len(rs)
	p.recipients = len(rs)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrServerClosed
	}
	if rel == rim.ReliabilityApplication {
		for _, r := range rs {
			if d := s.devices[r.pin]; d != nil && !d.software.IsZero() && !d.software.AppAcks() {
				s.mu.Unlock()
				return nil, fmt.Errorf("%w: %s runs device software %s, which has no application-level acknowledgements (4.0 or later)", ErrDeliveryMethod, r.pin, d.software)
			}
		}
	}
	if s.active >= s.opts.MaxActive {
		s.mu.Unlock()
		s.m.busy.Add(1)
		return nil, ErrBusy
	}
	s.active++
	if s.sharing() {
		// A device attached at another gateway sharing the store: that gateway holds its
		// recipient from the start.
		for _, r := range rs {
			if to := s.route[r.pin]; to != "" && to != s.st.d.instance {
				if d := s.devices[r.pin]; d == nil || !d.attached {
					r.holder = to
					continue
				}
			}
			// A takeover that reads the store between the commit and the queueing below
			// leaves this one to be queued here.
			s.accepting[acceptKey(p.id, p.source, r.pin)]++
		}
		defer func() {
			s.mu.Lock()
			for _, r := range rs {
				if k := acceptKey(p.id, p.source, r.pin); r.holder == "" {
					if s.accepting[k]--; s.accepting[k] <= 0 {
						delete(s.accepting, k)
					}
				}
			}
			s.mu.Unlock()
		}()
	}
	s.mu.Unlock()

	hdr, err := headerJSON(p.headers)
	if err != nil {
		err = fmt.Errorf("%w: headers: %v", ErrBadSubmission, err)
	} else {
		err = s.st.do(ctx, s.st.pushOp(p, hdr, rs))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.active--
		return nil, err
	}
	p.open = 0
	for _, r := range rs {
		if r.holder != "" {
			continue // another gateway's
		}
		p.open++
		s.queue(r)
	}
	if p.open > 0 {
		s.byID[p.id] = p
	} else {
		s.active-- // nothing of it is held here
	}
	s.m.accepted.Add(1)
	s.m.recipients.Add(float64(len(rs)))
	return p, nil
}

func newPushID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// hopHeaders are not forwarded to the device.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Transfer-Encoding": true,
	"Te": true, "Trailer": true, "Upgrade": true, "Content-Length": true, "Host": true,
	"Authorization": true, "Proxy-Authorization": true, "Expect": true, "Accept-Encoding": true,
}

// headerJSON is h as JSON (what the store keeps of a push's headers, read back with
// json.Unmarshal), written directly when every name and value is printable ASCII without
// quotes or backslashes, as push headers are, and by json.Marshal otherwise.
func headerJSON(h http.Header) ([]byte, error) {
	n := 2
	for k, vs := range h {
		if !plainJSON(k) {
			return json.Marshal(h)
		}
		n += len(k) + 6
		for _, v := range vs {
			if !plainJSON(v) {
				return json.Marshal(h)
			}
			n += len(v) + 3
		}
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for k, vs := range h {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, `":`...)
		if vs == nil {
			b = append(b, "null"...)
			continue
		}
		b = append(b, '[')
		for i, v := range vs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, v...)
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// plainJSON reports whether s stands for itself inside a JSON string.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// acceptKey names a recipient of a push being accepted.
func acceptKey(id, source, pin string) string { return id + "\x00" + source + "\x00" + pin }
