package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bbsim/bbsim/browserpush"
	"github.com/bbsim/bbsim/fleet"
	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/pushserver"
	"github.com/bbsim/bbsim/rim"
)

// pushRig is a push server with a fleet of attached handsets.
type pushRig struct {
	ps         *pushserver.Server
	nDelivered *atomic.Int64 // recipients the gateway recorded as delivered
	fl         *fleet.Fleet
	gateway    string
	stop       func()
}

func newPushRig(ctx context.Context, o Options, handsets int) (*pushRig, error) {
	nDelivered := new(atomic.Int64)
	count := func(res pushserver.Result) {
		if res.State == rim.StateDelivered {
			nDelivered.Add(1)
		}
	}
	ps, err := pushserver.Open(ctx, pushserver.Options{DataDir: o.Dir, MaxActive: 100000, Logger: o.Logger, OnResult: count})
	if err != nil {
		return nil, err
	}
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ps.Close()
		return nil, err
	}
	go ps.Serve(pln)
	fln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ps.Close()
		return nil, err
	}
	gateway := "http://" + pln.Addr().String()
	fl, err := fleet.New(fleet.Options{Count: handsets, Gateway: gateway, BaseURL: "http://" + fln.Addr().String(), EventHistory: 8,
		Radio: o.Radio})
	if err != nil {
		fln.Close()
		ps.Close()
		return nil, err
	}
	go fl.Serve(fln)
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { fl.Run(fctx); close(done) }()
	r := &pushRig{ps: ps, nDelivered: nDelivered, fl: fl, gateway: gateway, stop: func() { cancel(); <-done; fl.Close(); ps.Close() }}
	deadline := time.Now().Add(60 * time.Second)
	for {
		n := 0
		for _, m := range fl.Members() {
			if m.Handset.LinkToken() != "" {
				n++
			}
		}
		if n == handsets {
			return r, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.stop()
			return nil, fmt.Errorf("only %d of %d handsets attached", n, handsets)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// delivered is how many pushes the handsets answered as stored. It counts the gateway's
// results, not the handsets' message lists, which would cost the measurement a copy of
// every list on each look.
func (r *pushRig) delivered() int { return int(r.nDelivered.Load()) }

var benchClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}}

// rimPush sends one RIM push of a Browser-Message titled title to pin.
func rimPush(ctx context.Context, gateway, pin, title string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gateway+"/push?DESTINATION="+pin+"&PORT=7874&REQUESTURI=/",
		strings.NewReader("<p>bench</p>"))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/html")
	req.Header.Set(rim.HeaderPushType, "Browser-Message")
	req.Header.Set(rim.HeaderTitle, title)
	resp, err := benchClient.Do(req)
	if err != nil {
		return err
	}
	return answered(resp)
}

// answered reads an answer to the end, so its connection serves the next request, and
// reports anything but 200.
func answered(resp *http.Response) error {
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("push: HTTP %s", resp.Status)
	}
	return nil
}

// sender is a push initiator on one kept connection that writes each RIM push as one
// prepared request and reads the answer, as a load generator does, so the figures are the
// gateway's and the handsets' rather than an HTTP client's sharing the cores.
type sender struct {
	c    net.Conn
	br   *bufio.Reader
	host string
	buf  []byte
}

func newSender(ctx context.Context, gateway string) (*sender, error) {
	host := strings.TrimPrefix(gateway, "http://")
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	return &sender{c: c, br: bufio.NewReader(c), host: host}, nil
}

// push sends a Browser-Message titled title to pin.
func (s *sender) push(pin, title string) error {
	const body = "<p>bench</p>"
	s.buf = append(s.buf[:0], "POST /push?DESTINATION="...)
	s.buf = append(s.buf, pin...)
	s.buf = append(s.buf, "&PORT=7874&REQUESTURI=/ HTTP/1.1\r\nHost: "...)
	s.buf = append(s.buf, s.host...)
	s.buf = append(s.buf, "\r\nContent-Type: text/html\r\nX-RIM-Push-Type: Browser-Message\r\nX-RIM-Push-Title: "...)
	s.buf = append(s.buf, title...)
	s.buf = append(s.buf, "\r\nContent-Length: "...)
	s.buf = strconv.AppendInt(s.buf, int64(len(body)), 10)
	s.buf = append(s.buf, "\r\n\r\n"+body...)
	if _, err := s.c.Write(s.buf); err != nil {
		return err
	}
	resp, err := http.ReadResponse(s.br, nil)
	if err != nil {
		return err
	}
	return answered(resp)
}

