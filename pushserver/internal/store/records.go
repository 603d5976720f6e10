package store

// What the push store keeps: pushes and their recipients written, their states updated, and
// pushes, open recipients and devices read back.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
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

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// pushArgs are the values of a push's row but its id, in the column order of PostgreSQL's
// INSERTs into pushes (pgrecords.go).
func pushArgs(p *Push) []any {
	return []any{p.ID, p.Source, string(p.Header), p.Body, p.RequestURI, p.Reliability,
		unixMs(p.DeliverBefore), unixMs(p.DeliverAfter), p.NotifyURL, boolInt(p.NotifyPAP), p.PAPVersion, unixMs(p.AcceptedAt)}
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

// devices reads the device directory with q, whose rows are a PIN, its e-mail and gateway.
func (st *base) devices(ctx context.Context, q string) (map[string]Device, error) {
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
