package groupcommit

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// slowFirst is a commit function whose first commit waits for gate, after telling started;
// every batch then goes to batches.
type slowFirst struct {
	started, gate chan struct{}
	batches       chan []int
}

func newSlowFirst() *slowFirst {
	return &slowFirst{started: make(chan struct{}), gate: make(chan struct{}), batches: make(chan []int, 100)}
}

func (s *slowFirst) commit(batch []int) {
	if batch[0] == 0 {
		close(s.started)
		<-s.gate
	}
	s.batches <- slices.Clone(batch)
}

// TestBatchesWhatArrivesDuringACommit: operations submitted while a commit runs go
// together in the next one, in the order they were submitted, and Close commits what is
// queued.
func TestBatchesWhatArrivesDuringACommit(t *testing.T) {
	t.Parallel()
	s := newSlowFirst()
	w := Start(Options{}, s.commit)
	if err := w.Submit(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	<-s.started
	for i := 1; i <= 10; i++ {
		if err := w.Submit(t.Context(), i); err != nil {
			t.Fatal(err)
		}
	}
	close(s.gate)
	got := [][]int{<-s.batches, <-s.batches}
	if err := w.Submit(t.Context(), 11); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := w.Submit(t.Context(), 12); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close = %v, want ErrClosed", err)
	}
	close(s.batches)
	for b := range s.batches {
		got = append(got, b)
	}
	want := [][]int{{0}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {11}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("batches %v, want %v", got, want)
	}
	if c, n := w.Stats(); c != 3 || n != 12 {
		t.Fatalf("Stats() = %d, %d, want 3, 12", c, n)
	}
}

// TestMaxBatch: no commit carries more than MaxBatch operations, Close included.
func TestMaxBatch(t *testing.T) {
	t.Parallel()
	s := newSlowFirst()
	w := Start(Options{MaxBatch: 4}, s.commit)
	if err := w.Submit(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	<-s.started
	for i := 1; i <= 10; i++ {
		if err := w.Submit(t.Context(), i); err != nil {
			t.Fatal(err)
		}
	}
	close(s.gate)
	w.Close()
	close(s.batches)
	var sizes []int
	for b := range s.batches {
		sizes = append(sizes, len(b))
	}
	if want := []int{1, 4, 4, 2}; !slices.Equal(sizes, want) {
		t.Fatalf("batch sizes %v, want %v", sizes, want)
	}
}

// TestLingerEndsWhenNothingElseRuns: under load a batch lingers for more operations, but
// not once nothing else in the process can run: every submitter is then waiting for this
// commit. With a linger of a minute, the operation is committed at once.
func TestLingerEndsWhenNothingElseRuns(t *testing.T) {
	t.Parallel()
	s := newSlowFirst()
	w := Start(Options{Linger: time.Minute}, s.commit)
	defer w.Close()
	if err := w.Submit(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	<-s.started
	for i := 1; i <= 2; i++ { // committed together: the writer is under load
		if err := w.Submit(t.Context(), i); err != nil {
			t.Fatal(err)
		}
	}
	close(s.gate)
	<-s.batches
	if b := <-s.batches; len(b) != 2 {
		t.Fatalf("second batch %v, want two operations", b)
	}
	if err := w.Submit(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-s.batches:
		if !slices.Equal(b, []int{3}) {
			t.Fatalf("batch %v, want [3]", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the operation waited out the linger with nothing else to run")
	}
}
