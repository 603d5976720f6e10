package pushserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bbsim/bbsim/pushserver/internal/store"
	"github.com/bbsim/bbsim/rim"
)

// Hand-over between gateways that share a PostgreSQL push store (--push-db, each under its
// own --push-instance name). A push may be accepted by any gateway, and a handset attaches
// to one of them; the push store is the central record of which gateway holds each open
// recipient (recipients.gateway) and where each device attached last (devices.gateway).
//
//   - A gateway a device attaches to records it, takes the device's open recipients from
//     gateways that are not running (their lock is free), and announces the attachment.
//   - The other gateways hear it (LISTEN/NOTIFY on pgChannel): one that had the device
//     attached lets it go, and one that holds open recipients for it hands them over, after
//     any send in flight has ended, in one UPDATE, and tells the new holder.
//   - The attachment is answered once the running gateway the device was at before has
//     heard it and let the device go (it answers "heard"; waited for up to heardWait), so
//     a push accepted there after the device's attach was answered goes to the new one.
//   - A push accepted for a device attached elsewhere is stored as that gateway's, and the
//     notice goes in the same commit.
//   - Every gateway takes, every 5 s, the open recipients of gateways that are not running,
//     and hands nothing to one: they are delivered, handed on or expired by a running one.
//   - A state is written only by the recipient's holder (pgSetState names it), so a hand-over
//     racing an expiry leaves one outcome, reported once.
//   - A cancel through any gateway cancels what it holds, takes and cancels what stopped
//     gateways hold, and asks the running holders (cancelShared); an application
//     acknowledgement that reaches another gateway is passed on (ackShared).
//
// A gateway that was not listening (starting, or its connection to the database dropped)
// catches up from the tables when it listens again.

const pgChannel = store.Channel

// shared is the hand-over of a gateway that shares a PostgreSQL push store with others. Its
// state is guarded by Server.mu, as the device queues it is read together with are.
type shared struct {
	s  *Server
	me string // this gateway's name (--push-instance)

	route     map[string]string // PIN -> the gateway the device attached at last
	announced map[string]int    // PIN -> own attachment notices not heard back yet
	moving    map[string]bool   // PINs with a hand-over running -> run it once more
	// final: recipients made final here, with when their state was stored (zero: not
	// yet); kept a while, so a takeover that read the store before then skips them.
	final      map[int64]time.Time
	finalOrder []finalEntry    // final's stored entries, oldest first
	accepting  map[string]int  // recipients (acceptKey) of pushes being accepted here
	taking     map[string]bool // PINs whose handed-over recipients are to be taken over
	takerBusy  bool            // a goroutine takes them over
	sweeps     atomic.Int64    // sweeps for stopped gateways' pushes finished
	// heard: PIN -> the attachments here waiting to hear that the gateway the device was
	// at before let it go; each is told the gateways that answered.
	heard map[string][]chan string
}

// heardWait bounds how long an attachment waits for the gateway the device was at before
// to let it go: one that does not answer (not listening for a while) catches up from the
// tables when it listens again.
const heardWait = 5 * time.Second

var _ handover = (*shared)(nil)

func newShared(s *Server, me string) *shared {
	return &shared{
		s: s, me: me,
		route:     map[string]string{},
		announced: map[string]int{},
		moving:    map[string]bool{},
		final:     map[int64]time.Time{},
		accepting: map[string]int{},
		taking:    map[string]bool{},
		heard:     map[string][]chan string{},
	}
}

// start follows the other gateways' notices and sweeps for stopped gateways' pushes, and
// shares this gateway's configured devices.
func (h *shared) start(ctx context.Context, devs []Device) error {
	s := h.s
	ready := make(chan struct{})
	s.wg.Add(2)
	go h.listen(ready)
	go h.sweeper()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		s.log.Warn("not yet listening to other gateways' hand-over notices; going on")
	case <-ctx.Done():
		return fmt.Errorf("pushserver: open: %w", ctx.Err())
	}
	if err := h.shareDirectory(ctx, devs); err != nil {
		s.log.Warn("share the device directory", "err", err)
	}
	return nil
}

