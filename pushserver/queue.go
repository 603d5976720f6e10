package pushserver

// The per-device queues: a push, its recipients, and the devices whose queues hold them.

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bbsim/bbsim/rim"
)

// push is an accepted push held in memory while any recipient is open.
type push struct {
	key                         int64
	id, source                  string
	headers                     http.Header
	body                        []byte
	requestURI                  string
	reliability                 string // transport|application|application-preferred
	deliverBefore, deliverAfter time.Time
	notifyURL                   string
	notifyPAP                   bool
	papVersion                  string
	acceptedAt                  time.Time
	open                        int // recipients not final; guarded by Server.mu
	recipients                  int // number of recipients; immutable
}

// recip is one recipient of a push. Its state, final and transportAt are guarded by
// Server.mu.
type recip struct {
	seq         int64
	p           *push
	pin         string
	port        int
	state       rim.State
	final       bool
	transportAt time.Time
	holder      string // shared store: the other gateway that holds it from the start; "" here
	mode        string // the reliability this delivery uses (see reliabilityFor); set with the device's sending held
}

func (r *recip) deadline(fct time.Duration) time.Time {
	if r.state == rim.StatePending {
		return r.transportAt.Add(fct)
	}
	base := r.p.acceptedAt
	if r.p.deliverAfter.After(base) {
		base = r.p.deliverAfter
	}
	d := base.Add(fct)
	if !r.p.deliverBefore.IsZero() && r.p.deliverBefore.Before(d) {
		d = r.p.deliverBefore
	}
	return d
}

// device is one handset: directory entry, link and queue. Its fields are guarded by
// Server.mu, except link (by sending) and wake (a channel).
type device struct {
	pin, email string
	url        string
	token      string
	secret     string // the hash of its device secret (secret.go); "" before its first attach
	attached   bool
	detach     context.CancelFunc // stops the delivery loop of the current attachment
	queue      []*recip           // queued recipients in seq order
	wake       chan struct{}
	delivered  int
	// sending is held while a push is sent, so a delivery loop of a new attachment waits
	// for the previous loop's request to end instead of sending the same push twice.
	sending sync.Mutex
	link    *link // the way to the receiver; used with sending held
	// software is what the device reported on its last attach; zero when unknown.
	software rim.Software
	// handing is held while open recipients move between gateways (handover.go).
	handing sync.Mutex
}

func (s *Server) device(pin string) *device {
	d := s.devices[pin]
	if d == nil {
		d = &device{pin: pin, wake: make(chan struct{}, 1)}
		s.devices[pin] = d
	}
	return d
}

func (d *device) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func lower(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// restore loads the device directory and every open push from the store.
func (s *Server) restore(ctx context.Context) error {
	devs, err := s.st.loadDevices()
	if err != nil {
		return err
	}
	for pin, dev := range devs {
		d := s.device(pin)
		if d.email == "" && dev.email != "" {
			d.email = dev.email
			s.emails[lower(dev.email)] = pin
		}
	}
	secrets, err := s.st.DeviceSecrets(ctx)
	if err != nil {
		return err
	}
	for pin, hash := range secrets {
		s.device(pin).secret = hash
	}
	open, err := s.st.loadOpen(ctx)
	if err != nil {
		return err
	}
	s.hold(open)
	if len(open) > 0 {
		s.log.Info("restored queued pushes", "pushes", len(open))
	}
	return nil
}

// queue adds a queued recipient to its device's queue, in seq order (concurrent commits
// may come back out of order), wakes the device's delivery, and tells the hand-over (with
// a shared store, one whose device attached at another gateway meanwhile goes there).
// Called with s.mu held.
func (s *Server) queue(r *recip) {
	d := s.device(r.pin)
	i := len(d.queue)
	for i > 0 && d.queue[i-1].seq > r.seq {
		i--
	}
	d.queue = slices.Insert(d.queue, i, r)
	d.poke()
	s.ho.queued(d)
}

// dequeue takes a recipient out of its device's queue. Called with s.mu held.
func (s *Server) dequeue(r *recip) {
	d := s.devices[r.pin]
	if d == nil {
		return
	}
	if i := slices.Index(d.queue, r); i >= 0 {
		d.queue = slices.Delete(d.queue, i, i+1)
	}
}

// pendingKey keys Server.pending: a push (its id and source: push ids are unique per source
// only, so two sources' pushes with one id wait apart) and the PIN whose acknowledgement it
// awaits.
func pendingKey(p *push, pin string) string { return acceptKey(p.id, p.source, pin) }

// hold queues the loaded open recipients that this gateway does not hold yet; it returns
// how many it added.
func (s *Server) hold(open []storedOpen) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	held := map[int64]bool{}
	pins := map[string]bool{}
	for _, so := range open {
		for _, r := range so.rs {
			pins[r.pin] = true
		}
	}
	for pin := range pins {
		if d := s.devices[pin]; d != nil {
			for _, q := range d.queue {
				held[q.seq] = true
			}
		}
	}
	n := 0
	for _, so := range open {
		p := so.p
		if cur := s.byID[p.id]; cur != nil && cur.key == p.key {
			p = cur // the same push, held here for other recipients
		}
		added := 0
		for _, r := range so.rs {
			if held[r.seq] {
				continue
			}
			if q := s.pending[pendingKey(p, r.pin)]; q != nil && q.seq == r.seq {
				continue
			}
			if s.ho.skip(p, r) {
				continue
			}
			held[r.seq] = true
			r.p = p
			added++
			if r.state == rim.StatePending {
				s.pending[pendingKey(p, r.pin)] = r
				continue
			}
			s.queue(r)
		}
		if added == 0 {
			continue
		}
		if p == so.p {
			p.recipients = len(so.rs)
			s.active++
			if cur := s.byID[p.id]; cur == nil || cur.key < p.key {
				s.byID[p.id] = p // the latest push with this id
			}
		}
		p.open += added
		n += added
	}
	return n
}
