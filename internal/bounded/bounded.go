// Package bounded runs one step of a test under a short deadline, so that a fuzz
// iteration cannot outlive its input: a slow or stuck input fails that iteration (and is
// written as a crasher) instead of running on past -fuzztime.
package bounded

import (
	"context"
	"testing"
	"time"
)

// Run calls f with a context that expires after d, in a goroutine, and fails t (from t's
// own goroutine) if f has not returned by then and a grace of d again: f should give up
// when ctx is done. f must not call t's Fatal or FailNow; it returns, and t checks after.
func Run(t testing.TB, d time.Duration, what string, f func(ctx context.Context)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(ctx)
	}()
	grace := time.NewTimer(2 * d)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		t.Fatalf("%s: still running after %v (deadline %v)", what, 2*d, d)
	}
}
