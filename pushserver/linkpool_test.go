package pushserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bbsim/bbsim/rim"
)

// countingListener counts the connections it accepted and, of those, the ones closed.
type countingListener struct {
	net.Listener
	accepted, closed atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.closed.Add(1) })
	return c.Conn.Close()
}

// TestLinkPoolFleet: 500 handsets served on one listener, as bbsim fleet serves them,
// share the gateway's connections to it. Pushes of three pipelined packets to every one of
// them, at most 8 at a time, arrive once each over at most 8 connections, not one per
// handset; after a push to all of them at once, the receiver is left with at most
// maxIdleLinkConns open, and with none once the gateway is closed.
func TestLinkPoolFleet(t *testing.T) {
	t.Parallel()
	const devices, inFlight = 500, 8
	var ln *countingListener
	rc := newReceiverOn(t, func(l net.Listener) net.Listener {
		ln = &countingListener{Listener: l}
		return ln
	})
	devs := benchDevices(devices)
	results := map[string]chan Result{} // by PIN; read only once the server runs
	for _, d := range devs {
		results[d.PIN] = make(chan Result, 2)
	}
	s, base := startServer(t, Options{Devices: devs, PacketSize: 100, OnResult: func(r Result) { results[r.PIN] <- r }})
	attachAll(t, base, rc, devs)
	body := []byte(strings.Repeat("0123456789", 25)) // 3 packets
	result := func(pin string) error {
		select {
		case r := <-results[pin]:
			if r.State != rim.StateDelivered {
				return fmt.Errorf("result %+v, want delivered", r)
			}
			return nil
		case <-time.After(60 * time.Second):
			return fmt.Errorf("the push to %s reached no final state", pin)
		}
	}
	arrivals := func(id func(pin string) string) {
		t.Helper()
		seen := map[string]bool{}
		for _, d := range rc.wait(t, devices) {
			if d.PushID != id(d.PIN) || seen[d.PIN] || string(d.Body) != string(body) || d.Packets != 3 {
				t.Fatalf("delivered %s to %s (%d bytes in %d packets, seen before %v)", d.PushID, d.PIN, len(d.Body), d.Packets, seen[d.PIN])
			}
			seen[d.PIN] = true
		}
		if n := len(rc.got); n > 0 { // a push arrives before its result
			t.Fatalf("%d pushes arrived twice", n)
		}
	}

	// One push per device from each of inFlight initiators, each awaiting its push's
	// result before the next.
	errs := make([]error, inFlight)
	var wg sync.WaitGroup
	for w := range inFlight {
		wg.Go(func() {
			for i := w; i < devices && errs[w] == nil; i += inFlight {
				pin := devs[i].PIN
				errs[w] = s.Enqueue(t.Context(), Submission{PushID: "one-" + pin, PINs: []string{pin}, Port: 7874, Body: body})
				if errs[w] == nil {
					errs[w] = result(pin)
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	arrivals(func(pin string) string { return "one-" + pin })
	if n := ln.accepted.Load(); n > inFlight {
		t.Errorf("the receiver accepted %d connections for %d pushes at most %d at a time, want at most %d", n, devices, inFlight, inFlight)
	}

	// One push to every device at once: as many connections as pushes in flight, then
	// the idle ones beyond the bound closed.
	pins := make([]string, len(devs))
	for i, d := range devs {
		pins[i] = d.PIN
	}
	if err := s.Enqueue(t.Context(), Submission{PushID: "all", PINs: pins, Port: 7874, Body: body}); err != nil {
		t.Fatalf("Enqueue to all: %v", err)
	}
	for _, pin := range pins {
		if err := result(pin); err != nil {
			t.Fatal(err)
		}
	}
	arrivals(func(string) string { return "all" })
	open := func(atMost int64, when string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for ln.accepted.Load()-ln.closed.Load() > atMost {
			if time.Now().After(deadline) {
				t.Fatalf("the receiver holds %d connections open %s, want at most %d", ln.accepted.Load()-ln.closed.Load(), when, atMost)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	open(maxIdleLinkConns, "after the pushes")
	t.Logf("connections accepted: %d, open after the pushes: %d", ln.accepted.Load(), ln.accepted.Load()-ln.closed.Load())
	s.Close()
	open(0, "after the gateway's Close")
}

// attachAll attaches devs to rc's listener, 8 at a time.
func attachAll(t *testing.T, base string, rc *receiver, devs []Device) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(devs))
	sem := make(chan struct{}, 8)
	for i, d := range devs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, errs[i] = attachErr(base, rc, d.PIN)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// TestLinkShutdownInterrupts: Close ends an exchange in progress on a pooled connection at
// once, rather than when the receiver's answer times out (30 s).
func TestLinkShutdownInterrupts(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	stalled := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if i == 1 { // the second push is read and never answered
				close(stalled)
				io.Copy(io.Discard, br)
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
	}()
	s, base, served := startServing(t, Options{Devices: seedDevices()})
	if code, m := postJSON(t, base+"/device/attach", map[string]string{"pin": pinA, "receiver_url": "http://" + ln.Addr().String() + "/"}); code != 200 {
		t.Fatalf("attach = %d %v", code, m)
	}
	for _, id := range []string{"first", "second"} {
		if code, text, _ := rimPush(t, base, "DESTINATION="+pinA, map[string]string{"X-RIM-Push-ID": id}, []byte(id)); code != 200 {
			t.Fatalf("POST /push = %d %s", code, text)
		}
		if id == "first" {
			waitState(t, s, id, pinA, rim.StateDelivered) // its connection is back in the pool
		}
	}
	select {
	case <-stalled:
	case <-time.After(20 * time.Second):
		t.Fatal("the second push did not reach the receiver")
	}
	closed := make(chan error, 1)
	start := time.Now()
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("Close waited on the receiver's answer")
	}
	<-served
	t.Logf("Close took %v", time.Since(start))
}

// linkPeer accepts connections and reports the remote address of each one the gateway's
// side closed.
func linkPeer(t *testing.T) (addr string, closed <-chan string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan string, 1000)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(io.Discard, c)
				ch <- c.RemoteAddr().String()
			}()
		}
	}()
	return ln.Addr().String(), ch
}

// waitClosed waits for the connections named (by local address) to be closed, in any
// order, and for nothing else to be.
func waitClosed(t *testing.T, closed <-chan string, cs ...*linkConn) {
	t.Helper()
	want := map[string]bool{}
	for _, c := range cs {
		want[c.conn.LocalAddr().String()] = true
	}
	for len(want) > 0 {
		select {
		case a := <-closed:
			if !want[a] {
				t.Fatalf("connection from %s closed, want those from %v", a, want)
			}
			delete(want, a)
		case <-time.After(20 * time.Second):
			t.Fatalf("connections from %v still open", want)
		}
	}
}

func dialN(t *testing.T, addr string, n int) []*linkConn {
	t.Helper()
	cs := make([]*linkConn, n)
	for i := range cs {
		c, err := dialLink(t.Context(), addr)
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c
	}
	return cs
}

// TestLinkPoolIdle: the pool keeps at most maxIdleLinkConns idle connections per address
// (closing the oldest), hands out the most recently used, closes those idle for its
// timeout, those of an address no device links to any more, and all at close.
func TestLinkPoolIdle(t *testing.T) {
	t.Parallel()
	addr, closed := linkPeer(t)

	t.Run("bound", func(t *testing.T) {
		var p linkPool
		p.use(addr)
		cs := dialN(t, addr, maxIdleLinkConns+2)
		for _, c := range cs {
			p.put(c)
		}
		waitClosed(t, closed, cs[0], cs[1])
		if got := p.get(addr); got != cs[len(cs)-1] {
			t.Errorf("get() = the connection from %s, want the last put back", got.conn.LocalAddr())
		}
		if p.get("127.0.0.1:1") != nil {
			t.Error("get() of an address never used returned a connection")
		}
		cs[len(cs)-1].close()
		p.use(addr) // a second device at the address
		p.unuse(addr)
		if p.count != maxIdleLinkConns-1 {
			t.Fatalf("idle after one of two devices ended = %d, want %d", p.count, maxIdleLinkConns-1)
		}
		p.unuse(addr)
		waitClosed(t, closed, cs[2:]...)
		if p.count != 0 {
			t.Errorf("idle after the last device ended = %d, want 0", p.count)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		p := linkPool{idleTimeout: 20 * time.Millisecond}
		cs := dialN(t, addr, 4)
		for _, c := range cs[:3] {
			p.put(c)
		}
		waitClosed(t, closed, cs[:3]...)
		p.put(cs[3]) // the sweep is armed again
		waitClosed(t, closed, cs[3])
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.count != 0 || p.armed {
			t.Errorf("after the sweeps: %d idle, sweep armed %v; want 0, false", p.count, p.armed)
		}
	})

	t.Run("close", func(t *testing.T) {
		var p linkPool
		cs := dialN(t, addr, 3)
		p.put(cs[0])
		p.put(cs[1])
		p.close()
		waitClosed(t, closed, cs[0], cs[1])
		p.put(cs[2])
		waitClosed(t, closed, cs[2])
	})
}
