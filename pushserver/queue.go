package pushserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
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
	reliability                 string // transport|application
	deliverBefore, deliverAfter time.Time
	notifyURL                   string
	notifyPAP                   bool
	papVersion                  string
	acceptedAt                  time.Time
	open                        int // recipients not final; guarded by Server.mu
	recipients                  int // number of recipients; immutable
}

// recip is one recipient of a push.
type recip struct {
	seq         int64
	p           *push
	pin         string
	port        int
	state       rim.State
	final       bool
	transportAt time.Time
	holder      string // shared store: the other gateway that holds it from the start; "" here
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

// device is one handset: directory entry, link and queue.
type device struct {
	pin, email string
	url        string
	token      string
	attached   bool
	detach     context.CancelFunc // stops the delivery loop of the current attachment
	queue      []*recip           // queued recipients in seq order
	wake       chan struct{}
	delivered  int
	// sending is held while a push is sent, so a delivery loop of a new attachment waits
	// for the previous loop's request to end instead of sending the same push twice.
	sending sync.Mutex
	link    *link // the connection to the receiver; used with sending held
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

func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newPushID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

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
	rel := "transport"
	switch lower(sub.Reliability) {
	case "", "transport", "unconfirmed", "preferconfirmed", "notspecified":
	case "application", "application-preferred", "confirmed", "application-level":
		rel = "application"
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

// queue adds a queued recipient to its device's queue, in seq order (concurrent commits
// may come back out of order), and wakes the device's delivery. With a shared store, one
// whose device attached at another gateway meanwhile goes there. Called with s.mu held.
func (s *Server) queue(r *recip) {
	d := s.device(r.pin)
	i := len(d.queue)
	for i > 0 && d.queue[i-1].seq > r.seq {
		i--
	}
	d.queue = slices.Insert(d.queue, i, r)
	d.poke()
	if to := s.route[r.pin]; to != "" && to != s.st.d.instance && !d.attached {
		s.handOverSoon(r.pin)
	}
}

// attach marks a device in coverage and starts delivering its queue.
func (s *Server) attach(pin, email, url string) (token string, queued int, err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", 0, ErrServerClosed
	}
	s.mu.Unlock()
	if s.sharing() {
		s.announce(pin, email) // records the attachment and takes over what others held
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", 0, ErrServerClosed
	}
	d := s.device(pin)
	if d.detach != nil {
		d.detach()
	}
	if d.token != "" {
		delete(s.tokens, d.token)
	}
	emailChanged := false
	if email != "" && d.email != email {
		d.email = email
		s.emails[lower(email)] = pin
		emailChanged = true
	}
	d.url = url
	d.attached = true
	d.token = newToken()
	s.tokens[d.token] = pin
	ctx, cancel := context.WithCancel(s.ctx)
	d.detach = cancel
	queued = len(d.queue)
	token = d.token
	s.wg.Add(1)
	go s.runDevice(ctx, d, url)
	s.mu.Unlock()
	if emailChanged && !s.sharing() { // a shared store recorded it with the attachment
		if err := s.st.saveDevice(s.ctx, pin, email); err != nil {
			s.log.Warn("save device", "pin", pin, "err", err)
		}
	}
	s.log.Info("device attached", "pin", pin, "receiver", url, "queued", queued)
	return token, queued, nil
}

func (s *Server) detach(pin string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.devices[pin]; d != nil {
		s.detachLocked(d)
	}
}

// detachLocked ends a device's attachment. Called with s.mu held.
func (s *Server) detachLocked(d *device) {
	if d.detach != nil {
		d.detach()
		d.detach = nil
	}
	if d.token != "" {
		delete(s.tokens, d.token)
		d.token = ""
	}
	d.attached = false
	s.log.Info("device detached", "pin", d.pin, "queued", len(d.queue))
}

// LinkedPIN resolves the device identified by a link token issued at /device/attach.
func (s *Server) LinkedPIN(linkToken string) (string, bool) {
	if linkToken == "" {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pin, ok := s.tokens[linkToken]
	return pin, ok
}

// next returns the first deliverable queued recipient of d, or how long to wait.
func (s *Server) next(d *device) (*recip, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	wait := time.Hour
	for _, r := range d.queue {
		if r.p.deliverAfter.After(now) {
			if w := r.p.deliverAfter.Sub(now); w < wait {
				wait = w
			}
			continue
		}
		return r, 0
	}
	return nil, wait
}

func (s *Server) runDevice(ctx context.Context, d *device, url string) {
	defer s.wg.Done()
	defer func() {
		// The attachment is over: its receiver is gone or has moved.
		d.sending.Lock()
		if d.link != nil {
			d.link.close()
			d.link = nil
		}
		d.sending.Unlock()
	}()
	idle := time.NewTimer(time.Hour) // reset for each wait; Go 1.23 timers need no draining
	defer idle.Stop()
	for {
		if ctx.Err() != nil {
			return
		}
		r, wait := s.next(d)
		if r == nil {
			idle.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-d.wake:
			case <-idle.C:
			}
			idle.Stop()
			continue
		}
		d.sending.Lock()
		s.deliver(ctx, d, url, r)
		d.sending.Unlock()
	}
}

type sendResult struct {
	code   int    // X-RIM-Push-Status from the receiver, 0 if none
	reason string // the receiver's words when it refused the push
	ok     bool
	retry  bool
	err    error
}

// deliver sends one push to one device, retrying while the device stays attached.
func (s *Server) deliver(ctx context.Context, d *device, url string, r *recip) {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		s.mu.Lock()
		// A previous attachment's loop may have delivered it meanwhile (final, or pending
		// an application acknowledgement).
		done := r.final || r.state != rim.StateQueued
		s.mu.Unlock()
		if done || ctx.Err() != nil {
			return
		}
		// The request itself outlives a detach: a device that answers keeps its answer, so
		// a push it took is not sent again after it re-attaches.
		res := s.send(s.ctx, d, url, r)
		if ctx.Err() != nil && !res.ok {
			return
		}
		switch {
		case res.ok:
			now := s.now().UTC()
			s.m.observeLatency(now.Sub(r.p.acceptedAt))
			if r.p.reliability == "application" {
				s.markPending(r, now)
			} else {
				s.finish(r, rim.StateDelivered, 1000, now)
			}
			return
		case !res.retry:
			s.finishWhy(r, rim.StateFailed, res.code, res.reason, s.now().UTC())
			return
		}
		s.log.Debug("device unreachable, retrying", "pin", r.pin, "push_id", r.p.id, "attempt", attempt, "backoff", backoff, "err", res.err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// send delivers the packets of a push with at most 5 unacknowledged; the last packet's
// answer is the device's verdict. It is called with d.sending held.
func (s *Server) send(ctx context.Context, d *device, url string, r *recip) sendResult {
	body := r.p.body
	size := s.opts.PacketSize
	n := (len(body) + size - 1) / size
	if n == 0 {
		n = 1
	}
	packet := func(i int) []byte {
		lo := i * size
		hi := min(lo+size, len(body))
		if lo > len(body) {
			lo = len(body)
		}
		return body[lo:hi]
	}
	if l := s.linkFor(d, url); l != nil {
		chunks := make([][]byte, n)
		for i := range chunks {
			chunks[i] = packet(i)
		}
		return l.exchange(r, chunks)
	}
	base := linkHeaders(r, n)
	if n > 1 {
		sem := make(chan struct{}, 5)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var first sendResult
		failed := false
		for i := 0; i < n-1; i++ {
			sem <- struct{}{}
			mu.Lock()
			stop := failed
			mu.Unlock()
			if stop {
				<-sem
				break
			}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				res := s.post(ctx, url, base, i, n, packet(i))
				if !res.ok {
					mu.Lock()
					if !failed {
						failed, first = true, res
					}
					mu.Unlock()
				}
			}(i)
		}
		wg.Wait()
		if failed {
			return first
		}
	}
	return s.post(ctx, url, base, n-1, n, packet(n-1))
}

// hopHeaders are not forwarded to the device.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Transfer-Encoding": true,
	"Te": true, "Trailer": true, "Upgrade": true, "Content-Length": true, "Host": true,
	"Authorization": true, "Proxy-Authorization": true, "Expect": true, "Accept-Encoding": true,
}

// linkHeaders are the headers every packet of a push carries (docs/device-link.md), in
// canonical form; built once per delivery attempt and shared by its packets.
func linkHeaders(r *recip, n int) http.Header {
	h := make(http.Header, len(r.p.headers)+7)
	for k, v := range r.p.headers {
		h[k] = v
	}
	h[rim.HeaderPushID] = []string{r.p.id}
	h[rim.HeaderDestPort] = []string{strconv.Itoa(r.port)}
	if r.p.requestURI != "" {
		h[rim.HeaderRequestURI] = []string{r.p.requestURI}
	}
	h[rim.HeaderReliabilityMode] = []string{r.p.reliability}
	h["X-Bbsim-Push-Length"] = []string{strconv.Itoa(len(r.p.body))}
	if n == 1 {
		h["X-Bbsim-Packet"] = []string{"0/1"}
	}
	return h
}

func (s *Server) post(ctx context.Context, url string, base http.Header, i, n int, chunk []byte) sendResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(chunk))
	if err != nil {
		return sendResult{err: err, code: 4501}
	}
	if n == 1 {
		req.Header = base
	} else {
		req.Header = maps.Clone(base)
		req.Header["X-Bbsim-Packet"] = []string{strconv.Itoa(i) + "/" + strconv.Itoa(n)}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return sendResult{retry: true, err: err}
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10)) // read whole, the connection is reused
	resp.Body.Close()
	return classify(resp, answer)
}

