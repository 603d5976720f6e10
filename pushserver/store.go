package pushserver

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

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

// store is the SQLite push store. Writes go through one writer goroutine that commits
// concurrent operations together (group commit), each in its own savepoint so one failing
// operation does not undo the others.
type store struct {
	db    *sql.DB
	wconn *sql.Conn            // the writer's own connection, so prepared statements stay valid
	stmts map[string]*sql.Stmt // writer-only cache of prepared statements
	ops   chan *op
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once

	nCommits, nOps atomic.Int64 // group commits and the operations they carried
	linger         time.Duration
}

type op struct {
	fn     func(*wtx) error
	err    chan error      // receives the outcome, or
	then   func(err error) // is called with it by the writer (it must not block)
	single bool            // one statement: atomic by itself, needs no savepoint
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
		if ps, err = w.st.db.Prepare(query); err != nil {
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
		return w.tx.QueryRow(query, args...)
	}
	return ps.QueryRow(args...)
}

var errStoreClosed = errors.New("pushserver: store closed")

func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "push.db")
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open push store %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create push store schema %s: %w", path, err)
	}
	wconn, err := db.Conn(context.Background())
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open push store %s: %w", path, err)
	}
	st := &store{db: db, wconn: wconn, stmts: map[string]*sql.Stmt{}, linger: 500 * time.Microsecond, ops: make(chan *op, 4096), quit: make(chan struct{}), done: make(chan struct{})}
	go st.writer()
	return st, nil
}

// do runs fn in the next group transaction and returns once that transaction is committed.
func (st *store) do(ctx context.Context, fn func(*wtx) error) error {
	return st.submit(ctx, &op{fn: fn, err: make(chan error, 1)})
}

// do1 is do for a function that runs a single statement.
func (st *store) do1(ctx context.Context, fn func(*wtx) error) error {
	return st.submit(ctx, &op{fn: fn, err: make(chan error, 1), single: true})
}

// later runs a single-statement fn in a coming group transaction without waiting for it;
// then gets the outcome after the commit, on the writer goroutine.
func (st *store) later(fn func(*wtx) error, then func(error)) {
	select {
	case st.ops <- &op{fn: fn, then: then, single: true}:
	case <-st.quit:
		then(errStoreClosed)
	}
}

func (st *store) submit(ctx context.Context, o *op) error {
	select {
	case st.ops <- o:
	case <-st.quit:
		return errStoreClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-o.err:
		return err
	case <-st.done:
		// The writer answers every op it took before it exits.
		select {
		case err := <-o.err:
			return err
		default:
			return errStoreClosed
		}
	}
}

func (st *store) writer() {
	defer close(st.done)
	batch := make([]*op, 0, 512)
	busy := false
	for {
		batch = batch[:0]
		select {
		case o := <-st.ops:
			batch = append(batch, o)
		case <-st.quit:
			// Drain what was queued before the close.
			for {
				select {
				case o := <-st.ops:
					batch = append(batch, o)
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				st.commit(batch)
			}
			return
		}
	drain:
		for len(batch) < cap(batch) {
			select {
			case o := <-st.ops:
				batch = append(batch, o)
			default:
				break drain
			}
		}
		// Under load (the last commit carried several operations), linger briefly so
		// concurrent arrivals share the commit and its fsync, which costs far more than
		// the wait. A lone operation at low load is committed at once.
		if busy && len(batch) < cap(batch) {
			linger := time.NewTimer(st.linger)
		fill:
			for len(batch) < cap(batch) {
				select {
				case o := <-st.ops:
					batch = append(batch, o)
				case <-linger.C:
					break fill
				}
			}
			linger.Stop()
		}
		busy = len(batch) > 1
		st.commit(batch)
	}
}

func (st *store) commit(batch []*op) {
	st.nCommits.Add(1)
	st.nOps.Add(int64(len(batch)))
	errs := make([]error, len(batch))
	tx, err := st.wconn.BeginTx(context.Background(), nil)
	if err != nil {
		for _, o := range batch {
			o.reply(fmt.Errorf("begin push store transaction: %w", err))
		}
		return
	}
	w := &wtx{tx: tx, st: st, bound: make(map[string]*sql.Stmt, 8)}
	for i, o := range batch {
		if o.single {
			errs[i] = o.fn(w)
			continue
		}
		if _, err := w.exec("SAVEPOINT op"); err != nil {
			errs[i] = err
			continue
		}
		if err := o.fn(w); err != nil {
			errs[i] = err
			if _, rerr := w.exec("ROLLBACK TO op"); rerr != nil {
				errs[i] = errors.Join(err, rerr)
			}
		}
		if _, err := w.exec("RELEASE op"); err != nil && errs[i] == nil {
			errs[i] = err
		}
	}
	if err := tx.Commit(); err != nil {
		for _, o := range batch {
			o.reply(fmt.Errorf("commit push store transaction: %w", err))
		}
		return
	}
	for i, o := range batch {
		o.reply(errs[i])
	}
}

func (st *store) close() error {
	st.once.Do(func() { close(st.quit) })
	<-st.done
	for _, ps := range st.stmts {
		ps.Close()
	}
	st.wconn.Close()
	return st.db.Close()
}

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

// insertPush stores a push and its recipients; it fills p.key and the recipients' seq.
func insertPush(tx *wtx, p *push, hdr []byte, rs []*recip) error {
	notifyPAP := 0
	if p.notifyPAP {
		notifyPAP = 1
	}
	res, err := tx.exec(`INSERT INTO pushes(push_id,source,headers,body,request_uri,reliability,deliver_before,deliver_after,notify_url,notify_pap,pap_version,accepted_at)
		VALUES(?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(push_id,source) DO NOTHING`, p.id, p.source, string(hdr), p.body, p.requestURI, p.reliability,
		unixMs(p.deliverBefore), unixMs(p.deliverAfter), p.notifyURL, notifyPAP, p.papVersion, unixMs(p.acceptedAt))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return ErrDuplicate
	}
	if p.key, err = res.LastInsertId(); err != nil {
		return err
	}
	for _, r := range rs {
		res, err := tx.exec("INSERT INTO recipients(pid,pin,port,state,updated_at) VALUES(?,?,?,'queued',?)", p.key, r.pin, r.port, unixMs(p.acceptedAt))
		if err != nil {
			return err
		}
		if r.seq, err = res.LastInsertId(); err != nil {
			return err
		}
	}
	return nil
}

