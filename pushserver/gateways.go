package pushserver

import "context"

// handover is what the push life cycle asks of the other gateways that share this one's push
// store. A gateway on SQLite has none: solo answers each step with nothing to do. A
// PostgreSQL store may be shared by several gateways, which hand open recipients to where
// their device attached (shared, handover.go); Open picks one of the two, once.
//
// The methods marked "with Server.mu held" run inside the critical sections of the queues
// they follow, so they must not block.
type handover interface {
	// start begins following the other gateways, within ctx, and shares the configured
	// devices with them.
	start(ctx context.Context, devs []Device) error
	// admit is called, with Server.mu held, before a push's commit: it sets recip.holder
	// on the recipients another gateway holds from the start. admitted is called, with
	// Server.mu held, once the commit is over, whether it succeeded or not.
	admit(p *push, rs []*recip)
	admitted(p *push, rs []*recip)
	// queued is called, with Server.mu held, when a recipient joins d's queue.
	queued(d *device)
	// attaching is called before a device attaches here; it reports whether it recorded
	// the device's e-mail in the store.
	attaching(pin, email string) (recorded bool)
	// finishing is called, with Server.mu held, when a recipient held here becomes final;
	// finished once its final state is stored (or failed to be).
	finishing(r *recip)
	finished(r *recip)
	// skip reports, with Server.mu held, whether a recipient read from the store is not to
	// be held here after all (made final here, or being accepted).
	skip(p *push, r *recip) bool
	// cancel cancels what is open of the push with this store key for the recipients in
	// pins (nil: all), and returns the PINs it cancelled (nil when only the count is
	// known) and how many.
	cancel(key int64, pins map[string]bool) ([]string, int, error)
	// ackElsewhere passes on a device's acknowledgement for a push this gateway does not
	// wait on, and reports whether a gateway waits on it.
	ackElsewhere(pin, pushID string, source *string, code int) (bool, error)
	// gateway is, with Server.mu held, the gateway the device attached at last ("" when
	// no other gateway shares the store).
	gateway(pin string) string
}

// solo is the hand-over of a gateway that shares its store with no other.
type solo struct{ s *Server }

var _ handover = solo{}

func (solo) start(context.Context, []Device) error                   { return nil }
func (solo) admit(*push, []*recip)                                   {}
func (solo) admitted(*push, []*recip)                                {}
func (solo) queued(*device)                                          {}
func (solo) attaching(string, string) bool                           { return false }
func (solo) finishing(*recip)                                        {}
func (solo) finished(*recip)                                         {}
func (solo) skip(*push, *recip) bool                                 { return false }
func (solo) ackElsewhere(string, string, *string, int) (bool, error) { return false, nil }
func (solo) gateway(string) string                                   { return "" }

// cancel cancels the queued recipients of the push held here.
func (o solo) cancel(key int64, pins map[string]bool) ([]string, int, error) {
	done := o.s.cancelHeldPINs(func(q *push) bool { return q.key == key }, pins)
	return done, len(done), nil
}
