package emulator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/config"
	"github.com/bbsim/bbsim/internal/syncbuf"
)

func testConfig(t *testing.T) config.Config {
	c := config.Default()
	c.Data = t.TempDir()
	for _, p := range []*string{&c.Mail.IMAP, &c.Mail.POP3, &c.Mail.SMTP, &c.Mail.Webmail, &c.Push.Addr, &c.DNS.Addr, &c.Handset.Listen, &c.Handset.API} {
		*p = "127.0.0.1:0"
	}
	c.Handset.Gateway = ""
	return c
}

func TestBusyPortNamesTheFlag(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	c := testConfig(t)
	c.Handset.API = busy.Addr().String()
	_, err = New(Options{Config: c, Mode: ModeHandset})
	if !errors.Is(err, ErrPortBusy) {
		t.Fatalf("New with a busy --api = %v, want ErrPortBusy", err)
	}
	for _, want := range []string{"--api", "BBSIM_API", busy.Addr().String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	// A busy --dns is named once, not once for TCP and once for UDP.
	dc := testConfig(t)
	dc.DNS.Addr = busy.Addr().String()
	_, err = New(Options{Config: dc, Mode: ModeServer})
	if n := strings.Count(fmt.Sprint(err), "for --dns"); n != 1 {
		t.Errorf("busy --dns named %d times: %v", n, err)
	}
	// Nothing else was left bound: the same configuration with a free port works.
	c.Handset.API = "127.0.0.1:0"
	e, err := New(Options{Config: c, Mode: ModeHandset})
	if err != nil {
		t.Fatal(err)
	}
	e.closeAll()
}

func TestHandsetRunsAndStops(t *testing.T) {
	var out syncbuf.Buffer
	e, err := New(Options{Config: testConfig(t), Mode: ModeHandset, Events: &out})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()

	req, _ := http.NewRequest("POST", "http://"+e.Addr("api")+"/api/v1/coverage", strings.NewReader(`{"in":false}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST coverage = %d", resp.StatusCode)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "out of coverage") {
		if time.Now().After(deadline) {
			t.Fatalf("event line not printed; got %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(ShutdownTimeout + time.Second):
		t.Fatal("Run did not return within the shutdown timeout")
	}
	if _, err := net.Dial("tcp", e.Addr("api")); err == nil {
		t.Error("the API port is still open after Run returned")
	}
}

// The handset trusts the bundled mail server's self-signed certificate by default, in
// one process ("bbsim run") and as "bbsim handset" beside "bbsim server" on the same data.
func TestBundledCertificateTrusted(t *testing.T) {
	start := func(t *testing.T, c config.Config, mode Mode) *Emulator {
		t.Helper()
		e, err := New(Options{Config: c, Mode: mode})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		return e
	}
	idling := func(t *testing.T, e *Emulator) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for e.Handset.MailStatus().State != "idling" {
			if time.Now().After(deadline) {
				t.Fatalf("mail over STARTTLS not idling: %+v", e.Handset.MailStatus())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Run("run", func(t *testing.T) {
		c := testConfig(t)
		c.Handset.MailSecurity = "starttls"
		idling(t, start(t, c, ModeRun))
	})
	t.Run("server and handset", func(t *testing.T) {
		c := testConfig(t)
		srv := start(t, c, ModeServer)
		if f := srv.MailCertFile(); !strings.HasPrefix(f, c.Data) || !fileExists(f) {
			t.Fatalf("MailCertFile() = %q, want the certificate under %s", f, c.Data)
		}
		c.Handset.MailServer, c.Handset.MailSecurity = srv.Addr("imap"), "starttls"
		idling(t, start(t, c, ModeHandset))
	})
}

// TestPushStoreOpensWithinRun: New builds the push gateway without dialling its store; Run
// opens it, and the dial of a PostgreSQL that never answers ends when Run's context does,
// with nothing left bound.
func TestPushStoreOpensWithinRun(t *testing.T) {
	t.Parallel()
	db, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dialled := make(chan net.Conn, 1)
	go func() {
		if c, err := db.Accept(); err == nil {
			dialled <- c
		}
	}()
	c := testConfig(t)
	c.Push.DB = "postgres://bbsim:pw@" + db.Addr().String() + "/push?sslmode=disable"
	e, err := New(Options{Config: c, Mode: ModeServer})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	select {
	case conn := <-dialled:
		conn.Close()
		t.Fatal("New dialled the push store; Run opens it")
	default:
	}
	push := e.Addr("push")
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- e.Run(ctx) }()
	select {
	case conn := <-dialled:
		defer conn.Close()
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not dial the push store within 30s")
	}
	cancel()
	select {
	case err := <-ran:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "push server") {
			t.Fatalf("Run = %v, want the push server's opening ended by %v", err, context.Canceled)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run still opening the push store 15s after its context ended")
	}
	ln, err := net.Listen("tcp", push)
	if err != nil {
		t.Fatalf("the push listener is still bound after Run returned: %v", err)
	}
	ln.Close()
}
