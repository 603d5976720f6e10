package pushserver

// The device links' connections, pooled by receiver address as an HTTP client pools them
// by host: a fleet of handsets served on one listener shares a few connections that stay
// warm, rather than holding one of its own per handset.

import (
	"bufio"
	"context"
	"net"
	"sync"
	"time"
)

const (
	// maxIdleLinkConns bounds the idle connections kept to one receiver address; the oldest
	// beyond it is closed. Each push in flight needs a connection, so an address keeps
	// about as many as it has pushes at once under steady load (some 64 with the
	// benchmarks' 64 initiator connections), and a burst opens more for a while. The bound
	// is what a fleet of thousands of handsets on one listener holds open between bursts:
	// 128 sockets on each side, where one connection per handset cost thousands.
	maxIdleLinkConns = 128
	// linkIdleTimeout is how long an idle connection is kept: net/http's Transport's.
	linkIdleTimeout = 90 * time.Second
)

// linkConn is one HTTP/1.1 connection to a receiver address, with its buffers. It
// carries one push's exchange at a time and goes back to its pool between them.
type linkConn struct {
	addr   string // host:port dialled
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	reused bool        // the connection carried an exchange before this one
	stop   func() bool // unregisters the server-shutdown hook
	idle   time.Time   // when it was last put back in the pool
}

// dialLink opens a connection to addr. Until it is closed, ctx's end (the server's stop)
// interrupts an exchange in progress on it.
func dialLink(ctx context.Context, addr string) (*linkConn, error) {
	d := net.Dialer{Timeout: linkDialTimeout, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &linkConn{
		addr: addr, conn: c,
		// net/http's default sizes. A packet larger than the writer's buffer is written
		// straight through.
		br:   bufio.NewReaderSize(c, 4096),
		bw:   bufio.NewWriterSize(c, 4096),
		stop: context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) }),
	}, nil
}

// close closes the connection and unregisters its shutdown hook.
func (c *linkConn) close() {
	c.conn.Close()
	c.stop()
}

// linkPool holds the idle connections of the server's device links, by dial address,
// at most maxIdleLinkConns per address and each for at most linkIdleTimeout. The zero
// value is ready to use.
type linkPool struct {
	idleTimeout time.Duration // linkIdleTimeout when zero; shorter in tests

	mu     sync.Mutex // guards the fields below
	idle   map[string][]*linkConn
	users  map[string]int // device links to each address
	count  int            // idle connections at all addresses
	sweep  *time.Timer    // closes the expired ones; armed while count > 0
	armed  bool
	closed bool
}

// use counts a device link to addr, until unuse.
func (p *linkPool) use(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.users == nil {
		p.users = map[string]int{}
	}
	p.users[addr]++
}

// unuse ends a device link to addr. When it was the last, the idle connections to addr
// are closed: its receiver is gone or has moved.
func (p *linkPool) unuse(addr string) {
	p.mu.Lock()
	p.users[addr]--
	if p.users[addr] > 0 {
		p.mu.Unlock()
		return
	}
	delete(p.users, addr)
	cs := p.idle[addr]
	delete(p.idle, addr)
	p.count -= len(cs)
	p.mu.Unlock()
	for _, c := range cs {
		c.close()
	}
}

// get takes the most recently used idle connection to addr, or returns nil.
func (p *linkPool) get(addr string) *linkConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := p.idle[addr]
	if len(cs) == 0 {
		return nil
	}
	c := cs[len(cs)-1]
	cs[len(cs)-1] = nil
	p.idle[addr] = cs[:len(cs)-1]
	p.count--
	return c
}

// put gives c back for the next exchange to its address. The caller puts back only a
// connection that may carry one: kept alive, no error, every packet answered.
func (p *linkPool) put(c *linkConn) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.close()
		return
	}
	c.idle = time.Now()
	if p.idle == nil {
		p.idle = map[string][]*linkConn{}
	}
	cs := append(p.idle[c.addr], c) // oldest first
	var evicted *linkConn
	if len(cs) > maxIdleLinkConns {
		evicted = cs[0]
		copy(cs, cs[1:])
		cs[len(cs)-1] = nil
		cs = cs[:len(cs)-1]
	} else {
		p.count++
	}
	p.idle[c.addr] = cs
	if !p.armed {
		p.armed = true
		if p.sweep == nil {
			p.sweep = time.AfterFunc(p.timeout(), p.expire)
		} else {
			p.sweep.Reset(p.timeout())
		}
	}
	p.mu.Unlock()
	if evicted != nil {
		evicted.close()
	}
}

func (p *linkPool) timeout() time.Duration {
	if p.idleTimeout > 0 {
		return p.idleTimeout
	}
	return linkIdleTimeout
}

// expire closes the connections idle for the timeout or longer, and arms the sweep again
// for the oldest of the others.
func (p *linkPool) expire() {
	var old []*linkConn
	p.mu.Lock()
	now := time.Now()
	timeout := p.timeout()
	var next time.Time
	for addr, cs := range p.idle {
		n := 0
		for n < len(cs) && now.Sub(cs[n].idle) >= timeout {
			n++
		}
		if n == 0 {
			if next.IsZero() || cs[0].idle.Before(next) {
				next = cs[0].idle
			}
			continue
		}
		old = append(old, cs[:n]...)
		p.count -= n
		if n == len(cs) {
			delete(p.idle, addr)
			continue
		}
		rest := copy(cs, cs[n:])
		clear(cs[rest:])
		p.idle[addr] = cs[:rest]
		if next.IsZero() || cs[0].idle.Before(next) {
			next = cs[0].idle
		}
	}
	p.armed = p.count > 0 && !p.closed
	if p.armed {
		p.sweep.Reset(next.Add(timeout).Sub(now))
	}
	p.mu.Unlock()
	for _, c := range old {
		c.close()
	}
}

// close closes the idle connections; a connection put back afterwards is closed at once.
func (p *linkPool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle, p.count, p.armed = nil, 0, false
	if p.sweep != nil {
		p.sweep.Stop()
	}
	p.mu.Unlock()
	for _, cs := range idle {
		for _, c := range cs {
			c.close()
		}
	}
}
