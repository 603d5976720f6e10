package controlapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bbsim/bbsim/handset"
)

// maxWait bounds ?wait=, so a forgotten long poll does not hold a connection for ever.
const maxWait = 5 * time.Minute

// settleTimeout bounds how long a POST waits for the agents to act on its change before it
// answers with the state as it is then (202 instead of 200).
const settleTimeout = 5 * time.Second

// waitParam reads ?wait= as a Go duration ("10s", "500ms") or a number of seconds.
func waitParam(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseFloat(v, 64)
		if nerr != nil {
			return 0, fmt.Errorf("wait=%q: want a duration such as 10s or a number of seconds", v)
		}
		d = time.Duration(n * float64(time.Second))
	}
	if d < 0 || d > maxWait {
		return 0, fmt.Errorf("wait=%q: want between 0 and %v", v, maxWait)
	}
	return d, nil
}

// until calls list until it returns a non-empty answer or wait has passed, waking on every
// handset event (and at least every 250 ms, for changes that emit none).
func until[T any](ctx context.Context, h *handset.Handset, wait time.Duration, list func() []T) []T {
	deadline := time.Now().Add(wait)
	for {
		seq := h.LastEventSeq()
		out := list()
		left := time.Until(deadline)
		if len(out) > 0 || left <= 0 || ctx.Err() != nil {
			if out == nil {
				out = []T{}
			}
			return out
		}
		wctx, cancel := context.WithTimeout(ctx, min(left, 250*time.Millisecond))
		h.WaitEvents(wctx, seq)
		cancel()
	}
}

// settle waits, up to settleTimeout, until done reports that the agents acted on a change.
func settle(ctx context.Context, h *handset.Handset, done func() bool) bool {
	out := until(ctx, h, settleTimeout, func() []bool {
		if done() {
			return []bool{true}
		}
		return nil
	})
	return len(out) > 0
}

// matches reports whether any of the fields contains the ?match= text, ignoring case.
func matches(q string, fields ...string) bool {
	if q == "" {
		return true
	}
	q = strings.ToLower(q)
	for _, f := range fields {
		if strings.Contains(strings.ToLower(f), q) {
			return true
		}
	}
	return false
}

// kindMatches reports whether an event kind is k or one of its sub-kinds (push matches
// push.channel).
func kindMatches(kind, k string) bool {
	return k == "" || kind == k || strings.HasPrefix(kind, k+".")
}