func (s *Server) dequeue(r *recip) {
	d := s.devices[r.pin]
	if d == nil {
		return
	}
	if i := slices.Index(d.queue, r); i >= 0 {
		d.queue = slices.Delete(d.queue, i, i+1)
	}
}

// markPending records a transport-level delivery of an application-reliable push.
func (s *Server) markPending(r *recip, now time.Time) {
	s.mu.Lock()
	if r.final {
		s.mu.Unlock()
		return
	}
	s.dequeue(r)
	r.state = rim.StatePending
	r.transportAt = now
	s.pending[r.p.id+"/"+r.pin] = r
	s.mu.Unlock()
	if err := s.st.setState(s.ctx, r, rim.StatePending, 0, now, now); err != nil {
		s.log.Warn("store pending state", "push_id", r.p.id, "pin", r.pin, "err", err)
	}
}

// ack handles an application-level acknowledgement from a device.
func (s *Server) ack(pin, pushID string, code int) bool {
	s.mu.Lock()
	r := s.pending[pushID+"/"+pin]
	s.mu.Unlock()
	if r == nil {
		return false
	}
	if code == 1000 || code == 200 {
		s.finish(r, rim.StateDelivered, 1000, s.now().UTC())
	} else {
		s.finish(r, rim.StateFailed, code, s.now().UTC())
	}
	return true
}