// admit gives the recipients whose device is attached at another gateway to that gateway
// from the start (recip.holder), and marks the others as being accepted here, so that a
// takeover that reads the store between the commit and their queueing leaves them to
// enqueue.
func (h *shared) admit(p *push, rs []*recip) {
	for _, r := range rs {
		if to := h.route[r.pin]; to != "" && to != h.me {
			if d := h.s.devices[r.pin]; d == nil || !d.attached {
				r.holder = to
				continue
			}
		}
		h.accepting[acceptKey(p.id, p.source, r.pin)]++
	}
}

func (h *shared) admitted(p *push, rs []*recip) {
	for _, r := range rs {
		if k := acceptKey(p.id, p.source, r.pin); r.holder == "" {
			if h.accepting[k]--; h.accepting[k] <= 0 {
				delete(h.accepting, k)
			}
		}
	}
}

// acceptKey names a recipient of a push being accepted.
func acceptKey(id, source, pin string) string { return id + "\x00" + source + "\x00" + pin }

// queued sends what is queued here for a device attached at another gateway meanwhile
// there.
func (h *shared) queued(d *device) {
	if to := h.route[d.pin]; to != "" && to != h.me && !d.attached {
		h.handOverSoon(d.pin)
	}
}

// attaching records the attachment (and the device's e-mail) in the shared store, takes
// over what other gateways held for it and tells them.
func (h *shared) attaching(pin, email string) bool {
	h.announce(pin, email)
	return true
}

func (h *shared) finishing(r *recip) { h.final[r.seq] = time.Time{} }

func (h *shared) finished(r *recip) {
	h.s.mu.Lock()
	h.stored(r.seq, time.Now())
	h.s.mu.Unlock()
}

func (h *shared) skip(p *push, r *recip) bool {
	if _, ok := h.final[r.seq]; ok {
		return true // final here: the store learns it in a moment, or did after it was read
	}
	return h.accepting[acceptKey(p.id, p.source, r.pin)] > 0 // queued by enqueue once committed
}

// cancel cancels the whole push wherever it is held; only the count is known.
func (h *shared) cancel(key int64, _ map[string]bool) ([]string, int, error) {
	n, err := h.cancelShared(key)
	return nil, n, err
}

func (h *shared) ackElsewhere(pin, pushID string, source *string, code int) (bool, error) {
	return h.ackShared(pin, pushID, source, code)
}

func (h *shared) gateway(pin string) string { return h.route[pin] }

// pgNotice is what gateways tell each other on pgChannel.
type pgNotice struct {
	Event string   `json:"event"`          // attached | heard | handover | cancel | ack | directory
	PIN   string   `json:"pin,omitempty"`  // attached, ack: the device
	PINs  []string `json:"pins,omitempty"` // handover: the devices whose recipients moved
	Email string   `json:"email,omitempty"`
	// Gateway: attached, where the device attached; handover, the new holder.
	Gateway string `json:"gateway"`
	From    string `json:"from,omitempty"`    // handover, heard: the gateway that let them go
	Push    int64  `json:"push,omitempty"`    // cancel: the push (pushes.id) whose queued recipients to cancel
	PushID  string `json:"push_id,omitempty"` // ack: the push the device acknowledged
	Code    int    `json:"code,omitempty"`    // ack: the device's code
	Source  string `json:"source,omitempty"`  // ack: the source of the push acknowledged
}

func (n pgNotice) payload() string {
	b, _ := json.Marshal(n)
	return string(b)
}

