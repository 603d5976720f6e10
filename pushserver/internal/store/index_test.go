package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/bbsim/bbsim/rim"
)

// openIndex opens a store in a fresh directory and an index on a connection of its own,
// both closed at the test's end.
func openIndex(t *testing.T) (*SQLite, *index) {
	t.Helper()
	st := open1(t, t.TempDir())
	conn, err := st.db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ix := newIndex(conn)
	t.Cleanup(ix.close)
	return st, ix
}

// TestIndexRollsBack: a job the tables refuse (here a recipient of a push that an earlier
// push of the same name kept out) leaves nothing of itself, and the next job goes in on
// the same statements.
func TestIndexRollsBack(t *testing.T) {
	t.Parallel()
	st, ix := openIndex(t)
	if err := ix.apply(t.Context(), []jrec{pushRec(1, 1, "a")}); err != nil {
		t.Fatal(err)
	}
	bad := []jrec{pushRec(2, 2, "b"), {seq: 1, u: Update{State: rim.StateDelivered, Code: 1000, At: time.UnixMilli(1700000002000)}},
		pushRec(3, 3, "a")} // ignored as a duplicate, and its recipient refers to no push
	if err := ix.apply(t.Context(), bad); err == nil {
		t.Fatal("a recipient of no push was indexed")
	}
	if _, err := st.PushStatus(t.Context(), AnySource, "b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("push b of the refused job = %v, want ErrNotFound", err)
	}
	if ps, _ := st.PushStatus(t.Context(), AnySource, "a"); ps.Recipients[0].State != rim.StateQueued {
		t.Fatalf("push a's state %s after the refused job, want queued", ps.Recipients[0].State)
	}
	if err := ix.apply(t.Context(), bad[:2]); err != nil {
		t.Fatal(err)
	}
	if ps, _ := st.PushStatus(t.Context(), AnySource, "a"); ps.Recipients[0].State != rim.StateDelivered {
		t.Fatalf("push a's state %s, want delivered", ps.Recipients[0].State)
	}
	if _, err := st.PushStatus(t.Context(), AnySource, "b"); err != nil {
		t.Fatal(err)
	}
}

// TestIndexColumns: rows that repeat the row before in some columns and not in others
// all go in with their own values.
func TestIndexColumns(t *testing.T) {
	t.Parallel()
	st, ix := openIndex(t)
	type row struct {
		source, headers, reliability string
		accepted                     int64
		port                         int
		state                        rim.State
		code                         int
		updated                      int64
	}
	want := []row{
		{"", "{}", "transport", 1700000000000, 7874, rim.StateQueued, 0, 1700000000000},
		{"", "{}", "transport", 1700000000000, 7874, rim.StateDelivered, 1000, 1700000000001},
		{"app", `{"A":["b"]}`, "application", 1700000000000, 7875, rim.StateDelivered, 1000, 1700000000001},
		{"app", "{}", "application", 1700000000002, 7875, rim.StateFailed, 1000, 1700000000001},
		{"", "{}", "transport", 1700000000002, 7874, rim.StateQueued, 0, 1700000000002},
	}
	var recs []jrec
	for i, w := range want {
		k := int64(300 + i)
		recs = append(recs, jrec{push: &Push{Key: k, ID: fmt.Sprint(i), Source: w.source, Header: []byte(w.headers), Body: []byte{},
			Reliability: w.reliability, AcceptedAt: time.UnixMilli(w.accepted)}, rs: []jrecip{{seq: k, pin: pinA, port: w.port}}})
		if w.state != rim.StateQueued {
			recs = append(recs, jrec{seq: k, u: Update{State: w.state, Code: w.code, At: time.UnixMilli(w.updated)}})
		}
	}
	if err := ix.apply(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	rows, err := st.db.QueryContext(t.Context(), `SELECT p.source, p.headers, p.reliability, p.accepted_at, r.port, r.state, r.code, r.updated_at
		FROM pushes p JOIN recipients r ON r.pid = p.id ORDER BY r.seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.source, &r.headers, &r.reliability, &r.accepted, &r.port, &r.state, &r.code, &r.updated); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("rows\n%v\nwant\n%v", got, want)
	}
}

// BenchmarkApplyRecords: the indexer's work for one job of indexEvery records, as the
// gateway makes them (pushes of one recipient, each followed by its delivered state), into
// a fresh store whose indexer has applied a job before (its statements are prepared and
// its room grown, as for most of the indexer's life). An op is the job; ns/push and
// allocs/push are its share of one push.
func BenchmarkApplyRecords(b *testing.B) {
	hdr := []byte(`{"Content-Type":["text/html"],"X-Rim-Push-Type":["Browser-Content"]}`)
	now := time.Now()
	// job makes records for n pushes from key (and seq) k on.
	job := func(k int64, n int) []jrec {
		recs := make([]jrec, 0, 2*n)
		for range n {
			p := &Push{Key: k, ID: fmt.Sprint("st-", k), Header: hdr, Body: []byte("<p>bench</p>"), Reliability: "transport", AcceptedAt: now}
			recs = append(recs, jrec{push: p, rs: []jrecip{{seq: k, pin: pinA, port: 7874}}},
				jrec{seq: k, u: Update{State: rim.StateDelivered, Code: 1000, At: now}})
			k++
		}
		return recs
	}
	const pushes = indexEvery / 2
	var mallocs uint64
	var ms runtime.MemStats
	for range b.N {
		b.StopTimer()
		st, err := Open(context.Background(), Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		conn, err := st.(*SQLite).db.Conn(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		ix := newIndex(conn)
		if err := ix.apply(context.Background(), job(1, pushes+rowsPerInsert-1)); err != nil { // every size of INSERT
			b.Fatal(err)
		}
		recs := job(pushes+rowsPerInsert, pushes)
		runtime.ReadMemStats(&ms)
		before := ms.Mallocs
		b.StartTimer()
		err = ix.apply(context.Background(), recs)
		b.StopTimer()
		runtime.ReadMemStats(&ms)
		mallocs += ms.Mallocs - before
		if err != nil {
			b.Fatal(err)
		}
		ix.close()
		conn.Close()
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*pushes), "ns/push")
	b.ReportMetric(float64(mallocs)/float64(b.N*pushes), "allocs/push")
}
