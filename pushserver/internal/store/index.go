package store

// The journal's indexing: records moved into the pushes and recipients tables, one
// transaction per job.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"math/bits"
	"strings"

	"github.com/bbsim/bbsim/rim"
)

// rowsPerInsert is how many rows one INSERT statement of the indexer carries at most: the
// statement's own cost is then shared by many rows. Fewer rows go in statements of 1, 2,
// 4, ... rows: insertSizes statements a table.
const (
	insertSizes   = 6
	rowsPerInsert = 1 << (insertSizes - 1)
)

// index moves journal records into the tables on one connection, which nothing else uses
// meanwhile. Its statements are prepared on the connection's driver conn on first use and
// kept until close, and run through the driver: database/sql would check and convert each
// argument of each statement, and the index passes the driver's own types (int64, string,
// []byte).
type index struct {
	conn   *sql.Conn
	dc     driver.Conn // conn's, while apply runs
	pushes insert
	recips insert
	upd    driver.Stmt // setStateSQL
	args   []driver.NamedValue

	// The columns whose values rows often repeat from the row before.
	source, reliability, state    column[string]
	header                        textColumn
	accepted, port, code, updated column[int64]

	// A job's recipients, kept from one job to the next for their room.
	rows []recipRow
	at   map[int64]int // index in rows, by seq
}

// recipRow is a recipient of a job: one of a push in the job, with its latest state, or
// one indexed before (indexed), whose latest state the job sets.
type recipRow struct {
	seq     int64
	pid     driver.Value
	pin     string
	port    int
	u       Update
	indexed bool
}

// insert is an INSERT of the indexer, head (the statement up to VALUES) for cols values a
// row, with its statements for 1, 2, 4, ... rowsPerInsert rows, by the exponent, and the
// values of the rows added and not yet inserted.
type insert struct {
	head  string
	cols  int
	stmts [insertSizes]driver.Stmt
	args  []driver.NamedValue
}

// column holds the driver value of a column in the row before: rows often repeat it (a
// push's source, headers and reliability, the millisecond it was accepted in; a
// recipient's port, state and code, and when it got them), and each value given the
// driver anew is one more allocation, to box it.
type column[T comparable] struct {
	last T
	v    driver.Value
}

// of returns v as a driver value: the row before's when the same.
func (c *column[T]) of(v T) driver.Value {
	if c.v == nil || v != c.last {
		c.last, c.v = v, v
	}
	return c.v
}

// textColumn is a column of text given as bytes, compared without a copy.
type textColumn column[string]

func (c *textColumn) of(b []byte) driver.Value {
	if c.v == nil || string(b) != c.last {
		c.last = string(b)
		c.v = c.last
	}
	return c.v
}

func newIndex(conn *sql.Conn) *index {
	return &index{conn: conn, at: map[int64]int{},
		pushes: insert{head: "INSERT OR IGNORE INTO pushes(id,push_id,source,headers,body,request_uri,reliability,deliver_before,deliver_after,notify_url,notify_pap,pap_version,accepted_at)", cols: 13},
		recips: insert{head: "INSERT OR IGNORE INTO recipients(seq,pid,pin,port,state,code,reason,transport_at,updated_at)", cols: 9},
	}
}

// close closes the index's statements; the connection stays open.
func (ix *index) close() {
	ix.conn.Raw(func(any) error {
		for _, in := range []*insert{&ix.pushes, &ix.recips} {
			for _, st := range in.stmts {
				if st != nil {
					st.Close()
				}
			}
		}
		if ix.upd != nil {
			ix.upd.Close()
		}
		return nil
	})
}

// apply moves records into the tables in one transaction: pushes and their recipients
// inserted by key with each recipient's latest state folded in, and states of recipients
// already in the table updated. Rows already there are left alone, so applying the same
// records again changes nothing.
func (ix *index) apply(ctx context.Context, recs []jrec) error {
	if len(recs) == 0 {
		return nil
	}
	return ix.conn.Raw(func(dc any) error {
		ix.dc = dc.(driver.Conn)
		defer func() { ix.dc = nil }()
		return ix.applyTx(ctx, recs)
	})
}

