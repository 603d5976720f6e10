package bbsimtest

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
)

// TB is what the package needs of a test: *testing.T and *testing.B satisfy it, and so does
// the one Run passes.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Run calls f with a TB outside go test's own tests: in an Example, a main program or a
// TestMain. Fatalf ends f (as it ends a test), cleanups run when f returns, and the
// failures come back as the error.
func Run(f func(t TB)) error {
	r := &runner{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	r.mu.Lock()
	cleanups := r.cleanups
	r.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failures) > 0 {
		return errors.New(strings.Join(r.failures, "\n"))
	}
	return nil
}

type runner struct {
	mu       sync.Mutex
	failures []string
	cleanups []func()
}

func (r *runner) Helper() {}

func (r *runner) Errorf(format string, args ...any) {
	r.mu.Lock()
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// Fatalf records the failure and ends f's goroutine, as testing.T's does.
func (r *runner) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *runner) Cleanup(f func()) {
	r.mu.Lock()
	r.cleanups = append(r.cleanups, f)
	r.mu.Unlock()
}

func (r *runner) TempDir() string {
	dir, err := os.MkdirTemp("", "bbsimtest-")
	if err != nil {
		r.Fatalf("bbsimtest: temporary directory: %v", err)
	}
	r.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
