package pushserver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// notify sends one result notification for one recipient, RIM style (headers, empty POST
// body) or PAP style (a resultnotification-message), with a few retries. It never blocks
// delivery: at most 64 notifications are in flight, others wait their turn in goroutines.
func (s *Server) notify(p *push, pin, state string, code int, at time.Time) {
	// A notify URL that stops answering must not pile up goroutines without bound.
	if s.notifyWaiting.Add(1) > maxNotifyWaiting {
		s.notifyWaiting.Add(-1)
		s.m.notifyDropped.Add(1)
		s.log.Warn("result notification dropped: too many waiting", "push_id", p.id, "pin", pin, "url", p.notifyURL)
		return
	}
	s.notifyWG.Add(1)
	go func() {
		defer s.notifyWG.Done()
		defer s.notifyWaiting.Add(-1)
		select {
		case s.notifySem <- struct{}{}:
		case <-s.ctx.Done():
			return
		}
		defer func() { <-s.notifySem }()
		for attempt := 1; attempt <= 3; attempt++ {
			err := s.notifyOnce(p, pin, state, code, at)
			if err == nil {
				s.m.notified.Add(1)
				return
			}
			s.log.Warn("result notification", "push_id", p.id, "pin", pin, "url", p.notifyURL, "attempt", attempt, "err", err)
			t := time.NewTimer(time.Duration(attempt) * 500 * time.Millisecond)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
}

// maxNotifyWaiting bounds the notifications waiting to be sent.
const maxNotifyWaiting = 100000

// rimStatus maps a recipient result to the X-RIM-Push-Status of a RIM notification.
func rimStatus(state string, code int) int {
	switch state {
	case "delivered":
		return 200
	case "cancelled":
		return 4501
	}
	if code == 0 {
		return 4501
	}
	return code
}

func (s *Server) notifyOnce(p *push, pin, state string, code int, at time.Time) error {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	var req *http.Request
	var err error
	if p.notifyPAP {
		body := papResultNotification(p, pin, state, code, at)
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, p.notifyURL, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/xml")
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, p.notifyURL, http.NoBody)
		if err != nil {
			return err
		}
		req.Header.Set("X-RIM-Push-Status", strconv.Itoa(rimStatus(state, code)))
		req.Header.Set("X-RIM-Push-Destination", pin)
	}
	req.Header.Set("X-RIM-Push-ID", p.id)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("notify url answered %s", resp.Status)
	}
	return nil
}
