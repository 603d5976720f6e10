// Package wirelog keeps one ordered record of what several server connections wrote, so
// that a test can tell which of two replies on different connections reached its socket
// first (for example the idler's BYE and POP3's +OK under polite disconnect).
package wirelog

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// Log is the ordered record. A write is recorded after it returned, so the order of the
// lines is the order in which the bytes reached the sockets. The zero Log is ready.
type Log struct {
	mu      sync.Mutex
	lines   []string      // "imap: * BYE …", "pop3: +OK …"
	changed chan struct{} // closed when lines grow
}

func (w *Log) add(name string, p []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for l := range strings.Lines(string(p)) {
		w.lines = append(w.lines, name+": "+strings.TrimRight(l, "\r\n"))
	}
	if w.changed != nil {
		close(w.changed)
		w.changed = nil
	}
}

// wait returns a channel closed when the next line is recorded.
func (w *Log) wait() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.changed == nil {
		w.changed = make(chan struct{})
	}
	return w.changed
}

// Index is the position of the first line with prefix ("name: text"), or -1.
func (w *Log) Index(prefix string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, l := range w.lines {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	return -1
}

// Before reports an error unless a line with prefix first was written earlier than any
// line with prefix then. A peer may read bytes a moment before their write is recorded,
// so Before first waits up to timeout for both lines.
func (w *Log) Before(first, then string, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		changed := w.wait()
		a, b := w.Index(first), w.Index(then)
		if a >= 0 && b >= 0 {
			if a > b {
				return fmt.Errorf("%q at line %d, %q at line %d, want the first before the second; the servers wrote:\n%s",
					first, a, then, b, w)
			}
			return nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return fmt.Errorf("%q at line %d, %q at line %d after %v, want both; the servers wrote:\n%s",
				first, a, then, b, timeout, w)
		}
	}
}

func (w *Log) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

// Listener wraps ln so that what its connections write is recorded under name.
func (w *Log) Listener(name string, ln net.Listener) net.Listener {
	return &listener{Listener: ln, name: name, log: w}
}

type listener struct {
	net.Listener
	name string
	log  *Log
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, name: l.name, log: l.log}, nil
}

type conn struct {
	net.Conn
	name string
	log  *Log
}

func (c *conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.log.add(c.name, p[:n])
	return n, err
}
