package store

// The SQLite push store, push.db in the data directory: its schema migrations and commits.

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/bbsim/bbsim/internal/statedir"
)

// sqliteV1 is the SQLite schema of version 1. Never edit it: append a migration.
const sqliteV1 = `
CREATE TABLE IF NOT EXISTS pushes(
	id INTEGER PRIMARY KEY,
	push_id TEXT NOT NULL,
	source TEXT NOT NULL,
	headers TEXT NOT NULL,
	body BLOB NOT NULL,
	request_uri TEXT NOT NULL DEFAULT '',
	reliability TEXT NOT NULL DEFAULT '',
	deliver_before INTEGER NOT NULL DEFAULT 0,
	deliver_after INTEGER NOT NULL DEFAULT 0,
	notify_url TEXT NOT NULL DEFAULT '',
	notify_pap INTEGER NOT NULL DEFAULT 0,
	pap_version TEXT NOT NULL DEFAULT '',
	accepted_at INTEGER NOT NULL,
	UNIQUE(push_id, source) -- also serves lookups by push_id alone
);
CREATE TABLE IF NOT EXISTS recipients(
	seq INTEGER PRIMARY KEY,
	pid INTEGER NOT NULL REFERENCES pushes(id),
	pin TEXT NOT NULL,
	port INTEGER NOT NULL,
	state TEXT NOT NULL,
	code INTEGER NOT NULL DEFAULT 0,
	reason TEXT NOT NULL DEFAULT '', -- the device's words when it refused the push
	transport_at INTEGER NOT NULL DEFAULT 0,
	updated_at INTEGER NOT NULL,
	UNIQUE(pid, pin)
);
CREATE INDEX IF NOT EXISTS recipients_open ON recipients(state) WHERE state IN ('queued','pending');
CREATE TABLE IF NOT EXISTS devices(
	pin TEXT PRIMARY KEY,
	email TEXT NOT NULL DEFAULT ''
);
`

// sqliteMigrations are the SQLite store's schema versions (migrate.go).
var sqliteMigrations = []Migration{
	{"pushes, recipients with their reason, devices", func(ctx context.Context, tx *sql.Tx) error {
		if err := Script(sqliteV1)(ctx, tx); err != nil {
			return err
		}
		// A store from before recipients had a reason lacks the column; SQLite has no ADD
		// COLUMN IF NOT EXISTS.
		var has bool
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) > 0 FROM pragma_table_info('recipients') WHERE name = 'reason'").Scan(&has); err != nil || has {
			return err
		}
		_, err := tx.ExecContext(ctx, "ALTER TABLE recipients ADD COLUMN reason TEXT NOT NULL DEFAULT ''")
		return err
	}},
	{"device secrets", Script(deviceSecretsV2)},
}

// SQLite is the push store in an SQLite file, for one gateway.
type SQLite struct{ base }

var _ Store = (*SQLite)(nil)

func openSQLite(ctx context.Context, dir string, log *slog.Logger) (*SQLite, error) {
	if err := statedir.Mkdir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "push.db")
	db, err := statedir.OpenSQLite("push store", path, "_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	applied, err := MigrateSQLite(ctx, db, "push store", path, sqliteMigrations)
	if err != nil {
		db.Close()
		return nil, err
	}
	if applied > 0 {
		log.Info("push store schema migrated", "store", path, "version", len(sqliteMigrations), "applied", applied)
	}
	if err := statedir.Keep(path); err != nil {
		db.Close()
		return nil, err
	}
	wconn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open push store %s: %w", path, err)
	}
	st := &SQLite{}
	st.applied = applied
	st.start(dialect{where: path}, db, wconn, st.commit)
	return st, nil
}

// commit runs a batch in one transaction: a failed statement undoes only itself, so
// one-statement operations need no savepoint.
func (st *SQLite) commit(batch []*op) {
	errs, err := st.run(batch, true)
	reply(batch, errs, err)
}

// InsertPush stores a push and its recipients; it sets p.Key and the recipients' Seq. No
// other gateway shares the store, so there is nobody to send notices to.
func (st *SQLite) InsertPush(ctx context.Context, p *Push, rs []*Recipient, _ []string) error {
	return st.do(ctx, st.pushOp(p, rs, nil))
}

func (st *SQLite) pushOp(p *Push, rs []*Recipient, _ []string) *op {
	return &op{
		fn: func(tx *wtx) error {
			var ok bool
			var err error
			if p.Key, ok, err = tx.insert(insertPushSQL, pushArgs(p)...); err != nil || !ok {
				return cmp.Or(err, ErrDuplicate) // the source used this push id before
			}
			for _, r := range rs {
				if r.Seq, _, err = tx.insert("INSERT INTO recipients(pid,pin,port,state,updated_at) VALUES(?,?,?,'queued',?)", p.Key, r.PIN, r.Port, unixMs(p.AcceptedAt)); err != nil {
					return err
				}
			}
			return nil
		},
		// Nothing to undo when the only statement that can fail on input (the push row, on a
		// duplicate id) does nothing.
		single: len(rs) == 1,
	}
}

const setStateSQL = "UPDATE recipients SET state=?, code=?, reason=?, transport_at=?, updated_at=? WHERE seq=?"

// SetState records a recipient's state.
func (st *SQLite) SetState(ctx context.Context, seq int64, u Update) error {
	return st.do(ctx, st.stateOp(seq, u))
}

// SetStateLater records a recipient's state in a coming commit; then gets the outcome.
func (st *SQLite) SetStateLater(seq int64, u Update, then func(error)) {
	st.later(st.stateOp(seq, u), then)
}

func (st *SQLite) stateOp(seq int64, u Update) *op {
	return &op{
		fn: func(tx *wtx) error {
			_, err := tx.exec(setStateSQL, u.State, u.Code, u.Reason, unixMs(u.TransportAt), unixMs(u.At), seq)
			return err
		},
		single: true,
	}
}

// LoadOpen reads every push that still has queued or pending recipients.
func (st *SQLite) LoadOpen(ctx context.Context) ([]OpenPush, error) { return st.loadHeld(ctx, "") }

// Devices reads the device directory.
func (st *SQLite) Devices(ctx context.Context) (map[string]Device, error) {
	return st.devices(ctx, "SELECT pin, email, '' FROM devices")
}

// Close commits what was submitted and closes the store.
func (st *SQLite) Close() error {
	st.stop()
	st.wconn.Close()
	return st.db.Close()
}
