package radio

import (
	"context"
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrDropped is the error of a connection the radio link dropped.
var ErrDropped = errors.New("connection dropped by the radio link")

// Link is a handset's radio link: the profile its connections run under, changeable at
// any time (connections already open follow the change at their next exchange), and the
// seed of its random draws.
type Link struct {
	profile atomic.Pointer[Profile]
	seed    uint64
	connsMu sync.Mutex
	conns   map[string]uint64 // connections so far, by stream
	// onDrop, when set, is told of each dropped connection.
	onDrop atomic.Pointer[func(stream string)]
	sleep  func(time.Duration) // time.Sleep; tests replace it
}

// NewLink returns a link under p whose draws follow seed: a run with the same seed, the
// same profile and the same traffic drops and stalls the same exchanges.
func NewLink(p Profile, seed uint64) *Link {
	l := &Link{seed: seed, sleep: time.Sleep, conns: map[string]uint64{}}
	l.profile.Store(&p)
	return l
}

// Profile returns the current profile.
func (l *Link) Profile() Profile { return *l.profile.Load() }

// Seed returns the seed of the link's draws.
func (l *Link) Seed() uint64 { return l.seed }

// Set changes the profile.
func (l *Link) Set(p Profile) { l.profile.Store(&p) }

// OnDrop sets a function told of each dropped connection, with its stream name.
func (l *Link) OnDrop(f func(stream string)) { l.onDrop.Store(&f) }

// Wrap puts c under the link's conditions. stream names the traffic ("device link",
// "mail"): each connection draws from its own sequence, derived from the seed, the stream
// and the connection's number within its stream, so neither one connection's exchanges nor
// another stream's connections shift a connection's draws.
func (l *Link) Wrap(c net.Conn, stream string) net.Conn {
	h := fnv.New64a()
	h.Write([]byte(stream))
	l.connsMu.Lock()
	l.conns[stream]++
	n := l.conns[stream]
	l.connsMu.Unlock()
	return &conn{Conn: c, l: l, stream: stream, rng: rand.New(rand.NewPCG(l.seed, h.Sum64()^n))}
}

// Listener wraps every connection ln accepts.
func (l *Link) Listener(ln net.Listener, stream string) net.Listener {
	return &listener{Listener: ln, l: l, stream: stream}
}

// Dialer wraps every connection dial opens; a nil dial is a plain one with a 10 s
// timeout, as the handset's own connections have.
func (l *Link) Dialer(dial func(ctx context.Context, network, addr string) (net.Conn, error), stream string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 10 * time.Second}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return l.Wrap(c, stream), nil
	}
}

type listener struct {
	net.Listener
	l      *Link
	stream string
}

func (ln *listener) Accept() (net.Conn, error) {
	c, err := ln.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return ln.l.Wrap(c, ln.stream), nil
}

// Directions of an exchange, as the handset sees them.
const (
	dirNone = iota
	dirIn   // toward the handset: what it reads
	dirOut  // from the handset: what it writes
)

// conn is a connection under a link's conditions. An exchange is a run of data in one
// direction: the first read after a write (or the first read of all) begins an incoming
// exchange, the first write after a read an outgoing one. Each exchange pays the one-way
// latency, may stall for a retransmission timeout, and may drop the connection; every
// read and write pays its bytes at the direction's bandwidth.
type conn struct {
	net.Conn
	l      *Link
	stream string

	mu   sync.Mutex
	rng  *rand.Rand
	last int
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		// The bytes are here: they arrive when the link would have delivered them.
		if d, drop := c.exchange(dirIn, n); drop {
			return 0, c.drop("read")
		} else if d > 0 {
			c.l.sleep(d)
		}
	}
	return n, err
}

func (c *conn) Write(b []byte) (int, error) {
	if len(b) > 0 {
		if d, drop := c.exchange(dirOut, len(b)); drop {
			return 0, c.drop("write")
		} else if d > 0 {
			c.l.sleep(d)
		}
	}
	return c.Conn.Write(b)
}

// exchange accounts n bytes in direction dir: the delay they take, and whether the
// connection drops.
func (c *conn) exchange(dir, n int) (time.Duration, bool) {
	p := c.l.profile.Load()
	if p.Off() {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var d time.Duration
	if dir != c.last {
		c.last = dir
		// Draw all three every exchange, so a profile's figures change what each draw
		// decides but not which draw decides what.
		jitter, lost, dropped := c.rng.Float64(), c.rng.Float64(), c.rng.Float64()
		if dropped < p.Drop {
			return 0, true
		}
		d = p.Latency + time.Duration((2*jitter-1)*float64(p.Jitter))
		if lost < p.Loss {
			d += p.RTO
		}
	}
	rate := p.Down
	if dir == dirOut {
		rate = p.Up
	}
	if rate > 0 {
		d += time.Duration(int64(n) * 8 * int64(time.Second) / rate)
	}
	return d, false
}

// drop resets the connection, so that the other end sees it fail too.
func (c *conn) drop(op string) error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close with a reset, as a lost bearer looks to the peer
	}
	_ = c.Conn.Close()
	if f := c.l.onDrop.Load(); f != nil {
		(*f)(c.stream)
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.Conn.LocalAddr(), Addr: c.Conn.RemoteAddr(), Err: ErrDropped}
}
