package store

// What the PostgreSQL store writes differently: which gateway holds each recipient, notices
// sent with the commit, and each operation also as one pipelined statement.

import (
	"cmp"
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// InsertPush stores a push and its recipients, each held by its Holder (or this gateway),
// and sends the notices with the commit; it sets p.Key and the recipients' Seq.
func (st *Postgres) InsertPush(ctx context.Context, p *Push, rs []*Recipient, notices []string) error {
	return st.do(ctx, st.pushOp(p, rs, notices))
}

func (st *Postgres) pushOp(p *Push, rs []*Recipient, notices []string) *op {
	return &op{
		fn:    func(tx *wtx) error { return st.insertPush(tx, p, rs, notices) },
		pipe:  func(b *pgx.Batch, res *error) { pipeInsertPush(b, res, st.d.instance, p, rs, notices) },
		adopt: func() bool { return st.adoptPush(p, rs) },
	}
}

// insertPush is pushOp a statement at a time.
func (st *Postgres) insertPush(tx *wtx, p *Push, rs []*Recipient, notices []string) error {
	q := `INSERT INTO pushes(push_id,source,headers,body,request_uri,reliability,deliver_before,deliver_after,notify_url,notify_pap,pap_version,accepted_at,gateway)
		VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(push_id,source) DO NOTHING`
	var ok bool
	var err error
	if p.Key, ok, err = tx.returning(q, "id", append(pushArgs(p), st.d.instance)...); err != nil || !ok {
		return cmp.Or(err, ErrDuplicate) // the source used this push id before
	}
	for _, r := range rs {
		r.Seq, _, err = tx.returning("INSERT INTO recipients(pid,pin,port,state,updated_at,gateway) VALUES(?,?,?,'queued',?,?)", "seq",
			p.Key, r.PIN, r.Port, unixMs(p.AcceptedAt), cmp.Or(r.Holder, st.d.instance))
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
	args := append(pushArgs(p), pins, ports, instance, holders)
	b.Queue(pgInsertPush, args...).Query(func(rows pgx.Rows) error {
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
func (st *Postgres) adoptPush(p *Push, rs []*Recipient) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var key int64
	err := st.db.QueryRowContext(ctx, "SELECT id FROM pushes WHERE push_id=$1 AND source=$2 AND accepted_at=$3 AND body=$4 AND gateway=$5",
		p.ID, p.Source, unixMs(p.AcceptedAt), p.Body, st.d.instance).Scan(&key)
	if err != nil {
		return false
	}
	rows, err := st.db.QueryContext(ctx, "SELECT seq, pin FROM recipients WHERE pid=$1", key)
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

// pgSetState also names the gateway: a recipient handed over to another gateway meanwhile
// is that gateway's to record (ErrMoved).
const pgSetState = "UPDATE recipients SET state=$1, code=$2, reason=$3, transport_at=$4, updated_at=$5 WHERE seq=$6 AND gateway=$7"

// SetState records a recipient's state.
func (st *Postgres) SetState(ctx context.Context, seq int64, u Update) error {
	return st.do(ctx, st.stateOp(seq, u))
}

// SetStateLater records a recipient's state in a coming commit; then gets the outcome.
func (st *Postgres) SetStateLater(seq int64, u Update, then func(error)) {
	st.later(st.stateOp(seq, u), then)
}

func (st *Postgres) stateOp(seq int64, u Update) *op {
	args := []any{u.State, u.Code, u.Reason, unixMs(u.TransportAt), unixMs(u.At), seq, st.d.instance}
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
	}
}

// LoadOpen reads every push that still has queued or pending recipients held by this
// gateway.
func (st *Postgres) LoadOpen(ctx context.Context) ([]OpenPush, error) {
	return st.loadHeld(ctx, " AND r.gateway = $1", st.d.instance)
}

// Devices reads the device directory, with the gateway each device attached at last.
func (st *Postgres) Devices(ctx context.Context) (map[string]Device, error) {
	return st.devices(ctx, "SELECT pin, email, gateway FROM devices")
}
