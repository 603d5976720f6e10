package store

// The engine both stores share: one writer goroutine commits concurrent operations
// together (group commit), each in its own savepoint where needed, so that one failing
// operation does not undo the others.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/bbsim/bbsim/internal/groupcommit"
)

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

// base is what the SQLite and the PostgreSQL store have in common: the database, the
// writer's connection and the group commit.
type base struct {
	d       dialect
	db      *sql.DB
	wconn   *sql.Conn            // the writer's own connection, so prepared statements stay valid
	stmts   map[string]*sql.Stmt // writer-only cache of prepared statements
	w       *groupcommit.Writer[*op]
	applied int // schema migrations applied when the store was opened
}

type op struct {
	fn     func(*wtx) error
	pipe   func(b *pgx.Batch, res *error) // fn as one pipelined PostgreSQL statement, setting the outcome in res
	adopt  func() bool                    // after a lost commit answer: is the duplicate this operation's own row?
	err    chan error                     // receives the outcome, or
	then   func(err error)                // is called with it by the writer (it must not block)
	single bool                           // one statement: atomic by itself, needs no savepoint

	// The SQLite store's journal (journal.go) takes these instead of fn:
	jpush  *jrec // a push to journal (with recips, whose keys it sets), or
	recips []*Recipient
	jstate *jrec // a recipient's state to journal, or
	flush  bool  // wait until everything journaled before is in the tables
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
	st    *base
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

// insert runs an SQLite INSERT (… ON CONFLICT DO NOTHING) and returns the new row's key;
// ok is false when a conflict left the table as it was. Exec and LastInsertId cost a third
// less than a query with RETURNING.
func (w *wtx) insert(query string, args ...any) (id int64, ok bool, err error) {
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

// returning runs a PostgreSQL INSERT (… ON CONFLICT DO NOTHING) and returns the new row's
// key column; ok is false when a conflict left the table as it was.
func (w *wtx) returning(query, key string, args ...any) (id int64, ok bool, err error) {
	err = w.queryRow(query+" RETURNING "+key, args...).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return id, err == nil, err
}

// start starts the writer; commit runs each batch.
func (st *base) start(d dialect, db *sql.DB, wconn *sql.Conn, commit func([]*op)) {
	st.d, st.db, st.wconn, st.stmts = d, db, wconn, map[string]*sql.Stmt{}
	st.w = groupcommit.Start(groupcommit.Options{}, commit)
}

// Stats returns how many group commits ran and how many operations they carried.
func (st *base) Stats() (commits, ops int64) { return st.w.Stats() }

// Instance is this gateway's name among those sharing the store ("" for SQLite).
func (st *base) Instance() string { return st.d.instance }

// do runs o in the next group transaction and returns once that transaction is committed.
func (st *base) do(ctx context.Context, o *op) error {
	o.err = make(chan error, 1)
	if err := st.w.Submit(ctx, o); err != nil {
		if errors.Is(err, groupcommit.ErrClosed) {
			return ErrClosed
		}
		return err
	}
	// The writer answers every operation it took, those queued before a close included.
	return <-o.err
}

// later runs o in a coming group transaction without waiting for it; then gets the
// outcome after the commit, on the writer goroutine.
func (st *base) later(o *op, then func(error)) {
	o.then = then
	if st.w.Submit(context.Background(), o) != nil {
		then(ErrClosed)
	}
}

// reply hands each operation of a batch its outcome: err for all, or its own.
func reply(batch []*op, errs []error, err error) {
	for i, o := range batch {
		if err != nil {
			o.reply(err)
		} else {
			o.reply(errs[i])
		}
	}
}

// run runs a batch in one transaction and commits it, each operation in its own savepoint
// (but, with bareSingles, one of a single statement: in SQLite a failed statement undoes
// only itself), so one failing operation leaves the others.
func (st *base) run(batch []*op, bareSingles bool) ([]error, error) {
	tx, err := st.wconn.BeginTx(context.Background(), nil)
	if err != nil {
		return nil, fmt.Errorf("begin push store transaction: %w", err)
	}
	w := &wtx{tx: tx, st: st, bound: make(map[string]*sql.Stmt, 8)}
	errs := groupcommit.EachInSavepoint(len(batch),
		func(i int) bool { return bareSingles && batch[i].single },
		func(i int) error { return batch[i].fn(w) },
		func(stmt string) error { _, err := w.exec(stmt); return err })
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit push store transaction: %w", err)
	}
	return errs, nil
}

// stop ends the writer (once it has committed what was submitted) and its statements.
func (st *base) stop() {
	st.w.Close()
	for _, ps := range st.stmts {
		ps.Close()
	}
}

// engine is either store with its engine exposed, for tests that drive commits directly.
type engine interface {
	Store
	core() *base
	commit(batch []*op)
	pushOp(p *Push, rs []*Recipient, notices []string) *op
}

func (st *base) core() *base { return st }
