package pushserver

// Status and cancellation of a push, as the RIM, PAP and BIS front ends ask for them.

import (
	"github.com/bbsim/bbsim/rim"
)

// PushState returns the per-recipient states of the latest push with this id, whatever its
// source.
func (s *Server) PushState(pushID string) (PushStatus, error) {
	return s.pushState(anySource, pushID)
}

// PushStateOf is PushState for the push source sent with this id (a BIS application, an
// initiator): another source's push with the same id is not found.
func (s *Server) PushStateOf(source, pushID string) (PushStatus, error) {
	return s.pushState(sourceScope(source), pushID)
}

func (s *Server) pushState(sc scope, pushID string) (PushStatus, error) {
	if err := s.usable(); err != nil {
		return PushStatus{}, err
	}
	return s.st.pushStatus(s.ctx, sc, pushID)
}

// Cancel cancels every still-queued recipient of the latest push with this id, whatever its
// source. It returns ErrNotFound for an unknown push id and ErrNotCancellable when nothing
// is left to cancel.
func (s *Server) Cancel(pushID string) error { return s.cancelIn(anySource, pushID) }

// CancelOf is Cancel for the push source sent with this id (a BIS application, an
// initiator): another source's push with the same id is not found.
func (s *Server) CancelOf(source, pushID string) error {
	return s.cancelIn(sourceScope(source), pushID)
}

func (s *Server) cancelIn(sc scope, pushID string) error {
	if err := s.usable(); err != nil {
		return err
	}
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
	return s.ho.cancel(key, pins)
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
