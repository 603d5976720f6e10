package pushserver

// Results: a recipient made final once (delivered, acknowledged, refused, expired), stored,
// counted and reported to the initiator.

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/bbsim/bbsim/rim"
)

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
	s.pending[pendingKey(r.p, r.pin)] = r
	s.mu.Unlock()
	if err := s.st.setState(s.ctx, r, rim.StatePending, 0, now, now); err != nil {
		s.log.Warn("store pending state", "push_id", r.p.id, "pin", r.pin, "err", err)
	}
}

// errAmbiguousAck is an acknowledgement that names no source while pushes of several
// sources with its push id wait on the device.
var errAmbiguousAck = errors.New("pushes of several sources wait with this push id")

// ack handles an application-level acknowledgement from a device, for the push with the
// id from the source its packets named (X-Bbsim-Push-Source). An acknowledgement that names
// no source (nil: curl's, say) is for the only push with the id that waits on the device:
// one source's acknowledgement never finishes another's push.
func (s *Server) ack(pin, pushID string, source *string, code int) (bool, error) {
	s.mu.Lock()
	var r *recip
	if source != nil {
		r = s.pending[acceptKey(pushID, *source, pin)]
	} else {
		for _, q := range s.pending {
			if q.pin != pin || q.p.id != pushID {
				continue
			}
			if r != nil {
				s.mu.Unlock()
				return false, errAmbiguousAck
			}
			r = q
		}
	}
	s.mu.Unlock()
	if r == nil {
		return false, nil
	}
	if code == 1000 || code == 200 {
		s.finish(r, rim.StateDelivered, 1000, s.now().UTC())
	} else {
		s.finish(r, rim.StateFailed, code, s.now().UTC())
	}
	return true, nil
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
	s.drop(r, state)
	if state == rim.StateDelivered {
		if d := s.devices[r.pin]; d != nil {
			d.delivered++
		}
	}
	transportAt := r.transportAt
	s.ho.finishing(r)
	s.mu.Unlock()
	// The device loop goes on at once; the result is reported once the state is stored.
	s.st.setStateLater(r, state, code, reason, transportAt, at, func(err error) {
		s.ho.finished(r)
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

// drop takes an open recipient out of this gateway's queues and pending acknowledgements
// and makes it final in state; its push leaves the index with its last open recipient.
// Called with s.mu held.
func (s *Server) drop(r *recip, state rim.State) {
	if r.state == rim.StatePending {
		delete(s.pending, pendingKey(r.p, r.pin))
	} else {
		s.dequeue(r)
	}
	r.final = true
	r.state = state
	r.p.open--
	if r.p.open == 0 {
		s.active--
		if s.byID[r.p.id] == r.p {
			delete(s.byID, r.p.id)
		}
	}
}

// report tells the world a recipient's final state: metrics, log, OnResult and the
// initiator's notification URL. It does not block.
func (s *Server) report(r *recip, state rim.State, code int, reason string, at time.Time) {
	s.m.count(state)
	if s.log.Enabled(context.Background(), slog.LevelDebug) { // its arguments cost allocations
		s.log.Debug("push result", "push_id", r.p.id, "pin", r.pin, "state", state, "code", code)
	}
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
