package handset

import (
	"context"
	"sync"
	"time"
)

// Event kinds. Agents may emit others; these are the ones the UI and tests look for.
const (
	EventCoverage       = "coverage"
	EventMailConnecting = "mail.connecting"
	EventMailConnected  = "mail.connected"
	EventMailIdle       = "mail.idle"
	EventMailExists     = "mail.exists"
	EventMailPoll       = "mail.poll"
	EventMailNew        = "mail.new"
	EventMailBye        = "mail.bye"
	EventMailDisconnect = "mail.disconnect"
	EventMailBackoff    = "mail.backoff"
	EventMailLockedOut  = "mail.locked-out"
	EventMailAuthFailed = "mail.auth-failed"
	EventMessageOpened  = "message.opened"
	EventPushChannel    = "push.channel"
	EventPushMessage    = "push.message"
	EventPushContent    = "push.content"
	EventPushApp        = "push.app"
	EventPushAlert      = "push.alert"
	EventPushRejected   = "push.rejected"
	EventChannelOpened  = "channel.opened"
	EventChannelDeleted = "channel.deleted"
	EventRegistration   = "registration"
	EventAppRequest     = "app.request"
	EventGateway        = "gateway"
	EventSoftware       = "device.software"
	// EventOpenFailed is a browser message or channel the browser could not display.
	EventOpenFailed = "browser.error"
	// EventPageFetched is a page the browser fetched because it was not pushed.
	EventPageFetched = "browser.fetched"
)

// Event is one entry of the handset's event stream.
type Event struct {
	Seq    uint64            `json:"seq"`
	At     time.Time         `json:"at"`
	Kind   string            `json:"kind"`
	Text   string            `json:"text"`
	Fields map[string]string `json:"fields,omitempty"`
}

type eventLog struct {
	mu      sync.Mutex
	cap     int
	buf     []Event // ring of the last cap events, oldest first once full
	start   int
	lastSeq uint64
	wake    chan struct{} // closed and replaced on every new event
}

func (l *eventLog) init(n int) {
	l.cap = n
	l.wake = make(chan struct{})
}

func (l *eventLog) add(e Event) Event {
	l.mu.Lock()
	l.lastSeq++
	e.Seq = l.lastSeq
	if len(l.buf) < l.cap {
		l.buf = append(l.buf, e)
	} else {
		l.buf[l.start] = e
		l.start = (l.start + 1) % l.cap
	}
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
	return e
}

// after returns the events with Seq > seq (the oldest kept first) and the wake channel.
func (l *eventLog) after(seq uint64) ([]Event, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	n := len(l.buf)
	for i := 0; i < n; i++ {
		e := l.buf[(l.start+i)%n]
		if e.Seq > seq {
			out = append(out, e)
		}
	}
	return out, l.wake
}

// Emit appends an event to the stream and to the journal.
func (h *Handset) Emit(kind, text string, fields map[string]string) Event {
	e := h.events.add(Event{At: h.now().UTC(), Kind: kind, Text: text, Fields: fields})
	h.mu.Lock()
	_ = h.writeLocked(recEvent, e) // the event log is best effort; state records are not
	h.mu.Unlock()
	return e
}

// Events returns the kept events with a sequence number above after, oldest first.
func (h *Handset) Events(after uint64) []Event {
	ev, _ := h.events.after(after)
	return ev
}

// LastEventSeq is the sequence number of the last event emitted (0 before the first), so
// that WaitEvents(ctx, h.LastEventSeq()) waits for the next one. It copies no events.
func (h *Handset) LastEventSeq() uint64 {
	h.events.mu.Lock()
	defer h.events.mu.Unlock()
	return h.events.lastSeq
}

// WaitEvents blocks until there are events with a sequence number above after, or ctx
// ends, and returns them oldest first. Readers never miss an event unless they fall more
// than the kept history behind.
func (h *Handset) WaitEvents(ctx context.Context, after uint64) ([]Event, error) {
	for {
		ev, wake := h.events.after(after)
		if len(ev) > 0 {
			return ev, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wake:
		}
	}
}

// restore puts a journaled event back in the history, keeping its sequence number.
func (l *eventLog) restore(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.Seq <= l.lastSeq {
		return
	}
	l.lastSeq = e.Seq
	if len(l.buf) < l.cap {
		l.buf = append(l.buf, e)
	} else {
		l.buf[l.start] = e
		l.start = (l.start + 1) % l.cap
	}
}
