package pushserver

// Delivery: each attached device's loop sends its queue, packet by packet, over its link
// (link.go, on a connection from the server's pool, linkpool.go) or the server's HTTP
// client.

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/bbsim/bbsim/rim"
)

// next returns the first deliverable queued recipient of d, or how long to wait.
func (s *Server) next(d *device) (*recip, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	wait := time.Hour
	for _, r := range d.queue {
		if r.p.deliverAfter.After(now) {
			if w := r.p.deliverAfter.Sub(now); w < wait {
				wait = w
			}
			continue
		}
		return r, 0
	}
	return nil, wait
}

func (s *Server) runDevice(ctx context.Context, d *device, url string) {
	defer s.wg.Done()
	defer func() {
		// The attachment is over: its receiver is gone or has moved.
		d.sending.Lock()
		s.dropLink(d)
		d.sending.Unlock()
	}()
	idle := time.NewTimer(time.Hour) // reset for each wait; Go 1.23 timers need no draining
	defer idle.Stop()
	for {
		if ctx.Err() != nil {
			return
		}
		r, wait := s.next(d)
		if r == nil {
			idle.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-d.wake:
			case <-idle.C:
			}
			idle.Stop()
			continue
		}
		d.sending.Lock()
		s.workers.run(func() { s.deliver(ctx, d, url, r) })
		d.sending.Unlock()
	}
}

type sendResult struct {
	code   int    // X-RIM-Push-Status from the receiver, 0 if none
	reason string // the receiver's words when it refused the push
	ok     bool
	retry  bool
	err    error
}

// deliver sends one push to one device, retrying while the device stays attached.
func (s *Server) deliver(ctx context.Context, d *device, url string, r *recip) {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		s.mu.Lock()
		// A previous attachment's loop may have delivered it meanwhile (final, or pending
		// an application acknowledgement).
		done := r.final || r.state != rim.StateQueued
		sw := d.software
		s.mu.Unlock()
		if done || ctx.Err() != nil {
			return
		}
		var ok bool
		if r.mode, ok = reliabilityFor(r.p.reliability, sw); !ok {
			s.finishWhy(r, rim.StateFailed, rim.CodeDeliveryMethod, errDeliveryMethodText+": "+noAppAcks(sw), s.now().UTC())
			return
		}
		// The request itself outlives a detach: a device that answers keeps its answer, so
		// a push it took is not sent again after it re-attaches.
		res := s.send(s.ctx, d, url, r)
		if ctx.Err() != nil && !res.ok {
			return
		}
		switch {
		case res.ok:
			now := s.now().UTC()
			s.m.observeLatency(now.Sub(r.p.acceptedAt))
			if r.mode == rim.ReliabilityApplication {
				s.markPending(r, now)
			} else {
				s.finish(r, rim.StateDelivered, 1000, now)
			}
			return
		case !res.retry:
			s.finishWhy(r, rim.StateFailed, res.code, res.reason, s.now().UTC())
			return
		}
		s.log.Debug("device unreachable, retrying", "pin", r.pin, "push_id", r.p.id, "attempt", attempt, "backoff", backoff, "err", res.err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// reliabilityFor is the reliability a push asked for, as a device running sw gets it
// (sw zero: not known, taken as supporting everything, as MDS from BES 4.1.7 knew every
// device's version): application-preferred is transport before device software 4.0, and
// application is not possible there (ok false).
func reliabilityFor(asked string, sw rim.Software) (mode string, ok bool) {
	acks := sw.IsZero() || sw.AppAcks()
	switch {
	case asked == rim.ReliabilityApplicationPreferred && acks:
		return rim.ReliabilityApplication, true
	case asked == rim.ReliabilityApplicationPreferred:
		return rim.ReliabilityTransport, true
	case asked == rim.ReliabilityApplication && !acks:
		return "", false
	}
	return asked, true
}

// send delivers the packets of a push with at most 5 unacknowledged; the last packet's
// answer is the device's verdict. It is called with d.sending held.
func (s *Server) send(ctx context.Context, d *device, url string, r *recip) sendResult {
	body := r.p.body
	size := s.opts.PacketSize
	n := (len(body) + size - 1) / size
	if n == 0 {
		n = 1
	}
	packet := func(i int) []byte {
		lo := i * size
		hi := min(lo+size, len(body))
		if lo > len(body) {
			lo = len(body)
		}
		return body[lo:hi]
	}
	if l := s.linkFor(d, url); l != nil {
		chunks := make([][]byte, n)
		for i := range chunks {
			chunks[i] = packet(i)
		}
		return l.exchange(r, chunks)
	}
	base := linkHeaders(r, n)
	if n > 1 {
		sem := make(chan struct{}, 5)
		var wg sync.WaitGroup
		var mu sync.Mutex // guards failed and first
		var first sendResult
		failed := false
		for i := 0; i < n-1; i++ {
			sem <- struct{}{}
			mu.Lock()
			stop := failed
			mu.Unlock()
			if stop {
				<-sem
				break
			}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				res := s.post(ctx, url, base, i, n, packet(i))
				if !res.ok {
					mu.Lock()
					if !failed {
						failed, first = true, res
					}
					mu.Unlock()
				}
			}(i)
		}
		wg.Wait()
		if failed {
			return first
		}
	}
	return s.post(ctx, url, base, n-1, n, packet(n-1))
}

// linkHeaders are the headers every packet of a push carries (docs/device-link.md), in
// canonical form; built once per delivery attempt and shared by its packets.
func linkHeaders(r *recip, n int) http.Header {
	h := make(http.Header, len(r.p.headers)+7)
	for k, v := range r.p.headers {
		h[k] = v
	}
	h[rim.HeaderPushID] = []string{r.p.id}
	h[rim.HeaderDestPort] = []string{strconv.Itoa(r.port)}
	if r.p.requestURI != "" {
		h[rim.HeaderRequestURI] = []string{r.p.requestURI}
	}
	h[rim.HeaderReliabilityMode] = []string{r.mode}
	h[rim.HeaderPushSource] = []string{r.p.source}
	h[rim.HeaderPushLength] = []string{strconv.Itoa(len(r.p.body))}
	if n == 1 {
		h[rim.HeaderPacket] = []string{"0/1"}
	}
	return h
}

func (s *Server) post(ctx context.Context, url string, base http.Header, i, n int, chunk []byte) sendResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(chunk))
	if err != nil {
		return sendResult{err: err, code: 4501}
	}
	if n == 1 {
		req.Header = base
	} else {
		req.Header = maps.Clone(base)
		req.Header[rim.HeaderPacket] = []string{strconv.Itoa(i) + "/" + strconv.Itoa(n)}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return sendResult{retry: true, err: err}
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10)) // read whole, the connection is reused
	resp.Body.Close()
	return classify(resp.StatusCode, resp.Status, resp.Header.Get(rim.HeaderStatus), answer)
}
