package emulator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/sendmail"
	"github.com/bbsim/bbsim/rim"
)

// TestFlakyDeliversExactlyOnce runs bbsim under the flaky profile and a coverage schedule,
// sends 1,000 RIM pushes and 100 mails, and checks that the handset lists each exactly
// once, on its screen's list and in its journal after a restart, while the radio dropped
// connections and coverage came and went.
//
// The profile keeps flaky's loss (5 %) and drop (3 %) rates per exchange but shortens its
// latency and stall (2 ms ±1 ms, 20 ms), since the gateway delivers one device's pushes one
// after another: at flaky's own 100 ms each way, 1,000 pushes take minutes.
func TestFlakyDeliversExactlyOnce(t *testing.T) {
	const pushes, mails = 1000, 100
	c := testConfig(t)
	c.AuthFailureDelay = 0
	c.Push.MaxActive = 4 * pushes
	c.Handset.MaxMessages = 2 * (pushes + mails)
	c.Handset.Radio = "flaky,latency=1ms,jitter=0s,rto=10ms"
	c.Handset.CoverageSchedule = "in 4s, out 500ms, repeat"
	c.Handset.RadioSeed = 20
	e, err := New(Options{Config: c, Mode: ModeRun})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}
	defer stop()
	h := e.Handset
	t0 := time.Now()
	gateway, smtpAddr := "http://"+e.Addr("push"), e.Addr("smtp")

	// The pushes, from 8 initiators at once, and the mails, over SMTP.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	next := make(chan int, pushes)
	for i := range pushes {
		next <- i
	}
	close(next)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := push(ctx, gateway, h.PIN(), fmt.Sprintf("push %04d", i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range mails {
			msg, _ := sendmail.Compose("bob@example.test", []string{h.Email()}, fmt.Sprintf("mail %03d", i), "hello", time.Now())
			if err := sendmail.Send(ctx, smtpAddr, "bob@example.test", []string{h.Email()}, msg); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	t.Logf("sent at %v", time.Since(t0))
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Every push and mail listed, and the gateway done with every push: no retry of one is
	// still to come.
	wctx, wcancel := context.WithTimeout(ctx, 90*time.Second)
	defer wcancel()
	var after uint64
	for {
		// Every message is unread: the count says when all may be in without copying the
		// list at each event.
		if h.Device().Unread >= pushes+mails && gatewayDone(t, gateway, h.PIN(), pushes) {
			break
		}
		ev, err := h.WaitEvents(wctx, after)
		if err != nil {
			nPush, nMail := count(h.Messages())
			t.Fatalf("after 90 s: %d of %d pushes and %d of %d mails listed; radio %+v", nPush, pushes, nMail, mails, h.Radio())
		}
		after = ev[len(ev)-1].Seq
	}

	t.Logf("all in at %v", time.Since(t0))
	// The conditions were the ones asked for: connections dropped, coverage went and came.
	r := h.Radio()
	if r.Drops == 0 {
		t.Errorf("the radio dropped no connection: %+v", r)
	}
	outs, dropKinds := 0, map[string]int{}
	for _, ev := range h.Events(0) {
		if ev.Kind == handset.EventRadio && ev.Fields["coverage"] == "out" {
			outs++
		}
		if ev.Kind == handset.EventRadio && ev.Fields["drop"] != "" {
			dropKinds[ev.Fields["drop"]]++
		}
	}
	if outs == 0 {
		t.Error("the coverage schedule never took the handset out of coverage")
	}
	if dropKinds["device link"] == 0 || dropKinds["mail"] == 0 {
		t.Errorf("drops by connection = %v, want drops of both the device link and the mail connection", dropKinds)
	}
	t.Logf("radio %s: %d drops %v, %d times out of coverage", r.Profile, r.Drops, dropKinds, outs)

	check := func(where string, msgs []handset.Message) {
		t.Helper()
		seen := map[string]int{}
		for _, m := range msgs {
			seen[string(m.Kind)+" "+m.Subject]++
		}
		for i := range pushes {
			if n := seen[fmt.Sprintf("browser push %04d", i)]; n != 1 {
				t.Errorf("%s: push %04d listed %d times, want once", where, i, n)
			}
		}
		for i := range mails {
			if n := seen[fmt.Sprintf("email mail %03d", i)]; n != 1 {
				t.Errorf("%s: mail %03d listed %d times, want once", where, i, n)
			}
		}
		if len(msgs) != pushes+mails {
			t.Errorf("%s: %d messages, want %d", where, len(msgs), pushes+mails)
		}
	}
	check("message list", h.Messages())
	stop()
	again, err := handset.New(handset.Options{PIN: c.Handset.PIN, Dir: filepath.Join(c.Data, "handset", c.Handset.PIN), MaxMessages: c.Handset.MaxMessages})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	check("journal", again.Messages())
}

// push sends one RIM Browser-Message titled title to pin.
func push(ctx context.Context, gateway, pin, title string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gateway+"/push?DESTINATION="+pin+"&PORT=7874&REQUESTURI=/",
		strings.NewReader("<p>"+title+"</p>"))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/html")
	req.Header.Set(rim.HeaderPushType, "Browser-Message")
	req.Header.Set(rim.HeaderTitle, title)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("push %q: HTTP %s", title, resp.Status)
	}
	return nil
}

func count(msgs []handset.Message) (pushes, mails int) {
	for _, m := range msgs {
		if m.Kind == handset.KindEmail {
			mails++
		} else {
			pushes++
		}
	}
	return pushes, mails
}

// gatewayDone reports whether the gateway counts n pushes delivered to pin and none queued.
func gatewayDone(t *testing.T, gateway, pin string, n int) bool {
	t.Helper()
	resp, err := http.Get(gateway + "/api/v1/devices")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var devs []struct {
		PIN       string `json:"pin"`
		Queued    int    `json:"queued"`
		Delivered int    `json:"delivered"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&devs); err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		if d.PIN == pin {
			return d.Queued == 0 && d.Delivered >= n
		}
	}
	return false
}

// TestRadioOffWrapsNothing checks that a handset started without --radio has no radio
// link at all (nothing wraps its connections), so that the control API refuses a profile
// change with 409, and that one started with a profile shows it and takes a change.
func TestRadioOffWrapsNothing(t *testing.T) {
	for _, tc := range []struct {
		radio   string
		put     int
		profile string
	}{
		{radio: "off", put: http.StatusConflict, profile: "off"},
		{radio: "3g", put: http.StatusOK, profile: "gprs"},
	} {
		t.Run(tc.radio, func(t *testing.T) {
			c := testConfig(t)
			c.Handset.Radio = tc.radio
			e, err := New(Options{Config: c, Mode: ModeHandset})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- e.Run(ctx) }()
			defer func() { cancel(); <-done }()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+e.Addr("api")+"/api/v1/radio", strings.NewReader(`{"profile":"gprs"}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.put {
				t.Errorf("PUT /api/v1/radio with --radio %s = %d, want %d", tc.radio, resp.StatusCode, tc.put)
			}
			if got := e.Handset.Radio().Profile; got != tc.profile {
				t.Errorf("radio profile = %q, want %q", got, tc.profile)
			}
		})
	}
}
