package pushserver

// The delivery workers: each device's loop (deliver.go) hands the sending of a push to a
// worker goroutine and waits for it. A device's loop spends nearly all its time parked, so
// the garbage collector shrinks its stack, and sending a push (writing the packet, parsing
// the receiver's answer) grew it back every time: with a thousand devices attached that
// cost about 5 µs of CPU per push. A few workers that send push after push keep their
// stacks grown. Workers are made when none is idle (a slow receiver never makes another
// device wait for a worker) and end after workerIdle without work, or when the server stops.

import (
	"sync"
	"time"
)

// workerIdle is how long an idle worker waits for work before it ends.
const workerIdle = 10 * time.Second

type workerPool struct {
	mu      sync.Mutex // guards idle and stopped
	idle    []*worker  // most recently idle last
	stopped bool
}

type worker struct {
	jobs  chan func()
	since time.Time // idle since
}

// run runs f on a worker and returns when f has returned.
func (p *workerPool) run(f func()) {
	done := make(chan struct{})
	job := func() {
		defer close(done)
		f()
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		f()
		close(done)
		return
	}
	var w *worker
	if n := len(p.idle); n > 0 {
		w, p.idle = p.idle[n-1], p.idle[:n-1]
	}
	p.mu.Unlock()
	if w == nil {
		w = &worker{jobs: make(chan func(), 1)}
		go p.loop(w)
	}
	w.jobs <- job
	<-done
}

func (p *workerPool) loop(w *worker) {
	for f := range w.jobs {
		f()
		p.release(w)
	}
}

// release makes w idle again, and ends the longest idle worker when it has waited
// workerIdle.
func (p *workerPool) release(w *worker) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		close(w.jobs)
		return
	}
	w.since = now
	p.idle = append(p.idle, w)
	if old := p.idle[0]; now.Sub(old.since) > workerIdle {
		close(old.jobs)
		p.idle = p.idle[1:]
	}
}

// stop ends the idle workers, and the others once their work is done.
func (p *workerPool) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	for _, w := range p.idle {
		close(w.jobs)
	}
	p.idle = nil
}
