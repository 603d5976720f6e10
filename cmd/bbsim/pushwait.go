package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bbsim/bbsim/pushinit"
	"github.com/bbsim/bbsim/rim"
)

// checkRecipients reports a --to value that cannot name a recipient, before anything is
// sent: a usage error, not a push failure.
func checkRecipients(to []string, proto pushinit.Protocol) error {
	for _, v := range to {
		a, err := rim.ParseAddress(v)
		switch {
		case err != nil:
			return fmt.Errorf("--to %q: %v", v, err)
		case a.All:
			if proto != pushinit.BIS {
				return fmt.Errorf("--to push_all: only with --protocol bis")
			}
		case strings.HasPrefix(a.Dest, "$"), strings.Contains(a.Dest, "@"):
		default:
			if _, ok := rim.NormalizePIN(a.Dest); !ok {
				return fmt.Errorf("--to %q: not a PIN (8 hex digits such as 2100000A), an e-mail address or a $group", v)
			}
		}
	}
	return nil
}

// recipientState is one recipient of GET /api/v1/pushes/{id}.
type recipientState struct {
	PIN    string    `json:"pin"`
	Port   int       `json:"port"`
	State  rim.State `json:"state"`
	Code   int       `json:"code"`
	Reason string    `json:"reason"`
}

// waitOutcome polls the gateway's push status until every recipient of push id is in a
// final state or wait has passed, prints each outcome, and returns how many recipients
// were not delivered (all of them when the wait ran out).
// The status is read with the initiator's credentials (needed under --push-auth).
func waitOutcome(ctx context.Context, gateway, user, pass, id string, wait time.Duration, out *resultPrinter) int {
	u := strings.TrimRight(gateway, "/") + "/api/v1/pushes/" + url.PathEscape(id)
	deadline := time.Now().Add(wait)
	pause := 50 * time.Millisecond
	var last []recipientState
	var lastErr error
	for {
		rs, err := pushStatus(ctx, u, user, pass)
		if err == nil {
			last, lastErr = rs, nil
			done := len(rs) > 0
			for _, r := range rs {
				done = done && rim.Final(r.State)
			}
			if done {
				failed := 0
				for _, r := range rs {
					out.outcome(id, r)
					if r.State != rim.StateDelivered {
						failed++
					}
				}
				return failed
			}
		} else {
			lastErr = err
		}
		if time.Now().Add(pause).After(deadline) || ctx.Err() != nil {
			if lastErr != nil {
				out.line(fmt.Sprintf("push %s: no final state within %v: %v", id, wait, lastErr))
				return max(1, len(last))
			}
			for _, r := range last {
				out.line(fmt.Sprintf("push %s to %s: still %s after %v", id, r.PIN, r.State, wait))
			}
			return max(1, len(last))
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Second)
	}
}

func pushStatus(ctx context.Context, u, user, pass string) ([]recipientState, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	var ps struct {
		Recipients []recipientState `json:"recipients"`
	}
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return ps.Recipients, nil
}

func (o *resultPrinter) outcome(id string, r recipientState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.json {
		b, _ := json.Marshal(struct {
			Outcome any `json:"outcome"`
		}{struct {
			ID string `json:"id"`
			recipientState
		}{id, r}})
		fmt.Fprintf(o.w, "%s\n", b)
		return
	}
	line := fmt.Sprintf("push %s to %s: %s", id, r.PIN, r.State)
	if r.State != rim.StateDelivered {
		if r.Code != 0 {
			line += fmt.Sprintf(", code %d (%s)", r.Code, pushinit.CodeMeaning(r.Code))
		}
		if r.Reason != "" {
			line += ": " + r.Reason
		}
	}
	fmt.Fprintln(o.w, line)
}

func (o *resultPrinter) line(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintln(o.w, s)
}
