package handset

// EventReset is emitted when the handset's content is cleared.
const EventReset = "reset"

// Reset clears what the handset received: messages, browser channels, the browser cache,
// the pushes kept by push applications and the event history. It keeps the identity,
// coverage, application registrations and the mail sync position (so mail already fetched
// is not fetched again), and event sequence numbers go on from where they were. A test suite
// resets between tests instead of starting a fresh handset. The journal is rewritten, so a
// restarted handset stays empty.
func (h *Handset) Reset() error {
	h.mu.Lock()
	h.messages = nil
	h.msgKeys = map[string]string{}
	h.channels = nil
	h.cache = map[string]*CacheEntry{}
	for _, a := range h.apps {
		a.Pushes = nil
	}
	h.events.reset()
	var err error
	if h.j != nil {
		err = h.compactLocked()
	}
	h.mu.Unlock()
	h.Emit(EventReset, "messages, channels, cache and events cleared", nil)
	return err
}

// reset drops the kept events; sequence numbers go on.
func (l *eventLog) reset() {
	l.mu.Lock()
	l.buf = l.buf[:0]
	l.start = 0
	l.mu.Unlock()
}