// finish makes a recipient's state final once: store, metrics, notification, OnResult.
func (s *Server) finish(r *recip, state rim.State, code int, at time.Time) bool {
	return s.finishWhy(r, state, code, "", at)
}

// finishWhy is finish with the device's reason for refusing the push.
func (s *Server) finishWhy(r *recip, state rim.State, code int, reason string, at time.Time) bool {
	s.mu.Lock()
	if r.final {
		s.mu.Unlock()
		return false
	}
	r.final = true
	prev := r.state
	r.state = state
	if prev == rim.StatePending {
		delete(s.pending, r.p.id+"/"+r.pin)
	} else {
		s.dequeue(r)
	}
	r.p.open--
	if r.p.open == 0 {
		s.active--
		if s.byID[r.p.id] == r.p {
			delete(s.byID, r.p.id)
		}
	}
	if state == rim.StateDelivered {
		if d := s.devices[r.pin]; d != nil {
			d.delivered++
		}
	}
	transportAt := r.transportAt
	if s.sharing() {
		s.final[r.seq] = time.Time{}
	}
	s.mu.Unlock()
	// The device loop goes on at once; the result is reported once the state is stored.
	s.st.later(s.st.stateOp(r, state, code, reason, transportAt, at), func(err error) {
		if s.sharing() {
			s.mu.Lock()
			s.stored(r.seq, time.Now())
			s.mu.Unlock()
		}
		if errors.Is(err, errMoved) {
			return // another gateway holds it now, and reports it
		}
		if err != nil {
			s.log.Warn("store final state", "push_id", r.p.id, "pin", r.pin, "state", state, "err", err)
		}
		s.report(r, state, code, reason, at)
	})
	return true
}

// report tells the world a recipient's final state: metrics, log, OnResult and the
// initiator's notification URL. It does not block.
func (s *Server) report(r *recip, state rim.State, code int, reason string, at time.Time) {
	s.m.count(state)
	s.log.Debug("push result", "push_id", r.p.id, "pin", r.pin, "state", state, "code", code)
	res := Result{PushID: r.p.id, PIN: r.pin, Port: r.port, State: state, Code: code, Reason: reason, At: at}
	if state == rim.StateTimeout {
		res.State = rim.StateExpired
	}
	if fs := s.onResult.Load(); fs != nil {
		for _, f := range *fs {
			go f(res)
		}
	}
	if r.p.notifyURL != "" {
		s.notify(r.p, r.pin, state, code, reason, at)
	}
}

