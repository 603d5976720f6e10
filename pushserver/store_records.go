package pushserver

// What the push store keeps: pushes and their recipients written, their states updated, and
// pushes, open recipients and devices read back.

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/bbsim/bbsim/rim"
)

func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMs(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// pushOp stores a push and its recipients; it fills p.key and the recipients' seq.
func (st *store) pushOp(p *push, hdr []byte, rs []*recip) *op {
	return &op{
		fn:    func(tx *wtx) error { return insertPush(tx, p, hdr, rs) },
		pipe:  func(b *pgx.Batch, res *error) { pipeInsertPush(b, res, st.d.instance, p, hdr, rs) },
		adopt: func(st *store) bool { return st.adoptPush(p, rs) },
		// Nothing to undo when the only statement that can fail on input (the push row, on a
		// duplicate id) does nothing.
		single: len(rs) == 1,
	}
}

// insertPush stores a push and its recipients; it fills p.key and the recipients' seq.
func insertPush(tx *wtx, p *push, hdr []byte, rs []*recip) error {
	notifyPAP := 0
	if p.notifyPAP {
		notifyPAP = 1
	}
	q := `INSERT INTO pushes(push_id,source,headers,body,request_uri,reliability,deliver_before,deliver_after,notify_url,notify_pap,pap_version,accepted_at)
		VALUES(?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(push_id,source) DO NOTHING`
	args := []any{p.id, p.source, string(hdr), p.body, p.requestURI, p.reliability,
		unixMs(p.deliverBefore), unixMs(p.deliverAfter), p.notifyURL, notifyPAP, p.papVersion, unixMs(p.acceptedAt)}
	if tx.st.d.pg {
		q = `INSERT INTO pushes(push_id,source,headers,body,request_uri,reliability,deliver_before,deliver_after,notify_url,notify_pap,pap_version,accepted_at,gateway)
		VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(push_id,source) DO NOTHING`
		args = append(args, tx.st.d.instance)
	}
	var ok bool
	var err error
	p.key, ok, err = tx.insert(q, "id", args...)
	if err != nil {
		return err
	}
	if !ok {
		return ErrDuplicate // the source used this push id before
	}
	for _, r := range rs {
		if tx.st.d.pg {
			r.seq, _, err = tx.insert("INSERT INTO recipients(pid,pin,port,state,updated_at,gateway) VALUES(?,?,?,'queued',?,?)", "seq", p.key, r.pin, r.port, unixMs(p.acceptedAt), cmp.Or(r.holder, tx.st.d.instance))
		} else {
			r.seq, _, err = tx.insert("INSERT INTO recipients(pid,pin,port,state,updated_at) VALUES(?,?,?,'queued',?)", "seq", p.key, r.pin, r.port, unixMs(p.acceptedAt))
		}
		if err != nil {
			return err
		}
	}
	for _, n := range handoverNotices(tx.st.d.instance, rs) {
		if _, err := tx.exec(pgNotifySQL, pgChannel, n); err != nil {
			return err
		}
	}
	return nil
}

func (st *store) setState(ctx context.Context, r *recip, state rim.State, code int, transportAt, at time.Time) error {
	return st.do(ctx, st.stateOp(r, state, code, "", transportAt, at))
}

const setStateSQL = "UPDATE recipients SET state=?, code=?, reason=?, transport_at=?, updated_at=? WHERE seq=?"

// pgSetState also names the gateway: a recipient handed over to another gateway meanwhile
// is that gateway's to record.
const pgSetState = "UPDATE recipients SET state=$1, code=$2, reason=$3, transport_at=$4, updated_at=$5 WHERE seq=$6 AND gateway=$7"

// errMoved: the recipient is held by another gateway now (handover.go); its outcome is
// that gateway's to record and report.
var errMoved = errors.New("push store: recipient handed over to another gateway")

// stateOp records a recipient's state, with the device's reason when it refused the push.
func (st *store) stateOp(r *recip, state rim.State, code int, reason string, transportAt, at time.Time) *op {
	args := []any{state, code, reason, unixMs(transportAt), unixMs(at), r.seq}
	if !st.d.pg {
		return &op{
			fn: func(tx *wtx) error {
				_, err := tx.exec(setStateSQL, args...)
				return err
			},
			single: true,
		}
	}
	args = append(args, st.d.instance)
	return &op{
		fn: func(tx *wtx) error {
			res, err := tx.tx.Exec(pgSetState, args...)
			if err == nil {
				if n, _ := res.RowsAffected(); n == 0 {
					err = errMoved
				}
			}
			return err
		},
		pipe: func(b *pgx.Batch, res *error) {
			b.Queue(pgSetState, args...).Exec(func(ct pgconn.CommandTag) error {
				if ct.RowsAffected() == 0 {
					*res = errMoved
				}
				return nil
			})
		},
		single: true,
	}
}

// scope is whose pushes a lookup by push id sees: one source's (a BIS application, or an
// initiator under push authentication), or with all, every source's, the latest first.
// Push ids are unique per source only, so another source's push with the same id is none
// of this one's business: it is not found, not queried, not cancelled, not replaced.
type scope struct {
	source string
	all    bool
}

// anySource is the scope of a gateway without push authentication: any push with the id.
var anySource = scope{all: true}

// where is the lookup's condition on pushes and its arguments.
func (sc scope) where(pushID string) (string, []any) {
	if sc.all {
		return "push_id=?", []any{pushID}
	}
	return "push_id=? AND source=?", []any{pushID, sc.source}
}

// pushStatus reads the latest push with this id in the scope and its recipients.
func (st *store) pushStatus(ctx context.Context, sc scope, pushID string) (PushStatus, error) {
	var ps PushStatus
	var key, acc int64
	cond, args := sc.where(pushID)
	err := st.db.QueryRowContext(ctx, st.d.bind("SELECT id, push_id, source, accepted_at FROM pushes WHERE "+cond+" ORDER BY id DESC LIMIT 1"), args...).
		Scan(&key, &ps.PushID, &ps.Source, &acc)
	if errors.Is(err, sql.ErrNoRows) {
		return ps, ErrNotFound
	}
	if err != nil {
		return ps, fmt.Errorf("read push %s: %w", pushID, err)
	}
	ps.AcceptedAt = fromMs(acc)
	rows, err := st.db.QueryContext(ctx, st.d.bind("SELECT pin, port, state, code, reason, transport_at, updated_at FROM recipients WHERE pid=? ORDER BY seq"), key)
	if err != nil {
		return ps, fmt.Errorf("read push %s recipients: %w", pushID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var rs RecipientStatus
		var ta, up int64
		if err := rows.Scan(&rs.PIN, &rs.Port, &rs.State, &rs.Code, &rs.Reason, &ta, &up); err != nil {
			return ps, err
		}
		if ta != 0 {
			t := fromMs(ta)
			rs.TransportAt = &t
		}
		rs.UpdatedAt = fromMs(up)
		ps.Recipients = append(ps.Recipients, rs)
	}
	return ps, rows.Err()
}

type storedOpen struct {
	p  *push
	rs []*recip
}

// loadOpen reads every push that still has queued or pending recipients held by this
// gateway (in SQLite, all of them).
func (st *store) loadOpen(ctx context.Context) ([]storedOpen, error) {
	if st.d.pg {
		return st.loadHeld(ctx, " AND r.gateway = $1", st.d.instance)
	}
	return st.loadHeld(ctx, "")
}

// loadHeld reads the open recipients that the condition (cond, on recipients r) selects,
// with their pushes, in seq order.
func (st *store) loadHeld(ctx context.Context, cond string, args ...any) ([]storedOpen, error) {
	q := `SELECT r.seq, r.pin, r.port, r.state, r.transport_at, p.id, p.push_id, p.source, p.headers, p.body,
		p.request_uri, p.reliability, p.deliver_before, p.deliver_after, p.notify_url, p.notify_pap, p.pap_version, p.accepted_at
		FROM recipients r JOIN pushes p ON p.id = r.pid WHERE r.state IN ('queued','pending')` + cond
	rows, err := st.db.QueryContext(ctx, q+" ORDER BY r.seq", args...)
	if err != nil {
		return nil, fmt.Errorf("load queued pushes: %w", err)
	}
	defer rows.Close()
	byKey := map[int64]*storedOpen{}
	var out []*storedOpen
	for rows.Next() {
		r := &recip{}
		p := &push{}
		var ta, db, da, acc int64
		var hdr string
		var npap int
		if err := rows.Scan(&r.seq, &r.pin, &r.port, &r.state, &ta, &p.key, &p.id, &p.source, &hdr, &p.body,
			&p.requestURI, &p.reliability, &db, &da, &p.notifyURL, &npap, &p.papVersion, &acc); err != nil {
			return nil, fmt.Errorf("load queued pushes: %w", err)
		}
		if so, ok := byKey[p.key]; ok {
			p = so.p
		} else {
			p.headers = http.Header{}
			if err := json.Unmarshal([]byte(hdr), &p.headers); err != nil {
				return nil, fmt.Errorf("load push %s headers: %w", p.id, err)
			}
			p.deliverBefore, p.deliverAfter, p.acceptedAt = fromMs(db), fromMs(da), fromMs(acc)
			p.notifyPAP = npap != 0
			so := &storedOpen{p: p}
			byKey[p.key] = so
			out = append(out, so)
		}
		r.p = p
		r.transportAt = fromMs(ta)
		byKey[p.key].rs = append(byKey[p.key].rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	res := make([]storedOpen, len(out))
	for i, so := range out {
		res[i] = *so
	}
	return res, nil
}

// storedDevice is a device directory entry: its e-mail and, with a shared store, the
// gateway it attached at last.
type storedDevice struct{ email, gateway string }

func (st *store) loadDevices() (map[string]storedDevice, error) {
	q := "SELECT pin, email, '' FROM devices"
	if st.d.pg {
		q = "SELECT pin, email, gateway FROM devices"
	}
	rows, err := st.db.Query(q)
	if err != nil {
		return nil, fmt.Errorf("load devices: %w", err)
	}
	defer rows.Close()
	m := map[string]storedDevice{}
	for rows.Next() {
		var pin string
		var dev storedDevice
		if err := rows.Scan(&pin, &dev.email, &dev.gateway); err != nil {
			return nil, err
		}
		m[pin] = dev
	}
	return m, rows.Err()
}

const saveDeviceSQL = "INSERT INTO devices(pin,email) VALUES(?,?) ON CONFLICT(pin) DO UPDATE SET email=excluded.email"

var pgSaveDevice = (&dialect{pg: true}).bind(saveDeviceSQL)

func (st *store) saveDevice(ctx context.Context, pin, email string) error {
	return st.do(ctx, &op{
		fn: func(tx *wtx) error {
			_, err := tx.exec(saveDeviceSQL, pin, email)
			return err
		},
		pipe:   func(b *pgx.Batch, _ *error) { b.Queue(pgSaveDevice, pin, email) },
		single: true,
	})
}

// pushExists reports whether a push with this id was ever stored in the scope.
func (st *store) pushExists(ctx context.Context, sc scope, pushID string) (bool, error) {
	_, err := st.latestPush(ctx, sc, pushID)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// latestPush returns the key of the latest push with this id in the scope, or ErrNotFound.
func (st *store) latestPush(ctx context.Context, sc scope, pushID string) (int64, error) {
	var key int64
	cond, args := sc.where(pushID)
	err := st.db.QueryRowContext(ctx, st.d.bind("SELECT id FROM pushes WHERE "+cond+" ORDER BY id DESC LIMIT 1"), args...).Scan(&key)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return key, err
}
