package store

// What the push store keeps: pushes and their recipients written, their states updated, and
// pushes, open recipients and devices read back.

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// InsertPush stores a push and its recipients; it sets p.Key and the recipients' Seq.
func (st *base) InsertPush(ctx context.Context, p *Push, rs []*Recipient, notices []string) error {
	return st.do(ctx, st.pushOp(p, rs, notices))
}

// pushOp stores a push and its recipients; it sets p.Key and the recipients' Seq.
func (st *base) pushOp(p *Push, rs []*Recipient, notices []string) *op {
	return &op{
		fn:    func(tx *wtx) error { return insertPush(tx, p, rs, notices) },
		pipe:  func(b *pgx.Batch, res *error) { pipeInsertPush(b, res, st.d.instance, p, rs, notices) },
		adopt: func() bool { return st.adoptPush(p, rs) },
		// Nothing to undo when the only statement that can fail on input (the push row, on a
		// duplicate id) does nothing.
		single: len(rs) == 1,
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// insertPush stores a push and its recipients; it sets p.Key and the recipients' Seq.
func insertPush(tx *wtx, p *Push, rs []*Recipient, notices []string) error {
	q := `INSERT INTO pushes(push_id,source,headers,body,request_uri,reliability,deliver_before,deliver_after,notify_url,notify_pap,pap_version,accepted_at)
		VALUES(?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(push_id,source) DO NOTHING`
	args := []any{p.ID, p.Source, string(p.Header), p.Body, p.RequestURI, p.Reliability,
		unixMs(p.DeliverBefore), unixMs(p.DeliverAfter), p.NotifyURL, boolInt(p.NotifyPAP), p.PAPVersion, unixMs(p.AcceptedAt)}
	if tx.st.d.pg {
		q = `INSERT INTO pushes(push_id,source,headers,body,request_uri,reliability,deliver_before,deliver_after,notify_url,notify_pap,pap_version,accepted_at,gateway)
		VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(push_id,source) DO NOTHING`
		args = append(args, tx.st.d.instance)
	}
	var ok bool
	var err error
	p.Key, ok, err = tx.insert(q, "id", args...)
	if err != nil {
		return err
	}
	if !ok {
		return ErrDuplicate // the source used this push id before
	}
	for _, r := range rs {
		if tx.st.d.pg {
			r.Seq, _, err = tx.insert("INSERT INTO recipients(pid,pin,port,state,updated_at,gateway) VALUES(?,?,?,'queued',?,?)", "seq", p.Key, r.PIN, r.Port, unixMs(p.AcceptedAt), cmp.Or(r.Holder, tx.st.d.instance))
		} else {
			r.Seq, _, err = tx.insert("INSERT INTO recipients(pid,pin,port,state,updated_at) VALUES(?,?,?,'queued',?)", "seq", p.Key, r.PIN, r.Port, unixMs(p.AcceptedAt))
		}
		if err != nil {
			return err
		}
	}
	for _, n := range notices {
		if _, err := tx.exec(pgNotifySQL, Channel, n); err != nil {
			return err
		}
	}
	return nil
}

// pgInsertPush stores a push and its recipients in one PostgreSQL statement; no row
// comes back when the source used the push id before.
const pgInsertPush = `WITH p AS (
	INSERT INTO pushes(push_id,source,headers,body,request_uri,reliability,deliver_before,deliver_after,notify_url,notify_pap,pap_version,accepted_at,gateway)
	VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$15) ON CONFLICT(push_id,source) DO NOTHING RETURNING id
)
INSERT INTO recipients(pid,pin,port,state,updated_at,gateway)
SELECT p.id, x.pin, x.port, 'queued', $12, x.holder FROM p, unnest($13::text[], $14::int[], $16::text[]) WITH ORDINALITY AS x(pin, port, holder, ord) ORDER BY x.ord
RETURNING pid, seq, pin`

func pipeInsertPush(b *pgx.Batch, res *error, instance string, p *Push, rs []*Recipient, notices []string) {
	pins := make([]string, len(rs))
	ports := make([]int32, len(rs))
	holders := make([]string, len(rs))
	byPIN := make(map[string]*Recipient, len(rs))
	for i, r := range rs {
		pins[i], ports[i], holders[i], byPIN[r.PIN] = r.PIN, int32(r.Port), cmp.Or(r.Holder, instance), r
	}
	b.Queue(pgInsertPush, p.ID, p.Source, string(p.Header), p.Body, p.RequestURI, p.Reliability,
		unixMs(p.DeliverBefore), unixMs(p.DeliverAfter), p.NotifyURL, boolInt(p.NotifyPAP), p.PAPVersion, unixMs(p.AcceptedAt),
		pins, ports, instance, holders).Query(func(rows pgx.Rows) error {
		n := 0
		for rows.Next() {
			var pid, seq int64
			var pin string
			if err := rows.Scan(&pid, &seq, &pin); err != nil {
				*res = err
				return nil
			}
			p.Key = pid
			if r := byPIN[pin]; r != nil {
				r.Seq = seq
			}
			n++
		}
		if rows.Err() == nil && n == 0 {
			*res = ErrDuplicate // the source used this push id before
		}
		return rows.Err()
	})
	for _, n := range notices {
		b.Queue(pgNotifySQL, Channel, n)
	}
}

// adoptPush reports whether the stored push with p's id and source is p itself (same
// gateway, acceptance time and body), and then takes its keys.
func (st *base) adoptPush(p *Push, rs []*Recipient) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var key int64
	err := st.db.QueryRowContext(ctx, st.d.bind("SELECT id FROM pushes WHERE push_id=? AND source=? AND accepted_at=? AND body=? AND gateway=?"),
		p.ID, p.Source, unixMs(p.AcceptedAt), p.Body, st.d.instance).Scan(&key)
	if err != nil {
		return false
	}
	rows, err := st.db.QueryContext(ctx, st.d.bind("SELECT seq, pin FROM recipients WHERE pid=?"), key)
	if err != nil {
		return false
	}
	defer rows.Close()
	seqs := map[string]int64{}
	for rows.Next() {
		var seq int64
		var pin string
		if rows.Scan(&seq, &pin) != nil {
			return false
		}
		seqs[pin] = seq
	}
	if rows.Err() != nil || len(seqs) != len(rs) {
		return false
	}
	for _, r := range rs {
		if r.Seq = seqs[r.PIN]; r.Seq == 0 {
			return false
		}
	}
	p.Key = key
	return true
}

// SetState records a recipient's state.
func (st *base) SetState(ctx context.Context, seq int64, u Update) error {
	return st.do(ctx, st.stateOp(seq, u))
}

// SetStateLater records a recipient's state in a coming commit; then gets the outcome.
func (st *base) SetStateLater(seq int64, u Update, then func(error)) {
	st.later(st.stateOp(seq, u), then)
}

const setStateSQL = "UPDATE recipients SET state=?, code=?, reason=?, transport_at=?, updated_at=? WHERE seq=?"

// pgSetState also names the gateway: a recipient handed over to another gateway meanwhile
// is that gateway's to record.
const pgSetState = "UPDATE recipients SET state=$1, code=$2, reason=$3, transport_at=$4, updated_at=$5 WHERE seq=$6 AND gateway=$7"

// stateOp records a recipient's state, with the device's reason when it refused the push.
func (st *base) stateOp(seq int64, u Update) *op {
	args := []any{u.State, u.Code, u.Reason, unixMs(u.TransportAt), unixMs(u.At), seq}
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
					err = ErrMoved
				}
			}
			return err
		},
		pipe: func(b *pgx.Batch, res *error) {
			b.Queue(pgSetState, args...).Exec(func(ct pgconn.CommandTag) error {
				if ct.RowsAffected() == 0 {
					*res = ErrMoved
				}
				return nil
			})
		},
		single: true,
	}
}

