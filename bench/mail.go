package bench

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/bbsim/bbsim/bisclient"
	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/dovecot"
	"github.com/bbsim/bbsim/mailserver"
)

const benchUser, benchPass = "alice@bbsim.test", "blackberry"

// follow runs a handset with the mail integration on the IMAP server at addr until the
// returned stop is called, once it idles.
func follow(ctx context.Context, o Options, addr string, b bisclient.Backoff) (*handset.Handset, func(), error) {
	h, err := handset.New(handset.Options{PIN: "2100000A", Email: benchUser, EventHistory: 256})
	if err != nil {
		return nil, nil, err
	}
	var dial func(ctx context.Context, network, addr string) (net.Conn, error)
	if link := o.Radio.Link(); link != nil {
		dial = link.Dialer(nil, "mail")
	}
	c, err := bisclient.New(bisclient.Options{Handset: h, Server: addr, Protocol: "imap", Password: benchPass, Backoff: b, Logger: o.Logger, Dial: dial})
	if err != nil {
		h.Close()
		return nil, nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { c.Run(cctx); close(done) }()
	stop := func() { cancel(); <-done; h.Close() }
	if err := waitState(ctx, h, handset.MailIdling, 20*time.Second); err != nil {
		stop()
		return nil, nil, err
	}
	return h, stop, nil
}

func waitState(ctx context.Context, h *handset.Handset, s handset.MailState, d time.Duration) error {
	deadline := time.Now().Add(d)
	for h.MailStatus().State != s {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("handset never %s (now %s)", s, h.MailStatus().State)
		}
		time.Sleep(200 * time.Microsecond)
	}
	return nil
}

// waitSubject waits for a message with the subject on the handset.
func waitSubject(ctx context.Context, h *handset.Handset, subject string, after uint64, d time.Duration) (uint64, error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		ev, err := h.WaitEvents(wctx, after)
		if err != nil {
			return after, fmt.Errorf("%q never reached the handset", subject)
		}
		for _, e := range ev {
			after = e.Seq
			if e.Kind == handset.EventMailNew && e.Fields["subject"] == subject {
				return after, nil
			}
		}
	}
}