// reaper expires pushes that waited longer than the flow-control timeout (or their
// deliver-before) and application acknowledgements that never came.
func (s *Server) reaper() {
	defer s.wg.Done()
	tick := min(max(s.opts.FlowControlTimeout/10, 5*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		now := s.now()
		var due, dueAck []*recip
		s.mu.Lock()
		for _, d := range s.devices {
			for _, r := range d.queue {
				if !now.Before(r.deadline(s.opts.FlowControlTimeout)) {
					due = append(due, r)
				}
			}
		}
		for _, r := range s.pending {
			if !now.Before(r.deadline(s.opts.FlowControlTimeout)) {
				dueAck = append(dueAck, r)
			}
		}
		s.mu.Unlock()
		for _, r := range dueAck {
			if s.finish(r, rim.StateTimeout, 4500, now.UTC()) {
				s.log.Info("no application acknowledgement in time", "push_id", r.p.id, "pin", r.pin)
			}
		}
		for _, r := range due {
			if s.finish(r, rim.StateExpired, 4500, now.UTC()) {
				s.log.Info("flow-control timeout: packets cancelled locally", "push_id", r.p.id, "pin", r.pin)
			}
		}
	}
}

// Cancel cancels every still-queued recipient of the latest push with this id, whatever its
// source. It returns ErrNotFound for an unknown push id and ErrNotCancellable when nothing
// is left to cancel.
func (s *Server) Cancel(pushID string) error { return s.cancelIn(anySource, pushID) }

// CancelOf is Cancel for the push source sent with this id (a BIS application, an
// initiator): another source's push with the same id is not found.
func (s *Server) CancelOf(source, pushID string) error {
	return s.cancelIn(scope{source: source}, pushID)
}

func (s *Server) cancelIn(sc scope, pushID string) error {
	n, err := s.cancel1(sc, pushID)
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotCancellable
	}
	return nil
}

func (s *Server) cancel1(sc scope, pushID string) (int, error) {
	_, n, err := s.cancelPINs(sc, pushID, nil)
	return n, err
}

// cancelPINs cancels what is open of the latest push with this id in the scope for the
// recipients in pins (nil: all of them) and returns the PINs it cancelled. Between
// gateways sharing a store the whole push is cancelled, and only the count is known (nil
// PINs).
func (s *Server) cancelPINs(sc scope, pushID string, pins map[string]bool) ([]string, int, error) {
	key, err := s.st.latestPush(s.ctx, sc, pushID)
	if err != nil {
		return nil, 0, err
	}
	if s.sharing() {
		n, err := s.cancelShared(key)
		return nil, n, err
	}
	done := s.cancelHeldPINs(func(q *push) bool { return q.key == key }, pins)
	return done, len(done), nil
}

// cancelHeld cancels the queued recipients held here of the pushes that match.
func (s *Server) cancelHeld(match func(*push) bool) int {
	return len(s.cancelHeldPINs(match, nil))
}

// cancelHeldPINs is cancelHeld for the recipients in pins (nil: all), returning their PINs.
func (s *Server) cancelHeldPINs(match func(*push) bool, pins map[string]bool) []string {
	var rs []*recip
	s.mu.Lock()
	for _, d := range s.devices {
		for _, r := range d.queue {
			if match(r.p) && (pins == nil || pins[r.pin]) {
				rs = append(rs, r)
			}
		}
	}
	s.mu.Unlock()
	var done []string
	now := s.now().UTC()
	for _, r := range rs {
		if s.finish(r, rim.StateCancelled, 0, now) {
			done = append(done, r.pin)
		}
	}
	return done
}

// PushState returns the per-recipient states of the latest push with this id, whatever its
// source.
func (s *Server) PushState(pushID string) (PushStatus, error) {
	return s.st.pushStatus(s.ctx, anySource, pushID)
}

// PushStateOf is PushState for the push source sent with this id (a BIS application, an
// initiator): another source's push with the same id is not found.
func (s *Server) PushStateOf(source, pushID string) (PushStatus, error) {
	return s.st.pushStatus(s.ctx, scope{source: source}, pushID)
}
