package pushserver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bbsim/bbsim/rim"
	"github.com/bbsim/bbsim/rim/pap"
)

// notify sends one result notification for one recipient, RIM style (headers) or PAP style
// (a resultnotification-message). It never blocks delivery: at most 64 notifications are in
// flight, others wait their turn in goroutines.
//
// A notification is sent once when its request was written whole and the initiator then
// answered anything but a 5xx, or closed the connection without answering (RIM's samples
// read the request and close). It is retried, at most three times in all, after a
// connection error, a timeout before the request was written, or a 5xx answer.
func (s *Server) notify(p *push, pin string, state rim.State, code int, reason string, at time.Time) {
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
			retry, err := s.notifyOnce(p, pin, state, code, reason, at)
			if err == nil {
				s.m.notified.Add(1)
				return
			}
			s.log.Warn("result notification", "push_id", p.id, "pin", pin, "url", p.notifyURL, "attempt", attempt, "err", err)
			if !retry {
				return
			}
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

// notifyOnce sends one notification and reports whether a failure is worth retrying.
func (s *Server) notifyOnce(p *push, pin string, state rim.State, code int, reason string, at time.Time) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	var written atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) { written.Store(i.Err == nil) },
	})
	var req *http.Request
	if p.notifyPAP {
		st, c := rim.MessageState(state, code)
		desc := rim.Desc(c)
		if reason != "" {
			desc += ": " + reason
		}
		body := pap.ResultNotification(p.papVersion, papSender, p.id, p.acceptedAt,
			pap.Result{Code: c, Desc: desc, State: st, At: at, Address: pin})
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, p.notifyURL, bytes.NewReader(body))
		if err != nil {
			return false, err
		}
		req.Header.Set("Content-Type", "application/xml")
	} else {
		// RIM's notification is its headers; the body, undocumented, carries the device's
		// reason when it refused the push.
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, p.notifyURL, strings.NewReader(reason))
		if err != nil {
			return false, err
		}
		if reason != "" {
			req.Header.Set("Content-Type", "text/plain; charset=utf-8")
		}
		req.Header.Set(rim.HeaderStatus, strconv.Itoa(rim.NotifyStatus(state, code)))
		req.Header.Set(rim.HeaderDestination, pin)
	}
	req.Header.Set(rim.HeaderPushID, p.id)
	resp, err := s.client.Do(req)
	if err != nil {
		if written.Load() && ctx.Err() == nil {
			// The initiator read the whole notification and closed without an answer.
			s.log.Debug("result notification closed without an answer", "push_id", p.id, "pin", pin, "err", err)
			return false, nil
		}
		return true, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	if resp.StatusCode/100 == 5 {
		return true, fmt.Errorf("notify url answered %s", resp.Status)
	}
	if resp.StatusCode/100 != 2 {
		return false, fmt.Errorf("notify url answered %s", resp.Status)
	}
	return false, nil
}
