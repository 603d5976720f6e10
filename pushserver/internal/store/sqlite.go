package store

// The SQLite push store, push.db in the data directory: its schema migrations and commits.

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

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

// SQLite is the push store in an SQLite file, for one gateway. Pushes and their states
// go through its journal (journal.go); devices and secrets straight into the tables.
type SQLite struct {
	base
	j      *journal
	closed sync.Once
}

var _ Store = (*SQLite)(nil)

func openSQLite(ctx context.Context, dir string, log *slog.Logger) (*SQLite, error) {
	if err := statedir.Mkdir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "push.db")
	// Write transactions begin IMMEDIATE: the writer and the journal's indexer both write.
	db, err := statedir.OpenSQLite("push store", path, "_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)&_txlock=immediate")
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
	seg, err := recoverJournal(ctx, wconn, dir, log)
	if err == nil {
		var j *journal
		if j, err = openJournal(ctx, dir, seg, db, wconn, log); err == nil {
			st := &SQLite{j: j}
			st.applied = applied
			st.start(dialect{where: path}, db, wconn, st.commit)
			return st, nil
		}
	}
	wconn.Close()
	db.Close()
	return nil, fmt.Errorf("open push store %s: %w", path, err)
}

// commit runs a batch: its pushes and states appended to the journal with one write and
// one sync, its other operations in one transaction (a failed statement undoes only
// itself, so one-statement operations need no savepoint). Every journal record is on disk
// before its operation is answered.
func (st *SQLite) commit(batch []*op) {
	j := st.j
	j.buf = j.buf[:0]
	var journaled, other, flushes, pushes []*op
	var names []pushName
	for _, o := range batch {
		if o.jpush != nil {
			pushes = append(pushes, o)
			names = append(names, pushName{o.jpush.push.ID, o.jpush.push.Source})
		}
	}
	// Every operation is answered at the end, once the journal's state is settled.
	type answer struct {
		o   *op
		err error
	}
	var answers []answer
	defer func() {
		for _, a := range answers {
			a.o.reply(a.err)
		}
	}()
	var dup []bool
	if len(names) > 0 {
		var err error
		if dup, err = j.duplicates(names); err != nil {
			for _, o := range pushes {
				answers = append(answers, answer{o, err})
			}
		}
	}
	names = names[:0]
	i := 0 // the next push's index in pushes
	for _, o := range batch {
		switch {
		case o.jpush != nil:
			p := o.jpush.push
			n := pushName{p.ID, p.Source}
			i++
			if dup == nil {
				continue // the lookup failed: answered above
			}
			if dup[i-1] {
				answers = append(answers, answer{o, ErrDuplicate}) // the source used this push id before
				continue
			}
			j.mu.Lock()
			if j.unindexed[n] > 0 { // earlier in this batch
				j.mu.Unlock()
				answers = append(answers, answer{o, ErrDuplicate})
				continue
			}
			j.unindexed[n]++
			j.mu.Unlock()
			j.ids.add(n)
			names = append(names, n)
			p.Key = j.nextKey
			j.nextKey++
			o.jpush.rs = o.jpush.rs[:0]
			for _, r := range o.recips {
				r.Seq = j.nextSeq
				j.nextSeq++
				o.jpush.rs = append(o.jpush.rs, jrecip{seq: r.Seq, pin: r.PIN, port: r.Port})
			}
			j.buf = appendRecord(j.buf, j.seg, o.jpush)
			journaled = append(journaled, o)
		case o.jstate != nil:
			j.buf = appendRecord(j.buf, j.seg, o.jstate)
			journaled = append(journaled, o)
		case o.flush:
			flushes = append(flushes, o)
		default:
			other = append(other, o)
		}
	}
	if len(journaled) > 0 {
		err := j.write()
		if err == nil {
			j.count += len(journaled)
		} else {
			j.forget(names)
		}
		for _, o := range journaled {
			if err == nil {
				if j.recs == nil {
					j.recs = make([]jrec, 0, indexEvery+64)
				}
				j.recs = append(j.recs, *cmp.Or(o.jpush, o.jstate))
			}
			answers = append(answers, answer{o, err})
		}
	}
	if len(other) > 0 {
		errs, err := st.run(other, true)
		for i, o := range other {
			if err == nil {
				answers = append(answers, answer{o, errs[i]})
			} else {
				answers = append(answers, answer{o, err})
			}
		}
	}
	if len(flushes) > 0 || len(j.recs) >= indexEvery || j.size >= segmentSize {
		j.handOver(flushes)
	}
}

// InsertPush stores a push and its recipients; it sets p.Key and the recipients' Seq. No
// other gateway shares the store, so there is nobody to send notices to.
func (st *SQLite) InsertPush(ctx context.Context, p *Push, rs []*Recipient, _ []string) error {
	return st.do(ctx, st.pushOp(p, rs, nil))
}

func (st *SQLite) pushOp(p *Push, rs []*Recipient, _ []string) *op {
	return &op{jpush: &jrec{push: p, rs: make([]jrecip, 0, len(rs))}, recips: rs}
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
	return &op{jstate: &jrec{seq: seq, u: u}}
}

// flush returns once everything journaled before it is in the tables.
func (st *SQLite) flush(ctx context.Context) error {
	return st.do(ctx, &op{flush: true})
}

// PushStatus reads the latest push with this id in the scope and its recipients.
func (st *SQLite) PushStatus(ctx context.Context, sc Scope, pushID string) (Status, error) {
	if err := st.flush(ctx); err != nil {
		return Status{}, err
	}
	return st.base.PushStatus(ctx, sc, pushID)
}

// LatestPush returns the key of the latest push with this id in the scope, or ErrNotFound.
func (st *SQLite) LatestPush(ctx context.Context, sc Scope, pushID string) (int64, error) {
	if err := st.flush(ctx); err != nil {
		return 0, err
	}
	return st.base.LatestPush(ctx, sc, pushID)
}

// PushExists reports whether a push with this id was ever stored in the scope.
func (st *SQLite) PushExists(ctx context.Context, sc Scope, pushID string) (bool, error) {
	if err := st.flush(ctx); err != nil {
		return false, err
	}
	return st.base.PushExists(ctx, sc, pushID)
}

// LoadOpen reads every push that still has queued or pending recipients.
func (st *SQLite) LoadOpen(ctx context.Context) ([]OpenPush, error) {
	if err := st.flush(ctx); err != nil {
		return nil, err
	}
	return st.loadHeld(ctx, "")
}

// Devices reads the device directory.
func (st *SQLite) Devices(ctx context.Context) (map[string]Device, error) {
	return st.devices(ctx, "SELECT pin, email, '' FROM devices")
}

// Close commits what was submitted and closes the store. It may be called more than once.
func (st *SQLite) Close() error {
	var err error
	st.closed.Do(func() {
		st.stop()
		st.j.close()
		st.wconn.Close()
		err = st.db.Close()
	})
	return err
}
