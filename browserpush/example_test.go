package browserpush_test

import (
	"context"
	"net"
	"os"
	"os/signal"
	"time"

	"github.com/bbsim/bbsim/browserpush"
	"github.com/bbsim/bbsim/handset"
)

// A handset's receiver on its own listener, attached to a gateway while in coverage.
func ExampleReceiver() {
	h, err := handset.New(handset.Options{PIN: "2100000A", Email: "alice@bbsim.test"})
	if err != nil {
		panic(err)
	}
	r, err := browserpush.New(browserpush.Options{Handset: h, Gateway: "http://127.0.0.1:8080"})
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:7874") // bind first: a busy port fails early
	if err != nil {
		panic(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go func() { _ = r.Serve(ln) }() // ErrServerClosed after Shutdown
	go func() { _ = r.Run(ctx) }()  // attach, detach, delete URLs
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.Shutdown(sctx)
}
