package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"time"

	"github.com/bbsim/bbsim/config"
	"github.com/bbsim/bbsim/fleet"
	"github.com/bbsim/bbsim/internal/radio"
)

func cmdFleet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("fleet", stderr)
	var o fleet.Options
	var listen, data string
	var every time.Duration
	fs.IntVar(&o.Count, "count", 10, "number of handsets")
	fs.StringVar(&o.FirstPIN, "first-pin", "2A000000", "PIN of the first handset; the others follow in sequence")
	fs.StringVar(&o.Domain, "domain", "bbsim.test", "e-mail domain: user1@DOMAIN, user2@…")
	fs.StringVar(&o.Gateway, "gateway", "http://127.0.0.1:8080", "push server URL the handsets attach to (empty: none)")
	fs.DurationVar(&o.CheckEvery, "gateway-check", 0, "how often each attached handset asks the gateway whether it still holds the attachment, and attaches again when not (0: 5s, longer above 500 handsets so that the fleet asks at most 100 times a second)")
	fs.Func("device-software", "device software of the handsets: VERSION[,VERSION…] handed out in turn (a mix), or PIN=VERSION for one handset (repeatable; list: the known versions)", func(v string) error {
		o.Software = append(o.Software, v)
		return nil
	})
	rc := config.Handset{Radio: radio.Off}
	rc.RegisterRadio(fs)
	fs.StringVar(&data, "data", config.DefaultDataDir(), "state directory: the handsets' device secrets, which the gateway issued and asks for, are kept in DIR/fleet")
	fs.StringVar(&listen, "listen", "127.0.0.1:7900", "shared listener: pushes on /d/PIN/, control API on /h/PIN/api/v1/, counters on /api/v1/fleet")
	fs.DurationVar(&every, "report", 5*time.Second, "how often to look at the fleet's counters, printed when they changed (0: never)")
	if err := parseTool(fs, args); err != nil {
		return err
	}
	if slices.Contains(o.Software, config.SoftwareList) {
		return printSoftware(stdout)
	}
	var err error
	if o.Radio, err = rc.RadioConditions(); err != nil {
		fmt.Fprintf(stderr, "bbsim fleet: %v\n", err)
		return errUsage
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s for --listen (%v); move it with --listen HOST:PORT or BBSIM_LISTEN", listen, err)
	}
	o.BaseURL = "http://" + ln.Addr().String()
	if data != "" {
		o.Dir = filepath.Join(data, "fleet")
	}
	f, err := fleet.New(o)
	if err != nil {
		ln.Close()
		return err
	}
	defer f.Close()
	go f.Serve(ln)
	fmt.Fprintf(stdout, "fleet: %d handsets from PIN %s on %s (pushes: %s/d/PIN/, API: %s/h/PIN/api/v1/, counters: %s/api/v1/fleet)\n",
		len(f.Members()), o.FirstPIN, ln.Addr(), o.BaseURL, o.BaseURL, o.BaseURL)
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		last := ""
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case <-t.C:
				var attached, msgs, chans int
				for _, c := range f.Counters() {
					if c.Attached {
						attached++
					}
					msgs += c.Messages
					chans += c.Channels
				}
				// A line when something changed, not the same line every period.
				if line := fmt.Sprintf("fleet: %d/%d attached, %d messages, %d channels\n", attached, len(f.Members()), msgs, chans); line != last {
					fmt.Fprint(stdout, line)
					last = line
				}
			}
		}
	}
	<-done
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return f.Shutdown(sctx)
}
