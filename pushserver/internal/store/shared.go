package store

// The shared store's side of the hand-over between gateways: claims, moves, reads and
// notices, in PostgreSQL.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/bbsim/bbsim/rim"
)

// ShareDirectory adds devices (PIN and e-mail) to the shared device directory, keeping an
// e-mail it has for an empty one, and sends notice.
func (st *Postgres) ShareDirectory(ctx context.Context, devs []Device, notice string) error {
	tx, err := st.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, d := range devs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO devices(pin,email) VALUES($1,$2) ON CONFLICT(pin) DO UPDATE
			SET email=CASE WHEN excluded.email <> '' THEN excluded.email ELSE devices.email END`, d.PIN, d.Email); err != nil {
			return err
		}
	}
	if err := pgNotify(ctx, tx, notice); err != nil {
		return err
	}
	return tx.Commit()
}

// AttachedHere records that a device attached at this gateway, takes its open recipients
// from gateways that are not running (a running gateway holds its lock, so the try fails
// for its rows; a stopped one cannot start until this transaction ends), and announces it.
// It returns the running gateway the device was attached at before, if another ("" if
// none): that one may still deliver to the device until it hears the notice.
func (st *Postgres) AttachedHere(ctx context.Context, pin, email, notice string) (before string, err error) {
	tx, err := st.db.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	var running bool
	err = tx.QueryRowContext(ctx, `SELECT gateway, NOT pg_try_advisory_xact_lock($2, hashtext(gateway))
		FROM devices WHERE pin=$1 AND gateway <> '' AND gateway <> $3 FOR UPDATE`, pin, LockClass, st.d.instance).Scan(&before, &running)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("read where the device attached before: %w", err)
	}
	if !running {
		before = ""
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO devices(pin,email,gateway) VALUES($1,$2,$3)
		ON CONFLICT(pin) DO UPDATE SET gateway=excluded.gateway,
		email=CASE WHEN excluded.email <> '' THEN excluded.email ELSE devices.email END`, pin, email, st.d.instance); err != nil {
		return "", fmt.Errorf("record attachment: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE recipients SET gateway=$1
		WHERE pin=$2 AND state IN ('queued','pending') AND gateway <> $1
		AND pg_try_advisory_xact_lock($3, hashtext(gateway))`, st.d.instance, pin, LockClass); err != nil {
		return "", fmt.Errorf("take pushes from stopped gateways: %w", err)
	}
	if err := pgNotify(ctx, tx, notice); err != nil {
		return "", fmt.Errorf("announce attachment: %w", err)
	}
	return before, tx.Commit()
}

// HandOver gives the open recipients seqs that this gateway holds to gateway to, tells it,
// and returns those it gave (one that became final meanwhile stays).
func (st *Postgres) HandOver(ctx context.Context, seqs []int64, to, notice string) (map[int64]bool, error) {
	tx, err := st.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	// A gateway that is not running cannot take them; the lock, free then, is held until
	// this transaction ends, so it cannot start meanwhile either.
	var down bool
	if err := tx.QueryRowContext(ctx, "SELECT pg_try_advisory_xact_lock($1, hashtext($2))", LockClass, to).Scan(&down); err != nil {
		return nil, err
	}
	if down {
		return nil, ErrGatewayDown
	}
	rows, err := tx.QueryContext(ctx, `UPDATE recipients SET gateway=$1
		WHERE seq = ANY($2) AND gateway=$3 AND state IN ('queued','pending') RETURNING seq`, to, seqs, st.d.instance)
	if err != nil {
		return nil, err
	}
	moved := map[int64]bool{}
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			rows.Close()
			return nil, err
		}
		moved[seq] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(moved) == 0 {
		return moved, nil
	}
	if err := pgNotify(ctx, tx, notice); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, errors.Join(errors.New("commit hand-over"), err)
	}
	return moved, nil
}

// ClaimStranded makes this gateway the holder of the open recipients that gateways which
// are not running hold; it returns their PINs.
func (st *Postgres) ClaimStranded(ctx context.Context) ([]string, error) {
	// The lock is tried once per gateway, not once per recipient (a volatile function keeps
	// the CTE from being folded into the UPDATE).
	pins, err := st.texts(ctx, `WITH down AS (
			SELECT g FROM (SELECT DISTINCT gateway AS g FROM recipients
				WHERE state IN ('queued','pending') AND gateway <> $1) held
			WHERE pg_try_advisory_xact_lock($2, hashtext(g)))
		UPDATE recipients r SET gateway=$1 FROM down
		WHERE r.gateway = down.g AND r.state IN ('queued','pending') RETURNING r.pin`, st.d.instance, LockClass)
	slices.Sort(pins)
	return slices.Compact(pins), err
}

// ClaimPush makes this gateway the holder of the push's queued recipients that gateways
// which are not running hold; it returns their PINs.
func (st *Postgres) ClaimPush(ctx context.Context, key int64) ([]string, error) {
	return st.texts(ctx, `UPDATE recipients SET gateway=$1
		WHERE pid=$2 AND state='queued' AND gateway <> $1
		AND pg_try_advisory_xact_lock($3, hashtext(gateway)) RETURNING pin`, st.d.instance, key, LockClass)
}

// QueuedElsewhere returns the push's queued recipients that other gateways hold, and who.
func (st *Postgres) QueuedElsewhere(ctx context.Context, key int64) (map[int64]string, error) {
	return st.bySeq(ctx, "SELECT seq, gateway FROM recipients WHERE pid=$1 AND state='queued' AND gateway <> $2", key, st.d.instance)
}

// States returns the stored states of these recipients.
func (st *Postgres) States(ctx context.Context, seqs []int64) (map[int64]rim.State, error) {
	m, err := st.bySeq(ctx, "SELECT seq, state FROM recipients WHERE seq = ANY($1)", seqs)
	states := make(map[int64]rim.State, len(m))
	for seq, s := range m {
		states[seq] = rim.State(s)
	}
	return states, err
}

// LoadHeld reads the open recipients this gateway holds for these PINs, with their pushes.
func (st *Postgres) LoadHeld(ctx context.Context, pins []string) ([]OpenPush, error) {
	return st.loadHeld(ctx, " AND r.gateway = $1 AND r.pin = ANY($2)", st.d.instance, pins)
}

// PendingHolders returns the gateways holding the latest pending recipients of the pushes
// with this id for the PIN (at most two, the latest first), from source, or from any
// source when source is nil.
func (st *Postgres) PendingHolders(ctx context.Context, pushID, pin string, source *string) ([]Pending, error) {
	q := `SELECT r.gateway, p.source FROM recipients r JOIN pushes p ON p.id = r.pid
		WHERE p.push_id = $1 AND r.pin = $2 AND r.state = 'pending'`
	args := []any{pushID, pin}
	if source != nil {
		q += " AND p.source = $3"
		args = append(args, *source)
	}
	rows, err := st.db.QueryContext(ctx, q+" ORDER BY p.id DESC LIMIT 2", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Pending
	for rows.Next() {
		var pd Pending
		if err := rows.Scan(&pd.Gateway, &pd.Source); err != nil {
			return nil, err
		}
		out = append(out, pd)
	}
	return out, rows.Err()
}

// Notify tells the gateways sharing the store.
func (st *Postgres) Notify(ctx context.Context, notice string) error {
	return pgNotify(ctx, st.db, notice)
}

// pgNotifySQL sends a notice to the gateways sharing the store, at the commit of the
// transaction it runs in.
const pgNotifySQL = "SELECT pg_notify($1, $2)"

// pgNotify sends a notice on Channel through db or within a transaction.
func pgNotify(ctx context.Context, ex interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, payload string) error {
	_, err := ex.ExecContext(ctx, pgNotifySQL, Channel, payload)
	return err
}

// texts runs a statement whose rows are one text column.
func (st *Postgres) texts(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := st.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// bySeq runs a statement whose rows are a recipient's seq and a text.
func (st *Postgres) bySeq(ctx context.Context, query string, args ...any) (map[int64]string, error) {
	rows, err := st.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := map[int64]string{}
	for rows.Next() {
		var seq int64
		var v string
		if err := rows.Scan(&seq, &v); err != nil {
			return nil, err
		}
		m[seq] = v
	}
	return m, rows.Err()
}