// mailLatency delivers n mails with send and measures until each is on the handset.
func mailLatency(ctx context.Context, h *handset.Handset, n int, send func(subject string) error) ([]time.Duration, error) {
	var after uint64
	if ev := h.Events(0); len(ev) > 0 {
		after = ev[len(ev)-1].Seq
	}
	lat := make([]time.Duration, 0, n)
	for i := range n {
		subject := fmt.Sprintf("bench %d %d", i, time.Now().UnixNano())
		t0 := time.Now()
		if err := send(subject); err != nil {
			return lat, err
		}
		var err error
		if after, err = waitSubject(ctx, h, subject, after, 10*time.Second); err != nil {
			return lat, err
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}

func message(subject string) []byte {
	return []byte("From: bob@example.test\r\nTo: " + benchUser + "\r\nSubject: " + subject + "\r\n\r\nA bench mail.\r\n")
}

// mailToHandset measures mail from SMTP (LMTP for Dovecot) to the handset's message list,
// against the bundled server and Dovecot in the same run, and the polite handover.
func mailToHandset(ctx context.Context, o Options) []Figure {
	n := 200
	if o.Quick {
		n = 30
	}
	var figs []Figure

	ms, err := mailserver.New(mailserver.Options{DataDir: o.Dir, Logger: o.Logger, PoliteDisconnect: true})
	if err != nil {
		return errFigure("mail", err)
	}
	defer ms.Close()
	imapLn, _ := net.Listen("tcp", "127.0.0.1:0")
	smtpLn, _ := net.Listen("tcp", "127.0.0.1:0")
	pop3Ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go ms.ServeIMAP(imapLn)
	go ms.ServeSMTP(smtpLn)
	go ms.ServePOP3(pop3Ln)

	// StableAfter 1 s, with a pause of that between handovers, starts each round on the
	// schedule's first delay, as after a long session.
	h, stop, err := follow(ctx, o, imapLn.Addr().String(), bisclient.Backoff{StableAfter: time.Second})
	if err != nil {
		return errFigure("mail", err)
	}
	sc, err := smtp.Dial(smtpLn.Addr().String())
	if err != nil {
		stop()
		return errFigure("mail", err)
	}
	bundled, err := mailLatency(ctx, h, n, func(s string) error {
		return sc.SendMail("bob@example.test", []string{benchUser}, strings.NewReader(string(message(s))))
	})
	sc.Close()
	f := Figure{Name: "SMTP → handset list (bundled)", N: len(bundled), Median: quantile(bundled, 0.5), P99: quantile(bundled, 0.99),
		Target: "median < 10 ms", Note: "IMAP IDLE, EXISTS, UID FETCH"}
	if err != nil {
		f.Err = err.Error()
	}
	f.Met = met(err == nil && f.Median < 10)
	figs = append(figs, f)

	// Polite handover: a POP3 session takes the store, the handset is disconnected, and
	// comes back to IDLE after the POP3 QUIT.
	rounds := 20
	if o.Quick {
		rounds = 5
	}
	var back []time.Duration
	var herr error
	for range rounds {
		if err := waitState(ctx, h, handset.MailIdling, 20*time.Second); err != nil {
			herr = err
			break
		}
		time.Sleep(1100 * time.Millisecond) // a stable session; the server marks the idler just after "+ idling"
		d, err := handover(ctx, h, pop3Ln.Addr().String())
		if err != nil {
			herr = err
			break
		}
		back = append(back, d)
	}
	stop()
	hf := Figure{Name: "POP3 QUIT → handset back in IDLE", N: len(back), Median: quantile(back, 0.5), P99: quantile(back, 0.99),
		Target: "median < 2 s", Note: "polite disconnect; backoff 250 ms first, ×2"}
	if herr != nil {
		hf.Err = herr.Error()
	}
	hf.Met = met(herr == nil && hf.Median < 2000)
	figs = append(figs, hf)

	// The same EXISTS path on Dovecot, for the ratio.
	dv, err := dovecot.StartServer(dovecot.Options{})
	if err != nil {
		return append(figs, Figure{Name: "LMTP → handset list (Dovecot)", Err: err.Error()})
	}
	defer dv.Close()
	dh, dstop, err := follow(ctx, o, dv.IMAPAddr, bisclient.Backoff{})
	if err != nil {
		return append(figs, Figure{Name: "LMTP → handset list (Dovecot)", Err: err.Error()})
	}
	dn := n
	if !o.Quick {
		dn = 60 // Dovecot holds each notification about 200-500 ms
	}
	dlat, err := mailLatency(ctx, dh, dn, func(s string) error { return dv.DeliverErr(ctx, benchUser, message(s)) })
	dstop()
	df := Figure{Name: "LMTP → handset list (Dovecot)", N: len(dlat), Median: quantile(dlat, 0.5), P99: quantile(dlat, 0.99)}
	if err != nil {
		df.Err = err.Error()
	}
	if len(bundled) > 0 && df.Median > 0 {
		df.Note = fmt.Sprintf("%.0f× the bundled server's median", df.Median/quantile(bundled, 0.5))
	}
	return append(figs, df)
}

// handover logs in over POP3 (which disconnects the idler), quits, and measures until the
// handset idles again.
func handover(ctx context.Context, h *handset.Handset, pop3 string) (time.Duration, error) {
	c, err := net.Dial("tcp", pop3)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	read := func() string { n, _ := c.Read(buf); return string(buf[:n]) }
	read()
	fmt.Fprintf(c, "USER %s\r\n", benchUser)
	read()
	fmt.Fprintf(c, "PASS %s\r\n", benchPass)
	if r := read(); !strings.HasPrefix(r, "+OK") {
		return 0, fmt.Errorf("POP3 PASS: %s", strings.TrimSpace(r))
	}
	if err := waitLeft(ctx, h); err != nil {
		return 0, err
	}
	fmt.Fprintf(c, "QUIT\r\n")
	read()
	t0 := time.Now()
	if err := waitState(ctx, h, handset.MailIdling, 20*time.Second); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// waitLeft waits until the handset has noticed the disconnect.
func waitLeft(ctx context.Context, h *handset.Handset) error {
	deadline := time.Now().Add(10 * time.Second)
	for h.MailStatus().State == handset.MailIdling {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the handset was not disconnected")
		}
		time.Sleep(200 * time.Microsecond)
	}
	return nil
}
