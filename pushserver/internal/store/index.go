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

func newIndex(conn *sql.Conn) *index {
	return &index{conn: conn,
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
	type row struct {
		pid  int64
		pin  string
		port int
		u    Update
	}
	rows := map[int64]*row{}
	var order []int64           // new recipients, in key order
	older := map[int64]Update{} // the latest state of recipients indexed before
	var olderOrder []int64
	for i := range recs {
		r := &recs[i]
		if p := r.push; p != nil {
			for _, rr := range r.rs {
				rows[rr.seq] = &row{pid: p.Key, pin: rr.pin, port: rr.port, u: Update{State: rim.StateQueued, At: p.AcceptedAt}}
				order = append(order, rr.seq)
			}
			continue
		}
		if w := rows[r.seq]; w != nil {
			w.u = r.u
			continue
		}
		if _, ok := older[r.seq]; !ok {
			olderOrder = append(olderOrder, r.seq)
		}
		older[r.seq] = r.u
	}
	exec := ix.dc.(driver.ExecerContext)
	if _, err := exec.ExecContext(ctx, "BEGIN IMMEDIATE", nil); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			exec.ExecContext(context.WithoutCancel(ctx), "ROLLBACK", nil)
		}
	}()
	for i := range recs {
		if p := recs[i].push; p != nil {
			if err := ix.add(ctx, &ix.pushes, p.Key, p.ID, p.Source, string(p.Header), p.Body, p.RequestURI, p.Reliability,
				unixMs(p.DeliverBefore), unixMs(p.DeliverAfter), p.NotifyURL, int64(boolInt(p.NotifyPAP)), p.PAPVersion, unixMs(p.AcceptedAt)); err != nil {
				return fmt.Errorf("pushes: %w", err)
			}
		}
	}
	if err := ix.flush(ctx, &ix.pushes); err != nil {
		return fmt.Errorf("pushes: %w", err)
	}
	for _, seq := range order {
		w := rows[seq]
		if err := ix.add(ctx, &ix.recips, seq, w.pid, w.pin, int64(w.port), string(w.u.State), int64(w.u.Code), w.u.Reason,
			unixMs(w.u.TransportAt), unixMs(w.u.At)); err != nil {
			return fmt.Errorf("recipients: %w", err)
		}
	}
	if err := ix.flush(ctx, &ix.recips); err != nil {
		return fmt.Errorf("recipients: %w", err)
	}
	for _, seq := range olderOrder {
		if ix.upd == nil {
			if ix.upd, err = ix.dc.Prepare(setStateSQL); err != nil {
				return err
			}
		}
		u := older[seq]
		ix.args = appendArgs(ix.args[:0], string(u.State), int64(u.Code), u.Reason, unixMs(u.TransportAt), unixMs(u.At), seq)
		if err := execArgs(ctx, ix.upd, ix.args); err != nil {
			return fmt.Errorf("recipient %d: %w", seq, err)
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
