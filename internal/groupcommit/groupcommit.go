// Package groupcommit batches operations that arrive together so that they share one
// transaction and its fsync: one writer goroutine takes everything queued, lingers briefly
// under load for more while the process has other work, and hands the batch to a commit
// function.
package groupcommit

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// idleYield: a Gosched that comes back within it found nothing else to run.
const idleYield = 5 * time.Microsecond

// ErrClosed is returned by Submit once Close has begun.
var ErrClosed = errors.New("groupcommit: writer closed")

// Options configure a Writer. Zero values mean the defaults stated per field.
type Options struct {
	// MaxBatch bounds the operations in one commit. Default 512.
	MaxBatch int
	// Linger is how long at most a batch waits for more operations when the previous commit
	// carried several (the writer is under load); it waits less when nothing else in the
	// process can run (see linger). A lone operation at low load is committed at once.
	// Default 500µs.
	Linger time.Duration
	// Queue is how many operations may wait for the writer before Submit blocks.
	// Default 4096.
	Queue int
}

// Writer runs commit on batches of operations, one batch at a time, in the order they were
// submitted.
type Writer[T any] struct {
	opts   Options
	commit func(batch []T)
	ops    chan T
	quit   chan struct{}
	done   chan struct{}

	mu     sync.RWMutex // Submit holds it to read, Close to write: nothing is queued after Close
	closed bool

	commits, carried atomic.Int64
}

// Start starts a writer that calls commit with each batch, on its own goroutine. commit
// must answer every operation of its batch before it returns.
func Start[T any](opts Options, commit func(batch []T)) *Writer[T] {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.Linger <= 0 {
		opts.Linger = 500 * time.Microsecond
	}
	if opts.Queue <= 0 {
		opts.Queue = 4096
	}
	w := &Writer[T]{opts: opts, commit: commit, ops: make(chan T, opts.Queue),
		quit: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// Submit queues op for a coming batch. Operations reach commit in the order of the Submit
// calls that returned nil. It fails with ErrClosed once Close has begun, and with the
// context's error if ctx ends while the queue is full.
func (w *Writer[T]) Submit(ctx context.Context, op T) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	// With room in the queue, ctx is not asked: asking a request's context whether it is
	// done can cost a watch on its connection (pushserver/internal/front).
	select {
	case w.ops <- op:
		return nil
	default:
	}
	select {
	case w.ops <- op:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close commits what was queued before it, stops the writer and waits for it. It may be
// called more than once.
func (w *Writer[T]) Close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.quit)
	}
	w.mu.Unlock()
	<-w.done
}

// Queued returns how many operations wait for the writer to take them.
func (w *Writer[T]) Queued() int { return len(w.ops) }

// Stats returns how many commits ran and how many operations they carried.
func (w *Writer[T]) Stats() (commits, ops int64) { return w.commits.Load(), w.carried.Load() }

func (w *Writer[T]) run() {
	defer close(w.done)
	batch := make([]T, 0, w.opts.MaxBatch)
	busy := false
	for {
		batch = batch[:0]
		select {
		case op := <-w.ops:
			batch = append(batch, op)
		case <-w.quit:
			// What was queued before Close is still committed (in batches of at most MaxBatch).
			for {
				batch = batch[:0]
			drainQuit:
				for len(batch) < cap(batch) {
					select {
					case op := <-w.ops:
						batch = append(batch, op)
					default:
						break drainQuit
					}
				}
				if len(batch) == 0 {
					return
				}
				w.run1(batch)
			}
		}
	drain:
		for len(batch) < cap(batch) {
			select {
			case op := <-w.ops:
				batch = append(batch, op)
			default:
				break drain
			}
		}
		// Under load, concurrent arrivals share the commit and its fsync, which costs far
		// more than the wait.
		if busy && len(batch) < cap(batch) {
			batch = w.linger(batch)
		}
		busy = len(batch) > 1
		w.run1(batch)
	}
}

// linger adds to batch what arrives within Linger, but ends sooner when the process has
// nothing else to run: then whoever will submit next is waiting for this commit (the
// initiators of a loaded gateway wait for its answer before they send again), and waiting
// longer only leaves the CPU idle. Giving up the processor (Gosched) runs whatever else is
// runnable first, goroutines woken by the network among them; when it comes back at once
// with nothing new queued, nothing was. A timer instead held every batch for the whole
// linger: with 64 initiators the gateway's cores were idle 15-19% of the time against
// 9-12% for a relay that keeps nothing.
func (w *Writer[T]) linger(batch []T) []T {
	deadline := time.Now().Add(w.opts.Linger)
	for len(batch) < cap(batch) {
		select {
		case op := <-w.ops:
			batch = append(batch, op)
			continue
		default:
		}
		t := time.Now()
		if !t.Before(deadline) {
			break
		}
		runtime.Gosched()
		if time.Since(t) < idleYield && len(w.ops) == 0 {
			break
		}
	}
	return batch
}

func (w *Writer[T]) run1(batch []T) {
	w.commits.Add(1)
	w.carried.Add(int64(len(batch)))
	w.commit(batch)
	clear(batch) // let the batch's operations (and their messages) go
}

// EachInSavepoint runs the n operations of one transaction, each in a savepoint of its
// own unless alone says it needs none, so that a failing operation is rolled back by
// itself and takes no other with it. exec runs one SQL statement in the transaction; the
// result is each operation's error.
func EachInSavepoint(n int, alone func(i int) bool, run func(i int) error, exec func(stmt string) error) []error {
	errs := make([]error, n)
	for i := range n {
		if alone(i) {
			errs[i] = run(i)
			continue
		}
		if err := exec("SAVEPOINT op"); err != nil {
			errs[i] = err
			continue
		}
		if err := run(i); err != nil {
			errs[i] = err
			if rerr := exec("ROLLBACK TO op"); rerr != nil {
				errs[i] = errors.Join(err, rerr)
			}
		}
		if err := exec("RELEASE op"); err != nil && errs[i] == nil {
			errs[i] = err
		}
	}
	return errs
}
