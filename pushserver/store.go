package pushserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/bbsim/bbsim/internal/groupcommit"
	"github.com/bbsim/bbsim/internal/statedir"
)

// schema is the SQLite push store's.
const schema = `
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

// dialect is what differs between the SQLite and the PostgreSQL push store. In PostgreSQL
// placeholders are $1, $2… (the queries are written with ?), new keys come from INSERT …
// RETURNING, and a failed statement aborts the whole transaction, so a group commit runs
// as a pipeline and is replayed with savepoints when a statement fails (commit).
type dialect struct {
	where    string // the store's location for messages (a path, or the URL without password)
	pg       bool   // PostgreSQL; otherwise SQLite
	instance string // PostgreSQL: this gateway's name among those sharing the database
}

// bind rewrites a query's ? placeholders for the dialect. The store's queries have no ?
// inside string literals.
func (d *dialect) bind(query string) string {
	if !d.pg || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

// store is the push store, SQLite in the data directory or PostgreSQL (store_pg.go); what it
// keeps is in store_records.go. Writes go through one writer goroutine that commits
// concurrent operations together (group commit), so that one failing operation does not
// undo the others (commit).
type store struct {
	d     dialect
	url   string // PostgreSQL: the database URL, for the hand-over listener
	db    *sql.DB
	wconn *sql.Conn            // the writer's own connection, so prepared statements stay valid
	stmts map[string]*sql.Stmt // writer-only cache of prepared statements
	w     *groupcommit.Writer[*op]
}

type op struct {
	fn     func(*wtx) error
	pipe   func(b *pgx.Batch, res *error) // fn as one pipelined PostgreSQL statement, setting the outcome in res
	adopt  func(st *store) bool           // after a lost commit answer: is the duplicate this operation's own row?
	err    chan error                     // receives the outcome, or
	then   func(err error)                // is called with it by the writer (it must not block)
	single bool                           // one statement: atomic by itself, needs no savepoint
}

// reply hands an operation its outcome.
func (o *op) reply(err error) {
	if o.then != nil {
		o.then(err)
		return
	}
	o.err <- err
}

// wtx is the writer's transaction; statements are prepared once and reused.
type wtx struct {
	tx    *sql.Tx
	st    *store
	bound map[string]*sql.Stmt // statements bound to this transaction
}

func (w *wtx) stmt(query string) (*sql.Stmt, error) {
	if ts := w.bound[query]; ts != nil {
		return ts, nil
	}
	ps := w.st.stmts[query]
	if ps == nil {
		var err error
		if ps, err = w.st.db.Prepare(w.st.d.bind(query)); err != nil {
			return nil, err
		}
		w.st.stmts[query] = ps
	}
	ts := w.tx.Stmt(ps)
	w.bound[query] = ts
	return ts, nil
}

func (w *wtx) exec(query string, args ...any) (sql.Result, error) {
	ps, err := w.stmt(query)
	if err != nil {
		return nil, err
	}
	return ps.Exec(args...)
}

func (w *wtx) queryRow(query string, args ...any) *sql.Row {
	ps, err := w.stmt(query)
	if err != nil {
		return w.tx.QueryRow(w.st.d.bind(query), args...)
	}
	return ps.QueryRow(args...)
}

// insert runs an INSERT (… ON CONFLICT DO NOTHING) and returns the new row's key column;
// ok is false when a conflict left the table as it was.
func (w *wtx) insert(query, key string, args ...any) (id int64, ok bool, err error) {
	if w.st.d.pg {
		err = w.queryRow(query+" RETURNING "+key, args...).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, false, nil
		}
		return id, err == nil, err
	}
	// SQLite: Exec and LastInsertId cost a third less than a query with RETURNING.
	res, err := w.exec(query, args...)
	if err != nil {
		return 0, false, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return 0, false, err
	}
	id, err = res.LastInsertId()
	return id, err == nil, err
}

var errStoreClosed = errors.New("pushserver: store closed")

// openStore opens the push store: SQLite in dir (push.db), or the PostgreSQL database
// pushDB names (postgres://…), shared with other gateways, each under its own instance
// name ("" is "default"). ctx bounds the opening (PostgreSQL's dial and schema).
func openStore(ctx context.Context, dir, pushDB, instance string) (*store, error) {
	if isPostgresURL(pushDB) {
		if instance == "" {
			instance = "default"
		}
		return openPostgres(ctx, pushDB, instance)
	}
	if pushDB != "" {
		return nil, fmt.Errorf("push store %q: want a postgres:// or postgresql:// URL, or nothing for SQLite in the data directory", pushDB)
	}
	if err := statedir.Mkdir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "push.db")
	db, err := statedir.OpenSQLite("push store", path, "_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create push store schema %s: %w", path, err)
	}
	// A store written before recipients had a reason gets the column; SQLite has no ADD
	// COLUMN IF NOT EXISTS, so "duplicate column" means it is there already.
	if _, err := db.Exec("ALTER TABLE recipients ADD COLUMN reason TEXT NOT NULL DEFAULT ''"); err != nil && !strings.Contains(err.Error(), "duplicate column") {
		db.Close()
		return nil, fmt.Errorf("add reason to push store %s: %w", path, err)
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
	return startStore(dialect{where: path}, db, wconn), nil
}

func startStore(d dialect, db *sql.DB, wconn *sql.Conn) *store {
	st := &store{d: d, db: db, wconn: wconn, stmts: map[string]*sql.Stmt{}}
	st.w = groupcommit.Start(groupcommit.Options{}, st.commit)
	return st
}

// stats returns how many group commits ran and how many operations they carried.
func (st *store) stats() (commits, ops int64) { return st.w.Stats() }

// do runs o in the next group transaction and returns once that transaction is committed.
func (st *store) do(ctx context.Context, o *op) error {
	o.err = make(chan error, 1)
	return st.submit(ctx, o)
}

// later runs o in a coming group transaction without waiting for it; then gets the
// outcome after the commit, on the writer goroutine.
func (st *store) later(o *op, then func(error)) {
	o.then = then
	if st.w.Submit(context.Background(), o) != nil {
		then(errStoreClosed)
	}
}

func (st *store) submit(ctx context.Context, o *op) error {
	if err := st.w.Submit(ctx, o); err != nil {
		if errors.Is(err, groupcommit.ErrClosed) {
			return errStoreClosed
		}
		return err
	}
	// The writer answers every operation it took, those queued before a close included.
	return <-o.err
}

func (st *store) commit(batch []*op) {
	var errs []error
	var err error
	if st.d.pg {
		// PostgreSQL: a round trip per statement would cost far more than the work, and a
		// failed statement aborts the whole transaction. So the batch goes first as one
		// pipeline (one round trip, one implicit transaction) and, when a statement fails,
		// once more a statement at a time with a savepoint around each operation.
		errs, err = st.runPG(batch)
		if err != nil && st.wconn.PingContext(context.Background()) != nil {
			// The connection failed, not the batch: connect again and run it once more. A
			// commit whose answer was lost with the connection comes back as duplicates,
			// which adoptLost recognises.
			if rerr := st.reconnect(); rerr != nil {
				err = errors.Join(err, rerr)
			} else if errs, err = st.runPG(batch); err == nil {
				st.adoptLost(batch, errs)
			}
		}
	} else {
		// SQLite: a failed statement undoes only itself, so one-statement operations need
		// no savepoint.
		errs, err = st.run(batch)
	}
	for i, o := range batch {
		if err != nil {
			o.reply(err)
		} else {
			o.reply(errs[i])
		}
	}
}

// run runs a batch in one transaction and commits it, each operation (but a single
// statement in SQLite, where a failed statement undoes only itself) in its own savepoint,
// so one failing operation leaves the others.
func (st *store) run(batch []*op) ([]error, error) {
	tx, err := st.wconn.BeginTx(context.Background(), nil)
	if err != nil {
		return nil, fmt.Errorf("begin push store transaction: %w", err)
	}
	w := &wtx{tx: tx, st: st, bound: make(map[string]*sql.Stmt, 8)}
	errs := groupcommit.EachInSavepoint(len(batch),
		func(i int) bool { return batch[i].single && !st.d.pg },
		func(i int) error { return batch[i].fn(w) },
		func(stmt string) error { _, err := w.exec(stmt); return err })
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit push store transaction: %w", err)
	}
	return errs, nil
}

func (st *store) close() error {
	st.w.Close()
	for _, ps := range st.stmts {
		ps.Close()
	}
	if st.d.pg {
		// Let go of the gateway's lock now, not when the server notices the closed
		// connection: another gateway may take this one's pushes as soon as it is free.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st.wconn.ExecContext(ctx, "SELECT pg_advisory_unlock($1, hashtext($2))", pgLockClass, st.d.instance)
		cancel()
	}
	st.wconn.Close()
	return st.db.Close()
}
