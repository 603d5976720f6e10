package store

// The SQLite push store, push.db in the data directory: its schema migrations and commits.

import (
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
	errs, err := st.run(batch)
	reply(batch, errs, err)
}

// Close commits what was submitted and closes the store.
func (st *SQLite) Close() error {
	st.stop()
	st.wconn.Close()
	return st.db.Close()
}
