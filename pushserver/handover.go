package pushserver

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

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

const pgChannel = "bbsim_push"

// pgNotice is what gateways tell each other on pgChannel.
type pgNotice struct {
	Event string   `json:"event"`          // attached | handover | cancel | ack | directory
	PIN   string   `json:"pin,omitempty"`  // attached, ack: the device
	PINs  []string `json:"pins,omitempty"` // handover: the devices whose recipients moved
	Email string   `json:"email,omitempty"`
	// Gateway: attached, where the device attached; handover, the new holder.
	Gateway string `json:"gateway"`
	From    string `json:"from,omitempty"`    // handover: the gateway that let them go
	Push    int64  `json:"push,omitempty"`    // cancel: the push (pushes.id) whose queued recipients to cancel
	PushID  string `json:"push_id,omitempty"` // ack: the push the device acknowledged
	Code    int    `json:"code,omitempty"`    // ack: the device's code
}

func (n pgNotice) payload() string {
	b, _ := json.Marshal(n)
	return string(b)
}

// sharing reports whether this gateway shares its push store with others.
func (s *Server) sharing() bool { return s.st.d.pg }

// listen follows the other gateways' notices for the server's life, reconnecting after
// the database connection fails.
func (s *Server) listen(ready chan<- struct{}) {
	defer s.wg.Done()
	var once sync.Once
	listening := func() { once.Do(func() { close(ready) }) }
	backoff := 100 * time.Millisecond
	for {
		listened, err := s.listenOnce(listening)
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

func (s *Server) listenOnce(listening func()) (listened bool, err error) {
	conn, err := pgx.Connect(s.ctx, s.st.url)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(s.ctx, "LISTEN "+pgChannel); err != nil {
		return false, err
	}
	// What happened while nobody here listened is in the tables.
	if err := s.catchUp(); err != nil {
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
		s.onNotice(ev)
	}
}

func (s *Server) onNotice(ev pgNotice) {
	me := s.st.d.instance
	pin, _ := rim.NormalizePIN(ev.PIN)
	switch {
	case ev.Event == "attached" && pin != "":
		s.mu.Lock()
		defer s.mu.Unlock()
		if ev.Gateway == me {
			if s.announced[pin] > 0 {
				s.announced[pin]--
			}
			return
		}
		if s.announced[pin] > 0 {
			// This gateway's own announcement is still on its way: the device attached
			// here after it attached there.
			return
		}
		s.moved(pin, ev.Gateway, ev.Email)
	case ev.Event == "directory" && ev.Gateway != me:
		s.background(func() {
			if err := s.learnDirectory(); err != nil && s.ctx.Err() == nil {
				s.log.Warn("read the shared device directory", "err", err)
			}
		})
	case ev.Gateway != me:
		// The other notices are for one gateway.
	case ev.Event == "handover":
		var pins []string
		for _, p := range ev.PINs {
			if pin, ok := rim.NormalizePIN(p); ok {
				pins = append(pins, pin)
			}
		}
		s.mu.Lock()
		s.takeSoon(pins)
		s.mu.Unlock()
	case ev.Event == "cancel":
		s.background(func() { s.cancelHeld(func(p *push) bool { return p.key == ev.Push }) })
	case ev.Event == "ack" && pin != "":
		s.background(func() {
			if !s.ack(pin, ev.PushID, ev.Code) {
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
func (s *Server) takeSoon(pins []string) {
	if s.closed || len(pins) == 0 {
		return
	}
	for _, pin := range pins {
		s.taking[pin] = true
	}
	if s.takerBusy {
		return
	}
	s.takerBusy = true
	s.background(func() {
		for {
			s.mu.Lock()
			pins := slices.Sorted(maps.Keys(s.taking))
			clear(s.taking)
			if len(pins) == 0 || s.ctx.Err() != nil {
				s.takerBusy = false
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			if err := s.takeOver(pins...); err != nil && s.ctx.Err() == nil {
				s.log.Warn("take over handed-over pushes", "devices", len(pins), "err", err)
			}
		}
	})
}

// moved records that a device attached at another gateway: it is no longer attached here,
// and what this gateway holds for it goes there. Called with s.mu held.
func (s *Server) moved(pin, gateway, email string) {
	s.route[pin] = gateway
	d := s.device(pin)
	if email != "" && d.email != email {
		d.email = email
		s.emails[lower(email)] = pin
	}
	if d.attached {
		s.detachLocked(d)
		s.log.Info("device attached at another gateway", "pin", pin, "gateway", gateway)
	}
	if s.holds(d) {
		s.handOverSoon(pin)
	}
}

// holds reports whether this gateway holds open recipients for d. Called with s.mu held.
func (s *Server) holds(d *device) bool {
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
func (s *Server) shareDirectory(ctx context.Context, devs []Device) error {
	if len(devs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	tx, err := s.st.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, d := range devs {
		pin, _ := rim.NormalizePIN(d.PIN) // checked by New
		if _, err := tx.ExecContext(ctx, `INSERT INTO devices(pin,email) VALUES($1,$2) ON CONFLICT(pin) DO UPDATE
			SET email=CASE WHEN excluded.email <> '' THEN excluded.email ELSE devices.email END`, pin, d.Email); err != nil {
			return err
		}
	}
	if err := pgNotify(ctx, tx, pgNotice{Event: "directory", Gateway: s.st.d.instance}.payload()); err != nil {
		return err
	}
	return tx.Commit()
}

// learnDirectory adds the shared directory's devices and e-mails to this gateway's.
func (s *Server) learnDirectory() error {
	devs, err := s.st.loadDevices()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.learn(devs)
	return nil
}

// learn adds devices read from the store to the directory. Called with s.mu held.
func (s *Server) learn(devs map[string]storedDevice) {
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
func (s *Server) catchUp() error {
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
	me := s.st.d.instance
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.announced)
	s.learn(devs)
	for pin, dev := range devs {
		if dev.gateway != "" && dev.gateway != me {
			s.moved(pin, dev.gateway, dev.email)
		} else if dev.gateway == me {
			s.route[pin] = me
		}
	}
	return nil
}

// sweeper takes, now and then, the open recipients held by gateways that are not running:
// one that crashed (its lock is freed when the database notices) or stopped and did not
// come back. This gateway then delivers them, hands them over to where their device is, or
// expires them in time.
func (s *Server) sweeper() {
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
		s.forgetFinal(time.Now().Add(-finalKept))
		ctx, cancel := context.WithTimeout(s.ctx, 20*time.Second)
		pins, err := s.st.claimStranded(ctx)
		cancel()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("take pushes from stopped gateways", "err", err)
			}
			continue
		}
		for _, pin := range pins {
			if err := s.takeOver(pin); err != nil && s.ctx.Err() == nil {
				s.log.Warn("take over pushes from a stopped gateway", "pin", pin, "err", err)
			}
		}
		s.sweeps.Add(1)
	}
}

// finalKept is how long a recipient made final here is remembered after its state was
// stored: longer than any read of the store that a takeover then makes use of (20 s).
const finalKept = 30 * time.Second

// forgetFinal forgets the recipients whose final state was stored before then.
func (s *Server) forgetFinal(then time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, f := range s.finalOrder {
		if !f.at.Before(then) {
			break
		}
		delete(s.final, f.seq)
		n++
	}
	s.finalOrder = s.finalOrder[n:]
}

// finalEntry is a recipient made final here and when its state was stored.
type finalEntry struct {
	seq int64
	at  time.Time
}

// stored records that the final state of recipient seq was stored at at. Called with s.mu
// held.
func (s *Server) stored(seq int64, at time.Time) {
	s.final[seq] = at
	s.finalOrder = append(s.finalOrder, finalEntry{seq, at})
}

// announce records in the shared store that a device attaches here, takes its open
// recipients from gateways that are not running, tells the others, and holds what is now
// this gateway's.
func (s *Server) announce(pin, email string) {
	me := s.st.d.instance
	s.mu.Lock()
	s.route[pin] = me
	s.announced[pin]++
	s.mu.Unlock()
	note := pgNotice{Event: "attached", PIN: pin, Email: email, Gateway: me}
	if err := s.st.attachedHere(s.ctx, pin, email, note.payload()); err != nil {
		s.mu.Lock()
		s.announced[pin]--
		s.mu.Unlock()
		s.log.Warn("record attachment in the push store", "pin", pin, "err", err)
		return
	}
	if err := s.takeOver(pin); err != nil {
		s.log.Warn("take over pushes for an attaching device", "pin", pin, "err", err)
	}
}

// takeOver holds the open recipients for these devices that the store says are this
// gateway's.
func (s *Server) takeOver(pins ...string) error {
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
	open, err := s.st.loadHeld(ctx, " AND r.gateway = $1 AND r.pin = ANY($2)", s.st.d.instance, pins)
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
			if q := s.pending[p.id+"/"+r.pin]; q != nil && q.seq == r.seq {
				continue
			}
			if _, ok := s.final[r.seq]; ok {
				continue // final here: the store learns it in a moment, or did after it was read
			}
			if s.accepting[acceptKey(p.id, p.source, r.pin)] > 0 {
				continue // being accepted here: queued by enqueue once committed
			}
			held[r.seq] = true
			r.p = p
			added++
			if r.state == rim.StatePending {
				s.pending[p.id+"/"+r.pin] = r
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

// handOverSoon hands what this gateway holds for pin to the gateway the device attached
// at, in the background; a request while one runs makes it run once more. Called with
// s.mu held.
func (s *Server) handOverSoon(pin string) {
	if s.closed {
		return // the next start hands it over
	}
	if _, running := s.moving[pin]; running {
		s.moving[pin] = true
		return
	}
	s.moving[pin] = false
	s.background(func() {
		for {
			s.handOver(pin)
			s.mu.Lock()
			if again := s.moving[pin]; again && s.ctx.Err() == nil {
				s.moving[pin] = false
				s.mu.Unlock()
				continue
			}
			delete(s.moving, pin)
			s.mu.Unlock()
			return
		}
	})
}

func (s *Server) handOver(pin string) {
	me := s.st.d.instance
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
	to := s.route[pin]
	if to == "" || to == me || d.attached {
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
	note := pgNotice{Event: "handover", PINs: []string{pin}, Gateway: to, From: me}
	moved, err := s.st.handOver(ctx, seqs, to, note.payload())
	if errors.Is(err, errGatewayDown) {
		// Keep them; where the device attaches next, they go.
		s.mu.Lock()
		if s.route[pin] == to {
			delete(s.route, pin)
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
			s.release(r)
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
func (s *Server) release(r *recip) {
	if r.state == rim.StatePending {
		delete(s.pending, r.p.id+"/"+r.pin)
	} else {
		s.dequeue(r)
	}
	r.final = true
	r.state = stateMoved
	r.p.open--
	if r.p.open == 0 {
		s.active--
		if s.byID[r.p.id] == r.p {
			delete(s.byID, r.p.id)
		}
	}
}

// cancelShared cancels the queued recipients of the push with this key wherever they
// are held: here; by a gateway that is not running (they are taken over and cancelled
// here); by a running one (it is asked, and its answer awaited up to 5 s). It returns how
// many it cancelled.
func (s *Server) cancelShared(key int64) (int, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	this := func(p *push) bool { return p.key == key }
	n := s.cancelHeld(this)
	pins, err := s.st.claimPush(ctx, key)
	if err != nil {
		return n, err
	}
	for _, pin := range pins {
		if err := s.takeOver(pin); err != nil {
			return n, err
		}
	}
	if len(pins) > 0 {
		n += s.cancelHeld(this)
	}
	held, err := s.st.queuedElsewhere(ctx, key)
	if err != nil || len(held) == 0 {
		return n, err
	}
	asked := map[string]bool{}
	seqs := make([]int64, 0, len(held))
	for seq, gw := range held {
		seqs = append(seqs, seq)
		if !asked[gw] {
			asked[gw] = true
			if err := s.st.notify(ctx, pgNotice{Event: "cancel", Gateway: gw, Push: key}.payload()); err != nil {
				return n, err
			}
		}
	}
	var states map[int64]string
	for deadline := time.Now().Add(5 * time.Second); ; {
		if states, err = s.st.states(ctx, seqs); err != nil {
			return n, err
		}
		open := false
		for _, st := range states {
			open = open || rim.State(st) == rim.StateQueued
		}
		if !open || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, st := range states {
		if rim.State(st) == rim.StateCancelled {
			n++
		}
	}
	return n, nil
}

// ackShared handles a device's application acknowledgement for a push this gateway does
// not wait on: handed over to it meanwhile (it takes it over and acknowledges), or waited
// on by another gateway (told with a notice). It reports whether a gateway waits on it.
func (s *Server) ackShared(pin, pushID string, code int) bool {
	if err := s.takeOver(pin); err == nil && s.ack(pin, pushID, code) {
		return true
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	var holder string
	err := s.st.db.QueryRowContext(ctx, `SELECT r.gateway FROM recipients r JOIN pushes p ON p.id = r.pid
		WHERE p.push_id = $1 AND r.pin = $2 AND r.state = $3 ORDER BY p.id DESC LIMIT 1`, pushID, pin, rim.StatePending).Scan(&holder)
	if err != nil || holder == s.st.d.instance {
		return false
	}
	note := pgNotice{Event: "ack", PIN: pin, PushID: pushID, Code: code, Gateway: holder}
	if err := s.st.notify(ctx, note.payload()); err != nil {
		s.log.Warn("pass an acknowledgement on", "pin", pin, "push_id", pushID, "gateway", holder, "err", err)
		return false
	}
	return true
}
