package store

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bbsim/bbsim/rim"
)

// journalChildEnv makes the test binary a process that journals pushes and is killed.
const journalChildEnv = "BBSIM_STORE_TEST_JOURNAL_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(journalChildEnv); dir != "" {
		os.Exit(journalChild(dir))
	}
	os.Exit(m.Run())
}

// journalChild stores five pushes of two recipients, delivers the first recipient of the
// first three, says so, and waits to be killed: nothing is indexed yet (far fewer than
// indexEvery records, and no read).
func journalChild(dir string) int {
	st, err := Open(context.Background(), Options{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := range 5 {
		p := &Push{ID: fmt.Sprintf("kept-%d", i), Header: []byte(`{"Content-Type":["text/plain"]}`), Body: []byte(fmt.Sprint("body ", i)),
			Reliability: "transport", AcceptedAt: time.UnixMilli(1700000000000 + int64(i))}
		rs := []*Recipient{{PIN: pinA, Port: 7874, State: rim.StateQueued}, {PIN: pinB, Port: 7874, State: rim.StateQueued}}
		if err := st.InsertPush(context.Background(), p, rs, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if i < 3 {
			if err := st.SetState(context.Background(), rs[0].Seq, Update{State: rim.StateDelivered, Code: 1000, At: time.UnixMilli(1700000001000)}); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	}
	fmt.Println("STORED")
	select {}
}

// TestJournalSurvivesKill: pushes and states acknowledged by the journal and never
// indexed (the process is killed with SIGKILL) are in the tables after the next open, with
// their states; their keys are not used again, and their ids are still duplicates.
func TestJournalSurvivesKill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), journalChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if strings.TrimSpace(line) != "STORED" {
		t.Fatalf("child said %q", line)
	}
	if segs, _ := segments(dir); len(segs) == 0 {
		t.Fatal("no journal segment left by the killed process: the test proves nothing")
	}

	st := open1(t, dir)
	open, err := st.LoadOpen(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	queued := 0
	for _, o := range open {
		queued += len(o.Recipients)
	}
	if len(open) != 5 || queued != 7 {
		t.Fatalf("open after the kill: %d pushes, %d recipients; want 5 and 7", len(open), queued)
	}
	for i := range 5 {
		ps, err := st.PushStatus(t.Context(), AnySource, fmt.Sprintf("kept-%d", i))
		if err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
		want := rim.StateQueued
		if i < 3 {
			want = rim.StateDelivered
		}
		if len(ps.Recipients) != 2 || ps.Recipients[0].State != want || ps.Recipients[1].State != rim.StateQueued {
			t.Fatalf("push %d after the kill: %+v; want %s and queued", i, ps.Recipients, want)
		}
		if i == 0 && (ps.Recipients[0].Code != 1000 || !ps.Recipients[0].UpdatedAt.Equal(time.UnixMilli(1700000001000))) {
			t.Fatalf("push 0's first recipient: %+v", ps.Recipients[0])
		}
	}
	p := &Push{ID: "kept-4", Header: []byte(`{}`), Body: []byte("again"), AcceptedAt: time.Now()}
	if err := st.InsertPush(t.Context(), p, []*Recipient{{PIN: pinA, Port: 7874}}, nil); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("a recovered push id again = %v, want ErrDuplicate", err)
	}
	p = &Push{ID: "new", Header: []byte(`{}`), Body: []byte("new"), AcceptedAt: time.Now()}
	r := &Recipient{PIN: pinA, Port: 7874}
	if err := st.InsertPush(t.Context(), p, []*Recipient{r}, nil); err != nil {
		t.Fatal(err)
	}
	if p.Key <= int64(len(open)) || r.Seq <= 10 {
		t.Fatalf("new push got key %d, seq %d: keys used before", p.Key, r.Seq)
	}
}

// open1 opens the SQLite store in dir for a test.
func open1(t *testing.T, dir string) *SQLite {
	t.Helper()
	st, err := Open(t.Context(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st.(*SQLite)
}

// writeSegment writes records framed for segment seg to dir, then tail.
func writeSegment(t *testing.T, dir string, seg uint64, recs []jrec, seal bool, tail []byte) {
	t.Helper()
	var b []byte
	for i := range recs {
		b = appendRecord(b, seg, &recs[i])
	}
	if seal {
		b = appendSeal(b, seg, len(recs))
	}
	b = append(b, tail...)
	if err := os.WriteFile(filepath.Join(dir, segmentName(seg)), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func pushRec(key, seq int64, id string) jrec {
	return jrec{push: &Push{Key: key, ID: id, Header: []byte(`{}`), Body: []byte(id), Reliability: "transport", AcceptedAt: time.UnixMilli(1700000000000)},
		rs: []jrecip{{seq: seq, pin: pinA, port: 7874}}}
}

// TestJournalTornTail: a record the crash cut off at the end of the newest segment (never
// acknowledged) is dropped and what came before is kept; so are a used file's stale
// records, framed for another segment, after the records written since.
func TestJournalTornTail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		tail func() []byte
	}{
		{"cut off", func() []byte {
			r := pushRec(3, 3, "torn")
			b := appendRecord(nil, 7, &r)
			return b[:len(b)-3]
		}},
		{"stale", func() []byte {
			r := pushRec(3, 3, "stale")
			return appendRecord(nil, 2, &r) // written when the file was segment 2
		}},
		{"zeros", func() []byte { return make([]byte, 4096) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			open1(t, dir).Close() // the schema
			writeSegment(t, dir, 7, []jrec{pushRec(1, 1, "one"), pushRec(2, 2, "two"),
				{seq: 1, u: Update{State: rim.StateDelivered, Code: 1000, At: time.UnixMilli(1700000002000)}}}, false, tc.tail())
			st := open1(t, dir)
			for _, id := range []string{"one", "two"} {
				if _, err := st.PushStatus(t.Context(), AnySource, id); err != nil {
					t.Fatalf("push %s: %v", id, err)
				}
			}
			ps, _ := st.PushStatus(t.Context(), AnySource, "one")
			if ps.Recipients[0].State != rim.StateDelivered {
				t.Fatalf("push one's state %s, want delivered (its state record)", ps.Recipients[0].State)
			}
			for _, id := range []string{"torn", "stale"} {
				if _, err := st.PushStatus(t.Context(), AnySource, id); !errors.Is(err, ErrNotFound) {
					t.Fatalf("push %s = %v, want ErrNotFound", id, err)
				}
			}
			if segs, _ := segments(dir); len(segs) != 1 || segs[0] != 8 {
				t.Fatalf("segments after open: %v, want [8]", segs)
			}
		})
	}
}

// TestJournalDamagedSegment: an older segment that does not end with its seal lost
// acknowledged records; the store is not opened, and says which file.
func TestJournalDamagedSegment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open1(t, dir).Close()
	writeSegment(t, dir, 4, []jrec{pushRec(1, 1, "one"), pushRec(2, 2, "two")}, false, []byte("garbage"))
	writeSegment(t, dir, 5, []jrec{pushRec(3, 3, "three")}, false, nil)
	_, err := Open(t.Context(), Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), segmentName(4)) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("open with a damaged older segment = %v", err)
	}
	// Sealed, it opens.
	writeSegment(t, dir, 4, []jrec{pushRec(1, 1, "one"), pushRec(2, 2, "two")}, true, nil)
	st := open1(t, dir)
	for _, id := range []string{"one", "two", "three"} {
		if _, err := st.PushStatus(t.Context(), AnySource, id); err != nil {
			t.Fatalf("push %s: %v", id, err)
		}
	}
}

// TestJournalDuplicates: a push id is a duplicate of one journaled and not yet indexed, of
// one in the table, and of one earlier in the same group commit.
func TestJournalDuplicates(t *testing.T) {
	t.Parallel()
	st := open1(t, t.TempDir())
	ins := func(id, source string) error {
		p := &Push{ID: id, Source: source, Header: []byte(`{}`), Body: []byte(id), AcceptedAt: time.Now()}
		return st.InsertPush(t.Context(), p, []*Recipient{{PIN: pinA, Port: 7874}}, nil)
	}
	if err := ins("a", ""); err != nil {
		t.Fatal(err)
	}
	if err := ins("a", ""); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("journaled id again = %v", err)
	}
	if err := ins("a", "other app"); err != nil {
		t.Fatalf("the id from another source = %v", err)
	}
	if err := st.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	st.j.mu.Lock()
	left := len(st.j.unindexed)
	st.j.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d pushes still waiting after a flush", left)
	}
	if err := ins("a", ""); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("indexed id again = %v", err)
	}
	// Two with one id in one batch, run as the writer would (it is idle).
	mk := func(id string) *op {
		p := &Push{ID: id, Header: []byte(`{}`), Body: []byte(id), AcceptedAt: time.Now()}
		o := st.pushOp(p, []*Recipient{{PIN: pinA, Port: 7874}}, nil)
		o.err = make(chan error, 1)
		return o
	}
	batch := []*op{mk("b"), mk("b"), mk("a"), mk("c")}
	st.commit(batch)
	for i, want := range []error{nil, ErrDuplicate, ErrDuplicate, nil} {
		if err := <-batch[i].err; !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Fatalf("batch op %d = %v, want %v", i, err, want)
		}
	}
}

