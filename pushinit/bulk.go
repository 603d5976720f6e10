package pushinit

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Target is one line of a bulk file: the push server and the recipient.
type Target struct {
	Host string
	Port int
	PIN  string
}

// Gateway is the target's push server URL.
func (t Target) Gateway() string {
	return "http://" + net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
}

// ParseBulk reads a bulk file: one "host port PIN" line per recipient (blank lines and
// lines starting with # are skipped), as RIM's bulk push sample read them, or CSV with the
// columns host,port,pin (an optional header line naming them).
func ParseBulk(r io.Reader) ([]Target, error) {
	br := bufio.NewReader(r)
	peek, _ := br.Peek(4096)
	if isCSV(peek) {
		return parseCSV(br)
	}
	var out []Target
	sc := bufio.NewScanner(br)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		t, err := parseTarget(strings.Fields(line))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no recipients in the bulk file")
	}
	return out, nil
}

func isCSV(b []byte) bool {
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.Contains(line, ",")
}

func parseCSV(r io.Reader) ([]Target, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	var out []Target
	for n := 1; ; n++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if n == 1 && len(rec) > 0 && strings.EqualFold(strings.TrimSpace(rec[0]), "host") {
			continue
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		t, err := parseTarget(rec)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no recipients in the bulk file")
	}
	return out, nil
}

func parseTarget(f []string) (Target, error) {
	if len(f) != 3 {
		return Target{}, fmt.Errorf("want \"host port PIN\", got %d fields", len(f))
	}
	host, ps, pin := strings.TrimSpace(f[0]), strings.TrimSpace(f[1]), strings.TrimSpace(f[2])
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return Target{}, fmt.Errorf("bad port %q", ps)
	}
	if host == "" || pin == "" {
		return Target{}, fmt.Errorf("empty host or PIN")
	}
	return Target{Host: host, Port: port, PIN: pin}, nil
}

// Progress is the state of a bulk run.
type Progress struct {
	Done, Failed, Total int
	Elapsed             time.Duration
}

// Rate is the pushes sent per second so far.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Done) / p.Elapsed.Seconds()
}

// ETA is the expected time to the end at the current rate.
func (p Progress) ETA() time.Duration {
	r := p.Rate()
	if r == 0 {
		return 0
	}
	return time.Duration(float64(p.Total-p.Done) / r * float64(time.Second))
}

// Bar draws the progress as one line of the given width, e.g.
// "[#####.....]  50%  500/1000  1234/s  ETA 0s".
func (p Progress) Bar(width int) string {
	pct := 100
	if p.Total > 0 {
		pct = p.Done * 100 / p.Total
	}
	// Every field has a fixed width, so the bar keeps its length from start to 100 %.
	digits := len(strconv.Itoa(p.Total))
	tail := fmt.Sprintf(" %3d%%  %*d/%d  %6.0f/s  ETA %6s", pct, digits, p.Done, p.Total, p.Rate(), p.ETA().Round(time.Second))
	n := max(width-len(tail)-2, 10)
	if p.Failed > 0 {
		tail += fmt.Sprintf("  %d failed", p.Failed)
	}
	fill := n * pct / 100
	return "[" + strings.Repeat("#", fill) + strings.Repeat(".", n-fill) + "]" + tail
}

// Bulk sends tmpl to every target, each in its own request with at most concurrency
// requests in flight (default 200, RIM's advice), retrying busy answers. progress, when not
// nil, is called after every request from one goroutine at a time. Results are in the
// order of targets.
func (c *Client) Bulk(ctx context.Context, tmpl Push, targets []Target, concurrency int, progress func(Progress)) []Result {
	if concurrency <= 0 {
		concurrency = 200
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				MaxIdleConnsPerHost: concurrency,
				MaxConnsPerHost:     concurrency,
				IdleConnTimeout:     30 * time.Second,
			},
		}
	}
	cc := &Client{HTTP: hc, Retries: c.Retries, Backoff: c.Backoff}
	if cc.Retries == 0 {
		cc.Retries = 10
	}
	results := make([]Result, len(targets))
	start := time.Now()
	var next atomic.Int64
	var mu sync.Mutex
	var done, failed int
	var wg sync.WaitGroup
	for range min(concurrency, len(targets)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(targets) {
					return
				}
				p := tmpl
				p.Gateway = targets[i].Gateway()
				p.To = []string{targets[i].PIN}
				p.ID = ""
				results[i] = cc.Send(ctx, p)
				mu.Lock()
				done++
				if results[i].Err != nil {
					failed++
				}
				if progress != nil {
					progress(Progress{Done: done, Failed: failed, Total: len(targets), Elapsed: time.Since(start)})
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return results
}