// pushEndToEnd measures RIM pushes accepted and delivered end to end to a fleet of
// handsets: the rate flat out, and the latency from the request to the handset's message
// list at a paced 1,000 pushes a second.
func pushEndToEnd(ctx context.Context, o Options) []Figure {
	handsets, total, paced := 1000, 10000, 3000
	if o.Quick {
		handsets, total, paced = 50, 500, 200
	}
	rig, err := newPushRig(ctx, o, handsets)
	if err != nil {
		return errFigure("push end to end", err)
	}
	defer rig.stop()
	members := rig.fl.Members()

	// Flat out: 64 senders, each push to the next handset in turn.
	var next atomic.Int64
	var failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			snd, err := newSender(ctx, rig.gateway)
			if err != nil {
				failed.Add(1)
				return
			}
			defer func() { snd.c.Close() }()
			for {
				i := int(next.Add(1) - 1)
				if i >= total || ctx.Err() != nil {
					return
				}
				if err := snd.push(members[i%handsets].Handset.PIN(), "t"+strconv.Itoa(i)); err != nil {
					failed.Add(1)
					snd.c.Close() // its answer may still come: start afresh
					if snd, err = newSender(ctx, rig.gateway); err != nil {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	for rig.delivered() < total-int(failed.Load()) && time.Since(start) < 2*time.Minute && ctx.Err() == nil {
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	got := rig.delivered()
	rateFig := Figure{Name: "RIM push accepted+delivered", N: got, Rate: float64(got) / elapsed.Seconds(),
		Target: ">= 10,000/s", Note: fmt.Sprintf("%d full handsets, 64 senders", handsets)}
	rateFig.Met = met(rateFig.Rate >= 10000 && got == total)
	if f := failed.Load(); f > 0 {
		rateFig.Note += fmt.Sprintf(", %d refused", f)
	}

	// Paced at 1,000/s: latency from request to the handset's message list.
	base := make([]int, handsets)
	for i, m := range members {
		base[i] = len(m.Handset.Messages())
	}
	sent := make([]time.Time, paced)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var pwg sync.WaitGroup
	for i := 0; i < paced && ctx.Err() == nil; i++ {
		<-tick.C
		sent[i] = time.Now()
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			rimPush(ctx, rig.gateway, members[i%handsets].Handset.PIN(), "p"+strconv.Itoa(i))
		}()
	}
	pwg.Wait()
	lat := make([]time.Duration, 0, paced)
	deadline := time.Now().Add(30 * time.Second)
	for len(lat) < paced && time.Now().Before(deadline) {
		lat = lat[:0]
		for _, m := range members {
			for _, msg := range m.Handset.Messages() {
				if i, err := strconv.Atoi(strings.TrimPrefix(msg.Subject, "p")); err == nil && strings.HasPrefix(msg.Subject, "p") {
					lat = append(lat, msg.ReceivedAt.Sub(sent[i]))
				}
			}
		}
		if len(lat) < paced {
			time.Sleep(20 * time.Millisecond)
		}
	}
	latFig := Figure{Name: "RIM push request → handset at 1,000/s", N: len(lat), Median: quantile(lat, 0.5), P99: quantile(lat, 0.99),
		Target: "p99 < 20 ms"}
	latFig.Met = met(latFig.P99 < 20 && len(lat) == paced)
	return []Figure{rateFig, latFig}
}

// receiverRate measures one handset receiver taking direct pushes on loopback.
func receiverRate(ctx context.Context, o Options) []Figure {
	total := 50000
	if o.Quick {
		total = 3000
	}
	h, err := handset.New(handset.Options{PIN: "2100BEEF", EventHistory: 16})
	if err != nil {
		return errFigure("receiver", err)
	}
	defer h.Close()
	rx, err := browserpush.New(browserpush.Options{Handset: h})
	if err != nil {
		return errFigure("receiver", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return errFigure("receiver", err)
	}
	if link := o.Radio.Link(); link != nil {
		go rx.Serve(link.Listener(ln, "device link"))
	} else {
		go rx.Serve(ln)
	}
	defer rx.Close()
	// The clients write a prepared request on a kept connection and read the answer, as the
	// gateway's device link does, so the figure is the receiver's rather than an HTTP
	// client's sharing the two cores.
	addr := ln.Addr().String()
	body := "<p>fresh</p>"
	req := []byte("POST / HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: text/html\r\nX-RIM-Push-Type: Browser-Content\r\n" +
		"Content-Location: http://bench.test/page\r\nX-Bbsim-Packet: 0/1\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	var next, failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				failed.Add(1)
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for next.Add(1) <= int64(total) && ctx.Err() == nil {
				if _, err := c.Write(req); err != nil {
					failed.Add(1)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					failed.Add(1)
					return
				}
				if answered(resp) != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	f := Figure{Name: "receiver direct pushes", N: total, Rate: float64(total) / elapsed.Seconds(), Target: ">= 20,000/s",
		Note: "Browser-Content, 32 kept connections"}
	f.Met = met(f.Rate >= 20000 && failed.Load() == 0)
	if n := failed.Load(); n > 0 {
		f.Note += fmt.Sprintf(", %d failed", n)
	}
	return []Figure{f}
}
