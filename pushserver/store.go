package pushserver

// The push store (internal/store) as the gateway uses it: its pushes and recipients turned
// into the store's records and back, and the store's errors into the gateway's.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/bbsim/bbsim/pushserver/internal/store"
	"github.com/bbsim/bbsim/rim"
)

// pushStore is the push store; shared is the same store when gateways share it
// (PostgreSQL, handover.go), else nil.
type pushStore struct {
	store.Store
	shared store.Shared
}

var (
	errMoved       = store.ErrMoved
	errGatewayDown = store.ErrGatewayDown
)

// isPostgresURL reports whether a push-db setting names a PostgreSQL database.
func isPostgresURL(s string) bool { return store.IsPostgresURL(s) }

// scope is whose pushes a lookup by push id sees (store.Scope).
type scope = store.Scope

// anySource is the scope of a gateway without push authentication: any push with the id.
var anySource = store.AnySource

// sourceScope is the scope of one source's pushes.
func sourceScope(source string) scope { return scope{Source: source} }

// openStore opens the push store: SQLite in dir (push.db), or the PostgreSQL database
// pushDB names (postgres://…), shared with other gateways, each under its own instance
// name ("" is "default"). ctx bounds the opening (PostgreSQL's dial and schema).
func openStore(ctx context.Context, dir, pushDB, instance string, log *slog.Logger) (*pushStore, error) {
	st, err := store.Open(ctx, store.Options{Dir: dir, URL: pushDB, Instance: instance, Logger: log})
	if err != nil {
		return nil, err
	}
	ps := &pushStore{Store: st}
	ps.shared, _ = st.(store.Shared)
	return ps, nil
}

// storeErr turns the store's sentinels into the gateway's.
func storeErr(err error) error {
	switch {
	case errors.Is(err, store.ErrDuplicate):
		return ErrDuplicate
	case errors.Is(err, store.ErrNotFound):
		return ErrNotFound
	}
	return err
}

// insertPush stores a push (its headers as hdr) and its recipients; it fills p.key and the
// recipients' seq.
func (st *pushStore) insertPush(ctx context.Context, p *push, hdr []byte, rs []*recip) error {
	sp := &store.Push{ID: p.id, Source: p.source, Header: hdr, Body: p.body, RequestURI: p.requestURI,
		Reliability: p.reliability, DeliverBefore: p.deliverBefore, DeliverAfter: p.deliverAfter,
		NotifyURL: p.notifyURL, NotifyPAP: p.notifyPAP, PAPVersion: p.papVersion, AcceptedAt: p.acceptedAt}
	srs := make([]store.Recipient, len(rs))
	ptrs := make([]*store.Recipient, len(rs))
	for i, r := range rs {
		srs[i] = store.Recipient{PIN: r.pin, Port: r.port, State: r.state, Holder: r.holder}
		ptrs[i] = &srs[i]
	}
	if err := st.InsertPush(ctx, sp, ptrs, handoverNotices(st.Instance(), rs)); err != nil {
		return storeErr(err)
	}
	p.key = sp.Key
	for i, r := range rs {
		r.seq = srs[i].Seq
	}
	return nil
}

// setState records a recipient's state.
func (st *pushStore) setState(ctx context.Context, r *recip, state rim.State, code int, transportAt, at time.Time) error {
	return st.SetState(ctx, r.seq, store.Update{State: state, Code: code, TransportAt: transportAt, At: at})
}

// setStateLater records a recipient's state, with the device's reason when it refused the
// push, in a coming commit; then gets the outcome on the store's writer.
func (st *pushStore) setStateLater(r *recip, state rim.State, code int, reason string, transportAt, at time.Time, then func(error)) {
	st.SetStateLater(r.seq, store.Update{State: state, Code: code, Reason: reason, TransportAt: transportAt, At: at}, then)
}

type storedOpen struct {
	p  *push
	rs []*recip
}

// loadOpen reads every push that still has queued or pending recipients held by this
// gateway (in SQLite, all of them).
func (st *pushStore) loadOpen(ctx context.Context) ([]storedOpen, error) {
	open, err := st.LoadOpen(ctx)
	if err != nil {
		return nil, err
	}
	return fromStored(open)
}

// loadHeld reads the open recipients this gateway holds for these PINs, with their pushes.
func (st *pushStore) loadHeld(ctx context.Context, pins []string) ([]storedOpen, error) {
	open, err := st.shared.LoadHeld(ctx, pins)
	if err != nil {
		return nil, err
	}
	return fromStored(open)
}

func fromStored(open []store.OpenPush) ([]storedOpen, error) {
	out := make([]storedOpen, len(open))
	for i, o := range open {
		sp := o.Push
		p := &push{key: sp.Key, id: sp.ID, source: sp.Source, headers: http.Header{}, body: sp.Body,
			requestURI: sp.RequestURI, reliability: sp.Reliability, deliverBefore: sp.DeliverBefore,
			deliverAfter: sp.DeliverAfter, notifyURL: sp.NotifyURL, notifyPAP: sp.NotifyPAP,
			papVersion: sp.PAPVersion, acceptedAt: sp.AcceptedAt}
		if err := json.Unmarshal(sp.Header, &p.headers); err != nil {
			return nil, fmt.Errorf("load push %s headers: %w", p.id, err)
		}
		rs := make([]*recip, len(o.Recipients))
		for j, r := range o.Recipients {
			rs[j] = &recip{seq: r.Seq, p: p, pin: r.PIN, port: r.Port, state: r.State, transportAt: r.TransportAt}
		}
		out[i] = storedOpen{p: p, rs: rs}
	}
	return out, nil
}

// storedDevice is a device directory entry: its e-mail and, with a shared store, the
// gateway it attached at last.
type storedDevice struct{ email, gateway string }

// loadDevices reads the device directory.
func (st *pushStore) loadDevices() (map[string]storedDevice, error) {
	devs, err := st.Devices(context.Background())
	if err != nil {
		return nil, err
	}
	m := make(map[string]storedDevice, len(devs))
	for pin, d := range devs {
		m[pin] = storedDevice{email: d.Email, gateway: d.Gateway}
	}
	return m, nil
}

// pushStatus reads the latest push with this id in the scope and its recipients.
func (st *pushStore) pushStatus(ctx context.Context, sc scope, pushID string) (PushStatus, error) {
	s, err := st.PushStatus(ctx, sc, pushID)
	if err != nil {
		return PushStatus{}, storeErr(err)
	}
	ps := PushStatus{PushID: s.PushID, Source: s.Source, AcceptedAt: s.AcceptedAt}
	for _, r := range s.Recipients {
		rs := RecipientStatus{PIN: r.PIN, Port: r.Port, State: r.State, Code: r.Code, Reason: r.Reason, UpdatedAt: r.UpdatedAt}
		if !r.TransportAt.IsZero() {
			rs.TransportAt = &r.TransportAt
		}
		ps.Recipients = append(ps.Recipients, rs)
	}
	return ps, nil
}

// latestPush returns the key of the latest push with this id in the scope, or ErrNotFound.
func (st *pushStore) latestPush(ctx context.Context, sc scope, pushID string) (int64, error) {
	key, err := st.LatestPush(ctx, sc, pushID)
	return key, storeErr(err)
}
