package radio_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bbsim/bbsim/browserpush"
	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/radio"
	"github.com/bbsim/bbsim/pushserver"
	"github.com/bbsim/bbsim/rim"
)

// BenchmarkDeviceLink measures RIM pushes accepted by the gateway and delivered to one
// handset's receiver, with the receiver's listener as it is without --radio (nothing
// wrapped), and under a profile of no latency, no bandwidth limit, no loss and no drop
// (every connection wrapped, every exchange accounted): the cost of the wrapper itself.
// Sub-benchmarks alternate, so -count N interleaves them.
func BenchmarkDeviceLink(b *testing.B) {
	for _, tc := range []struct {
		name string
		spec string
	}{
		{"off", "off"},
		{"zero-profile", "wifi,latency=0s,down=0,up=0"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p, err := radio.Parse(tc.spec)
			if err != nil {
				b.Fatal(err)
			}
			benchLink(b, radio.Conditions{Profile: p, Seed: 1}.Link())
		})
	}
}

func benchLink(b *testing.B, link *radio.Link) {
	var delivered atomic.Int64
	wake := make(chan struct{}, 1)
	ps, err := pushserver.Open(b.Context(), pushserver.Options{DataDir: b.TempDir(), MaxActive: 1 << 20, OnResult: func(r pushserver.Result) {
		if r.State == rim.StateDelivered {
			delivered.Add(1)
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer ps.Close()
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go ps.Serve(pln)
	gateway := "http://" + pln.Addr().String()
	h, err := handset.New(handset.Options{PIN: "2100BE00", EventHistory: 16, MaxMessages: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	rx, err := browserpush.New(browserpush.Options{Handset: h, Gateway: gateway})
	if err != nil {
		b.Fatal(err)
	}
	defer rx.Close()
	rln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var ln net.Listener = rln
	if link != nil {
		ln = link.Listener(rln, "device link")
	}
	go rx.Serve(ln)
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	go rx.Run(ctx)
	for after := uint64(0); h.LinkToken() == ""; {
		ev, err := h.WaitEvents(ctx, after)
		if err != nil {
			b.Fatal("the handset did not attach")
		}
		after = ev[len(ev)-1].Seq
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gateway+"/push?DESTINATION=2100BE00&PORT=7874&REQUESTURI=/",
					strings.NewReader("<p>bench</p>"))
				req.Header.Set("Content-Type", "text/html")
				req.Header.Set(rim.HeaderPushType, "Browser-Message")
				req.Header.Set(rim.HeaderTitle, fmt.Sprint("t", i))
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	for delivered.Load() < int64(b.N) {
		select {
		case <-wake:
		case <-deadline.C:
			b.Fatalf("%d of %d pushes delivered", delivered.Load(), b.N)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
}