// TestJournalStateOfIndexedRecipient: a state recorded after its recipient was indexed
// updates the row; after a reopen the latest state stands.
func TestJournalStateOfIndexedRecipient(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := open1(t, dir)
	p := &Push{ID: "x", Header: []byte(`{}`), Body: []byte("x"), AcceptedAt: time.Now()}
	r := &Recipient{PIN: pinA, Port: 7874}
	if err := st.InsertPush(t.Context(), p, []*Recipient{r}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PushStatus(t.Context(), AnySource, "x"); err != nil { // indexes it
		t.Fatal(err)
	}
	for _, s := range []rim.State{rim.StatePending, rim.StateDelivered} {
		if err := st.SetState(t.Context(), r.Seq, Update{State: s, Code: 1000, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	st = open1(t, dir)
	ps, err := st.PushStatus(t.Context(), AnySource, "x")
	if err != nil || ps.Recipients[0].State != rim.StateDelivered {
		t.Fatalf("after reopen: %+v, %v; want delivered", ps, err)
	}
}

// TestJournalHandsOverBySize: pushes whose bodies fill a segment are indexed without a read
// asking for it, so that what the writer holds in memory stays about one segment's worth.
func TestJournalHandsOverBySize(t *testing.T) {
	t.Parallel()
	st := open1(t, t.TempDir())
	body := make([]byte, 1<<20)
	for i := range 5 {
		p := &Push{ID: fmt.Sprint("big-", i), Header: []byte(`{}`), Body: body, AcceptedAt: time.Now()}
		if err := st.InsertPush(t.Context(), p, []*Recipient{{PIN: pinA, Port: 7874}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st.j.mu.Lock()
		left := len(st.j.unindexed)
		st.j.mu.Unlock()
		if left <= 1 { // the fifth may follow the hand-over, in the next segment
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pushes of 1 MiB still waiting to be indexed: no hand-over by size", left)
		}
	}
}

func TestSeedIsChecksumOfSegment(t *testing.T) {
	for _, n := range []uint64{0, 1, 255, 1 << 40, ^uint64(0)} {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], n)
		if got, want := seed(n), crc32.Checksum(b[:], castagnoli); got != want {
			t.Fatalf("seed(%d) = %x, want %x", n, got, want)
		}
	}
}

func TestDecoderVarint(t *testing.T) {
	for _, v := range []int64{0, 1, -1, 63, -64, 1 << 40, -(1 << 40), 1<<63 - 1, -1 << 63} {
		d := &decoder{b: binary.AppendVarint(nil, v)}
		if got := d.varint(); got != v || d.err != nil || len(d.b) != 0 {
			t.Fatalf("varint of %d = %d, %v", v, got, d.err)
		}
	}
}

// FuzzReadSegment: whatever a segment file holds, reading it neither panics nor returns a
// record that does not encode back to the bytes it was read from.
func FuzzReadSegment(f *testing.F) {
	r1, r2 := pushRec(1, 1, "one"), jrec{seq: 1, u: Update{State: rim.StateDelivered, Code: 1000, Reason: "ok", At: time.UnixMilli(1)}}
	f.Add(appendSeal(appendRecord(appendRecord(nil, 3, &r1), 3, &r2), 3, 2))
	f.Add(appendRecord(nil, 3, &r1)[:20])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), segmentName(3))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		recs, _, err := readSegment(path, 3)
		if err != nil {
			t.Fatal(err)
		}
		var again []byte
		for i := range recs {
			again = appendRecord(again, 3, &recs[i])
		}
		if len(again) > len(data) {
			t.Fatalf("%d records re-encode to %d bytes, more than the %d read", len(recs), len(again), len(data))
		}
	})
}
