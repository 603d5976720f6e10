package store

import (
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bbsim/bbsim/internal/pgtest"
)

const pinA, pinB = "2100000A", "2100000B"

// open opens a store for a test: SQLite in a fresh directory, or the PostgreSQL database
// url names; it is closed when the test ends.
func open(t *testing.T, url, instance string) engine {
	t.Helper()
	st, err := Open(t.Context(), Options{Dir: t.TempDir(), URL: url, Instance: instance})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st.(engine)
}

// TestStoreBatchWithFailingOp: in one group commit, operations that fail (a duplicate push
// id; a statement the database refuses) leave the others committed, in SQLite and in
// PostgreSQL (where the pipelined batch is then replayed with savepoints).
func TestStoreBatchWithFailingOp(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t)
	for _, tc := range []struct{ name, pushDB string }{{"sqlite", ""}, {"postgres", pg.NewDatabase(t)}} {
		t.Run(tc.name, func(t *testing.T) {
			st := open(t, tc.pushDB, "")
			b := st.core()
			insert := func(id string) *op {
				p := &Push{ID: id, Header: []byte(`{}`), Body: []byte(id), Reliability: "transport", AcceptedAt: time.Now()}
				o := st.pushOp(p, []*Recipient{{PIN: pinA, Port: 7874, State: "queued"}, {PIN: pinB, Port: 7874, State: "queued"}}, nil)
				o.err = make(chan error, 1)
				return o
			}
			const orphan = "INSERT INTO recipients(pid,pin,port,state,updated_at) VALUES(?,?,?,'queued',?)" // no such push: refused
			refused := &op{
				fn:   func(tx *wtx) error { _, err := tx.exec(orphan, -1, pinA, 7874, 0); return err },
				pipe: func(pb *pgx.Batch, _ *error) { pb.Queue(b.d.bind(orphan), -1, pinA, 7874, 0) },
				err:  make(chan error, 1),
			}
			if err := b.do(t.Context(), insert("first")); err != nil {
				t.Fatalf("first insert: %v", err)
			}
			// The writer is idle now: commit a batch directly, as it would.
			batch := []*op{insert("before"), insert("first"), refused, insert("after")}
			st.commit(batch)
			for i, o := range batch {
				err := <-o.err
				switch {
				case i == 1 && !errors.Is(err, ErrDuplicate):
					t.Fatalf("duplicate in the batch = %v, want ErrDuplicate", err)
				case i == 2 && err == nil:
					t.Fatal("orphan recipient stored")
				case (i == 0 || i == 3) && err != nil:
					t.Fatalf("batch op %d = %v", i, err)
				}
			}
			for _, id := range []string{"before", "first", "after"} {
				ps, err := st.PushStatus(t.Context(), AnySource, id)
				if err != nil || len(ps.Recipients) != 2 {
					t.Fatalf("push %s after the batch: %+v, %v; want 2 recipients", id, ps, err)
				}
			}
		})
	}
}

// TestStoreAdoptsLostCommit: a push whose commit answer was lost with its connection comes
// back as a duplicate when the batch runs again; the store recognises its own row (same
// gateway, acceptance time and body) and takes its keys, and leaves a true duplicate one.
func TestStoreAdoptsLostCommit(t *testing.T) {
	t.Parallel()
	st := open(t, pgtest.Start(t).NewDatabase(t), "east")
	at := time.Now()
	mk := func(body string) (*Push, *Recipient, *op) {
		p := &Push{ID: "lost", Header: []byte(`{}`), Body: []byte(body), Reliability: "transport", AcceptedAt: at}
		r := &Recipient{PIN: pinA, Port: 7874, State: "queued"}
		return p, r, st.pushOp(p, []*Recipient{r}, nil)
	}
	p1, r1, o1 := mk("once")
	if err := st.core().do(t.Context(), o1); err != nil {
		t.Fatalf("first commit: %v", err)
	}
	p2, r2, o2 := mk("once") // the same push, run again after its answer was lost
	if err := st.core().do(t.Context(), o2); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("the same push again = %v, want ErrDuplicate from the database", err)
	}
	errs := []error{ErrDuplicate}
	adoptLost([]*op{o2}, errs)
	if errs[0] != nil || p2.Key != p1.Key || r2.Seq != r1.Seq {
		t.Fatalf("adopted: err %v, key %d seq %d; want nil, %d, %d", errs[0], p2.Key, r2.Seq, p1.Key, r1.Seq)
	}
	_, _, o3 := mk("another body")
	errs = []error{ErrDuplicate}
	adoptLost([]*op{o3}, errs)
	if !errors.Is(errs[0], ErrDuplicate) {
		t.Fatalf("a different push with the same id adopted: %v", errs[0])
	}
}