// where is the lookup's condition on pushes and its arguments.
func (sc Scope) where(pushID string) (string, []any) {
	if sc.All {
		return "push_id=?", []any{pushID}
	}
	return "push_id=? AND source=?", []any{pushID, sc.Source}
}

// PushStatus reads the latest push with this id in the scope and its recipients.
func (st *base) PushStatus(ctx context.Context, sc Scope, pushID string) (Status, error) {
	var ps Status
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
		rs.TransportAt, rs.UpdatedAt = fromMs(ta), fromMs(up)
		ps.Recipients = append(ps.Recipients, rs)
	}
	return ps, rows.Err()
}

// LoadOpen reads every push that still has queued or pending recipients held by this
// gateway (in SQLite, all of them).
func (st *base) LoadOpen(ctx context.Context) ([]OpenPush, error) {
	if st.d.pg {
		return st.loadHeld(ctx, " AND r.gateway = $1", st.d.instance)
	}
	return st.loadHeld(ctx, "")
}

// loadHeld reads the open recipients that the condition (cond, on recipients r) selects,
// with their pushes, in seq order.
func (st *base) loadHeld(ctx context.Context, cond string, args ...any) ([]OpenPush, error) {
	q := `SELECT r.seq, r.pin, r.port, r.state, r.transport_at, p.id, p.push_id, p.source, p.headers, p.body,
		p.request_uri, p.reliability, p.deliver_before, p.deliver_after, p.notify_url, p.notify_pap, p.pap_version, p.accepted_at
		FROM recipients r JOIN pushes p ON p.id = r.pid WHERE r.state IN ('queued','pending')` + cond
	rows, err := st.db.QueryContext(ctx, q+" ORDER BY r.seq", args...)
	if err != nil {
		return nil, fmt.Errorf("load queued pushes: %w", err)
	}
	defer rows.Close()
	byKey := map[int64]int{} // index in out
	var out []OpenPush
	for rows.Next() {
		r := &Recipient{}
		p := &Push{}
		var ta, db, da, acc int64
		var hdr string
		var npap int
		if err := rows.Scan(&r.Seq, &r.PIN, &r.Port, &r.State, &ta, &p.Key, &p.ID, &p.Source, &hdr, &p.Body,
			&p.RequestURI, &p.Reliability, &db, &da, &p.NotifyURL, &npap, &p.PAPVersion, &acc); err != nil {
			return nil, fmt.Errorf("load queued pushes: %w", err)
		}
		r.TransportAt = fromMs(ta)
		i, ok := byKey[p.Key]
		if !ok {
			p.Header = []byte(hdr)
			p.DeliverBefore, p.DeliverAfter, p.AcceptedAt = fromMs(db), fromMs(da), fromMs(acc)
			p.NotifyPAP = npap != 0
			i = len(out)
			byKey[p.Key] = i
			out = append(out, OpenPush{Push: p})
		}
		out[i].Recipients = append(out[i].Recipients, r)
	}
	return out, rows.Err()
}

