package store

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/bbsim/bbsim/rim"
)

// BenchmarkApplyRecords: the indexer's work for one job of indexEvery records, as the
// gateway makes them (pushes of one recipient, each followed by its delivered state), into
// a fresh store. An op is the job; ns/push and allocs/push are its share of one push.
func BenchmarkApplyRecords(b *testing.B) {
	hdr := []byte(`{"Content-Type":["text/html"],"X-Rim-Push-Type":["Browser-Content"]}`)
	now := time.Now()
	const pushes = indexEvery / 2
	var mallocs uint64
	var ms runtime.MemStats
	for i := range b.N {
		b.StopTimer()
		st, err := Open(context.Background(), Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		conn, err := st.(*SQLite).db.Conn(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		recs := make([]jrec, 0, indexEvery)
		for k := range int64(pushes) {
			p := &Push{Key: k + 1, ID: fmt.Sprintf("st-%d-%d", i, k), Header: hdr, Body: []byte("<p>bench</p>"),
				Reliability: "transport", AcceptedAt: now}
			recs = append(recs, jrec{push: p, rs: []jrecip{{seq: k + 1, pin: pinA, port: 7874}}},
				jrec{seq: k + 1, u: Update{State: rim.StateDelivered, Code: 1000, At: now}})
		}
		runtime.ReadMemStats(&ms)
		before := ms.Mallocs
		b.StartTimer()
		err = applyRecords(context.Background(), conn, recs)
		b.StopTimer()
		runtime.ReadMemStats(&ms)
		mallocs += ms.Mallocs - before
		if err != nil {
			b.Fatal(err)
		}
		conn.Close()
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*pushes), "ns/push")
	b.ReportMetric(float64(mallocs)/float64(b.N*pushes), "allocs/push")
}