// listen follows the other gateways' notices for the server's life, reconnecting after
// the database connection fails.
func (h *shared) listen(ready chan<- struct{}) {
	s := h.s
	defer s.wg.Done()
	var once sync.Once
	listening := func() { once.Do(func() { close(ready) }) }
	backoff := 100 * time.Millisecond
	for {
		listened, err := h.listenOnce(listening)
		if s.ctx.Err() != nil {
			return
		}
		if listened {
			backoff = 100 * time.Millisecond
		}
		s.log.Warn("listening to the push store's hand-over notices", "err", err, "retry_in", backoff)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (h *shared) listenOnce(listening func()) (listened bool, err error) {
	s := h.s
	conn, err := pgx.Connect(s.ctx, s.st.shared.URL())
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(s.ctx, "LISTEN "+pgChannel); err != nil {
		return false, err
	}
	// What happened while nobody here listened is in the tables.
	if err := h.catchUp(); err != nil {
		return true, err
	}
	listening()
	for {
		n, err := conn.WaitForNotification(s.ctx)
		if err != nil {
			return true, err
		}
		var ev pgNotice
		if err := json.Unmarshal([]byte(n.Payload), &ev); err != nil {
			s.log.Warn("unreadable hand-over notice", "payload", n.Payload, "err", err)
			continue
		}
		h.onNotice(ev)
	}
}

func (h *shared) onNotice(ev pgNotice) {
	s := h.s
	pin, _ := rim.NormalizePIN(ev.PIN)
	switch {
	case ev.Event == "attached" && pin != "":
		if s.opts.noticeLag > 0 && ev.Gateway != h.me {
			time.Sleep(s.opts.noticeLag)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if ev.Gateway == h.me {
			if h.announced[pin] > 0 {
				h.announced[pin]--
			}
			return
		}
		if h.route[pin] == h.me {
			// The device's new gateway waits to hear that this one let it go. The
			// answer may leave before moved below runs, but s.mu is held until then.
			heard := pgNotice{Event: "heard", PIN: pin, Gateway: ev.Gateway, From: h.me}
			s.background(func() {
				if err := s.st.shared.Notify(s.ctx, heard.payload()); err != nil && s.ctx.Err() == nil {
					s.log.Warn("answer an attachment notice", "pin", pin, "gateway", ev.Gateway, "err", err)
				}
			})
		}
		if h.announced[pin] > 0 {
			// This gateway's own announcement is still on its way: the device attached
			// here after it attached there.
			return
		}
		h.moved(pin, ev.Gateway, ev.Email)
	case ev.Event == "directory" && ev.Gateway != h.me:
		s.background(func() {
			if err := h.learnDirectory(); err != nil && s.ctx.Err() == nil {
				s.log.Warn("read the shared device directory", "err", err)
			}
		})
	case ev.Gateway != h.me:
		// The other notices are for one gateway.
	case ev.Event == "heard" && pin != "":
		s.mu.Lock()
		for _, ch := range h.heard[pin] {
			select {
			case ch <- ev.From:
			default:
			}
		}
		s.mu.Unlock()
	case ev.Event == "handover":
		var pins []string
		for _, p := range ev.PINs {
			if pin, ok := rim.NormalizePIN(p); ok {
				pins = append(pins, pin)
			}
		}
		s.mu.Lock()
		h.takeSoon(pins)
		s.mu.Unlock()
	case ev.Event == "cancel":
		s.background(func() { s.cancelHeld(func(p *push) bool { return p.key == ev.Push }) })
	case ev.Event == "ack" && pin != "":
		s.background(func() {
			if ok, _ := s.ack(pin, ev.PushID, &ev.Source, ev.Code); !ok {
				s.log.Info("acknowledgement passed on for a push not waiting here", "pin", pin, "push_id", ev.PushID)
			}
		})
	}
}

// background runs f on a goroutine of its own, which Close waits for.
func (s *Server) background(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// takeSoon takes over, in the background, what the store says this gateway holds for these
// devices; notices that arrive meanwhile are taken in the next round, together. Called with
// s.mu held.
func (h *shared) takeSoon(pins []string) {
	s := h.s
	if s.closed || len(pins) == 0 {
		return
	}
	for _, pin := range pins {
		h.taking[pin] = true
	}
	if h.takerBusy {
		return
	}
	h.takerBusy = true
	s.background(func() {
		for {
			s.mu.Lock()
			pins := slices.Sorted(maps.Keys(h.taking))
			clear(h.taking)
			if len(pins) == 0 || s.ctx.Err() != nil {
				h.takerBusy = false
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			if err := h.takeOver(pins...); err != nil && s.ctx.Err() == nil {
				s.log.Warn("take over handed-over pushes", "devices", len(pins), "err", err)
			}
		}
	})
}

// moved records that a device attached at another gateway: it is no longer attached here,
// and what this gateway holds for it goes there. Called with s.mu held.
func (h *shared) moved(pin, gateway, email string) {
	s := h.s
	h.route[pin] = gateway
	d := s.device(pin)
	if email != "" && d.email != email {
		d.email = email
		s.emails[lower(email)] = pin
	}
	if d.attached {
		s.detachLocked(d)
		s.log.Info("device attached at another gateway", "pin", pin, "gateway", gateway)
	}
	if h.holds(d) {
		h.handOverSoon(pin)
	}
}

// holds reports whether this gateway holds open recipients for d. Called with s.mu held.
func (h *shared) holds(d *device) bool {
	s := h.s
	if len(d.queue) > 0 {
		return true
	}
	for _, r := range s.pending {
		if r.pin == d.pin {
			return true
		}
	}
	return false
}

// shareDirectory adds this gateway's configured devices (PIN and e-mail) to the shared
// device directory and tells the other gateways, so a push to any of them is accepted
// through any gateway.
func (h *shared) shareDirectory(ctx context.Context, devs []Device) error {
	s := h.s
	if len(devs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	dir := make([]store.Device, len(devs))
	for i, d := range devs {
		pin, _ := rim.NormalizePIN(d.PIN) // checked by New
		dir[i] = store.Device{PIN: pin, Email: d.Email}
	}
	return s.st.shared.ShareDirectory(ctx, dir, pgNotice{Event: "directory", Gateway: h.me}.payload())
}

// learnDirectory adds the shared directory's devices and e-mails to this gateway's.
func (h *shared) learnDirectory() error {
	s := h.s
	devs, err := s.st.loadDevices()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h.learn(devs)
	return nil
}

// learn adds devices read from the store to the directory. Called with s.mu held.
func (h *shared) learn(devs map[string]storedDevice) {
	s := h.s
	for pin, dev := range devs {
		d := s.device(pin)
		if dev.email != "" {
			if d.email == "" {
				d.email = dev.email
			}
			if _, taken := s.emails[lower(dev.email)]; !taken {
				s.emails[lower(dev.email)] = pin // this gateway's own --user entries stay
			}
		}
	}
}

// catchUp reads the directory, where every device attached last and the open recipients
// this gateway holds, as after a time without notices.
func (h *shared) catchUp() error {
	s := h.s
	devs, err := s.st.loadDevices()
	if err != nil {
		return err
	}
	// Bounded like every read whose rows a takeover uses (finalKept).
	ctx, cancel := context.WithTimeout(s.ctx, 20*time.Second)
	defer cancel()
	open, err := s.st.loadOpen(ctx)
	if err != nil {
		return err
	}
	s.hold(open)
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(h.announced)
	h.learn(devs)
	for pin, dev := range devs {
		if dev.gateway != "" && dev.gateway != h.me {
			h.moved(pin, dev.gateway, dev.email)
		} else if dev.gateway == h.me {
			h.route[pin] = h.me
		}
	}
	return nil
}

// sweeper takes, now and then, the open recipients held by gateways that are not running:
// one that crashed (its lock is freed when the database notices) or stopped and did not
// come back. This gateway then delivers them, hands them over to where their device is, or
// expires them in time.
func (h *shared) sweeper() {
	s := h.s
	defer s.wg.Done()
	every := s.opts.sweepEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		h.forgetFinal(time.Now().Add(-finalKept))
		ctx, cancel := context.WithTimeout(s.ctx, 20*time.Second)
		pins, err := s.st.shared.ClaimStranded(ctx)
		cancel()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("take pushes from stopped gateways", "err", err)
			}
			continue
		}
		for _, pin := range pins {
			if err := h.takeOver(pin); err != nil && s.ctx.Err() == nil {
				s.log.Warn("take over pushes from a stopped gateway", "pin", pin, "err", err)
			}
		}
		h.sweeps.Add(1)
	}
}

// finalKept is how long a recipient made final here is remembered after its state was
// stored: longer than any read of the store that a takeover then makes use of (20 s).
const finalKept = 30 * time.Second

// forgetFinal forgets the recipients whose final state was stored before then.
func (h *shared) forgetFinal(then time.Time) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, f := range h.finalOrder {
		if !f.at.Before(then) {
			break
		}
		delete(h.final, f.seq)
		n++
	}
	h.finalOrder = h.finalOrder[n:]
}

// finalEntry is a recipient made final here and when its state was stored.
type finalEntry struct {
	seq int64
	at  time.Time
}

// stored records that the final state of recipient seq was stored at at. Called with s.mu
// held.
func (h *shared) stored(seq int64, at time.Time) {
	h.final[seq] = at
	h.finalOrder = append(h.finalOrder, finalEntry{seq, at})
}

// announce records in the shared store that a device attaches here, takes its open
// recipients from gateways that are not running, tells the others, and holds what is now
// this gateway's.
func (h *shared) announce(pin, email string) {
	s := h.s
	heard := make(chan string, 4)
	s.mu.Lock()
	h.route[pin] = h.me
	h.announced[pin]++
	h.heard[pin] = append(h.heard[pin], heard)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		h.heard[pin] = slices.DeleteFunc(h.heard[pin], func(c chan string) bool { return c == heard })
		if len(h.heard[pin]) == 0 {
			delete(h.heard, pin)
		}
	}()
	note := pgNotice{Event: "attached", PIN: pin, Email: email, Gateway: h.me}
	before, err := s.st.shared.AttachedHere(s.ctx, pin, email, note.payload())
	if err != nil {
		s.mu.Lock()
		h.announced[pin]--
		s.mu.Unlock()
		s.log.Warn("record attachment in the push store", "pin", pin, "err", err)
		return
	}
	if before != "" {
		h.waitHeard(pin, before, heard)
	}
	if err := h.takeOver(pin); err != nil {
		s.log.Warn("take over pushes for an attaching device", "pin", pin, "err", err)
	}
}

// waitHeard waits, up to heardWait, for gateway to answer that it heard this gateway's
// notice of pin's attachment: until then it may still deliver to the device.
func (h *shared) waitHeard(pin, gateway string, heard <-chan string) {
	s := h.s
	timeout := time.NewTimer(heardWait)
	defer timeout.Stop()
	for {
		select {
		case from := <-heard:
			if from == gateway {
				return
			}
		case <-timeout.C:
			s.log.Warn("the gateway a device was attached at did not answer its attachment here", "pin", pin, "gateway", gateway, "waited", heardWait)
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// takeOver holds the open recipients for these devices that the store says are this
// gateway's.
func (h *shared) takeOver(pins ...string) error {
	s := h.s
	pins = slices.Sorted(slices.Values(pins)) // locked in one order
	pins = slices.Compact(pins)
	s.mu.Lock()
	ds := make([]*device, len(pins))
	for i, pin := range pins {
		ds[i] = s.device(pin)
	}
	s.mu.Unlock()
	for _, d := range ds {
		d.handing.Lock()
		defer d.handing.Unlock()
	}
	ctx, cancel := context.WithTimeout(s.ctx, 20*time.Second)
	defer cancel()
	open, err := s.st.loadHeld(ctx, pins)
	if err != nil {
		return err
	}
	if n := s.hold(open); n > 0 {
		s.log.Debug("took over queued pushes", "devices", len(pins), "recipients", n)
	}
	return nil
}

// handoverNotices are the notices that tell other gateways of the recipients of a push
// they hold from the start (the push came in here for devices attached there).
func handoverNotices(from string, rs []*recip) []string {
	var out []string
	for i, r := range rs {
		if r.holder == "" || slices.ContainsFunc(rs[:i], func(q *recip) bool { return q.holder == r.holder }) {
			continue
		}
		n := pgNotice{Event: "handover", Gateway: r.holder, From: from}
		for _, q := range rs[i:] {
			if q.holder == r.holder {
				n.PINs = append(n.PINs, q.pin)
			}
		}
		out = append(out, n.payload())
	}
	return out
}

// handOverSoon hands what this gateway holds for pin to the gateway the device attached
// at, in the background; a request while one runs makes it run once more. Called with
// s.mu held.
func (h *shared) handOverSoon(pin string) {
	s := h.s
	if s.closed {
		return // the next start hands it over
	}
	if _, running := h.moving[pin]; running {
		h.moving[pin] = true
		return
	}
	h.moving[pin] = false
	s.background(func() {
		for {
			h.handOver(pin)
			s.mu.Lock()
			if again := h.moving[pin]; again && s.ctx.Err() == nil {
				h.moving[pin] = false
				s.mu.Unlock()
				continue
			}
			delete(h.moving, pin)
			s.mu.Unlock()
			return
		}
	})
}

func (h *shared) handOver(pin string) {
	s := h.s
	s.mu.Lock()
	d := s.devices[pin]
	s.mu.Unlock()
	if d == nil {
		return
	}
	d.handing.Lock()
	defer d.handing.Unlock()
	d.sending.Lock() // a send in flight ends first
	defer d.sending.Unlock()
	s.mu.Lock()
	to := h.route[pin]
	if to == "" || to == h.me || d.attached {
		s.mu.Unlock()
		return
	}
	rs := slices.Clone(d.queue)
	for _, r := range s.pending {
		if r.pin == pin {
			rs = append(rs, r)
		}
	}
	s.mu.Unlock()
	if len(rs) == 0 {
		return
	}
	seqs := make([]int64, len(rs))
	for i, r := range rs {
		seqs[i] = r.seq
	}
	ctx, cancel := context.WithTimeout(s.ctx, 20*time.Second)
	defer cancel()
	note := pgNotice{Event: "handover", PINs: []string{pin}, Gateway: to, From: h.me}
	moved, err := s.st.shared.HandOver(ctx, seqs, to, note.payload())
	if errors.Is(err, errGatewayDown) {
		// Keep them; where the device attaches next, they go.
		s.mu.Lock()
		if h.route[pin] == to {
			delete(h.route, pin)
		}
		s.mu.Unlock()
		s.log.Info("not handing pushes over to a gateway that is not running", "pin", pin, "gateway", to)
		return
	}
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Warn("hand over queued pushes", "pin", pin, "to", to, "err", err)
		}
		return
	}
	n := 0
	s.mu.Lock()
	for _, r := range rs {
		if moved[r.seq] && !r.final {
			h.release(r)
			n++
		}
	}
	s.mu.Unlock()
	if n > 0 {
		s.log.Info("handed over queued pushes", "pin", pin, "to", to, "recipients", n)
	}
}

// stateMoved marks, in memory only, a recipient handed over to another gateway: final
// here, and never stored (the store keeps it queued or pending, now the other's).
const stateMoved rim.State = "moved"

// release drops a recipient handed over to another gateway. Called with s.mu held.
func (h *shared) release(r *recip) {
	s := h.s
	s.drop(r, stateMoved)
}

// cancelShared cancels the queued recipients of the push with this key wherever they
// are held: here; by a gateway that is not running (they are taken over and cancelled
// here); by a running one (it is asked, and its answer awaited up to 5 s). It returns how
// many it cancelled.
func (h *shared) cancelShared(key int64) (int, error) {
	s := h.s
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	this := func(p *push) bool { return p.key == key }
	n := s.cancelHeld(this)
	pins, err := s.st.shared.ClaimPush(ctx, key)
	if err != nil {
		return n, err
	}
	for _, pin := range pins {
		if err := h.takeOver(pin); err != nil {
			return n, err
		}
	}
	if len(pins) > 0 {
		n += s.cancelHeld(this)
	}
	held, err := s.st.shared.QueuedElsewhere(ctx, key)
	if err != nil || len(held) == 0 {
		return n, err
	}
	asked := map[string]bool{}
	seqs := make([]int64, 0, len(held))
	for seq, gw := range held {
		seqs = append(seqs, seq)
		if !asked[gw] {
			asked[gw] = true
			if err := s.st.shared.Notify(ctx, pgNotice{Event: "cancel", Gateway: gw, Push: key}.payload()); err != nil {
				return n, err
			}
		}
	}
	var states map[int64]rim.State
	for deadline := time.Now().Add(5 * time.Second); ; {
		if states, err = s.st.shared.States(ctx, seqs); err != nil {
			return n, err
		}
		open := false
		for _, st := range states {
			open = open || st == rim.StateQueued
		}
		if !open || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, st := range states {
		if st == rim.StateCancelled {
			n++
		}
	}
	return n, nil
}

// ackShared handles a device's application acknowledgement for a push this gateway does
// not wait on: handed over to it meanwhile (it takes it over and acknowledges), or waited
// on by another gateway (told with a notice naming the push's source). It reports whether
// a gateway waits on it; the source is as for Server.ack.
func (h *shared) ackShared(pin, pushID string, source *string, code int) (bool, error) {
	s := h.s
	if err := h.takeOver(pin); err == nil {
		if ok, err := s.ack(pin, pushID, source, code); ok || err != nil {
			return ok, err
		}
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	waiting, err := s.st.shared.PendingHolders(ctx, pushID, pin, source)
	switch {
	case err != nil:
		return false, nil
	case len(waiting) > 1:
		return false, errAmbiguousAck
	case len(waiting) == 0 || waiting[0].Gateway == h.me:
		return false, nil
	}
	holder := waiting[0].Gateway
	note := pgNotice{Event: "ack", PIN: pin, PushID: pushID, Source: waiting[0].Source, Code: code, Gateway: holder}
	if err := s.st.shared.Notify(ctx, note.payload()); err != nil {
		s.log.Warn("pass an acknowledgement on", "pin", pin, "push_id", pushID, "gateway", holder, "err", err)
		return false, nil
	}
	return true, nil
}