// Devices reads the device directory.
func (st *base) Devices(ctx context.Context) (map[string]Device, error) {
	q := "SELECT pin, email, '' FROM devices"
	if st.d.pg {
		q = "SELECT pin, email, gateway FROM devices"
	}
	rows, err := st.db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("load devices: %w", err)
	}
	defer rows.Close()
	m := map[string]Device{}
	for rows.Next() {
		var dev Device
		if err := rows.Scan(&dev.PIN, &dev.Email, &dev.Gateway); err != nil {
			return nil, err
		}
		m[dev.PIN] = dev
	}
	return m, rows.Err()
}

const saveDeviceSQL = "INSERT INTO devices(pin,email) VALUES(?,?) ON CONFLICT(pin) DO UPDATE SET email=excluded.email"

var pgSaveDevice = (&dialect{pg: true}).bind(saveDeviceSQL)

// SaveDevice records a device's e-mail.
func (st *base) SaveDevice(ctx context.Context, pin, email string) error {
	return st.do(ctx, &op{
		fn: func(tx *wtx) error {
			_, err := tx.exec(saveDeviceSQL, pin, email)
			return err
		},
		pipe:   func(b *pgx.Batch, _ *error) { b.Queue(pgSaveDevice, pin, email) },
		single: true,
	})
}

// PushExists reports whether a push with this id was ever stored in the scope.
func (st *base) PushExists(ctx context.Context, sc Scope, pushID string) (bool, error) {
	_, err := st.LatestPush(ctx, sc, pushID)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// LatestPush returns the key of the latest push with this id in the scope, or ErrNotFound.
func (st *base) LatestPush(ctx context.Context, sc Scope, pushID string) (int64, error) {
	var key int64
	cond, args := sc.where(pushID)
	err := st.db.QueryRowContext(ctx, st.d.bind("SELECT id FROM pushes WHERE "+cond+" ORDER BY id DESC LIMIT 1"), args...).Scan(&key)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return key, err
}
