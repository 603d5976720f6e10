package pushserver

import (
	"sync"
	"testing"
)

// TestWorkerPool: a job that does not end never makes another wait for a worker; a worker
// is used again rather than made anew; after stop, jobs run on the caller's goroutine.
// (TestOpenContextEndsEverything sees the workers end with the server.)
func TestWorkerPool(t *testing.T) {
	t.Parallel()
	var p workerPool
	release := make(chan struct{})
	var stuck sync.WaitGroup
	stuck.Add(1)
	go func() {
		defer stuck.Done()
		p.run(func() { <-release }) // a receiver that never answers
	}()
	for i := range 100 {
		ran := false
		p.run(func() { ran = true })
		if !ran {
			t.Fatalf("job %d did not run", i)
		}
	}
	p.mu.Lock()
	idle := len(p.idle)
	p.mu.Unlock()
	if idle != 1 {
		t.Fatalf("%d idle workers after 100 jobs one after another, want 1 (used again)", idle)
	}
	p.stop()
	close(release)
	stuck.Wait()
	ran := false
	p.run(func() { ran = true }) // after stop: on the caller's goroutine
	if !ran {
		t.Fatal("a job after stop did not run")
	}
}