func (st *store) setState(ctx context.Context, r *recip, state string, code int, transportAt, at time.Time) error {
	return st.do1(ctx, setStateFn(r, state, code, transportAt, at))
}

func setStateFn(r *recip, state string, code int, transportAt, at time.Time) func(*wtx) error {
	seq := r.seq
	return func(tx *wtx) error {
		_, err := tx.exec("UPDATE recipients SET state=?, code=?, transport_at=?, updated_at=? WHERE seq=?",
			state, code, unixMs(transportAt), unixMs(at), seq)
		return err
	}
}

// pushStatus reads the latest push with this id (over all sources) and its recipients.
func (st *store) pushStatus(ctx context.Context, pushID string) (PushStatus, error) {
	var ps PushStatus
	var key, acc int64
	err := st.db.QueryRowContext(ctx, "SELECT id, push_id, source, accepted_at FROM pushes WHERE push_id=? ORDER BY id DESC LIMIT 1", pushID).
		Scan(&key, &ps.PushID, &ps.Source, &acc)
	if errors.Is(err, sql.ErrNoRows) {
		return ps, ErrNotFound
	}
	if err != nil {
		return ps, fmt.Errorf("read push %s: %w", pushID, err)
	}
	ps.AcceptedAt = fromMs(acc)
	rows, err := st.db.QueryContext(ctx, "SELECT pin, port, state, code, transport_at, updated_at FROM recipients WHERE pid=? ORDER BY seq", key)
	if err != nil {
		return ps, fmt.Errorf("read push %s recipients: %w", pushID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var rs RecipientStatus
		var ta, up int64
		if err := rows.Scan(&rs.PIN, &rs.Port, &rs.State, &rs.Code, &ta, &up); err != nil {
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

// loadOpen reads every push that still has queued or pending recipients.
func (st *store) loadOpen() ([]storedOpen, error) {
	rows, err := st.db.Query(`SELECT r.seq, r.pin, r.port, r.state, r.transport_at, p.id, p.push_id, p.source, p.headers, p.body,
		p.request_uri, p.reliability, p.deliver_before, p.deliver_after, p.notify_url, p.notify_pap, p.pap_version, p.accepted_at
		FROM recipients r JOIN pushes p ON p.id = r.pid WHERE r.state IN ('queued','pending') ORDER BY r.seq`)
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

func (st *store) loadDevices() (map[string]string, error) {
	rows, err := st.db.Query("SELECT pin, email FROM devices")
	if err != nil {
		return nil, fmt.Errorf("load devices: %w", err)
	}
	defer rows.Close()
	m := map[string]string{}
	for rows.Next() {
		var pin, email string
		if err := rows.Scan(&pin, &email); err != nil {
			return nil, err
		}
		m[pin] = email
	}
	return m, rows.Err()
}

func (st *store) saveDevice(ctx context.Context, pin, email string) error {
	return st.do1(ctx, func(tx *wtx) error {
		_, err := tx.exec("INSERT INTO devices(pin,email) VALUES(?,?) ON CONFLICT(pin) DO UPDATE SET email=excluded.email", pin, email)
		return err
	})
}

// pushExists reports whether any push with this id was ever stored.
func (st *store) pushExists(ctx context.Context, pushID string) (bool, error) {
	var one int
	err := st.db.QueryRowContext(ctx, "SELECT 1 FROM pushes WHERE push_id=? LIMIT 1", pushID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}
