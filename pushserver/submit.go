package pushserver

// Submission: a push checked, committed to the store and queued for its recipients.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/bbsim/bbsim/rim"
)

// Enqueue stores a push and queues it for each recipient; it returns once the push is
// committed. It returns ErrDuplicate when the source already used the push id and ErrBusy
// when MaxActive pushes are pending.
func (s *Server) Enqueue(ctx context.Context, sub Submission) error {
	if err := s.usable(); err != nil {
		return err
	}
	_, err := s.enqueue(ctx, sub)
	return err
}

func (s *Server) enqueue(ctx context.Context, sub Submission) (*push, error) {
	p, rs, err := s.newPush(sub)
	if err != nil {
		return nil, err
	}
	if err := s.reserve(p, rs); err != nil {
		return nil, err
	}
	hdr, err := headerJSON(p.headers)
	if err != nil {
		err = fmt.Errorf("%w: headers: %v", ErrBadSubmission, err)
	} else {
		err = s.st.insertPush(ctx, p, hdr, rs)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.ho.admitted(p, rs)
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

// newPush checks a submission and makes it a push and its recipients, one per PIN.
func (s *Server) newPush(sub Submission) (*push, []*recip, error) {
	if len(sub.PINs) == 0 {
		return nil, nil, fmt.Errorf("%w: no recipients", ErrBadSubmission)
	}
	if sub.PushID == "" {
		sub.PushID = newPushID()
	}
	if sub.Port == 0 {
		sub.Port = rim.BrowserPort
	}
	if sub.Port < 0 || sub.Port > 65535 {
		return nil, nil, fmt.Errorf("%w: port %d", ErrBadSubmission, sub.Port)
	}
	if !sub.DeliverBefore.IsZero() && !sub.DeliverAfter.IsZero() && !sub.DeliverAfter.Before(sub.DeliverBefore) {
		return nil, nil, fmt.Errorf("%w: deliver-after is not before deliver-before", ErrBadSubmission)
	}
	rel, err := submissionReliability(sub.Reliability)
	if err != nil {
		return nil, nil, err
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
		return nil, nil, fmt.Errorf("%w: deliver-before is in the past", ErrBadSubmission)
	}
	seen := make(map[string]bool, len(sub.PINs))
	rs := make([]*recip, 0, len(sub.PINs))
	for i, raw := range sub.PINs {
		pin, ok := rim.NormalizePIN(raw)
		if !ok {
			return nil, nil, fmt.Errorf("%w: bad PIN %q", ErrBadSubmission, raw)
		}
		if seen[pin] {
			continue
		}
		seen[pin] = true
		port := sub.Port
		if i < len(sub.ports) && sub.ports[i] != 0 {
			port = sub.ports[i]
		}
		rs = append(rs, &recip{p: p, pin: pin, port: port, state: rim.StateQueued})
	}
	p.open = len(rs)
	p.recipients = len(rs)
	return p, rs, nil
}

// submissionReliability is the reliability a push is kept with, from the words of RIM push,
// PAP (quality-of-service delivery-method) and the BIS push API.
// RIM push's own words are rim.ParseReliability's; application-preferred is decided per
// device when delivered: application where it acknowledges.
func submissionReliability(v string) (string, error) {
	switch lower(v) {
	case "unconfirmed", "preferconfirmed", "notspecified":
		return rim.ReliabilityTransport, nil
	case "confirmed", "application-level":
		return rim.ReliabilityApplication, nil
	}
	rel, err := rim.ParseReliability(v)
	if err != nil {
		return "", fmt.Errorf("%w: reliability %q", ErrBadSubmission, v)
	}
	return rel, nil
}

// reserve counts a push about to be committed among the active ones, or refuses it when
// the server is closed, a recipient's device software cannot acknowledge what it asks, or
// MaxActive pushes are pending. The hand-over is told (admit), and
// told again by enqueue once the commit is over.
func (s *Server) reserve(p *push, rs []*recip) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if p.reliability == rim.ReliabilityApplication {
		for _, r := range rs {
			if d := s.devices[r.pin]; d != nil && !d.software.IsZero() && !d.software.AppAcks() {
				return fmt.Errorf("%w: %s: %s", ErrDeliveryMethod, r.pin, noAppAcks(d.software))
			}
		}
	}
	if s.active >= s.opts.MaxActive {
		s.m.busy.Add(1)
		return ErrBusy
	}
	s.active++
	s.ho.admit(p, rs)
	return nil
}

func newPushID() string { return randomHex(12) }

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