func (ix *index) applyTx(ctx context.Context, recs []jrec) (err error) {
	exec := ix.dc.(driver.ExecerContext)
	if _, err := exec.ExecContext(ctx, "BEGIN IMMEDIATE", nil); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			exec.ExecContext(context.WithoutCancel(ctx), "ROLLBACK", nil)
		}
		clear(ix.rows)
		ix.rows = ix.rows[:0]
		clear(ix.at)
	}()
	for i := range recs {
		r := &recs[i]
		if p := r.push; p != nil {
			key := driver.Value(p.Key) // also each recipient's pid
			err := ix.add(ctx, &ix.pushes, key, p.ID, ix.source.of(p.Source), ix.header.of(p.Header), p.Body,
				p.RequestURI, ix.reliability.of(p.Reliability), unixMs(p.DeliverBefore), unixMs(p.DeliverAfter),
				p.NotifyURL, int64(boolInt(p.NotifyPAP)), p.PAPVersion, ix.accepted.of(unixMs(p.AcceptedAt)))
			if err != nil {
				return fmt.Errorf("pushes: %w", err)
			}
			for _, rr := range r.rs {
				ix.at[rr.seq] = len(ix.rows)
				ix.rows = append(ix.rows, recipRow{seq: rr.seq, pid: key, pin: rr.pin, port: rr.port, u: Update{State: rim.StateQueued, At: p.AcceptedAt}})
			}
			continue
		}
		if k, ok := ix.at[r.seq]; ok {
			ix.rows[k].u = r.u
			continue
		}
		ix.at[r.seq] = len(ix.rows)
		ix.rows = append(ix.rows, recipRow{seq: r.seq, u: r.u, indexed: true})
	}
	if err := ix.flush(ctx, &ix.pushes); err != nil {
		return fmt.Errorf("pushes: %w", err)
	}
	for i := range ix.rows {
		w := &ix.rows[i]
		if w.indexed {
			continue
		}
		err := ix.add(ctx, &ix.recips, w.seq, w.pid, w.pin, ix.port.of(int64(w.port)), ix.state.of(string(w.u.State)),
			ix.code.of(int64(w.u.Code)), w.u.Reason, unixMs(w.u.TransportAt), ix.updated.of(unixMs(w.u.At)))
		if err != nil {
			return fmt.Errorf("recipients: %w", err)
		}
	}
	if err := ix.flush(ctx, &ix.recips); err != nil {
		return fmt.Errorf("recipients: %w", err)
	}
	for i := range ix.rows {
		w := &ix.rows[i]
		if !w.indexed {
			continue
		}
		if ix.upd == nil {
			if ix.upd, err = ix.dc.Prepare(setStateSQL); err != nil {
				return err
			}
		}
		ix.args = appendArgs(ix.args[:0], string(w.u.State), int64(w.u.Code), w.u.Reason, unixMs(w.u.TransportAt), unixMs(w.u.At), w.seq)
		if err := execArgs(ctx, ix.upd, ix.args); err != nil {
			return fmt.Errorf("recipient %d: %w", w.seq, err)
		}
	}
	_, err = exec.ExecContext(ctx, "COMMIT", nil)
	return err
}

// add adds a row of values to in; a statement's worth of rows is inserted.
func (ix *index) add(ctx context.Context, in *insert, vals ...driver.Value) error {
	in.args = appendArgs(in.args, vals...)
	if len(in.args) < rowsPerInsert*in.cols {
		return nil
	}
	return ix.flush(ctx, in)
}

// flush inserts the rows added to in: rowsPerInsert rows a statement, and what is left in
// statements of fewer rows, a power of two each.
func (ix *index) flush(ctx context.Context, in *insert) error {
	defer func() {
		clear(in.args) // the values are the job's, not to be kept from the collector
		in.args = in.args[:0]
	}()
	for args := in.args; len(args) > 0; {
		e := bits.Len(uint(min(len(args)/in.cols, rowsPerInsert))) - 1 // 2^e rows
		if in.stmts[e] == nil {
			var b strings.Builder
			b.WriteString(in.head)
			b.WriteString(" VALUES ")
			row := "(" + strings.Repeat("?,", in.cols-1) + "?)"
			for i := range 1 << e {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(row)
			}
			st, err := ix.dc.Prepare(b.String())
			if err != nil {
				return err
			}
			in.stmts[e] = st
		}
		n := in.cols << e
		if err := execArgs(ctx, in.stmts[e], args[:n]); err != nil {
			return err
		}
		args = args[n:]
	}
	return nil
}

func appendArgs(args []driver.NamedValue, vals ...driver.Value) []driver.NamedValue {
	for _, v := range vals {
		args = append(args, driver.NamedValue{Value: v})
	}
	return args
}

// execArgs runs st with args, numbered here from 1.
func execArgs(ctx context.Context, st driver.Stmt, args []driver.NamedValue) error {
	for i := range args {
		args[i].Ordinal = i + 1
	}
	_, err := st.(driver.StmtExecContext).ExecContext(ctx, args)
	return err
}
